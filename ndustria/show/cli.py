"""The ``ndustria`` command: set-up, cache management and run reports (``-t/-m/-p NAME``, ``runs``)."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ndustria.config import LEGACY_CONFIG, config_file_path, resolve_cache_dir, write_config_file
from ndustria.errors import NdustriaError
from ndustria.record.catalog import Catalog
from ndustria.store import eviction
from ndustria.store.entries import Store
from ndustria.units import human_age, human_bytes
from ndustria.version import __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``ndustria`` command: the original's flags (-c, -d, -l, -t/-m/-p) and the subcommands."""
    parser = argparse.ArgumentParser(
        prog="ndustria",
        description="Cached, code-aware, parallel pipelines. Manage the cache and read run reports.",
    )
    parser.add_argument("--version", action="version", version=f"ndustria {__version__}")
    parser.add_argument("--cache-dir", help="cache directory (default: as configured; see `ndustria config`)")
    parser.add_argument("-c", "--cache", dest="list_cache", action="store_true",
                        help="list the cached results (as `cache ls`; the original's meaning); deletes nothing")
    parser.add_argument("-d", "--delete_cache", "--delete-cache", dest="delete_cache", metavar="NAME",
                        help="delete the entries of task call or function NAME, asking for each (the original's)")
    parser.add_argument("-y", "--yes", dest="top_yes", action="store_true",
                        help="with -d or a cache command that removes entries: do not ask")
    parser.add_argument("-l", "--log", dest="show_log", nargs="?", const="", metavar="NAME",
                        help="print the console log and errors of pipeline NAME's last run (the original's); "
                             "without NAME, the most recent log of any pipeline")
    parser.add_argument("-t", dest="report_timeit", metavar="NAME", help="timing report of pipeline NAME's latest run")
    parser.add_argument("-m", dest="report_memcheck", metavar="NAME", help="memory report of pipeline NAME's latest run")
    parser.add_argument("-p", dest="report_profile", metavar="NAME", help="line profiles of pipeline NAME's latest run")
    parser.add_argument("--html", dest="top_html", metavar="FILE", help="with -t/-m/-p: also write the plotly figures")
    parser.add_argument("--run", dest="top_run", type=int, metavar="ID",
                        help="with -t/-m/-p: report run ID (see `ndustria runs`) instead of the latest")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="write the config file (cache directory); never edits shell files")
    init.add_argument("--cache-dir", dest="init_cache_dir", help="cache directory to configure")

    sub.add_parser("config", help="show the settings in force and where each comes from")

    _add_cache_commands(sub.add_parser("cache", help="list or remove cached results"))
    for command, what in (("timeit", "timing table (tasks, time per function) of the latest run of NAME"),
                          ("memcheck", "memory table (heap and RSS: initial, peak, final) of the latest run of NAME"),
                          ("profile", "line profiles of the tasks of the latest run of NAME")):
        report = sub.add_parser(command, help=what)
        report.add_argument("name", metavar="NAME", help="the pipeline's name (Pipeline(name=...), or the script's stem)")
        report.add_argument("--html", metavar="FILE", help="also write the plotly figures to FILE")
        report.add_argument("--run", type=int, metavar="ID", help="report run ID (see `ndustria runs`), not the latest")
    runs = sub.add_parser("runs", help="list past runs: pipeline, start, duration, tasks run/cached/failed, backend")
    runs.add_argument("name", metavar="NAME", nargs="?", help="only the runs of this pipeline")
    runs.add_argument("-n", "--limit", type=int, default=50, help="how many runs (default 50)")
    from ndustria.record import bundle

    bundle.add_commands(sub)  # pack, unpack
    return parser


