"""Helpers shared by tests that run real scripts in fresh interpreters."""

from __future__ import annotations

import os
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


def write_script(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def _touch(flag: str) -> str:
    Path(flag).touch()
    return "unpickled"


class Canary:
    """Unpickling it creates a file: proof that unpickling happened."""

    def __init__(self, flag: Path) -> None:
        self.flag = str(flag)

    def __reduce__(self):
        return (_touch, (self.flag,))
