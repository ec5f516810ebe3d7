"""Helpers shared by tests that run real scripts in fresh interpreters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(script: Path | str, *args: str, cwd: Path | None = None, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a Python script in a fresh interpreter with the test's environment."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def _as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


AS_IN_A_TERMINAL = {"preexec_fn": _as_in_a_terminal}
"""Popen keywords: the child gets what a command typed in a terminal gets, Ctrl-C (SIGINT) and SIGTERM at
their default actions and no blocked signal, whatever the test process inherited. A suite started as a
background job of a script (`cmd &` without job control) inherits SIGINT ignored, and Python then never
raises KeyboardInterrupt; some CI runners start jobs with signals blocked."""


def write_script(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


_LOCK_PROBE = """
import fcntl, os, sys
from ndustria.store import locks
try:
    fd = os.open(os.path.join(sys.argv[1], locks.LOCK_DIR, locks.LOCK_FILE), os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, locks.offset_of(sys.argv[2]))
    print("free")
except FileNotFoundError:
    print("no lock file")
except OSError:
    print("held")
"""


def lock_state(root: Path | str, key: str) -> str:
    """Whether another process could take ``key``'s compute lock in cache ``root`` right now:
    "free", "held" or "no lock file"."""
    out = subprocess.run([sys.executable, "-c", _LOCK_PROBE, str(root), key], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def _touch(flag: str) -> str:
    Path(flag).touch()
    return "unpickled"


class Canary:
    """Unpickling it creates a file: proof that unpickling happened."""

    def __init__(self, flag: Path) -> None:
        self.flag = str(flag)

    def __reduce__(self):
        return (_touch, (self.flag,))


class StoredEntry:
    """The bytes of one cache entry as stored -- a file under objects/, or a row of objects.sqlite for
    a small one -- read and rewritten in place, as a bad disk or an attacker with write access would."""

    def __init__(self, store, key: str) -> None:
        import sqlite3

        self.store, self.key = store, key
        store.flush()
        with sqlite3.connect(store.root / "objects.sqlite") as db:
            self.small = db.execute("SELECT 1 FROM blob_keys WHERE key = ?", (key,)).fetchone() is not None
        self.path = store.path(key)

    def read_bytes(self) -> bytes:
        if not self.small:
            return self.path.read_bytes()
        size, f = self.store.open_entry(self.key)
        with f:
            return f.read()

    def write_bytes(self, data: bytes) -> None:
        import sqlite3

        if not self.small:
            self.path.write_bytes(data)
            return
        with sqlite3.connect(self.store.root / "objects.sqlite", timeout=30) as db:
            db.execute("UPDATE blob_data SET data = ? WHERE id = (SELECT id FROM blob_keys WHERE key = ?)", (data, self.key))
            db.execute("UPDATE blob_keys SET size = ? WHERE key = ?", (len(data), self.key))

    @property
    def size(self) -> int:
        return len(self.read_bytes())

    def flip(self, offset: int) -> None:
        """Invert the bits of one byte."""
        raw = bytearray(self.read_bytes())
        raw[offset] ^= 0x5A
        self.write_bytes(bytes(raw))


def spy_fsync(monkeypatch, delay_for: str | None = None, done: list[float] | None = None) -> list[str]:
    """The paths this process fsyncs from now on (os.open and os.fsync still do their work). With
    ``delay_for``, an fsync of that path first waits 0.5 s and then appends its end (monotonic) to ``done``."""
    import time

    synced: list[str] = []
    opened: dict[int, str] = {}
    real_fsync, real_open = os.fsync, os.open

    def open_(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = os.fspath(path)
        return fd

    def fsync(fd):
        path = opened.get(fd, "?")
        synced.append(path)
        if path == delay_for:
            time.sleep(0.5)
            if done is not None:
                done.append(time.monotonic())
        real_fsync(fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    return synced
