"""Which cache folders the sidebar may show: the server's own, and those its user's kernels registered.

The server's configured cache (``c.NdustriaServer.cache_dir``, else ``NDUSTRIA_CACHE_DIR``, the config
file, ``~/.ndustria_cache``) is the default. The others come from the registry the kernels write
(:mod:`ndustria_nb.registry`); only a registry file and cache folders owned by the server's own user
are read, and a request may name no folder other than these (``?cache=PATH``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from ndustria.errors import NdustriaError

from .. import registry
from .core import NotFoundError, open_catalog


class ForbiddenCacheError(NdustriaError):
    """A request named a folder that is not a cache this server shows."""


def owned(path: Path) -> bool:
    """``path`` and its catalog (if any) belong to this process's user (always true without uids)."""
    if not hasattr(os, "getuid"):
        return True
    uid = os.getuid()
    try:
        if path.stat().st_uid != uid:
            return False
        catalog = path / "catalog.sqlite"
        return not catalog.exists() or catalog.stat().st_uid == uid
    except OSError:
        return False


def _runs(path: Path) -> int:
    """How many runs the catalog of ``path`` holds (0 without a catalog)."""
    try:
        with open_catalog(path) as catalog:
            return len(catalog.runs(limit=1))
    except (NotFoundError, sqlite3.Error):
        return 0


def _view(path: str, default: bool, use: registry.CacheUse | None) -> dict[str, Any]:
    return {
        "path": path, "default": default, "has_runs": _runs(Path(path)) > 0,
        "kernels": [{"notebook": k.get("notebook", ""), "pid": k.get("pid")} for k in (use.kernels if use else [])],
        "last_used": use.last_used if use else None,
    }


def choices(default: Path, registry_file: Path) -> list[dict[str, Any]]:
    """The server's cache first, then every registered cache of this user, most recently used first."""
    uses = {u.path: u for u in registry.read(registry_file)}
    first = str(default)
    out = [_view(first, True, uses.pop(first, None))]
    for path, use in uses.items():
        if Path(path).is_dir() and owned(Path(path)):
            out.append(_view(path, False, use))
    return out


def resolve(requested: str | None, default: Path, registry_file: Path) -> Path:
    """The cache folder a request asks for (``?cache=``): the default when it names none."""
    if not requested or os.path.abspath(requested) == str(default):
        return default
    path = os.path.abspath(requested)
    known = {u.path for u in registry.read(registry_file)}
    if path not in known:
        raise ForbiddenCacheError(f"{path} is not a cache this server shows: only the server's cache ({default}) "
                                  "and the caches of its kernels that loaded ndustria (`%load_ext ndustria`)")
    if not owned(Path(path)):
        raise ForbiddenCacheError(f"{path} belongs to another user: the sidebar reads only your own caches")
    return Path(path)
