"""MPI script mode with real ranks: ``mpiexec -n N python script.py`` and ``Pipeline(parallel=True)``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, run_python, write_script

MPIEXEC = Path(sys.executable).parent / "mpiexec"
if not MPIEXEC.exists():  # the venv's own (pip install mpich) first, then the system's
    MPIEXEC = Path(shutil.which("mpiexec") or MPIEXEC)


@pytest.fixture(autouse=True)
def mpi_is_installed() -> None:
    """No silent skip: scripts/test.sh installs mpi4py and the mpich wheel, so their absence is a failure."""
    import mpi4py  # noqa: F401

    assert MPIEXEC.exists(), "no mpiexec: run `bash scripts/test.sh` (it installs the mpich wheel)"


def mpiexec(n: int, script: Path | str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


SCRIPT = """
import sys
from mpi4py import MPI
from ndustria import Pipeline, TaskError

pipe = Pipeline(name="ranks", parallel=True)

@pipe.AddFunction()
def square(x):
    print(f"squaring {x}")
    if x == int(sys.argv[1]):
        raise ValueError(f"cannot square {x}")
    return x * x

@pipe.AddFunction()
def total(values):
    return sum(values)

parts = [square(i) for i in range(6)]
t = total(parts)
rank = MPI.COMM_WORLD.Get_rank()
try:
    pipe.run()
except TaskError as exc:
    sys.stdout.write(f"rank {rank} TaskError {[f.task for f in exc.failures]}\\n")
    sys.stdout.flush()
    raise
sys.stdout.write(f"rank {rank} results {t.result()} {[p.result() for p in parts]}\\n")
sys.stdout.flush()
"""


def test_rank_0_schedules_the_others_execute_and_every_rank_reads_results(tmp_path: Path):
    script = write_script(tmp_path / "ranks.py", SCRIPT)
    proc = mpiexec(3, script, "-1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # mpiexec merges the ranks' output streams; lines of different ranks may touch, so search the text
    out = proc.stdout
    assert out.count("[Added Task]") == 7, "declarations from rank 0 only"
    assert "Initializing parallel run with 2 processes" in out
    running = re.findall(r"\[Rank (\d+)\] running: ", proc.stdout)
    assert len(running) == 7
    assert set(running) <= {"1", "2"}
    assert "[square(3)] squaring 3" in out, "a task's output reaches the user, marked with the task"
    for rank in range(3):
        assert f"rank {rank} results 55 [0, 1, 4, 9, 16, 25]" in out
    assert out.count("All done.") == 1

    again = run_python(script, "-1", cwd=tmp_path)  # without mpiexec: as before, all cached
    assert again.returncode == 0, again.stderr
    assert len([line for line in again.stdout.splitlines() if line.startswith("[Cache hit!]")]) == 7


def test_a_failing_task_raises_task_error_on_every_rank_and_never_hangs(tmp_path: Path):
    script = write_script(tmp_path / "ranks.py", SCRIPT)
    proc = mpiexec(3, script, "2", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "[Failed] square(2): ValueError: cannot square 2" in proc.stdout
    for rank in range(3):
        assert f"rank {rank} TaskError ['square(2)']" in proc.stdout
    assert "[Skipped] total(" in proc.stdout
    assert "cannot square 2" in proc.stderr  # the TaskError's traceback, naming the script's line as serial runs do
    assert f'File "{script}", line 12, in square' in proc.stderr and "<dynamic-code>" not in proc.stderr
    assert 'raise ValueError(f"cannot square {x}")' in proc.stderr


def test_the_tutorial_runs_under_mpiexec_then_hits_the_cache(tmp_path: Path):
    example = ROOT / "examples" / "pipeline_kwargs.py"
    proc = mpiexec(4, example, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert " Starting a run with 10 tasks." in out
    assert set(re.findall(r"\[Rank (\d+)\] running: ", proc.stdout)) <= {"1", "2", "3"}
    assert out.count("Saved result of") == 10
    again = run_python(example, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len([line for line in again.stdout.splitlines() if line.startswith("[Cache hit!]")]) == 10
    assert " Starting a run with 0 tasks." in again.stdout.splitlines()


def test_an_exception_on_one_rank_ends_the_job_instead_of_hanging_the_others(tmp_path: Path):
    script = write_script(tmp_path / "crash.py", """
        from mpi4py import MPI
        from ndustria import Pipeline

        pipe = Pipeline(name="crash", parallel=True)

        @pipe.AddFunction()
        def one(x):
            return x

        one(1)
        pipe.run()
        if MPI.COMM_WORLD.Get_rank() == 1:
            raise RuntimeError("rank 1 gives up")
        one(2)
        pipe.run()  # collective: would wait for rank 1 forever
    """)
    proc = mpiexec(3, script, cwd=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "rank 1 gives up" in proc.stderr + proc.stdout
