"""Task keys: a Merkle hash of the code fingerprint, the arguments and the dependencies' keys.

A dependency enters its dependent's key through its own key (``TaskHandle``
implements ``__ndustria_token__``), so a whole graph's keys are known before
anything runs, and the pipeline's name or the script's file name never count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

from ndustria.errors import InputChangedError, InputFileError, UnhashableError
from ndustria.keys.fingerprint import Fingerprinter
from ndustria.keys.hashing import ValueHasher, immutable
from ndustria.task import SCALARS, TaskHandle, format_call, iter_handles, replace_handles

if TYPE_CHECKING:
    from ndustria.task import TaskFunction

KEY_FORMAT = b"ndustria-key-1"
CODE = "<code>"  # the function digest's entry in a task_key() record (never a parameter name)
_PREFIXES: dict[str, bytes] = {}  # parameter name -> its length and bytes, as a key feeds them
_PARTS_MAX = 256  # remembered digests (with their parts) per function object
_UNNAMED = "a global, closure value or helper it reads"


class Fixed(NamedTuple):
    """What a declared task must still find when it is dispatched (its key was made from these)."""

    code: bytes | None  # the function digest at the call (None: ``version=``, globals do not count)
    values: tuple[tuple[str, Any, bytes, bool], ...]  # (parameter, value, digest, holds handles), mutable ones


def _handle_marker(handle: TaskHandle) -> tuple[str, int]:
    return ("ndustria.handle", handle.seq)  # stable for the handle's life, whatever its key becomes


def _is_handle(x: Any) -> bool:
    return isinstance(x, TaskHandle)


class KeyMaker:
    """Computes task keys; memoizes parsed code (and large ``bytes``) for the life of a run."""

    def __init__(self) -> None:
        self.hasher = ValueHasher()
        self.fingerprinter = Fingerprinter(self.hasher)
        # id(function) -> (function, its last digest, digest -> its parts): what changed can be named
        self._parts: dict[int, tuple[Any, bytes, dict[bytes, dict[str, bytes] | None]]] = {}
        self._code_only: dict[bytes, Fixed] = {}

    def function_digest(self, function: TaskFunction) -> bytes:
        """The code identity of a task function (or its explicit ``version=``)."""
        if function.version is not None:
            h = xxhash.xxh3_128(b"version\x00")
            h.update(function.func.__qualname__.encode() + b"\x00" + function.version.encode())
            return h.digest()
        func = function.func
        memo = function.remembered  # every declaration asks: the fingerprinter's memo of it, checked as it would
        if memo is not None and memo.holds(func) and not self.fingerprinter.busy():
            return memo.digest
        try:
            digest = self.fingerprinter.digest(func)
        except UnhashableError as exc:
            raise UnhashableError(
                f"cannot fingerprint the code of task function {function.name}: {exc.message}", where=exc.where
            ) from exc
        seen = self._parts.get(id(func))
        if seen is None or seen[0] is not func or seen[1] != digest:
            self._note_parts(func, digest, seen)
        function.remembered = self.fingerprinter.remembered(func)
        return digest

    def _note_parts(self, func: Any, digest: bytes, seen: Any) -> None:
        """A digest of ``func`` not seen last time: keep its parts (computed once per digest)."""
        if seen is None or seen[0] is not func:
            seen = (func, digest, {})
        by_digest = seen[2]
        if digest not in by_digest:
            parts = getattr(self.fingerprinter, "parts", None)
            try:
                by_digest[digest] = dict(parts(func)) if parts is not None else None
            except Exception:  # naming what changed is a courtesy; the digest is what counts
                by_digest[digest] = None
            if len(by_digest) > _PARTS_MAX:
                del by_digest[next(iter(by_digest))]
        self._parts[id(func)] = (func, digest, by_digest)

    def code_changes(self, function: TaskFunction, old: bytes, new: bytes) -> list[str]:
        """Labels of the parts of ``function``'s fingerprint that differ between digests ``old`` and ``new``
        (``"global variable 'SCALE'"``); empty when they are not known."""
        seen = self._parts.get(id(function.func))
        if seen is None or seen[0] is not function.func:
            return []
        a, b = seen[2].get(old), seen[2].get(new)
        if a is None or b is None:
            return []
        return [label for label in {**a, **b} if a.get(label) != b.get(label)]

    def fixed(self, function: TaskFunction, arguments: dict[str, Any], record: dict[str, bytes]) -> Fixed | None:
        """What to re-check before the task runs, from the digests ``task_key`` put in ``record``:
        the code digest and the arguments whose content can change (handles are replaced by their
        stored values anyway; a container holding handles is checked with the handles as markers)."""
        values = []
        for name, value in arguments.items():
            if type(value) in SCALARS or isinstance(value, TaskHandle) or immutable(value):
                continue
            marked = next(iter_handles(value), None) is not None
            digest = self.hasher.digest(replace_handles(value, _handle_marker, _is_handle)) if marked else record[name]
            values.append((name, value, digest, marked))
        code = None if function.version is not None else record[CODE]
        if values:
            return Fixed(code, tuple(values))
        if code is None:
            return None
        shared = self._code_only.get(code)  # most tasks only pin the code: one record per digest, not per task
        if shared is None:
            shared = self._code_only[code] = Fixed(code, ())
        return shared

    def check_fixed(self, function: TaskFunction, task: str, fixed: Fixed | None) -> None:
        """Raise InputChangedError if an argument, global or closure value changed since ``fixed`` was taken."""
        if fixed is None:
            return
        changed, params = [], []
        for name, value, digest, marked in fixed.values:
            try:
                now = self.hasher.digest(replace_handles(value, _handle_marker, _is_handle) if marked else value)
            except UnhashableError:
                now = b""
            if now != digest:
                changed.append(f"parameter {name!r}")
                params.append((name, value))
        if fixed.code is not None:
            try:
                now = self.function_digest(function)
            except UnhashableError:
                now = b""
            if now != fixed.code:
                changed += self.code_changes(function, fixed.code, now) or [_UNNAMED]
        if not changed:
            return
        if params:
            advice = f"pass a copy (e.g. {_copy_hint(*params[0])}) or call run() before changing it"
        else:
            advice = "call run() before changing it, or pass the value to the task as an argument"
        what = " and ".join(changed)
        raise InputChangedError(
            f"{task}: {what} changed after the task was declared (its key was made from the value at the "
            f"call); {advice}; the task was not run", task=task, changed=what)

    def task_key(self, function: TaskFunction, arguments: dict[str, Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], record: dict[str, bytes] | None = None) -> str:
        """The hex key of ``function`` called with the bound ``arguments`` (defaults applied).

        ``record``, when given, receives each argument's digest by name and the function's under ``CODE``.
        """
        code = self.function_digest(function)
        parts = [KEY_FORMAT, code]  # hashed in one call: the same bytes as feeding them one by one, ~0.15 us less
        if record is not None:
            record[CODE] = code
        for name, value in arguments.items():
            try:
                digest = self.hasher.digest(value)
            except InputFileError as exc:  # a File argument that is missing or unreadable
                raise exc.at(f"task {format_call(function.name, args, kwargs)}", f"argument {name!r}") from None
            except UnhashableError as exc:
                call = format_call(function.name, args, kwargs)
                raise UnhashableError(
                    f"task {call}: argument {name!r} cannot be fingerprinted reliably: {exc.message}",
                    where=f"{name}{exc.where}",
                ) from exc
            if record is not None:
                record[name] = digest
            prefix = _PREFIXES.get(name)
            if prefix is None:
                encoded = name.encode()
                prefix = _PREFIXES[name] = len(encoded).to_bytes(4, "little") + encoded
            parts += (prefix, digest)
        return xxhash.xxh3_128_hexdigest(b"".join(parts))

    def clear(self) -> None:
        """Free memory after a run: the memoized digests of large ``bytes`` (immutable, so only memory is at
        stake; arrays and frames are never memoized across calls) and the remembered fingerprint parts."""
        self.hasher.clear()
        self._parts.clear()
        self._code_only.clear()


def _copy_hint(name: str, value: Any) -> str:
    """How to pass a copy of ``value``, for the error message (``list(values)``)."""
    t = type(value)
    if t in (list, set, dict):
        items = value.values() if t is dict else value
        flat = all(type(v) in SCALARS for v in items)
        return f"{t.__name__}({name})" if flat else f"copy.deepcopy({name})"
    if t is bytearray:
        return f"bytes({name})"
    if t.__module__.partition(".")[0] in ("numpy", "pandas") and callable(getattr(value, "copy", None)):
        return f"{name}.copy()"
    return f"copy.deepcopy({name})"


RESULT_KEY_FORMAT = b"ndustria-result-key-1"


def result_key(task_id: str, inputs: list[tuple[str, str]]) -> str:
    """The cache key of a dependent: its call ``task_id`` and, for each task input in order, the
    input's id and the content checksum of the result it produced."""
    parts = [task_id]
    for pair in inputs:
        parts += pair
    return xxhash.xxh3_128_hexdigest(RESULT_KEY_FORMAT + "\0".join(parts).encode())
