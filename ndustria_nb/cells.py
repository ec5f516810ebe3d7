"""``%%task`` cells: key a cell by its code and its inputs, restore its outputs on a hit.

Key = normalized cell code (``ast.dump``: comments and formatting do not count) + the
fingerprint of every input, i.e. every name the cell reads before binding it that exists
in the namespace. A value restored or produced by a cached cell is identified by that
cell's key (kept in the kernel's side table, no re-hash); functions by their code
fingerprint; modules by name and version; anything else by content. A data file read through
``File`` -- an input holding one, or ``File("data.txt")`` written in the cell -- counts by the file's
content (memoized by its stat in the catalog); one written while the cell runs stops the cell's storing.

On a miss the cell runs with its streams and displays teed (shown live *and* recorded);
its top-level bindings, recorded outputs and duration are stored under the key as one
entry. On a hit nothing runs: the bindings come back and the outputs are replayed.
"""

from __future__ import annotations

import ast
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle
import xxhash

from ndustria.errors import (
    InputFileChangedError,
    InputFileError,
    NdustriaError,
    ResultNotPicklableError,
    UnhashableError,
)
from ndustria.keys import files
from ndustria.keys.files import File
from ndustria.units import human_bytes, human_seconds

from .analysis import analyze, normalized

if TYPE_CHECKING:
    from .kernel import KernelState

CELL_KEY_FORMAT = b"ndustria-cell-1"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_IPY_HISTORY = re.compile(r"_+|_i+|_i?\d+|_[ido]h")

Event = tuple[Any, ...]  # ("stdout" | "stderr", text) or ("display", data, metadata)


@dataclass
class CellOptions:
    name: str
    rerun: bool = False


# -- keys ----------------------------------------------------------------------------
def cell_inputs(state: KernelState, source: str) -> tuple[list[str], list[str]]:
    """(input names present in the namespace, names the cell binds at top level)."""
    names = analyze(source)
    ns, hidden = state.shell.user_ns, state.shell.user_ns_hidden
    inputs = [n for n in names.reads if n in ns and n not in hidden and not _IPY_HISTORY.fullmatch(n)
              and not n.startswith("__")]
    return inputs, names.binds


def cell_key(state: KernelState, source: str, inputs: list[str], record: dict[str, Any] | None = None) -> str:
    """The hex key of a cell: its normalized code and its inputs' fingerprints.

    ``record``, when given, receives what the key was made of, as hex digests: ``code``, ``inputs``
    ({name: digest}) and ``files`` ({path: digest}), so that a later key can say what changed."""
    h = xxhash.xxh3_128(CELL_KEY_FORMAT)
    code = normalized(source).encode()
    h.update(len(code).to_bytes(8, "little") + code)
    if record is not None:
        record.update(code=xxhash.xxh3_128_hexdigest(code), inputs={}, files={})
    state.hasher.clear()  # frees the memo of large bytes (values are always hashed by content anew)
    for name in sorted(inputs):
        value = state.shell.user_ns[name]
        try:
            digest = state.fingerprint(value)
        except InputFileError as exc:  # a File input (anywhere in the value) is missing or unreadable
            raise exc.at("%%task cell", f"input {name!r}") from None
        except UnhashableError as exc:
            raise UnhashableError(f"input {name!r} of this cell cannot be fingerprinted: {exc.message}",
                                  where=name) from exc
        encoded = name.encode()
        h.update(len(encoded).to_bytes(4, "little") + encoded + digest)
        if record is not None:
            record["inputs"][name] = digest.hex()
    for path in file_literals(state, source):  # File("data.txt") written in the cell: its content counts too
        try:
            digest = state.hasher.digest(File(path))
        except InputFileError as exc:
            raise exc.at("%%task cell", f"File({path!r})") from None
        h.update(b"\0file\0" + digest)
        if record is not None:
            record["files"][path] = digest.hex()
    return h.hexdigest()


def file_literals(state: KernelState, source: str) -> list[str]:
    """The literal paths of the ``File("...")`` calls in a cell (``File`` being ndustria's, or not bound yet:
    the cell imports it), so that a cell reading a data file it names itself is keyed by that file's content."""
    if "File" not in source:
        return []
    ns = state.shell.user_ns
    out = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str) and node.args[0].value):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "File" and ns.get("File", File) is File) or (
                isinstance(func, ast.Attribute) and func.attr == "File" and isinstance(func.value, ast.Name)
                and getattr(ns.get(func.value.id), "File", None) is File):
            out.append(node.args[0].value)
    return out