def _add_cache_commands(cache: argparse.ArgumentParser) -> None:
    """``ndustria cache ls|rm|gc|verify|clear``."""
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    ls = cache_sub.add_parser("ls", help="list entries: task, size, age, last use (the default), most recently "
                                         "used first")
    ls.add_argument("--sort", choices=SORTS, default="used",
                    help="used: most recently used first (default); size: largest first; age: newest first; "
                         "task: by task call")
    rm = cache_sub.add_parser(
        "rm", help="remove entries whose task call, function or key matches PATTERN (asks first)",
        description="PATTERN is a task call as `cache ls` prints it (with '(': that task only, matched "
                    "exactly, so 'f([1, 2])' never removes f(1)), a function name (all its tasks), a key "
                    "prefix of 6+ characters, or, only when it holds * or ? and no '(', a glob over task "
                    "calls and function names ('matrix_*'). Without a terminal, pass --yes.")
    rm.add_argument("pattern", help="a task call, a function name, a key prefix, or a glob like 'matrix_*'")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    gc = cache_sub.add_parser("gc", help="remove least recently used entries down to a size, and/or unused ones")
    gc.add_argument("--max-size", metavar="SIZE", help="e.g. 10GB, 500MiB (default: the configured max_size)")
    gc.add_argument("--older-than", metavar="AGE", help="remove entries not used for AGE, e.g. 30d, 12h")
    gc.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    cache_sub.add_parser("verify", help="check every entry's checksums; remove damaged entries")
    clear = cache_sub.add_parser("clear", help="remove every entry (asks first; without a terminal, pass --yes)")
    clear.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


SORTS = ("used", "size", "age", "task")
_SORT_KEYS = {"used": lambda r: (-r["last_used"], -r["created"], r["task"]),
              "size": lambda r: (-r["size"], -r["last_used"], r["task"]),
              "age": lambda r: (-r["created"], -r["last_used"], r["task"]),
              "task": lambda r: (r["task"], -r["last_used"])}
_SORT_SAYS = {"used": "most recently used first", "size": "largest first", "age": "newest first",
              "task": "by task call"}


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
    if args.list_cache:
        return _cache_ls(cache_dir, "used")
    if args.delete_cache:
        return _delete_each(cache_dir, args.delete_cache, args.top_yes)
    if args.show_log is not None:
        return show_log(cache_dir, args.show_log)
    if getattr(args, "yes", None) is False and args.top_yes:  # ndustria -y cache clear
        args.yes = True
    if args.command == "config":
        return _config(args.cache_dir)
    for kind in ("timeit", "memcheck", "profile"):
        name = getattr(args, f"report_{kind}")
        if name:
            return show_report(cache_dir, kind, name, args.top_html, args.top_run)
    if args.command in ("timeit", "memcheck", "profile"):
        run_id = args.run if args.run is not None else args.top_run
        return show_report(cache_dir, args.command, args.name, args.html or args.top_html, run_id)
    if args.command == "runs":
        return show_runs(cache_dir, args.name, args.limit)
    if args.command == "cache":
        action = args.cache_command or "ls"
        if action == "ls":
            return _cache_ls(cache_dir, getattr(args, "sort", "used"))
        if action == "rm":
            return _cache_rm(cache_dir, args.pattern, args.yes)
        if action in ("gc", "verify"):
            return _cache_gc(cache_dir, args) if action == "gc" else _cache_verify(cache_dir)
        return _cache_clear(cache_dir, assume_yes=args.yes)
    if args.command in ("pack", "unpack"):
        from ndustria.record import bundle

        return bundle.run_command(args, cache_dir)
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
    path = config_file_path()
    state = "" if path.is_file() else "    (does not exist: `ndustria init` writes it)"
    print(f"config file: {path}{state}")
    legacy = Path(LEGACY_CONFIG).expanduser()
    if legacy.is_file():
        print(f"the original ndustria's config file: {legacy} (read for NDUSTRIA_CACHE_DIR when nothing above sets it)")
    if not Path(setting.value).is_dir():
        print("the cache directory does not exist yet: the first run creates it")
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
    rows.sort(key=_SORT_KEYS["used"])
    return rows


