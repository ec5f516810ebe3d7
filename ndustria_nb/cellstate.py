"""The state of each ``%%task`` and ``%%ndustria`` cell of a notebook, known before it runs.

States: ``cached`` (a hit for the current code and inputs), ``stale`` (its code, an input, or a cell
it depends on changed since its last result; ``why`` says which), ``never run``, ``failed`` (its last
run failed and nothing changed since), ``uncacheable`` (it runs every time; ``why`` says what cannot be
hashed or pickled) and ``unknown`` (its code does not parse, say). ``running`` is the frontend's.

The kernel computes them without running anything: a ``%%task`` cell's key is made as
:func:`.cells.cell_key` makes it, from the namespace as it is; a ``%%ndustria`` cell's body runs in a
copy of the namespace with every pipeline in :meth:`ndustria.Pipeline.declaring_only` (task calls are
declared and looked up, never run or kept; ``run()`` refused; line magics and ``!commands`` not run;
output discarded; stopped after :data:`PROBE_SECONDS`).
What was recorded for a cell's last result (``<cache>/cells/``, :mod:`.cellrecords`) tells stale from
never run and names what changed. Cells depend on the cells above them that bind the names they read:
a cell whose input comes from a stale cell, or from a plain cell edited since it ran, is stale too.

``stale`` (the answer's list, in notebook order) is what "ndustria: run stale cells" runs: the stale
cells, the cells they depend on that are stale, failed, never run or edited, every cell that depends
on one of those, and the cells defining inputs the kernel does not have yet.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xxhash

from ndustria import Pipeline
from ndustria.errors import NdustriaError, UnhashableError
from ndustria.task import TaskFunction, TaskHandle, task_closure

from .analysis import analyze, normalized
from .cellrecords import function_parts, task_summary
from .cells import cell_inputs, cell_key

if TYPE_CHECKING:
    from .kernel import KernelState

MARKED = ("task", "ndustria")
PROBE_SECONDS = 3.0  # a %%ndustria cell's body must declare its tasks within this, else its state is unknown
DIRTY = ("stale", "never run", "failed")


@dataclass
class Cell:
    """A code cell of the notebook, as the frontend sent it, with what it reads and binds."""

    id: str
    source: str
    kind: str = "code"  # "task" | "ndustria" | "magic" (another cell magic: not analysed) | "code"
    line: str = ""  # the cell magic's arguments
    body: str = ""  # the Python that runs in the namespace (IPython syntax transformed)
    reads: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    digest: str = ""  # of the normalized body: comments and formatting do not count
    error: str = ""

    @property
    def label(self) -> str:
        if self.kind in MARKED:
            return f"%%{self.kind} {self.line}".strip()
        lines = [s.strip() for s in self.source.splitlines() if s.strip() and not s.strip().startswith("#")]
        text = lines[0] if lines else "(empty)"
        return f"the cell `{text[:37] + '...' if len(text) > 40 else text}`"


def parse_cell(shell: Any, cell_id: str, source: str) -> Cell:
    """Split off a cell magic's line, transform IPython syntax, find the names read and bound."""
    cell = Cell(cell_id, source)
    first, _, rest = source.lstrip().partition("\n")
    if first.startswith("%%"):
        name, _, cell.line = first[2:].strip().partition(" ")
        cell.kind = name if name in MARKED else "magic"
        cell.line = cell.line.strip()
        if cell.kind == "magic":
            return cell
        text = rest
    else:
        text = source
    try:
        cell.body = shell.transform_cell(text)
        names = analyze(cell.body)
        cell.reads, cell.binds = names.reads, names.binds
        cell.digest = xxhash.xxh3_128_hexdigest(normalized(cell.body).encode())
    except (SyntaxError, ValueError) as exc:
        cell.error = f"{type(exc).__name__}: {exc}"
        cell.digest = xxhash.xxh3_128_hexdigest(text.encode())
    return cell


@dataclass
class Verdict:
    state: str | None  # None: nothing to show (a %%ndustria cell that declares no task)
    why: list[str] = field(default_factory=list)


