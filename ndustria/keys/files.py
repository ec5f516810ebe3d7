"""Data files as task inputs: ``File(path)`` is keyed by the file's content, never by its path.

``File("data/run42.h5")`` anywhere in a task's arguments (also inside lists, tuples, dicts
and sets) enters the task's key as its *kind* (file or folder) and its content digest
(xxh3_128, read in 16 MiB chunks). A folder is keyed recursively by the sorted relative
paths of everything in it (hidden files too, symlinks followed) and each file's digest,
so adding, removing or renaming a file changes the key. The path itself does not count:
the same data in another checkout, or a data file moved elsewhere, is still a hit. A task
whose result depends on the file's *name* should take the name as another argument.

Unchanged files are not read again: the pipeline's digester (:class:`FileDigests`, the
value hasher's ``file_token``) remembers ``(absolute path, size, mtime_ns, inode,
ctime_ns) -> digest`` in memory and in the catalog's ``file_digests`` table, so a warm
run over a huge file costs a ``stat``. A remembered digest is trusted only when it was
taken at least ``RACY_NS`` after the file's mtime (git's "racily clean" rule): a file
rewritten within one timestamp tick of being read is read again next time.

Files are fixed at the call, like every other input. When a task is declared, each
``File`` in its arguments is replaced by a *pinned* copy carrying the snapshot its key was
made from (:func:`pin_files`). On the engine, :func:`verify` re-stats the pinned files just
before the task runs and again right after it returned (``worker._compute``); a file whose
stat changed is read again, and if its content differs the task fails with
:class:`~ndustria.errors.InputFileChangedError`: it is not run (changed after the call), or
its result is not stored (changed while it ran). The task itself receives a
:class:`pathlib.Path` (:func:`as_paths`), on every backend.

A missing or unreadable file is an :class:`~ndustria.errors.InputFileError` raised when the
task is declared, naming the task, the parameter and the path.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from ndustria.errors import InputFileChangedError, InputFileError
from ndustria.keys.hashing import T_FILE, Walk, register
from ndustria.task import replace_handles

__all__ = ["File", "FileDigests", "as_paths", "pin_files", "pinned_files", "verify"]

log = logging.getLogger("ndustria")

RACY_NS = 2_000_000_000  # a digest taken this soon after the file's mtime is not trusted later
_CHUNK = 16 << 20
_FORMAT = b"ndustria-file-1\x00"
_RETRIES = 3  # reads of a file that keeps changing while it is read, before giving up
_FIX_MISSING = "create it, or pass the right path to File(), then run again"
_CONTAINERS = (list, tuple, dict, set, frozenset)

Sig = tuple[int, int, int, int]  # size, mtime_ns, inode, ctime_ns


def _sig(st: os.stat_result) -> Sig:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _len(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little")


@dataclass(frozen=True)
class Seen:
    """One regular file as it was digested: its stat signature, content digest, and when it was read."""

    sig: Sig
    digest: bytes
    checked_ns: int  # time.time_ns() just before the read started

    def trusted(self, sig: Sig) -> bool:
        """Whether this digest still answers for a file whose stat now gives ``sig``."""
        return sig == self.sig and self.checked_ns - sig[1] >= RACY_NS


@dataclass(frozen=True)
class Snapshot:
    """What a File's key was made from: its digest and every regular file read for it."""

    digest: bytes  # kind + content: what enters the key
    files: Mapping[str, Seen]  # absolute path -> Seen (one entry for a file, every file of a folder)


