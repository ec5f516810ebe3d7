"""Task keys: a Merkle hash of the code fingerprint, the arguments and the dependencies' keys.

A dependency enters its dependent's key through its own key (``TaskHandle``
implements ``__ndustria_token__``), so a whole graph's keys are known before
anything runs, and the pipeline's name or the script's file name never count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xxhash

from .errors import UnhashableError
from .fingerprint import Fingerprinter
from .hashing import ValueHasher
from .task import format_call

if TYPE_CHECKING:
    from .task import TaskFunction

KEY_FORMAT = b"ndustria-key-1"


class KeyMaker:
    """Computes task keys; memoizes large values and parsed code for the life of a run."""

    def __init__(self) -> None:
        self.hasher = ValueHasher()
        self.fingerprinter = Fingerprinter(self.hasher)

    def function_digest(self, function: TaskFunction) -> bytes:
        """The code identity of a task function (or its explicit ``version=``)."""
        if function.version is not None:
            h = xxhash.xxh3_128(b"version\x00")
            h.update(function.func.__qualname__.encode() + b"\x00" + function.version.encode())
            return h.digest()
        try:
            return self.fingerprinter.digest(function.func)
        except UnhashableError as exc:
            raise UnhashableError(
                f"cannot fingerprint the code of task function {function.name}: {exc.message}", where=exc.where
            ) from exc

    def task_key(self, function: TaskFunction, arguments: dict[str, Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> str:
        """The hex key of ``function`` called with the bound ``arguments`` (defaults applied)."""
        h = xxhash.xxh3_128(KEY_FORMAT)
        h.update(self.function_digest(function))
        for name, value in arguments.items():
            try:
                digest = self.hasher.digest(value)
            except UnhashableError as exc:
                call = format_call(function.name, args, kwargs)
                raise UnhashableError(
                    f"task {call}: argument {name!r} cannot be fingerprinted reliably: {exc.message}",
                    where=f"{name}{exc.where}",
                ) from exc
            encoded = name.encode()
            h.update(len(encoded).to_bytes(4, "little") + encoded + digest)
        return h.hexdigest()

    def clear(self) -> None:
        """Forget memoized values (after a run, so in-place changes between runs are seen)."""
        self.hasher.clear()
