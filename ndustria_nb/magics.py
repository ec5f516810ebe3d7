"""ndustria's magics: ``%%task`` (a cached cell), ``%%ndustria`` (run the tasks of a cell), ``%ndustria``.

Each magic parses its arguments with :mod:`IPython.core.magic_arguments` (mistakes are a
one-line ``UsageError``), then hands over to :mod:`.cells`, :mod:`.kernel` and :mod:`.widgets`.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ndustria.config import resolve_cache_dir
from ndustria.errors import NdustriaError, TaskError
from ndustria.show import cli
from ndustria.task import TaskHandle, task_closure

from . import widgets
from .cells import CellOptions, run_task_cell
from .kernel import get_state

LINE_COMMANDS = ("status", "run", "cluster", "cache", "timeline", "memory", "profile", "config")


@magics_class
class NdustriaMagics(Magics):
    """``%%task``, ``%%ndustria`` and ``%ndustria``."""

    @property
    def state(self) -> Any:
        return get_state(self.shell)

    # -- %%task -----------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", nargs="?", default="", help="a label for messages and the cache listing")
    @argument("--rerun", action="store_true", help="run the cell even if it is cached, and store it again")
    @cell_magic
    def task(self, line: str, cell: str) -> None:
        """A cached cell: it runs only when its code or its inputs changed; otherwise its
        variables and outputs are restored from the cache."""
        args = parse_argstring(self.task, line)
        run_task_cell(self.state, CellOptions(args.name, args.rerun), cell)

    # -- %%ndustria -------------------------------------------------------------------------
    @magic_arguments()
    @argument("--parallel", action="store_true", help="run on the kernel's ipyparallel cluster")
    @argument("--engines", type=int, default=None, metavar="N", help="engines of the cluster (default 2)")
    @argument("--mpi", action="store_true", help="start the cluster with MPI engines")
    @argument("--timeit", action="store_true", help="time tasks; show a timeline and time per function")
    @argument("--memcheck", action="store_true", help="measure memory; show memory bars")
    @argument("--profiling", action="store_true", help="line-profile tasks; show a heat view")
    @argument("--dryrun", action="store_true", help="say what would run, run nothing")
    @argument("--rerun", action="store_true", help="run the cell's tasks even when cached")
    @argument("--name", default=None, help="the pipeline's name (default: the notebook's)")
    @cell_magic
    def ndustria(self, line: str, cell: str) -> None:
        """Run the cell, then run the tasks it declared (and their dependencies) as a pipeline."""
        args = parse_argstring(self.ndustria, line)
        if args.engines is not None and args.engines < 1:
            raise UsageError(f"--engines must be a positive integer, not {args.engines}")
        pipe = self.state.pipeline
        before = len(pipe.tasks)
        # with a live widget, the console's lines ([Added Task] ...) go behind a toggle under it
        log = widgets.ConsoleLog() if widgets.widgets_available(self.shell) else None
        with pipe.console.redirected(log):
            if not self.shell.run_cell(cell, store_history=False).success:
                return
        declared = pipe.tasks[before:]
        if args.rerun:
            for h in declared:
                h.rerun, h.status = True, "declared"
        self._run(declared, args, log, f"%%ndustria {line}".strip())

    def _run(self, declared: list[TaskHandle], args: Any, log: Any = None, cell: str = "") -> None:
        """Run ``declared`` and the pending tasks; ``log``: the console log widget of the cell's
        declarations; ``cell``: the label of the %%ndustria cell asking."""
        state = self.state
        pipe = state.pipeline
        handles = list(task_closure(declared + pipe.pending()).values())
        if not handles:
            print("[ndustria] no tasks were declared: call @task functions in the cell")
            return
        try:
            state.configure(parallel=args.parallel, engines=args.engines, mpi=args.mpi, timeit=args.timeit,
                            memcheck=args.memcheck, profiling=args.profiling, dryrun=args.dryrun, name=args.name)
        except Exception as exc:
            raise UsageError(f"cannot start the ipyparallel cluster: {exc}") from None
        if args.parallel and args.engines and args.engines != state.cluster.engines:
            print(f"[ndustria] using the kernel's running cluster ({state.cluster.engines} engines); "
                  "`%ndustria cluster stop` first to change its size")
        live = widgets.widgets_available(self.shell)
        failures = []
        with widgets.Progress(handles, pipe.catalog, pipe.name, live, log=log) as progress, \
                pipe.console.redirected(progress.log if live else None):
            try:
                summary = pipe.run()
            except TaskError as exc:
                failures = exc.failures
                summary = None
        run = pipe.catalog.runs(pipe.name, 1)
        state.last_run = {"run_id": summary.run_id if summary else (run[0]["run_id"] if run else None),
                          "name": pipe.name}
        if cell and not args.dryrun:
            errors = {f.task: (f.traceback.strip().splitlines() or ["failed"])[-1] for f in failures}
            state.tracker.ndustria_cell_done(cell, handles, errors)
        if failures:
            widgets.show_failures(failures)
        if not args.dryrun and state.last_run["run_id"] is not None:
            widgets.show_views(pipe.catalog, state.last_run["run_id"], pipe.name, timeit=args.timeit,
                               memcheck=args.memcheck, profiling=args.profiling)

    # -- %ndustria --------------------------------------------------------------------------
    @magic_arguments()
    @argument("command", choices=LINE_COMMANDS, help="what to do")
    @argument("rest", nargs="*", help="the command's arguments")
    @argument("-n", "--engines", type=int, default=None, help="cluster start: engines (default 2)")
    @argument("--mpi", action="store_true", help="cluster start: MPI engines")
    @line_magic("ndustria")
    def ndustria_line(self, line: str) -> None:
        """status | run | cluster [start [-n N] [--mpi] | stop] | cache [ls | rm PATTERN | clear] |
        timeline | memory | profile [RUN] | config"""
        args = parse_argstring(self.ndustria_line, line)
        handler = getattr(self, f"_cmd_{args.command}")
        try:
            handler(args)
        except NdustriaError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None

    def _cmd_status(self, args: Any) -> None:
        state = self.state
        pipe = state.pipeline
        declared = len({h.id for h in pipe.tasks})  # a call declared again (a cell run twice) is one task
        print(f"pipeline {pipe.name!r}: {declared} tasks declared, {len(pipe.pending())} waiting to run")
        print(f"cache: {pipe.cache_dir}")
        print(state.cluster.describe())
        if state.last_run:
            run = pipe.catalog.run(state.last_run["run_id"]) if state.last_run["run_id"] else None
            if run:
                print(f"last run #{run['run_id']}: {run['state']}, {run['n_done']} run, {run['n_cached']} cached, "
                      f"{run['n_failed']} failed")

    def _cmd_run(self, args: Any) -> None:
        if args.rest:
            raise UsageError("%ndustria run takes no arguments (use %%ndustria for options)")
        opts = parse_argstring(self.ndustria, "")
        self._run([], opts)

    def _cmd_cluster(self, args: Any) -> None:
        action = args.rest[0] if args.rest else ""
        cluster = self.state.cluster
        if action == "start":
            if cluster.running:
                print(cluster.describe())
                return
            if args.engines is not None and args.engines < 1:
                raise UsageError(f"-n must be a positive integer, not {args.engines}")
            cluster.start(args.engines or 2, mpi=args.mpi)
            print(cluster.describe())
        elif action == "stop":
            self.state.pipeline.release_backend()
            print("Stopped the kernel's cluster." if cluster.stop() else "No cluster was running.")
        elif action == "":
            print(cluster.describe())
        else:
            raise UsageError(f"unknown cluster action {action!r}: use `cluster start [-n N] [--mpi]`, "
                             "`cluster stop` or `cluster`")

    def _cmd_cache(self, args: Any) -> None:
        action, rest = (args.rest[0], args.rest[1:]) if args.rest else ("ls", [])
        if action not in ("ls", "rm", "clear") or (action == "rm") != bool(rest) or len(rest) > 1:
            raise UsageError("usage: %ndustria cache [ls | rm PATTERN | clear]")
        argv = ["--cache-dir", str(self.state.pipeline.cache_dir), "cache", action, *rest]
        cli.main([*argv, "-y"] if action in ("clear", "rm") else argv)  # typed in a cell: an explicit request

    def _report(self, args: Any, timeit: bool = False, memcheck: bool = False, profiling: bool = False) -> None:
        pipe = self.state.pipeline
        catalog = pipe.catalog
        target = args.rest[0] if args.rest else None
        if len(args.rest) > 1:
            raise UsageError(f"usage: %ndustria {args.command} [RUN] (a run id or a pipeline name)")
        if target is None:
            if not self.state.last_run or self.state.last_run["run_id"] is None:
                raise UsageError("no run yet in this kernel: run a %%ndustria cell, or name a run")
            run_id, name = self.state.last_run["run_id"], self.state.last_run["name"]
        elif target.isdigit():
            run_id, name = int(target), f"run {target}"
            if catalog.run(run_id) is None:
                raise UsageError(f"no run {target} in {pipe.cache_dir}")
        else:
            latest = catalog.latest_run(target)
            if latest is None:
                raise UsageError(f"no run of pipeline {target!r} in {pipe.cache_dir}")
            run_id, name = latest["run_id"], target
        widgets.show_views(catalog, run_id, name, timeit=timeit, memcheck=memcheck, profiling=profiling)

    def _cmd_timeline(self, args: Any) -> None:
        self._report(args, timeit=True)

    def _cmd_memory(self, args: Any) -> None:
        self._report(args, memcheck=True)

    def _cmd_profile(self, args: Any) -> None:
        self._report(args, profiling=True)

    def _cmd_config(self, args: Any) -> None:
        pipe = self.state.pipeline
        setting = resolve_cache_dir()
        print(f"pipeline name: {pipe.name}")
        print(f"cache_dir = {pipe.cache_dir}    (environment/config now: {setting.value}, {setting.source})")
        print(self.state.cluster.describe())

