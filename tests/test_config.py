"""Where the cache lives: keyword > environment > `ndustria init` file > legacy file > default."""

from __future__ import annotations

from pathlib import Path

from ndustria import Pipeline
from ndustria.config import resolve_cache_dir, write_config_file


def test_precedence(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.delenv("NDUSTRIA_CACHE_DIR")
    assert resolve_cache_dir().value == str(home / ".ndustria_cache")

    (home / ".ndustria_config").write_text("export NDUSTRIA_CACHE_DIR='/data/legacy'\n")
    assert resolve_cache_dir().value == "/data/legacy"

    write_config_file({"cache_dir": str(tmp_path / "from-file")})
    assert resolve_cache_dir().value == str(tmp_path / "from-file")

    monkeypatch.setenv("NDUSTRIA_CACHE_DIR", str(tmp_path / "from-env"))
    assert resolve_cache_dir().value == str(tmp_path / "from-env")
    assert resolve_cache_dir(tmp_path / "kw").value == str(tmp_path / "kw")
    assert Pipeline(cache_dir=tmp_path / "kw").cache_dir == Path(tmp_path / "kw")


def test_user_paths_are_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("NDUSTRIA_CACHE_DIR", "~/somewhere")
    assert resolve_cache_dir().value == str(tmp_path / "home" / "somewhere")