def _cache_ls(cache_dir: Path, sort: str = "used") -> int:
    opened = _open(cache_dir)
    if opened is None:
        return 0
    rows = sorted(_entries(*opened), key=_SORT_KEYS[sort])
    if not rows:
        print(f"The cache at {cache_dir} is empty.")
        return 0
    width = min(70, max(len(r["task"]) for r in rows))
    print(f"{'TASK':<{width}}  {'SIZE':>9}  {'AGE':>8}  {'USED':>8}  KEY")
    now = time.time()
    for r in rows:
        task = r["task"] if len(r["task"]) <= width else r["task"][: width - 1] + "…"
        print(f"{task:<{width}}  {human_bytes(r['size']):>9}  {human_age(now - r['created']):>8}  "
              f"{human_age(now - r['last_used']):>8}  {r['key'][:12]}")
    total = sum(r["size"] for r in rows)
    print(f"{len(rows)} entries, {human_bytes(total)} in {cache_dir}; {_SORT_SAYS[sort]}"
          + (" (--sort size|age|task)" if sort == "used" else ""))
    return 0


def _matching(cache_dir: Path, pattern: str) -> tuple[Store, Catalog, list[dict]] | None:
    """The store, the catalog and the entries ``pattern`` names (as ``cache rm`` matches); None, said, if none."""
    opened = _open(cache_dir)
    if opened is None:
        return None
    store, catalog = opened
    matches = [r for r in _entries(store, catalog) if _matches(r, pattern)]
    if not matches:
        print(f"No cache entry matches {pattern!r} (try `ndustria cache ls`).")
        return None
    return store, catalog, matches


def _cache_rm(cache_dir: Path, pattern: str, assume_yes: bool = False) -> int:
    found = _matching(cache_dir, pattern)
    if found is None:
        return 1
    store, catalog, matches = found
    if not _approve(matches, f"Remove {len(matches)} entries ({human_bytes(sum(r['size'] for r in matches))})?",
                    assume_yes):
        return 2
    for r in matches:
        store.remove(r["key"])
        catalog.remove_entry(r["key"])
        print(f"Removed {r['task']} ({human_bytes(r['size'])})")
    return 0


def _delete_each(cache_dir: Path, pattern: str, assume_yes: bool) -> int:
    """``-d NAME``: the entries matching NAME (as ``cache rm``), one question each: y(es), n(o), a(ll), q(uit)."""
    found = _matching(cache_dir, pattern)
    if found is None:
        return 1
    store, catalog, matches = found
    if not assume_yes and (not sys.stdin or not sys.stdin.isatty()):  # says what, and refuses
        size = human_bytes(sum(r["size"] for r in matches))
        _approve(matches, f"Delete {len(matches)} entries ({size})?", False)
        return 2
    removed, everything = 0, assume_yes
    for r in matches:
        if not everything:
            answer = input(f"Delete {r['task'] or r['key']} ({human_bytes(r['size'])})? [y/n/a/q] ").strip().lower()
            if answer in ("q", "quit"):
                break
            everything = answer in ("a", "all")
            if not everything and answer not in ("y", "yes"):
                continue
        store.remove(r["key"])
        catalog.remove_entry(r["key"])
        removed += 1
        print(f"Removed {r['task'] or r['key']} ({human_bytes(r['size'])})")
    print(f"Removed {removed} of {len(matches)} matching entries.")
    return 0


def _cache_gc(cache_dir: Path, args: argparse.Namespace) -> int:
    max_size = eviction.resolve_max_size(args.max_size)
    older_than = eviction.parse_age(args.older_than) if args.older_than else None
    if max_size is None and older_than is None:
        raise NdustriaError("nothing to collect by: give --max-size SIZE or --older-than AGE, "
                            "or set max_size in the config file")
    opened = _open(cache_dir)
    if opened is None:
        return 0
    plan = eviction.collect(*opened, max_size=max_size, older_than=older_than, dry_run=True)
    if not plan.removed:
        print(f"Nothing to collect: {human_bytes(plan.remaining)} in {cache_dir}")
        return 0
    if not _approve(plan.removed, f"Remove {len(plan.removed)} entries ({human_bytes(plan.freed)})?", args.yes):
        return 2
    result = eviction.collect(*opened, max_size=max_size, older_than=older_than)
    for r in result.removed:
        print(f"Removed {r.get('task') or r['key']} ({human_bytes(r['size'])})")
    print(f"Freed {human_bytes(result.freed)}; {human_bytes(result.remaining)} left in {cache_dir}")
    return 0


