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


class InputChangedError(NdustriaError):
    """An argument, global or closure value of a task changed between the call that declared the task
    (its key was made then) and the moment it was to run; the task was not run.

    ``task`` is the call (``total([1, 2, 3])``), ``changed`` what changed (``"parameter 'values'"``).
    """

    def __init__(self, message: str, task: str = "", changed: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.task = task
        self.changed = changed

    def __reduce__(self) -> tuple:
        return (type(self), (self.message, self.task, self.changed))


class InputFileError(NdustriaError):
    """A ``File`` input is missing or cannot be read. Raised when its task is declared, before anything runs.

    ``path`` is the absolute path, ``problem`` what is wrong with it, ``fix`` what to do; ``task`` and
    ``parameter`` say where it was passed (``task`` may be a ``%%task`` cell).
    """

    def __init__(self, path: str, problem: str, fix: str, task: str = "", parameter: str = "") -> None:
        self.path, self.problem, self.fix, self.task, self.parameter = path, problem, fix, task, parameter
        where = f"{task}: {parameter}: " if task and parameter else f"{task}: " if task else ""
        super().__init__(f"{where}the input file {path} {problem}; {fix}")

    def at(self, task: str, parameter: str) -> InputFileError:
        """The same error, saying which task and which parameter it was passed to."""
        return InputFileError(self.path, self.problem, self.fix, task, parameter)

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.problem, self.fix, self.task, self.parameter))


class InputFileChangedError(InputChangedError):
    """A ``File`` input's content changed after its task was declared (``moment="before"``: the task
    was not run) or while the task ran (``"after"``: its result was not stored)."""

    def __init__(self, task: str, parameter: str, path: str, moment: str, detail: str = "") -> None:
        self.path, self.parameter, self.moment, self.detail = path, parameter, moment, detail
        when, outcome = (("after the task was declared", "the task was not run") if moment == "before" else
                         ("while the task ran", "its result was not stored"))
        what = f"the input file {path}" + (f" (parameter {parameter})" if parameter else "")
        extra = f" [{detail}]" if detail else ""
        message = (f"{task}: {what} changed {when} (its key names the content it had then){extra}; {outcome}. "
                   "Run again to use the new content" + ("." if moment == "before" else
                                                         ", once nothing writes to the file while the task reads it."))
        super().__init__(message, task, f"input file {path}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.task, self.parameter, self.path, self.moment, self.detail))


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
