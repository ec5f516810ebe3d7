"""Bundles: a pipeline's results and run records in one file, to carry them to another machine.

``pipe.pack(save_to="bundle.tar.gz")`` or ``ndustria pack NAME -o bundle.tar.gz`` writes one;
``ndustria unpack bundle.tar.gz`` imports one into the local cache directory.

**What a bundle holds.** Every result of the pipeline's latest run (of all its runs with
``all_runs=True`` / ``--all-runs``): the entry files exactly as the store keeps them. And the
catalog rows a user needs on the other side: the runs (start, end, state, backend, options,
counts), their task rows (call, function, status, engine, host, timings, metrics, errors), line
profiles, and the entries rows (task call, size, checksum). A cached task brings the rows of the
earlier runs that computed its result (those tasks' rows only), so ``ndustria -t NAME`` shows the
same numbers there. Machine-local state stays behind: ``file_digests``, locks, temp files.

**Format** (``BUNDLE_FORMAT`` 1): a tar file (PAX), gzip-compressed unless its name ends in
``.tar``, with its members in this order::

    manifest.json      {"format": "ndustria-bundle", "version": 1, "ndustria": the packer's version,
                        "pipeline", "created", "host", "signer" (the packer's key id, for information),
                        "runs": [{"run_id", "started", "ended", "state"}] (the packed runs),
                        "entries": [{"key", "size", "checksum", "task", "function"}], "size": their bytes}
    catalog.json       {"runs", "task_runs", "profiles", "entries"}: lists of rows, column -> value
                        (run ids are the packer's; unpack gives them local ones)
    objects/ab/<key>   each entry file (as in the store), in the manifest's order

Both sides stream: entry files are copied in 1 MiB chunks, never held in memory whole. A bundle
is written to a temp file beside its destination and renamed into place when complete.

**Trust.** An entry holds a pickle, and unpickling runs code. The store loads only entries signed
by a key its user trusts (:mod:`ndustria.store.trust`); a bundle's entries are signed by the packer's key,
which the unpacking user does not trust. Unpacking *is* the trust decision: by running it the user
says they trust whoever made the bundle. Each entry is checked as the store checks its own (magic,
format, header digest, pickle and array data digests, pickle SHA-256, the key inside) and against
the manifest (size, checksum), *before* it is accepted, then signed with the local key
(:meth:`Store.adopt <ndustria.store.entries.Store.adopt>`); nothing is unpickled. These checks catch damage
(a flipped bit, a cut-off copy); they cannot catch a bundle made to deceive (its author can write
consistent checksums). So: only unpack bundles from people you trust.

**Refusals.** A damaged or altered entry is refused and named (task call and key); the others are
imported, its entries row is not, and the exit status is 1 (the task is recomputed where it is
needed). A bundle that cannot be read to its end (truncated, not a bundle, a newer format, a member
its manifest does not list) imports nothing: members are only ever read into temp files of the
store named after a manifest key, never extracted by their own names. Accepted entries are staged
in the cache's ``tmp/`` and moved into place (atomic renames) once the whole bundle has been read;
the catalog rows follow in one transaction. A run already in the local catalog (same pipeline,
start, host and pid) is not added again, so unpacking twice changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ndustria.atomic import temp_name
from ndustria.config import resolve_cache_dir
from ndustria.errors import CorruptEntryError, NdustriaError
from ndustria.record.catalog import Catalog
from ndustria.record.exchange import export_rows, import_rows
from ndustria.store.entries import Store
from ndustria.units import human_bytes
from ndustria.version import __version__

__all__ = ["BUNDLE_FORMAT", "BundleError", "Packed", "Refused", "Unpacked", "add_commands", "pack", "unpack"]

BUNDLE_FORMAT = 1
_TAG = "ndustria-bundle"
MANIFEST, CATALOG = "manifest.json", "catalog.json"
_TABLES = ("runs", "task_runs", "profiles", "entries")
_CHUNK = 1 << 20
_LEVEL = 1  # gzip level: results are mostly numbers, which compress little at any level; 1 is fastest
_MAX_META = 1 << 30  # a manifest or catalog member larger than this is not read (pack never writes one)
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)  # gzip.BadGzipFile is an OSError

TRUST_NOTE = """\
Importing is a trust decision. A bundle holds pickles, and loading a pickle runs code: only unpack
bundles from people you trust. The bundle's entries were signed by its author's key, which your
ndustria does not trust; unpack checks every entry's checksums before accepting it (damage is
caught; a bundle made to deceive is not), then signs it with your own key, so your scripts load it
as if you had computed it. A damaged entry is refused and named (exit status 1); an unreadable or
truncated bundle imports nothing (exit status 2)."""


class BundleError(NdustriaError):
    """A bundle cannot be written or read; when reading, nothing was imported."""


@dataclass
class Packed:
    """What :func:`pack` wrote: the bundle, its runs (the packer's ids), its entries and their bytes."""

    path: Path
    runs: list[int]
    entries: int
    size: int
    left_out: list[str]  # results that could not be packed, each "task call: why"


@dataclass
class Refused:
    """An entry :func:`unpack` did not import."""

    task: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.task} (key {self.key}): {self.reason}"


