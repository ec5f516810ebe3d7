"""Shared fixtures: every test gets its own cache directory and config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def secret_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signing key for the whole session (engines started by one test may serve the next)."""
    path = tmp_path_factory.mktemp("ndustria-key") / "secret.key"
    os.environ["NDUSTRIA_SECRET_KEY_FILE"] = str(path)
    return path


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache and the config file into tmp_path; never touch the user's home."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NDUSTRIA_CACHE_DIR", str(cache))
    monkeypatch.setenv("NDUSTRIA_CONFIG_FILE", str(tmp_path / "config" / "config.toml"))
    (tmp_path / "home").mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cache


@pytest.fixture
def cache_dir(isolated_config: Path) -> Path:
    return isolated_config