def _cache_verify(cache_dir: Path) -> int:
    opened = _open(cache_dir)
    if opened is None:
        return 0
    tasks = {row["key"]: row["task"] for row in opened[1].entries()}
    checked, damaged = eviction.verify_all(*opened)  # damaged: never loaded, recomputed when needed
    for exc in damaged:
        print(f"Removed damaged entry {exc.key} ({tasks.get(exc.key) or 'unknown task'}): {exc.reason}")
    print(f"Checked {checked} entries: {checked - len(damaged)} intact, {len(damaged)} damaged and removed")
    return 1 if damaged else 0


def _matches(row: dict, pattern: str) -> bool:
    """A task call (with '(') exactly; else a function name, a key prefix, or a glob holding * or ?."""
    task, function = row.get("task") or "", row.get("function") or ""
    if "(" in pattern:
        return task == pattern
    if function == pattern or (len(pattern) >= 6 and row["key"].startswith(pattern.lower())):
        return True
    return any(c in pattern for c in "*?") and any(fnmatch.fnmatchcase(f, pattern) for f in (task, function))


def _cache_clear(cache_dir: Path, assume_yes: bool) -> int:
    opened = _open(cache_dir)
    if opened is None:
        return 0
    store, catalog = opened
    rows = _entries(store, catalog)
    keys = [r["key"] for r in rows]
    if not keys:
        print(f"The cache {cache_dir} is empty: nothing to remove.")
        return 0
    print(f"Every entry of {cache_dir}:")
    if not _approve(rows, f"Remove {len(keys)} entries ({human_bytes(sum(r['size'] for r in rows))})?",
                    assume_yes):
        return 2
    for key in keys:
        store.remove(key)
        catalog.remove_entry(key)
    for row in catalog.entries():
        catalog.remove_entry(row["key"])
    print(f"Removed {len(keys)} entries from {cache_dir}")
    return 0