@dataclass
class Unpacked:
    """What :func:`unpack` imported: ``runs`` maps the bundle's run ids to the local catalog's."""

    pipeline: str
    imported: int
    refused: list[Refused]
    runs: dict[int, int]


def _member(key: str) -> str:
    return f"objects/{key[:2]}/{key}"


# -- pack ----------------------------------------------------------------------------
def pack(store: Store, catalog: Catalog, pipeline: str, save_to: str | os.PathLike[str], *,
         all_runs: bool = False, progress: bool = True) -> Packed:
    """Write the results of ``pipeline``'s latest run (every run with ``all_runs``) and their catalog
    rows to the bundle ``save_to``. Raises :class:`BundleError` if the pipeline never ran here."""
    rows = export_rows(catalog, pipeline, all_runs)
    if rows is None:
        known = sorted({r["pipeline"] for r in catalog.runs(limit=1000)} - {pipeline})
        hint = f" (pipelines with runs there: {', '.join(known)})" if known else ""
        raise BundleError(f"pipeline {pipeline!r} has no recorded run in {store.root}: run it first, "
                          f"then pack it{hint}")
    listed, left_out = _listed_entries(store, rows)
    packed = {e["key"] for e in listed}
    selected = [r for r in rows["runs"] if r["run_id"] in set(rows["selected"])]
    total = sum(e["size"] for e in listed)
    manifest = {"format": _TAG, "version": BUNDLE_FORMAT, "ndustria": __version__, "pipeline": pipeline,
                "created": time.time(), "host": socket.gethostname(), "signer": store.keyring.signer,
                "runs": [{k: r[k] for k in ("run_id", "started", "ended", "state")} for r in selected],
                "entries": listed, "size": total}
    tables = {"runs": rows["runs"], "task_runs": rows["task_runs"], "profiles": rows["profiles"],
              "entries": [row for key, row in rows["entries"].items() if key in packed]}
    target = Path(os.path.abspath(os.path.expanduser(os.fspath(save_to))))
    if target.is_dir():
        raise BundleError(f"{target} is a directory: give the bundle's file name, e.g. {target / 'bundle.tar.gz'}")
    bar = Progress(total, f"Packing {pipeline}", enabled=progress)
    try:
        _write_bundle(target, store, manifest, tables, listed, bar)
    finally:
        bar.close()
    return Packed(target, rows["selected"], len(listed), total, left_out)


