"""Shared fixtures: every test gets its own cache directory and config file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def ip(cache_dir: Path) -> Iterator[Any]:
    """The process's IPython shell with ndustria's extension loaded. The shell is shared by every test of
    the process, so the names a test binds in its namespace are removed after it and the ones it rebinds
    are restored (a test's ``data = File('missing.txt')`` made the next test's cell uncacheable)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.testing.globalipapp import get_ipython

    import ndustria

    shell = get_ipython() or InteractiveShell.instance()  # the global app starts once per process
    before = dict(shell.user_ns)
    shell.run_line_magic("load_ext", "ndustria")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "ndustria")
        ndustria.set_default_pipeline(None)
        for name in [name for name in shell.user_ns if name not in before]:
            del shell.user_ns[name]
        shell.user_ns.update(before)