def _confirm(question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _approve(rows: list, question: str, assume_yes: bool) -> bool:
    """Say what will be removed, then ask. Without a terminal nothing is removed unless --yes was given."""
    for r in rows[:10]:
        print(f"  {r.get('task') or r['key']} ({human_bytes(r['size'])})")
    if len(rows) > 10:
        print(f"  ... and {len(rows) - 10} more")
    if assume_yes:
        return True
    if not sys.stdin or not sys.stdin.isatty():
        print(f"{question} Not without a terminal to ask: nothing removed. Pass --yes to remove them.",
              file=sys.stderr)
        return False
    if _confirm(question):
        return True
    print("Nothing removed.")
    return False


# -- reports -----------------------------------------------------------------------
_REPORT_WHAT = {"timeit": ("timing", "timeit"), "memcheck": ("memory", "memcheck"), "profile": ("profile", "profiling")}


def _report_catalog(cache_dir: Path) -> Catalog | None:
    if not (cache_dir / "catalog.sqlite").is_file():
        return None
    return Catalog(cache_dir, readonly=True)


def show_report(cache_dir: Path, kind: str, name: str, html: str | None = None, run_id: int | None = None) -> int:
    """Print the ``timeit``/``memcheck``/``profile`` report of one run of pipeline ``name`` (its latest, or
    ``run_id``); cache hits show the numbers of the run that computed them. ``html`` also writes the figures
    (the only part that needs plotly)."""
    from ndustria.show import reports

    what, flag = _REPORT_WHAT[kind]
    catalog = _report_catalog(cache_dir)
    run = _chosen_run(catalog, cache_dir, name, run_id, what, flag)
    rows = reports.run_rows(catalog, run["run_id"], metric="memory" if kind == "memcheck" else None)
    lines = reports.run_profile_rows(catalog, run["run_id"]) if kind == "profile" else []
    found = {"timeit": flag in reports.run_instruments(run), "memcheck": any(map(reports.has_memory, rows)),
             "profile": bool(lines)}[kind]
    if not found:
        earlier = catalog.latest_run_with(name, flag)
        hint = (f" (run {earlier['run_id']} had {reports.FLAGS[flag]}: ndustria {_FLAG_OF[kind]} {name} --run "
                f"{earlier['run_id']})") if earlier and earlier["run_id"] != run["run_id"] else ""
        raise NdustriaError(reports.no_data_message(name, what, flag, run, rows) + hint)
    print(reports.run_heading(run, rows))
    if kind == "timeit":
        print("\n" + reports.timing_table(rows, run))
    elif kind == "memcheck":
        missing = [r for r in rows if not reports.has_memory(r) and r["status"] != "skipped"]
        print("\n" + reports.memory_table([r for r in rows if reports.has_memory(r)]))
        if missing:
            print(f"\nNo memory data for {len(missing)} tasks: " + "; ".join(
                f"{r['task']} ({r['status']}, computed by {r['origin']})" for r in missing[:5])
                + (f"; ... and {len(missing) - 5} more" if len(missing) > 5 else ""))
    else:
        print("\n" + reports.profile_text(lines), end="")
    if html:
        print(f"Wrote {_write_figures(kind, name, run, rows, lines, html)}")
    return 0


_FLAG_OF = {"timeit": "-t", "memcheck": "-m", "profile": "-p"}


def _chosen_run(catalog: Catalog | None, cache_dir: Path, name: str, run_id: int | None, what: str,
                flag: str) -> dict:
    """The run a report is about: ``run_id``, else the latest of pipeline ``name`` (an error says what exists)."""
    from ndustria.show import reports

    run = None
    if catalog is not None:
        run = catalog.run(run_id) if run_id is not None else catalog.latest_run(name)
    if run_id is not None and (run is None or run["pipeline"] != name):
        where = f"it is a run of pipeline {run['pipeline']!r}" if run else f"there is no run {run_id} in {cache_dir}"
        raise NdustriaError(f"run {run_id} is not a run of pipeline {name!r}: {where} (list them: ndustria runs {name})")
    if run is None:
        message = reports.no_data_message(name, what, flag)
        known = sorted({r["pipeline"] for r in catalog.runs(limit=1000)}) if catalog is not None else []
        hint = f" (pipelines with runs in {cache_dir}: {', '.join(known)})" if known and name not in known else ""
        raise NdustriaError(message + hint)
    return run


def _write_figures(kind: str, name: str, run: dict, rows: list, lines: list, path: str) -> Path:
    from ndustria.show import figures, reports

    title = f"{name}, run {run['run_id']}"
    if kind == "timeit":
        made = [figures.timeline_figure(rows, f"{title}: timeline"),
                figures.function_time_figure(reports.function_totals(rows), f"{title}: time per function")]
    elif kind == "memcheck":
        measured = [r for r in rows if reports.has_memory(r)]
        made = [figures.memory_figure(measured, title, rss=True)]
        if any(r["peak_bytes"] is not None for r in measured):
            made.insert(0, figures.memory_figure(measured, title))
    else:
        made = [figures.profile_figure(lines, f"{title}: line profile")]
    return figures.write_html(made, path)


def show_runs(cache_dir: Path, name: str | None = None, limit: int = 50) -> int:
    """Print past runs, newest first."""
    from ndustria.show import reports

    catalog = _report_catalog(cache_dir)
    rows = reports.runs_rows(catalog, name, limit) if catalog is not None else []
    if not rows:
        print(f"No runs{f' of {name!r}' if name else ''} recorded in {cache_dir}.")
        return 0
    print(reports.runs_table(rows))
    return 0


def show_log(cache_dir: Path, name: str = "") -> int:
    """Print the log of pipeline ``name``'s last run (``-l NAME``), or the most recent one (``-l``)."""
    from ndustria.show.runfiles import LOG_SUFFIX, latest_log, log_path

    if name:
        path = log_path(cache_dir, name)
    else:
        found = latest_log(cache_dir)
        if found is None:
            print(f"No run logs in {cache_dir}: run a pipeline first.", file=sys.stderr)
            return 1
        name, path = found
        print(f"(the most recent log: pipeline {name!r}, {path})")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        logs = cache_dir.glob(f"*{LOG_SUFFIX}") if cache_dir.is_dir() else ()
        known = sorted(p.name[: -len(LOG_SUFFIX)] for p in logs)
        hint = f" (pipelines with a log: {', '.join(known)})" if known else ""
        print(f"No log of pipeline {name!r} in {cache_dir}: it has not run with this cache directory{hint}.",
              file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