def _listed_entries(store: Store, rows: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries a bundle carries (each checked to be in the store, whole), and why others are not."""
    listed, left_out = [], [f"{task}: its cache key was not recorded" for task in rows["unresolved"]]
    for key, row in rows["entries"].items():
        try:
            info = store.info(key)
        except CorruptEntryError as exc:
            left_out.append(f"{row['task']}: its entry is damaged ({exc.reason})")
            continue
        if info is None:
            left_out.append(f"{row['task']}: no longer in the cache")
            continue
        row.update(size=info.size, checksum=info.checksum)
        listed.append({"key": key, "size": info.size, "checksum": info.checksum, "task": row["task"],
                       "function": row["function"]})
    return listed, left_out


def _write_bundle(target: Path, store: Store, manifest: dict[str, Any], tables: dict[str, Any],
                  listed: list[dict[str, Any]], bar: Progress) -> None:
    """Stream the bundle into a temporary file beside ``target``, fsync it, then rename it into place."""
    tmp = temp_name(target)  # unique: two packs of one name (even from two hosts) never share it
    compressed = not target.name.endswith(".tar")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600), "wb") as raw:
            options: dict[str, Any] = {"compresslevel": _LEVEL} if compressed else {}
            with tarfile.open(fileobj=raw, mode="w:gz" if compressed else "w", format=tarfile.PAX_FORMAT,
                              copybufsize=_CHUNK, **options) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest).encode())
                _add_bytes(tar, CATALOG, json.dumps(tables).encode())
                for entry in listed:
                    _add_entry(tar, store, entry, bar)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise BundleError(f"cannot write the bundle {target}: {exc.strerror or exc}") from exc
        raise


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_entry(tar: tarfile.TarFile, store: Store, entry: dict[str, Any], bar: Progress) -> None:
    key, task = entry["key"], entry["task"]
    try:
        size, f = store.open_entry(key)
    except KeyError:
        raise BundleError(f"the result of {task} ({key}) was removed while it was packed; pack again") from None
    with f:
        if size != entry["size"]:
            raise BundleError(f"the result of {task} ({key}) changed while it was packed; pack again")
        info = tarfile.TarInfo(_member(key))
        info.size, info.mtime, info.mode = size, int(time.time()), 0o600
        tar.addfile(info, _Counted(f, bar))


class _Counted:
    """A file read through, its bytes counted on a progress bar."""

    def __init__(self, f: BinaryIO, bar: Progress) -> None:
        self._f, self._bar = f, bar

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._bar.update(len(data))
        return data


# -- unpack --------------------------------------------------------------------------
class _WriteError(Exception):
    """Writing a staged entry failed (the cache's disk, not the bundle)."""


def unpack(store: Store, catalog: Catalog, bundle: str | os.PathLike[str], *, progress: bool = True) -> Unpacked:
    """Import a bundle: check every entry, sign the accepted ones with the local key, add the catalog rows.

    Damaged entries are refused (listed in the result); a bundle that cannot be read to its end raises
    :class:`BundleError` and imports nothing.
    """
    path = Path(os.path.expanduser(os.fspath(bundle)))
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BundleError(f"cannot open the bundle {path}: {exc.strerror or exc}") from None
    staged: list[tuple[str, str]] = []  # (key, temp file) of accepted entries, moved into place at the end
    refused: list[Refused] = []
    with raw:
        bar = Progress(os.fstat(raw.fileno()).st_size, f"Unpacking {path.name}", enabled=progress)
        try:
            manifest, tables = _read(path, _Counted(raw, bar), store, staged, refused)
            accepted = {key for key, _ in staged}
            while staged:
                key, tmp = staged[0]
                store.publish(key, tmp)
                staged.pop(0)
            runs = import_rows(catalog, tables, accepted)
        except _WriteError as exc:
            why = exc.args[0]
            raise BundleError(f"cannot write to the cache directory {store.root}: {why.strerror or why}; "
                              "nothing was imported") from why
        except BundleError:
            raise
        except _READ_ERRORS as exc:
            raise BundleError(f"cannot read the bundle {path} to its end ({type(exc).__name__}: {exc}): it is "
                              "truncated or damaged; nothing was imported. Copy it again") from exc
        finally:
            bar.close()
            for _, tmp in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    return Unpacked(manifest["pipeline"], len(accepted), refused, runs)


def _read(path: Path, source: _Counted, store: Store, staged: list[tuple[str, str]],
          refused: list[Refused]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the bundle to its end: the manifest, the catalog rows, each entry into a checked, re-signed
    temp file (appended to ``staged``) or to ``refused``."""
    with tarfile.open(fileobj=source, mode="r|*") as tar:  # stream: members in order, nothing seeks back
        members = iter(tar)
        manifest = _check_manifest(path, store, _json(path, tar, next(members, None), MANIFEST))
        tables = _check_tables(path, _json(path, tar, next(members, None), CATALOG))
        expected = {_member(e["key"]): e for e in manifest["entries"]}
        seen: set[str] = set()
        for member in members:
            entry = expected.get(member.name)
            if entry is None or member.name in seen or not member.isreg():
                raise BundleError(f"{path} holds {member.name!r}, which its manifest does not list: not a bundle "
                                  "ndustria wrote, or altered; nothing was imported")
            seen.add(member.name)
            key, task = entry["key"], entry["task"]
            if member.size != entry["size"]:
                refused.append(Refused(task, key, f"{member.size} bytes in the bundle; its manifest says "
                                                  f"{entry['size']}"))
                continue
            tmp = store.tmp_file(key)
            staged.append((key, tmp))  # removed again if it is refused or anything fails
            _copy(tar.extractfile(member), tmp, member.size)
            try:
                info = store.adopt(key, tmp)
                if info.checksum != entry["checksum"]:
                    raise CorruptEntryError(key, tmp, "its checksum differs from the one in the bundle's manifest")
            except CorruptEntryError as exc:
                staged.pop()
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                refused.append(Refused(task, key, exc.reason))
        missing = [e for name, e in expected.items() if name not in seen]
        if missing:
            raise BundleError(f"{path} is truncated: {len(missing)} of its {len(expected)} results are missing "
                              f"(the first: {missing[0]['task']}); nothing was imported. Copy it again")
    return manifest, tables


def _copy(src: BinaryIO | None, tmp: str, size: int) -> None:
    """Copy a member's ``size`` bytes to a new temp file, in chunks."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise _WriteError(exc) from exc
    try:
        left = size
        while left:
            chunk = src.read(min(_CHUNK, left)) if src is not None else b""
            if not chunk:
                raise EOFError("the bundle ends inside an entry")
            left -= len(chunk)
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                raise _WriteError(exc) from exc
    finally:
        os.close(fd)


def _json(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo | None, name: str) -> Any:
    if member is None or member.name != name or not member.isreg():
        found = "nothing" if member is None else repr(member.name)
        raise BundleError(f"{path} is not an ndustria bundle: {name} expected, found {found}")
    if member.size > _MAX_META:
        raise BundleError(f"{path}: its {name} is {human_bytes(member.size)}, too large to be one ndustria wrote")
    f = tar.extractfile(member)
    data = f.read() if f is not None else b""
    if len(data) != member.size:
        raise EOFError(f"the bundle ends inside {name}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{path} is damaged: its {name} is not valid JSON ({exc}); nothing was imported") from None


def _check_manifest(path: Path, store: Store, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != _TAG:
        raise BundleError(f"{path} is not an ndustria bundle (its manifest is not one)")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"{path}: unknown bundle format {version!r}; nothing was imported")
    if version > BUNDLE_FORMAT:
        raise BundleError(f"{path} was written by a newer ndustria ({manifest.get('ndustria', '?')}, bundle format "
                          f"{version}; this ndustria {__version__} reads format {BUNDLE_FORMAT}): upgrade ndustria "
                          "to unpack it")
    entries = manifest.get("entries")
    ok = isinstance(entries, list) and isinstance(manifest.get("pipeline"), str) and all(
        isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("size"), int)
        and isinstance(e.get("checksum"), str) and isinstance(e.get("task"), str) for e in entries)
    if not ok:
        raise BundleError(f"{path} is damaged: its manifest is malformed; nothing was imported")
    for e in entries:
        try:
            store.path(e["key"])
        except ValueError:
            raise BundleError(f"{path} is damaged: its manifest lists an invalid key {e['key'][:60]!r}; "
                              "nothing was imported") from None
    return manifest


def _check_tables(path: Path, tables: Any) -> dict[str, Any]:
    ok = isinstance(tables, dict) and all(
        isinstance(tables.get(t, []), list) and all(isinstance(r, dict) for r in tables.get(t, [])) for t in _TABLES)
    ok = ok and all(isinstance(r.get("run_id"), int) for r in tables.get("runs", []))
    if not ok:
        raise BundleError(f"{path} is damaged: its {CATALOG} is malformed; nothing was imported")
    return tables


# -- progress ------------------------------------------------------------------------
class Progress:
    """A one-line bar on stderr: only on a terminal, and only once the work has taken ``after`` seconds
    (a small bundle prints just its summary). Redrawn at most ten times a second."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, after: float = 2.0,
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.done, self.label = max(int(total), 1), 0, label
        self._t0 = time.monotonic()
        self._next = self._t0 + after
        self.on = enabled and self.stream.isatty()
        self.shown = False

    def update(self, n: int) -> None:
        self.done += n
        if self.on and (now := time.monotonic()) >= self._next:
            self._next = now + 0.1
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.done / self.total)
        filled = int(frac * 30)
        rate = self.done / max(now - self._t0, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {frac:4.0%}  "
                          f"{human_bytes(self.done)} / {human_bytes(self.total)}  {human_bytes(rate)}/s ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


# -- command line --------------------------------------------------------------------
def add_commands(sub: Any) -> None:
    """Register ``pack`` and ``unpack`` on the ``ndustria`` command's subparsers."""
    pack_cmd = sub.add_parser(
        "pack", help="write a pipeline's results and run records to one file, to carry to another machine",
        description="Write every result of pipeline NAME's latest run (with --all-runs: of all its runs), with "
                    "the catalog rows of its runs (task calls, timings, metrics, profiles), to a bundle file. "
                    "`ndustria unpack` imports it into another cache directory.")
    pack_cmd.add_argument("name", metavar="NAME", help="the pipeline's name (Pipeline(name=...), or the script's stem)")
    pack_cmd.add_argument("-o", "--output", metavar="FILE",
                          help="the bundle to write (default NAME.tar.gz); a name ending in .tar is not compressed")
    pack_cmd.add_argument("--all-runs", action="store_true", help="results of every run of NAME, not the latest only")
    pack_cmd.add_argument("--cache-dir", dest="bundle_cache_dir", metavar="DIR", help="the cache to pack from")
    unpack_cmd = sub.add_parser(
        "unpack", help="import a bundle's results into this cache: a trust decision (a bundle holds pickles)",
        description="Import the results and run records of a bundle written by `ndustria pack`.\n\n" + TRUST_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    unpack_cmd.add_argument("bundle", metavar="BUNDLE", help="the bundle file (.tar.gz or .tar)")
    unpack_cmd.add_argument("--cache-dir", dest="bundle_cache_dir", metavar="DIR", help="the cache to import into")


def run_command(args: argparse.Namespace, cache_dir: Path) -> int:
    """Run ``ndustria pack`` or ``ndustria unpack``; the exit status."""
    if getattr(args, "bundle_cache_dir", None):
        cache_dir = Path(resolve_cache_dir(args.bundle_cache_dir).value)
    if args.command == "pack":
        if not (cache_dir / "catalog.sqlite").is_file():
            raise BundleError(f"no runs are recorded in {cache_dir}: run pipeline {args.name!r} first, then pack it")
        store, catalog = Store(cache_dir), Catalog(cache_dir, readonly=True)
        try:
            done = pack(store, catalog, args.name, args.output or f"{args.name}.tar.gz", all_runs=args.all_runs)
        finally:
            catalog.close()
        for line in done.left_out:
            print(f"Not packed: {line}", file=sys.stderr)
        runs = f"{len(done.runs)} run{'s' if len(done.runs) != 1 else ''}"
        print(f"Packed {done.entries} results ({human_bytes(done.size)}) of {runs} of {args.name!r} into {done.path} "
              f"({human_bytes(done.path.stat().st_size)})")
        return 0
    store, catalog = Store(cache_dir), Catalog(cache_dir)
    try:
        done_unpack = unpack(store, catalog, args.bundle)
    finally:
        catalog.close()
    for r in done_unpack.refused:
        print(f"Refused {r}", file=sys.stderr)
    total = done_unpack.imported + len(done_unpack.refused)
    print(f"Imported {done_unpack.imported} of {total} results and {len(done_unpack.runs)} run records of "
          f"{done_unpack.pipeline!r} into {cache_dir}, signed with your key")
    if done_unpack.refused:
        print(f"{len(done_unpack.refused)} damaged results were refused (above): their tasks are computed again "
              "where they are needed", file=sys.stderr)
        return 1
    return 0