# -- recording -------------------------------------------------------------------------
class _TeeStream:
    """Writes through to the real stream and records what was written."""

    def __init__(self, inner: Any, kind: str, events: list[Event]) -> None:
        self._inner, self._kind, self._events = inner, kind, events

    def write(self, text: str) -> int:
        self._events.append((self._kind, text))
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TeePublisher:
    """Publishes displays as usual and records them."""

    def __init__(self, inner: Any, events: list[Event]) -> None:
        self._inner, self._events = inner, events

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, *args: Any,
                **kwargs: Any) -> Any:
        if not kwargs.get("update"):
            self._events.append(("display", dict(data), dict(metadata or {})))
        return self._inner.publish(data, metadata, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def recording(shell: Any) -> Iterator[list[Event]]:
    """Tee stdout, stderr and rich displays into a list of events while the cell runs live."""
    events: list[Event] = []
    saved = sys.stdout, sys.stderr, shell.display_pub
    sys.stdout, sys.stderr = _TeeStream(sys.stdout, "stdout", events), _TeeStream(sys.stderr, "stderr", events)
    shell.display_pub = _TeePublisher(shell.display_pub, events)
    try:
        yield events
    finally:
        sys.stdout, sys.stderr, shell.display_pub = saved


def _merge(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for ev in events:
        if out and ev[0] != "display" and out[-1][0] == ev[0]:
            out[-1] = (ev[0], out[-1][1] + ev[1])
        else:
            out.append(ev)
    return out


def replay(events: list[Event]) -> None:
    """Show recorded outputs again (widget views are dropped: their models died with the kernel)."""
    from IPython.display import publish_display_data

    for ev in events:
        if ev[0] == "stdout":
            sys.stdout.write(ev[1])
        elif ev[0] == "stderr":
            sys.stderr.write(ev[1])
        else:
            data = {k: v for k, v in ev[1].items() if k != WIDGET_MIME}
            if data:
                publish_display_data(data, ev[2])
    sys.stdout.flush()


# -- the magic's body ---------------------------------------------------------------
def run_task_cell(state: KernelState, options: CellOptions, cell: str) -> None:
    """Run (or restore) one ``%%task`` cell."""
    shell = state.shell
    source = shell.transform_cell(cell)
    label = f"%%task {options.name}" if options.name else "%%task"
    take = getattr(state.hasher.file_token, "take", dict)  # the File snapshots the key is made from
    take()
    made: dict[str, Any] = {}  # what the key is made of, for the cell's state (cellstate.py)
    try:
        inputs, binds = cell_inputs(state, source)
        key = cell_key(state, source, inputs, made)
    except SyntaxError:
        shell.run_cell(cell, store_history=False)  # IPython reports the syntax error
        return
    except UnhashableError as exc:
        print(f"[ndustria] {label}: not cached, {exc.message}. Make it hashable (or pass it through a "
              "task) to cache this cell.", file=sys.stderr)
        shell.run_cell(cell, store_history=False)
        state.tracker.task_cell_done(label, None, "uncacheable", exc.message)
        return
    store = state.pipeline.store
    if not options.rerun and store.contains(key) and _restore(state, key, label):
        state.tracker.task_cell_done(label, {**made, "key": key}, "restored")
        return
    read = [File(path).pinned(snap, "") for path, snap in take().items()]
    outcome, error = _compute(state, key, label, source, cell, binds, read)
    state.tracker.task_cell_done(label, {**made, "key": key}, outcome, error)


def _restore(state: KernelState, key: str, label: str) -> bool:
    t0 = time.perf_counter()
    try:
        payload = state.pipeline.store.load(key)
    except (KeyError, NdustriaError) as exc:
        print(f"[ndustria] {label}: the cached entry cannot be used ({exc}); running the cell", file=sys.stderr)
        return False
    outputs: dict[str, Any] = payload["outputs"]
    state.shell.user_ns.update(outputs)
    for name, value in outputs.items():
        state.remember(value, key, name)
    replay(payload["events"])
    took = time.perf_counter() - t0
    names = ", ".join(outputs) or "no variables"
    print(f"[ndustria] {label}: restored {names} from the cache in {human_seconds(took)} "
          f"(the cell took {human_seconds(payload['seconds'])}; saved {human_seconds(max(payload['seconds'] - took, 0))})")
    state.pipeline.catalog.touch([key])
    return True


def _compute(state: KernelState, key: str, label: str, source: str, cell: str, binds: list[str],
             read: list[File] | None = None) -> tuple[str, str]:
    """Run the cell and store its outputs: (outcome, why) with outcome "stored", "failed" or "uncacheable"."""
    shell = state.shell
    t0 = time.perf_counter()
    with recording(shell) as events:
        result = shell.run_cell(cell, store_history=False)
    seconds = time.perf_counter() - t0
    if not result.success:  # a cell that raises stores nothing
        exc = result.error_in_exec or result.error_before_exec
        return "failed", f"{type(exc).__name__}: {exc}" if exc is not None else "the cell raised an error"
    try:  # a File input written while the cell ran: its outputs must not be stored under the old content
        files.verify(label, read or (), "after")
    except InputFileChangedError as exc:
        print(f"[ndustria] {label}: the cell ran but was not cached: {exc}", file=sys.stderr)
        return "uncacheable", str(exc)
    in_kernel = getattr(shell, "kernel", None) is not None  # a terminal's displayhook writes to stdout (teed)
    if in_kernel and result.result is not None and not source.rstrip().endswith(";"):
        data, metadata = shell.display_formatter.format(result.result)
        events.append(("display", data, metadata))
    outputs = {n: shell.user_ns[n] for n in binds if n in shell.user_ns}
    payload = {"outputs": outputs, "events": _merge(events), "seconds": seconds, "label": label}
    try:
        info = state.pipeline.store.save(key, payload)
        if state.pipeline.fsync:  # durable when the cell ends, as a run's results are when run() returns
            state.pipeline.store.sync([info.where])
    except ResultNotPicklableError:
        bad = [n for n, v in outputs.items() if not _picklable(v)]
        print(f"[ndustria] {label}: the cell ran but was not cached: {', '.join(bad) or 'its output'} cannot be "
              "pickled (cloudpickle). Delete it at the end of the cell, or compute it in another cell.",
              file=sys.stderr)
        return "uncacheable", f"{', '.join(bad) or 'its output'} cannot be pickled"
    for name, value in outputs.items():
        state.remember(value, key, name)
    state.pipeline.catalog.record_entry(key, label, "%%task", state.pipeline.name, info.size, info.checksum, None)
    print(f"[ndustria] {label}: cached {', '.join(outputs) or 'its output'} ({human_bytes(info.size)}, "
          f"{human_seconds(seconds)})")
    return "stored", ""


def _picklable(value: Any) -> bool:
    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True
