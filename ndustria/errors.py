"""Exceptions raised by ndustria. Every message says what was wrong, where, and what to do."""

from __future__ import annotations

from dataclasses import dataclass, field


class NdustriaError(Exception):
    """Base class of every error ndustria raises on purpose."""


class ConfigError(NdustriaError):
    """A configuration value (argument, environment, config file) is invalid."""


class UnhashableError(NdustriaError, TypeError):
    """A value or a function cannot be fingerprinted deterministically.

    ``where`` locates the offending object inside the value that was being hashed
    (``"[2]['a']"``); callers may prefix it with the task and parameter name.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.message} (at {self.where})" if self.where else self.message


class CacheError(NdustriaError):
    """The cache directory or one of its entries cannot be used."""


class CorruptEntryError(CacheError):
    """A stored entry failed its integrity check; it was never unpickled."""

    def __init__(self, key: str, path: str, reason: str) -> None:
        super().__init__(f"cache entry {key} at {path} is damaged: {reason}")
        self.key = key
        self.path = path
        self.reason = reason


class UntrustedEntryError(CorruptEntryError):
    """A stored entry is not signed by a trusted key (or predates signing); it was never unpickled."""

    def __init__(self, key: str, path: str, reason: str) -> None:
        super().__init__(key, path, reason)
        self.args = (f"cache entry {key} at {path} is not trusted: {reason}",)


class CacheWriteError(CacheError, OSError):
    """A result could not be written (disk full, read-only cache directory); nothing partial was left."""

    def __init__(self, message: str, errno: int | None = None, path: str = "", reason: str = "") -> None:
        OSError.__init__(self, errno, message)
        self.message = message
        self.path = path  # the cache directory
        self.reason = reason  # the operating system's words ("No space left on device")

    def __str__(self) -> str:
        return self.message


class ResultNotPicklableError(CacheError):
    """A task returned a value that cannot be serialized; nothing was written."""


@dataclass
class TaskFailure:
    """One failed task of a run: what was called, what it raised, and where."""

    task: str
    key: str
    exception: BaseException | None
    traceback: str
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{self.task} raised {type(self.exception).__name__ if self.exception else 'an error'}"
        tail = f"\n  dependents skipped: {', '.join(self.skipped)}" if self.skipped else ""
        return f"{head}:\n{self.traceback.rstrip()}{tail}"


class TaskError(NdustriaError):
    """One or more tasks of a run failed. Independent tasks still completed and were cached."""

    def __init__(self, failures: list[TaskFailure]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} task(s) failed:"]
        lines += [str(f) for f in failures]
        super().__init__("\n".join(lines))


class TaskNotComputedError(NdustriaError):
    """A result was asked for before its task ran (or after it failed)."""


class NdustriaWarning(UserWarning):
    """Something was wrong but ndustria recovered (a damaged entry was recomputed, ...)."""