class File:
    """A data file or folder given to a task: keyed by content; the task receives a ``pathlib.Path``.

    The path is made absolute when the ``File`` is created (relative to the working directory
    then), so engines started elsewhere find it. ``File`` is immutable and ``os.PathLike``:
    ``open(File("x"))`` works too. Two Files are equal when their absolute paths are.
    """

    __slots__ = ("_path", "_given", "_pin")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = path._given if isinstance(path, File) else os.fspath(path)
        if isinstance(given, bytes):
            given = os.fsdecode(given)
        if not isinstance(given, str) or not given:
            raise TypeError(f"File() takes a non-empty path (str or os.PathLike), not {path!r}")
        object.__setattr__(self, "_given", given)
        object.__setattr__(self, "_path", os.path.abspath(given))
        object.__setattr__(self, "_pin", None)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("ndustria.File cannot be subclassed (its key is its content; wrap it instead)")

    @property
    def path(self) -> Path:
        """The absolute path."""
        return Path(self._path)

    def __fspath__(self) -> str:
        return self._path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other._path == self._path

    def __hash__(self) -> int:
        return hash(("ndustria.File", self._path))

    def __repr__(self) -> str:
        return f"File({self._given!r})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ndustria.File is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ndustria.File is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._path, self._given, self._pin))

    def content_digest(self) -> bytes:
        """Kind and content digest, read now (no memo): what a hasher without ``file_token`` uses."""
        return self._pin[0].digest if self._pin is not None else snapshot(self._path).digest

    def pinned(self, snap: Snapshot, where: str) -> File:
        """A copy carrying the snapshot its task's key was made from, and where it was passed."""
        return _rebuild(self._path, self._given, (snap, where))


def _hash_file(w: Walk, h: Any, f: File) -> None:
    """A ``File`` in an argument value: its kind and content digest (the hasher's ``file_token``
    memoizes it; without one it is read now), never its path."""
    token = w.owner.file_token
    h.update(T_FILE + bytes(token(f) if token is not None else f.content_digest()))


register(File, _hash_file)


def _rebuild(path: str, given: str, pin: tuple[Snapshot, str] | None) -> File:
    f = object.__new__(File)
    object.__setattr__(f, "_path", path)
    object.__setattr__(f, "_given", given)
    object.__setattr__(f, "_pin", pin)
    return f


# ----------------------------------------------------------------------------- digests

def snapshot(path: str, known: Mapping[str, Seen] | None = None) -> Snapshot:
    """Digest the file or folder at absolute ``path``; files whose ``known`` Seen is trusted are not read."""
    known = known if known is not None else {}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        broken = " (a symbolic link to a missing target)" if os.path.islink(path) else ""
        raise InputFileError(path, f"does not exist{broken}", _FIX_MISSING) from None
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})",
                             "make it readable, then run again") from None
    files: dict[str, Seen] = {}
    if stat.S_ISREG(st.st_mode):
        seen = _file_digest(path, st, known)
        files[path] = seen
        return Snapshot(xxhash.xxh3_128_digest(_FORMAT + b"file\x00" + seen.digest), files)
    if stat.S_ISDIR(st.st_mode):
        entries: list[tuple[bytes, bytes, bytes]] = []
        _walk(path, path, b"", {(st.st_dev, st.st_ino)}, known, files, entries)
        entries.sort()
        h = xxhash.xxh3_128(_FORMAT + b"folder\x00" + len(entries).to_bytes(8, "little"))
        for rel, kind, payload in entries:
            h.update(kind + _len(rel) + rel + _len(payload) + payload)
        return Snapshot(h.digest(), files)
    raise InputFileError(path, "is neither a regular file nor a folder", "pass a regular file or a folder")


def _walk(root: str, folder: str, rel: bytes, ancestors: set[tuple[int, int]], known: Mapping[str, Seen],
          files: dict[str, Seen], entries: list[tuple[bytes, bytes, bytes]]) -> None:
    """Add every entry under ``folder`` (relative path ``rel``) to ``entries``; symlinks are followed."""
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise InputFileError(root, f"has a folder that cannot be listed: {folder} ({exc.strerror or exc})",
                             "make it readable, then run again") from None
    for name in names:
        full = os.path.join(folder, name)
        sub = rel + os.fsencode(name)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            if os.path.islink(full):  # a dangling link: the task sees the link, so its target text counts
                entries.append((sub, b"l", os.fsencode(os.readlink(full))))
                continue
            raise InputFileError(root, f"changed while it was read ({full} vanished)",
                                 "run again once it is written") from None
        except OSError as exc:
            raise InputFileError(root, f"holds {full}, which cannot be read ({exc.strerror or exc})",
                                 "make it readable, then run again") from None
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                raise InputFileError(root, f"holds a symbolic link loop at {full}",
                                     "remove the link, or pass the folders it joins separately")
            entries.append((sub, b"d", b""))
            _walk(root, full, sub + b"/", ancestors | {ident}, known, files, entries)
        elif stat.S_ISREG(st.st_mode):
            seen = _file_digest(full, st, known)
            files[full] = seen
            entries.append((sub, b"f", seen.digest))
        else:
            raise InputFileError(root, f"holds {full}, which is neither a regular file nor a folder",
                                 "move it out of the folder (a pipe or a socket has no content to key)")


