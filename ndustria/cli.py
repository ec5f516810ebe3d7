"""The ``ndustria`` command: set-up, cache management and (later) reports."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .catalog import Catalog
from .config import config_file_path, resolve_cache_dir, write_config_file
from .errors import NdustriaError
from .store import Store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ndustria",
        description="Cached, code-aware, parallel pipelines. Manage the cache and read run reports.",
    )
    parser.add_argument("--version", action="version", version=f"ndustria {__version__}")
    parser.add_argument("--cache-dir", help="cache directory (default: as configured; see `ndustria config`)")
    parser.add_argument("-c", "--clear-cache", action="store_true", help="remove every cached result")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="write the config file (cache directory); never edits shell files")
    init.add_argument("--cache-dir", dest="init_cache_dir", help="cache directory to configure")

    sub.add_parser("config", help="show the settings in force and where each comes from")

    cache = sub.add_parser("cache", help="list or remove cached results")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    cache_sub.add_parser("ls", help="list entries: task, size, age (the default)")
    rm = cache_sub.add_parser("rm", help="remove entries whose task, function or key matches PATTERN")
    rm.add_argument("pattern", help="a task call, a function name, a glob like 'matrix_*', or a key prefix")
    clear = cache_sub.add_parser("clear", help="remove every entry")
    clear.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except NdustriaError as exc:
        print(f"ndustria: error: {exc}", file=sys.stderr)
        return 2


def init_main(argv: Sequence[str] | None = None) -> int:
    """``ndustria-init``: the original's set-up command, same as ``ndustria init``."""
    return main(["init", *(sys.argv[1:] if argv is None else argv)])


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "init":
        return _init(args.init_cache_dir)
    cache_dir = Path(resolve_cache_dir(args.cache_dir).value)
    if args.clear_cache:
        return _cache_clear(cache_dir, assume_yes=True)
    if args.command == "config":
        return _config(args.cache_dir)
    if args.command == "cache":
        action = args.cache_command or "ls"
        if action == "ls":
            return _cache_ls(cache_dir)
        if action == "rm":
            return _cache_rm(cache_dir, args.pattern)
        return _cache_clear(cache_dir, assume_yes=args.yes)
    parser.print_help()
    return 0


def _init(cache_dir: str | None) -> int:
    if cache_dir is None:
        default = resolve_cache_dir(None).value
        if sys.stdin.isatty():
            answer = input(f"Cache directory [{default}]: ").strip()
            cache_dir = answer or default
        else:
            cache_dir = default
    resolved = resolve_cache_dir(cache_dir).value
    Store(resolved)  # creates it with mode 0700
    path = write_config_file({"cache_dir": resolved})
    print(f"Wrote {path}\nCache directory: {resolved}")
    if os.environ.get("NDUSTRIA_CACHE_DIR"):
        print("Note: NDUSTRIA_CACHE_DIR is set in your environment and takes precedence over the config file.")
    return 0


def _config(cache_dir: str | None) -> int:
    setting = resolve_cache_dir(cache_dir)
    print(f"cache_dir = {setting.value}    ({setting.source})")
    print(f"config file: {config_file_path()}")
    return 0


def _open(cache_dir: Path) -> tuple[Store, Catalog] | None:
    if not cache_dir.is_dir():
        print(f"No cache at {cache_dir} yet: run a pipeline first.")
        return None
    return Store(cache_dir), Catalog(cache_dir)


def _entries(store: Store, catalog: Catalog) -> list[dict]:
    """Every stored entry, with the catalog's description where it has one."""
    known = {row["key"]: row for row in catalog.entries()}
    rows = []
    for key in store.keys():
        info = store.info(key)
        row = dict(known.get(key) or {"key": key, "task": "(unknown task)", "function": "", "pipeline": ""})
        row["size"] = info.size if info else row.get("size") or 0
        row["created"] = row.get("created") or (info.path.stat().st_mtime if info else time.time())
        row["last_used"] = row.get("last_used") or row["created"]
        rows.append(row)
    rows.sort(key=lambda r: r["last_used"], reverse=True)
    return rows


def _cache_ls(cache_dir: Path) -> int:
    opened = _open(cache_dir)
    if opened is None:
        return 0
    rows = _entries(*opened)
    if not rows:
        print(f"The cache at {cache_dir} is empty.")
        return 0
    width = min(70, max(len(r["task"]) for r in rows))
    print(f"{'TASK':<{width}}  {'SIZE':>9}  {'AGE':>8}  {'USED':>8}  KEY")
    now = time.time()
    for r in rows:
        task = r["task"] if len(r["task"]) <= width else r["task"][: width - 1] + "…"
        print(f"{task:<{width}}  {human_size(r['size']):>9}  {human_age(now - r['created']):>8}  "
              f"{human_age(now - r['last_used']):>8}  {r['key'][:12]}")
    total = sum(r["size"] for r in rows)
    print(f"{len(rows)} entries, {human_size(total)} in {cache_dir}")
    return 0


def _cache_rm(cache_dir: Path, pattern: str) -> int:
    opened = _open(cache_dir)
    if opened is None:
        return 1
    store, catalog = opened
    matches = [r for r in _entries(store, catalog) if _matches(r, pattern)]
    if not matches:
        print(f"No cache entry matches {pattern!r} (try `ndustria cache ls`).")
        return 1
    for r in matches:
        store.remove(r["key"])
        catalog.remove_entry(r["key"])
        print(f"Removed {r['task']} ({human_size(r['size'])})")
    return 0


def _matches(row: dict, pattern: str) -> bool:
    if row["key"].startswith(pattern.lower()) and len(pattern) >= 6:
        return True
    for field in (row.get("task") or "", row.get("function") or ""):
        if field == pattern or fnmatch.fnmatchcase(field, pattern):
            return True
    return False


def _cache_clear(cache_dir: Path, assume_yes: bool) -> int:
    opened = _open(cache_dir)
    if opened is None:
        return 0
    store, catalog = opened
    keys = list(store.keys())
    if not assume_yes and sys.stdin.isatty() and not _confirm(f"Remove all {len(keys)} entries from {cache_dir}?"):
        print("Nothing removed.")
        return 1
    for key in keys:
        store.remove(key)
        catalog.remove_entry(key)
    for row in catalog.entries():
        catalog.remove_entry(row["key"])
    print(f"Removed {len(keys)} entries from {cache_dir}")
    return 0


def _confirm(question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


if __name__ == "__main__":
    sys.exit(main())