class ProbeTimeout(BaseException):
    """A %%ndustria cell's body took too long to declare its tasks (BaseException: user code catching
    Exception does not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ProbeTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class NotebookStates:
    """Computes the states of one notebook's cells for one request."""

    def __init__(self, state: KernelState, cells: list[Cell]) -> None:
        self.state, self.cells = state, cells
        self.ns = state.shell.user_ns
        self.tracker = state.tracker
        self.definers: list[dict[str, int]] = []  # per cell: name read -> index of the cell above binding it
        seen: dict[str, int] = {}
        for i, cell in enumerate(cells):
            self.definers.append({n: seen[n] for n in cell.reads if n in seen})
            for name in cell.binds:
                seen[name] = i

    # -- one cell on its own ---------------------------------------------------------------------
    def own(self, i: int) -> Verdict:
        cell = self.cells[i]
        if cell.error:
            return Verdict("unknown", [f"its code does not parse ({cell.error})"])
        record = self.tracker.records.load(cell.id)
        try:
            if cell.kind == "task":
                return self.task_cell(i, record)
            return self.ndustria_cell(cell, record)
        except (NdustriaError, UnhashableError) as exc:
            return Verdict("uncacheable", [str(exc).splitlines()[0]])

    def task_cell(self, i: int, record: dict[str, Any] | None) -> Verdict:
        cell, store = self.cells[i], self.state.pipeline.store
        inputs, _ = cell_inputs(self.state, cell.body)
        missing = [n for n in cell.reads if n not in self.ns and n in self.definers[i]]
        made: dict[str, Any] = {}
        key = cell_key(self.state, cell.body, inputs, made)
        failed = record is not None and record.get("outcome") == "failed"
        if not missing:
            if store.contains(key):
                return Verdict("cached")
            if record is None:
                return Verdict("never run")
            if record.get("key") == key:
                if failed:
                    return Verdict("failed", [record.get("error") or "its last run failed"])
                if record.get("outcome") == "uncacheable":
                    return Verdict("uncacheable", [record.get("error") or "its outputs cannot be stored"])
                return Verdict("stale", ["its cached result is gone (removed from the cache or evicted)"])
            return Verdict("stale", self.task_changes(record, made, {}))
        if record is None:
            return Verdict("never run")
        changes = self.task_changes(record, made, {n: self.definers[i][n] for n in missing})
        if changes:
            return Verdict("stale", changes)
        if failed:
            return Verdict("failed", [record.get("error") or "its last run failed"])
        assumed, them = ", ".join(missing), "it" if len(missing) == 1 else "them"
        if store.contains(record.get("key", "")):
            return Verdict("cached", [f"assuming {assumed} as when it was stored: the code that sets {them} did "
                                      "not change, but has not run in this kernel yet"])
        return Verdict("stale", ["its cached result is gone (removed from the cache or evicted)"])

    def task_changes(self, record: dict[str, Any], made: dict[str, Any], missing: dict[str, int]) -> list[str]:
        """What differs between a %%task cell's record and its key now (``missing``: inputs the kernel does
        not have, by the index of the cell defining them, compared by that cell's code)."""
        out = []
        if record.get("code") != made["code"]:
            out.append("its code changed")
        before, now = record.get("inputs", {}), made["inputs"]
        for name in sorted(set(before) | set(now) | set(missing)):
            if name in missing:
                then = record.get("sources", {}).get(name)
                if then is not None and then != self.cells[missing[name]].digest:
                    out.append(f"input {name}: {self.cells[missing[name]].label}, which sets it, changed")
                elif name not in before:
                    out.append(f"it reads a new input {name}")
            elif name not in before:
                out.append(f"it reads a new input {name}")
            elif name not in now:
                out.append(f"it no longer reads {name}")
            elif before[name] != now[name]:
                out.append(self.input_change(name, record.get("parts", {}).get(name)))
        for path in sorted(set(record.get("files", {})) | set(made["files"])):
            if record.get("files", {}).get(path) != made["files"].get(path):
                out.append(f"file {path} changed")
        return out

    def input_change(self, name: str, parts_then: dict[str, str] | None) -> str:
        value = self.ns.get(name)
        if parts_then is None or not callable(value):
            return f"input {name} changed"
        now = function_parts(self.state, value) or {}
        labels = [label for label in {**parts_then, **now} if parts_then.get(label) != now.get(label)]
        if labels == ["code"]:
            return f"function {name}: its code changed"
        return f"function {name}: {', '.join(labels) or 'what it reads'} changed"

    def ndustria_cell(self, cell: Cell, record: dict[str, Any] | None) -> Verdict:
        try:
            handles = self.probe(cell)
        except ProbeTimeout:
            return Verdict("unknown", [f"its code took more than {PROBE_SECONDS:g} s to declare its tasks"])
        except NameError as exc:
            return Verdict("unknown", [f"run the cells above first: {exc} in the kernel yet"])
        except MagicsNotRun as exc:
            return Verdict("unknown", [str(exc)])
        except Exception as exc:
            return Verdict("unknown", [f"declaring its tasks raised {type(exc).__name__}: {exc}"])
        if not handles:
            return Verdict(None)
        todo = [h for h in handles if h.status != "cached"]
        if not todo:
            return Verdict("cached")
        if record is None:
            return Verdict("never run", [f"{len(todo)} of {len(handles)} tasks to run"])
        failed = record.get("failed") or {}
        if {h.id for h in handles} == set(record.get("ids", [])) and failed:
            return Verdict("failed", [f"{name}: {error}" for name, error in failed.items()])
        return Verdict("stale", self.task_reasons(todo, record.get("tasks", {})))

    def probe(self, cell: Cell) -> list[TaskHandle]:
        """The tasks a %%ndustria cell declares (with their dependencies), found without running any."""
        ns = dict(self.ns)
        ns["get_ipython"] = _no_magics  # %line magics and !commands are not run to find a state
        pipelines = {id(p): p for p in (self.state.pipeline, *(v for v in ns.values() if isinstance(v, Pipeline)),
                                        *(v.pipeline for v in ns.values() if isinstance(v, TaskFunction)))}
        declared: list[TaskHandle] = []
        sink = io.StringIO()
        shell = self.state.shell
        with contextlib.ExitStack() as stack:
            lists = [stack.enter_context(p.declaring_only()) for p in pipelines.values() if isinstance(p, Pipeline)]
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
            saved_pub, shell.display_pub = shell.display_pub, _NullPublisher()
            stack.callback(setattr, shell, "display_pub", saved_pub)
            with _time_limit(PROBE_SECONDS):
                exec(compile(cell.body, "<ndustria cell state>", "exec"), ns)
            for found in lists:
                declared += found
        return list(task_closure(declared).values())

    def task_reasons(self, todo: list[TaskHandle], recorded: dict[str, Any]) -> list[str]:
        """Why each task to run is not cached, against what the cell's last run recorded."""
        out = []
        todo_ids = {h.id for h in todo}
        for h in todo[:8]:
            then = recorded.get(h.name)
            if then is None:  # another call of a function the cell called once before: what differs
                same = [t for t in recorded.values() if t.get("function") == h.function.name]
                then = same[0] if len(same) == 1 else None
            out.append(f"{h.name}: {self.task_reason(h, then, todo_ids)}")
        if len(todo) > 8:
            out.append(f"... and {len(todo) - 8} more tasks")
        return out

    def task_reason(self, h: TaskHandle, then: dict[str, Any] | None, todo_ids: set[str]) -> str:
        if then is None:
            return "a new task"
        waiting = [d.name for d in h.deps if d.id in todo_ids]
        if then.get("id") == h.id:
            return f"its input {waiting[0]} runs again" if waiting else "its cached result is gone"
        now, what = task_summary(self.state, h), []
        if now["code"] != then.get("code"):
            labels = [k for k in {**then.get("parts", {}), **now["parts"]}
                      if then.get("parts", {}).get(k) != now["parts"].get(k)]
            what.append(f"{'the code' if labels in (['code'], []) else ', '.join(labels)} of {h.function.name} changed")
        changed = [p for p in now["args"] if now["args"][p] != then.get("args", {}).get(p)]
        if changed and not waiting:
            what.append(f"argument {', '.join(changed)} changed")
        if waiting:
            what.append(f"its input {waiting[0]} runs again")
        return "; ".join(what) or "what it depends on changed"

    # -- the notebook --------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        """{"cells": {id: {"state", "why"}}, "stale": [ids to run, in notebook order]}."""
        verdicts: dict[int, Verdict] = {}
        dirty = [False] * len(self.cells)
        causes: list[list[tuple[str, int]]] = []
        for i, cell in enumerate(self.cells):
            up = [(name, j) for name, j in self.definers[i].items() if dirty[j]]
            causes.append(up)
            if cell.kind in MARKED:
                verdict = self.own(i)
                if up and verdict.state in ("cached", "stale"):
                    verdict = Verdict("stale", verdict.why if verdict.state == "stale" else [])
                    verdict.why += [self.upstream_reason(name, j, verdicts) for name, j in up]
                verdicts[i] = verdict
                dirty[i] = verdict.state in DIRTY
            else:
                dirty[i] = self.tracker.edited(cell) or bool(up)
        run = self.run_set(verdicts, causes, dirty)
        out: dict[str, dict[str, Any]] = {}
        for i, verdict in verdicts.items():
            if verdict.state is not None:
                out[self.cells[i].id] = {"state": verdict.state, "why": verdict.why, "label": self.cells[i].label}
        for i in run:  # plain cells edited since they ran, that stale cells depend on
            if self.cells[i].kind not in MARKED and self.tracker.edited(self.cells[i]):
                out[self.cells[i].id] = {"state": "stale", "why": ["edited since it ran"],
                                         "label": self.cells[i].label}
        return {"cells": out, "stale": [self.cells[i].id for i in sorted(run)]}

    def upstream_reason(self, name: str, j: int, verdicts: dict[int, Verdict]) -> str:
        cell = self.cells[j]
        if j in verdicts:
            what = {"never run": "has never run"}.get(verdicts[j].state or "", f"is {verdicts[j].state}")
        elif self.tracker.edited(cell):
            what = "was edited since it ran"
        else:
            what = "depends on a stale cell"
        return f"input {name} comes from {cell.label}, which {what}"

    def run_set(self, verdicts: dict[int, Verdict], causes: list[list[tuple[str, int]]],
                dirty: list[bool]) -> set[int]:
        run = {i for i, v in verdicts.items() if v.state == "stale"}
        stack = list(run)
        while stack:  # what the stale cells depend on that is not up to date
            for _, j in causes[stack.pop()]:
                if j not in run:
                    run.add(j)
                    stack.append(j)
        for i in range(len(self.cells)):  # what depends on them
            if i not in run and any(j in run for j in self.definers[i].values()):
                run.add(i)
        stack = list(run)
        while stack:  # inputs the kernel does not have yet
            i = stack.pop()
            for name, j in self.definers[i].items():
                if name not in self.ns and j not in run:
                    run.add(j)
                    stack.append(j)
        return run


class MagicsNotRun(Exception):
    """A %%ndustria cell's body used IPython syntax (a line magic, ``!cmd``): not run for its state."""


def _no_magics() -> Any:
    raise MagicsNotRun("its line magics and shell commands are not run to find its state")


class _NullPublisher:
    """Drops displays made while a %%ndustria cell is probed."""

    def publish(self, *args: Any, **kwargs: Any) -> None:
        return None

    def clear_output(self, *args: Any, **kwargs: Any) -> None:
        return None


def notebook_states(state: KernelState, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The states of the notebook's cells (``cells``: its code cells in order, as {"id", "source"})."""
    parsed = [parse_cell(state.shell, str(c.get("id", "")), str(c.get("source", ""))) for c in cells]
    state.hasher.clear()
    return NotebookStates(state, parsed).compute()