def _file_digest(path: str, st: os.stat_result, known: Mapping[str, Seen]) -> Seen:
    """The known digest if it is trusted for ``st``, else the file read in 16 MiB chunks."""
    seen = known.get(path)
    if seen is not None and seen.trusted(_sig(st)):
        return seen
    for _ in range(_RETRIES):
        checked = time.time_ns()
        h = xxhash.xxh3_128()
        try:
            with open(path, "rb", buffering=0) as fh:
                before = _sig(os.fstat(fh.fileno()))
                buf = bytearray(min(_CHUNK, before[0] + 1))
                view = memoryview(buf)
                while n := fh.readinto(buf):
                    h.update(view[:n])
                after = _sig(os.fstat(fh.fileno()))
        except FileNotFoundError:
            raise InputFileError(path, "does not exist", _FIX_MISSING) from None
        except OSError as exc:
            raise InputFileError(path, f"cannot be read ({exc.strerror or exc})",
                                 "make it readable, then run again") from None
        if before == after:
            return Seen(after, h.digest(), checked)
    raise InputFileError(path, "kept changing while it was read", "run again once it is written")


class FileDigests:
    """The ``file_token`` of a pipeline's (or a kernel's) value hasher: a File's digest, memoized.

    Digests are remembered by (absolute path, size, mtime_ns, inode, ctime_ns) in memory and,
    when ``catalog`` returns one, in the catalog's ``file_digests`` table, so another process
    does not read an unchanged file either. Every snapshot taken is kept in ``pending`` (by path)
    until :meth:`take`: :func:`pin_files` pins the ones of a task's arguments to the task.
    A pinned File (inside a declared task) answers with its pinned digest, without any I/O.
    """

    def __init__(self, catalog: Callable[[], Any] | None = None) -> None:
        self._catalog = catalog
        self._known: dict[str, Seen] = {}
        self._loaded: set[str] = set()
        self.pending: dict[str, Snapshot] = {}

    def __call__(self, f: File) -> bytes:
        if f._pin is not None:
            return f._pin[0].digest
        path = f._path
        if path not in self._loaded:
            self._load(path)
        snap = snapshot(path, self._known)
        new = [(p, s) for p, s in snap.files.items() if self._known.get(p) is not s]
        if new:
            self._known.update(new)
            self._save(new)
        self.pending[path] = snap
        return snap.digest

    def take(self) -> dict[str, Snapshot]:
        """The snapshots taken since the last call (by path), forgotten here."""
        out, self.pending = self.pending, {}
        return out

    def _db(self) -> Any:
        if self._catalog is None:
            return None
        try:
            return self._catalog()
        except Exception as exc:  # the memo is an optimization: without a catalog, files are read each run
            log.warning("file digests are not remembered (no catalog: %s)", exc)
            self._catalog = None
            return None

    def _load(self, path: str) -> None:
        self._loaded.add(path)
        db = self._db()
        if db is None:
            return
        try:
            rows = db.file_digests(os.fsencode(path))
        except Exception as exc:
            log.warning("cannot read remembered file digests: %s", exc)
            return
        for row in rows:
            key = os.fsdecode(row[0])
            if key not in self._known:
                self._known[key] = Seen((row[1], row[2], row[3], row[4]), bytes(row[5]), row[6])

    def _save(self, items: list[tuple[str, Seen]]) -> None:
        db = self._db()
        if db is None:
            return
        try:
            db.record_file_digests([(os.fsencode(p), *s.sig, s.digest, s.checked_ns) for p, s in items])
        except Exception as exc:
            log.warning("cannot remember file digests: %s", exc)


# ----------------------------------------------------------------------------- tasks

def pin_files(hasher: Any, signature: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              arguments: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any], bool]:
    """Replace each File in a task's bound arguments by a copy pinned to the snapshot its key was made from.

    Call it right after the key was computed. O(1) when the key used no File (the hasher's
    ``file_token`` took no snapshot); else every builtin container holding a File is copied, in
    ``args``, ``kwargs`` and ``arguments`` alike. Returns them and whether a File was found.
    """
    token = getattr(hasher, "file_token", None)
    take = getattr(token, "take", None)
    if take is None or not token.pending:
        return args, kwargs, arguments, False
    snaps = take()
    done: dict[int, Any] = {}
    found = [False]

    def pin(value: Any, where: str) -> Any:
        if isinstance(value, File):
            if value._pin is not None or value._path not in snaps:
                found[0] = found[0] or value._pin is not None
                return value
            found[0] = True
            out = done.get(id(value))
            if out is None:
                out = done[id(value)] = value.pinned(snaps[value._path], where)
            return out
        if not isinstance(value, _CONTAINERS):
            return value
        out = done.get(id(value))
        if out is None:
            out = done[id(value)] = _copy(value, pin, where)
        return out

    arguments = {name: pin(value, repr(name)) for name, value in arguments.items()}
    if not found[0]:
        return args, kwargs, arguments, False
    positional = [p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY,
                                                                             p.POSITIONAL_OR_KEYWORD)]
    star = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_POSITIONAL), "args")
    args = tuple(pin(v, repr(positional[i]) if i < len(positional) else f"{star!r}[{i - len(positional)}]")
                 for i, v in enumerate(args))
    kwargs = {k: pin(v, repr(k)) for k, v in kwargs.items()}
    return args, kwargs, arguments, True


def _copy(value: Any, pin: Callable[[Any, str], Any], where: str) -> Any:
    """``value`` (a builtin container) with its members pinned; the very object when none changed."""
    if isinstance(value, dict):
        items = {k: pin(v, f"{where}[{k!r}]") for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        return items if type(value) is dict else _rebuild_container(value, items)
    members = [pin(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if all(a is b for a, b in zip(members, value)):
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*members)
    return _rebuild_container(value, members)


def _rebuild_container(original: Any, items: Any) -> Any:
    try:
        return type(original)(items)
    except Exception:
        for base in (dict, list, tuple, set, frozenset):
            if isinstance(original, base):
                return base(items)
        raise


def pinned_files(*values: Any) -> list[File]:
    """Every pinned File inside ``values`` (builtin containers), each once."""
    out: dict[int, File] = {}
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, File):
            if v._pin is not None:
                out.setdefault(id(v), v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, _CONTAINERS):
            stack.extend(v)
    return list(out.values())


def _is_file(x: Any) -> bool:
    return isinstance(x, File)


def to_path(f: File) -> Path:
    return Path(f._path)


def as_paths(value: Any) -> Any:
    """``value`` with every File (inside builtin containers) replaced by its ``pathlib.Path``."""
    return replace_handles(value, to_path, _is_file)


def verify(task: str, files: Iterable[File], moment: str) -> list[File]:
    """Raise InputFileChangedError if a pinned File's content is no longer what its task's key names.

    A file whose stat is unchanged is not read. ``moment``: ``"before"`` the task runs or
    ``"after"`` it returned. Returns the Files pinned to what was found now (so a later check
    does not read a file again that this one read).
    """
    out = []
    for f in files:
        snap, where = f._pin
        try:
            now = snapshot(f._path, snap.files)
        except (InputFileError, InputFileChangedError) as exc:
            raise InputFileChangedError(task, where, f._path, moment, str(exc)) from None
        if now.digest != snap.digest:
            raise InputFileChangedError(task, where, f._path, moment)
        out.append(f.pinned(now, where) if now.files != snap.files else f)
    return out
