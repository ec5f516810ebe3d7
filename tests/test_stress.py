"""Many processes, first use: N processes start at the same moment on a new account (a fresh HOME)
and a new cache, and every one of them gets correct results, with no error and no warning.

Every file one ndustria process creates and another reads (the signing key, the config file
``ndustria init`` writes, ``FORMAT``, the catalog, the lock file, the run and log files) is made
at that moment, by whichever process comes first, while the others read it (RELIABILITY.md,
"Shared files"). The processes import ndustria first, then wait at a barrier (a pipe the parent
closes: every read returns at once), so they truly reach ndustria's first use together.

Counts, for about a minute and a half on the 2-core CI machine (89 s measured; each round is a new
HOME and a new cache, so every round is a first use):

- first use: 20 rounds of 4 processes that each make and read every shared file, each round starting
  with another file, so each file's first use collides in 4 rounds (~1.1 s a round). Before the fix,
  53 of 60 such rounds failed.
- plain processes: 20 rounds of 4 pipelines plus a reader polling ``ndustria runs`` (as the
  JupyterLab sidebar does); every other round runs ``ndustria init`` in every process first (~1.4 s).
- ipyparallel: 2 rounds of a first parallel run on 4 engines (~9 s a round: starting a cluster).
- mpiexec: 5 rounds of ``mpiexec -n 3`` (~1 s a round).
- nbclient: 2 rounds of two kernels (~6 s a round: starting kernels).

There are no retries here: one failure fails the test. RELIABILITY.md ("Shared files") lists what
each race did before it was fixed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import AS_IN_A_TERMINAL

N_PROCESSES = 4  # the "four processes that start together" (2 cores: more than one per core)
FIRST_ROUNDS = 20
PLAIN_ROUNDS = 20
IPP_ROUNDS = 2
MPI_ROUNDS = 5
NB_ROUNDS = 2
DEADLOCK_GUARD = 300  # seconds: only so that a hang fails instead of blocking CI; never a timing check

SQUARES = sum(i * i for i in range(8))  # total() of the shared tasks
RAMP = sum(range(1000))


def fresh_env(home: Path) -> dict[str, str]:
    """The environment of a new user: a new HOME, none of ndustria's or Jupyter's settings, the venv's bin first."""
    drop = ("NDUSTRIA_", "XDG_", "JUPYTER_", "IPYTHONDIR", "MPLCONFIGDIR", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def key_file(home: Path) -> Path:
    return home / ".local" / "share" / "ndustria" / "secret.key"


def check_key_file(home: Path) -> None:
    """One whole key, nothing left over beside it."""
    path = key_file(home)
    text = path.read_text()
    assert len(bytes.fromhex(text.strip())) == 32, text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]


def check_catalog(cache: Path, runs: int, pipeline: str) -> None:
    with sqlite3.connect(f"file:{cache / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        states = [r[0] for r in db.execute("SELECT state FROM runs WHERE pipeline = ?", (pipeline,))]
    assert states == ["done"] * runs


# -- first use: each shared file made by one process while the others read it ---------------------
FIRST_USE = r"""
import contextlib, io, json, os, sys, traceback

barrier, rank, first = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
from ndustria.record.catalog import Catalog
from ndustria.show.cli import main as ndustria_cli
from ndustria.store.entries import Store
from ndustria.store.trust import load_keyring

home = os.environ["HOME"]
cache = os.path.join(home, "cache")

def cli(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = ndustria_cli(list(args))
    assert code == 0, out.getvalue()
    return out.getvalue()

def key():  # the signing key (a new account has none)
    report["signer"] = load_keyring().signer

def init():  # the config file: written by every process, read by each right after its own write
    cli("init", "--cache-dir", cache)
    assert f"cache_dir = {cache}" in cli("config")

def format_():  # a new cache's FORMAT file
    Store(cache)

def catalog():  # a new catalog: half the processes create it, the others read it as `ndustria runs` does
    if rank % 2:
        report["runs"] = cli("--cache-dir", cache, "runs").splitlines()[0]
    else:  # as a Pipeline does: the cache directory first
        Store(cache)
        Catalog(cache).close()

def trusted():  # a team's key directory: each member's key is made there while the others read the directory
    saved = dict(os.environ)
    os.environ["NDUSTRIA_SECRET_KEY_FILE"] = os.path.join(home, "team", f"member{rank}.key")
    os.environ["NDUSTRIA_CONFIG_FILE"] = os.path.join(home, "team.toml")
    try:
        ring = load_keyring()
        report["team"] = [ring.signer in ring.trusted, len(ring.trusted)]
    finally:
        os.environ.clear()
        os.environ.update(saved)

steps = [key, init, format_, catalog, trusted]
report = {"rank": rank, "errors": []}
print("ready", flush=True)
os.read(barrier, 1)  # returns when the parent closes the pipe: every process at the same moment
for step in steps[first:] + steps[:first]:
    try:
        step()
    except BaseException:
        report["errors"].append(traceback.format_exc())
print(json.dumps(report), flush=True)
"""
FIRST_STEPS = 5


def first_use_round(base: Path, index: int, n: int = N_PROCESSES) -> None:
    """One round on a new HOME: every process starts with the same step (they rotate with ``index``)."""
    home = base / f"first{index}"
    home.mkdir()
    (home / "team").mkdir()
    (home / "team.toml").write_text(f'trusted_keys = "{home / "team"}"\n')
    script = base / "first_use.py"
    if not script.exists():
        script.write_text(FIRST_USE)
    commands = [[sys.executable, str(script), str(rank), str(index % FIRST_STEPS)] for rank in range(n)]
    outcomes = start_together(commands, fresh_env(home), cwd=home)
    reports = []
    for rank, (code, out, err) in enumerate(outcomes):
        where = f"round {index}, process {rank}: exit {code}\n{out}\n{err}"
        assert code == 0 and err == "", where
        report = json.loads(out.splitlines()[-1])
        assert report["errors"] == [], where
        assert report["team"][0] and 1 <= report["team"][1] <= n, where
        if "runs" in report:
            assert report["runs"].startswith(("No runs", "RUN ")), where
        reports.append(report)
    assert len({r["signer"] for r in reports}) == 1, "every process signs with the one key of the account"
    check_key_file(home)
    assert sorted(p.name for p in (home / "team").iterdir()) == [f"member{r}.key" for r in range(n)]
    config = home / ".config" / "ndustria" / "config.toml"
    assert f'cache_dir = "{home / "cache"}"' in config.read_text().splitlines()
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.toml"]
    assert (home / "cache" / "FORMAT").read_text() == "ndustria-store 2\n"
    with sqlite3.connect(home / "cache" / "catalog.sqlite") as db:
        assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("1",)


# -- plain processes -----------------------------------------------------------------------------
CHILD = r'''
import contextlib, io, json, os, sys, time, traceback, warnings

barrier, rank, role, init = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "init"
import numpy as np
from ndustria import Pipeline
from ndustria.show.cli import main as ndustria_cli

def cli(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = ndustria_cli(list(args))
    return code, out.getvalue()

print("ready", flush=True)
os.read(barrier, 1)  # returns when the parent closes the pipe: every process at the same moment
report = {"rank": rank, "warnings": [], "errors": []}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        if init:
            code, out = cli("init", "--cache-dir", os.path.join(os.environ["HOME"], "cache-init"))
            assert code == 0, out
        if role == "run":
            pipe = Pipeline("stress", verbose=False, timeit=True)

            @pipe.AddFunction()
            def square(x):
                return x * x

            @pipe.AddFunction()
            def total(values):
                return sum(values)

            @pipe.AddFunction()
            def ramp(n):
                return np.arange(n)

            shared = total([square(i) for i in range(8)])
            mine = square(100 + rank)
            array = ramp(1000)
            pipe.run()
            report["results"] = [shared.result(), mine.result(), int(array.result().sum())]
            report["cache"] = str(pipe.cache_dir)
            code, out = cli("-l", "stress")  # the log file, which the other processes are replacing
            report["log"] = [code, out.splitlines()[0] if out else ""]
            timing = (pipe.cache_dir / "stress_timing.csv").read_text().splitlines()
            report["timing"] = [timing[0], len(timing) > 1]
        else:  # a reader, as the JupyterLab sidebar or a user typing `ndustria runs` while the runs start
            seen = 0
            for _ in range(300):
                code, out = cli("runs")
                assert code == 0, out
                seen = max(seen, out.count(" done "))
                if seen == int(sys.argv[5]):
                    break
                time.sleep(0.01)
            report["seen"] = seen
    except BaseException:
        report["errors"].append(traceback.format_exc())
report["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
print(json.dumps(report), flush=True)
'''


def start_together(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[tuple[int, str, str]]:
    """Start every command, wait until each printed "ready", then release them all at once by closing
    the barrier pipe (its read end is each command's first argument); (returncode, stdout, stderr) each."""
    read_end, write_end = os.pipe()
    procs = []
    try:
        for cmd in commands:
            procs.append(subprocess.Popen([*cmd[:2], str(read_end), *cmd[2:]], pass_fds=(read_end,), env=env,
                                          cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, start_new_session=True, **AS_IN_A_TERMINAL))
        for p in procs:
            line = p.stdout.readline()
            assert line == "ready\n", (line, p.stderr.read() if p.poll() is not None else "")
    finally:
        os.close(read_end)
        os.close(write_end)  # the barrier opens
    results = []
    for p in procs:
        out, err = p.communicate(timeout=DEADLOCK_GUARD)
        results.append((p.returncode, out, err))
    return results


def plain_round(base: Path, index: int, n: int = N_PROCESSES) -> None:
    """One round: ``n`` pipelines and a reader start together on a new HOME; every result checked."""
    home = base / f"round{index}"
    home.mkdir()
    init = "init" if index % 2 == 0 else "no-init"
    script = base / "child.py"
    if not script.exists():
        script.write_text(CHILD)
    commands = [[sys.executable, str(script), str(rank), "run", init] for rank in range(n)]
    commands.append([sys.executable, str(script), str(n), "read", "no-init", str(n)])
    outcomes = start_together(commands, fresh_env(home), cwd=home)
    cache = home / ("cache-init" if init == "init" else ".ndustria_cache")
    for rank, (code, out, err) in enumerate(outcomes):
        where = f"round {index}, process {rank}: exit {code}\n{out}\n{err}"
        assert code == 0 and err == "", where
        report = json.loads(out.splitlines()[-1])
        assert report["errors"] == [] and report["warnings"] == [], where
        if rank < n:
            assert report["results"] == [SQUARES, (100 + rank) ** 2, RAMP], where
            assert report["cache"] == str(cache), where
            assert report["log"][0] == 0 and report["log"][1].startswith("ndustria log of pipeline 'stress'"), where
            assert report["timing"][0].startswith("task,") and report["timing"][1], where
        else:
            assert 0 <= report["seen"] <= n, where
    check_key_file(home)
    check_catalog(cache, n, "stress")
    assert (cache / "FORMAT").read_text() == "ndustria-store 2\n"
    if init == "init":
        config = home / ".config" / "ndustria" / "config.toml"
        assert f'cache_dir = "{cache}"' in config.read_text().splitlines()
        assert sorted(p.name for p in config.parent.iterdir()) == ["config.toml"]
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_first_use_of_every_shared_file_by_processes_starting_together(tmp_path: Path) -> None:
    """FIRST_ROUNDS rounds: N_PROCESSES processes released at once each make and read every shared file
    (the key, the config file, FORMAT, the catalog, a team's key directory), each round starting with
    another of them, so that every file's first use collides in FIRST_ROUNDS / 5 rounds."""
    for index in range(FIRST_ROUNDS):
        first_use_round(tmp_path, index)


@pytest.mark.slow
def test_processes_starting_together_on_a_new_account(tmp_path: Path) -> None:
    """PLAIN_ROUNDS rounds of N_PROCESSES pipelines (+ a reader) released at the same moment."""
    for index in range(PLAIN_ROUNDS):
        plain_round(tmp_path, index)


# -- ipyparallel engines ------------------------------------------------------------------------
DRIVER = r'''
import json, sys
from ndustria import Pipeline

pipe = Pipeline("engines", parallel=True, engines=int(sys.argv[1]), verbose=False, timeit=True)

@pipe.AddFunction()
def square(x):
    return x * x

@pipe.AddFunction()
def total(values):
    return sum(values)

parts = [square(i) for i in range(16)]
t = total(parts)
pipe.run()  # the first round sends one task to each engine: every engine saves its first result at once
print(json.dumps([t.result(), [p.result() for p in parts]]), flush=True)
pipe.close()
'''


def engine_pids(cache: Path, pipeline: str) -> set[int]:
    with sqlite3.connect(f"file:{cache / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        return {r[0] for r in db.execute("SELECT t.pid FROM task_runs t JOIN runs r ON t.run_id = r.run_id"
                                         " WHERE r.pipeline = ? AND t.status = 'done'", (pipeline,))}


def ipp_round(base: Path, index: int) -> None:
    """A new user's first ``Pipeline(parallel=True)`` with N_PROCESSES engines, on a new HOME."""
    script = base / "driver.py"
    if not script.exists():
        script.write_text(DRIVER)
    home = base / f"ipp{index}"
    home.mkdir()
    proc = subprocess.run([sys.executable, str(script), str(N_PROCESSES)], env=fresh_env(home), cwd=home,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLOCK_GUARD,
                          start_new_session=True, **AS_IN_A_TERMINAL)
    where = f"round {index}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0 and "Error" not in proc.stderr and "Warning" not in proc.stderr, where
    assert json.loads(proc.stdout.splitlines()[-1]) == [sum(i * i for i in range(16)),
                                                        [i * i for i in range(16)]], where
    cache = home / ".ndustria_cache"
    assert len(engine_pids(cache, "engines")) >= 2, "the tasks ran on several engines"
    check_key_file(home)
    check_catalog(cache, 1, "engines")


@pytest.mark.slow
def test_a_first_parallel_run_on_ipyparallel_engines_on_a_new_account(tmp_path: Path) -> None:
    """IPP_ROUNDS rounds: a new user's first ``Pipeline(parallel=True)``; its N_PROCESSES engines start
    together and each stores its first result at the same moment (the signing key is made then)."""
    for index in range(IPP_ROUNDS):
        ipp_round(tmp_path, index)


# -- mpiexec ranks -------------------------------------------------------------------------------
RANKS = r'''
import json, sys
from mpi4py import MPI
from ndustria import Pipeline

pipe = Pipeline("ranks", parallel=True, verbose=False, timeit=True)

@pipe.AddFunction()
def square(x):
    return x * x

@pipe.AddFunction()
def total(values):
    return sum(values)

parts = [square(i) for i in range(12)]
t = total(parts)
pipe.run()
rank = MPI.COMM_WORLD.Get_rank()
with open(f"rank{rank}.json", "w") as fh:
    json.dump([t.result(), [p.result() for p in parts]], fh)
'''


def mpi_round(base: Path, index: int) -> None:
    """``mpiexec -n 3`` on a new HOME: rank 0 schedules, ranks 1 and 2 store their first results at once."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    assert mpiexec.exists(), "no mpiexec in the venv: run `bash scripts/test.sh` (it installs the mpich wheel)"
    script = base / "ranks.py"
    if not script.exists():
        script.write_text(RANKS)
    home = base / f"mpi{index}"
    home.mkdir()
    proc = subprocess.run([str(mpiexec), "-n", "3", sys.executable, str(script)], env=fresh_env(home),
                          cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=DEADLOCK_GUARD, start_new_session=True, **AS_IN_A_TERMINAL)
    where = f"round {index}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0 and proc.stderr == "", where
    expected = [sum(i * i for i in range(12)), [i * i for i in range(12)]]
    for rank in range(3):
        assert json.loads((home / f"rank{rank}.json").read_text()) == expected, where
    cache = home / ".ndustria_cache"
    assert len(engine_pids(cache, "ranks")) == 2, "ranks 1 and 2 computed"
    check_key_file(home)
    check_catalog(cache, 1, "ranks")


@pytest.mark.slow
def test_mpiexec_ranks_on_a_new_account(tmp_path: Path) -> None:
    """MPI_ROUNDS rounds of ``mpiexec -n 3`` on a new HOME; every rank reads every result."""
    import mpi4py  # noqa: F401 - installed by scripts/test.sh: missing is a failure

    for index in range(MPI_ROUNDS):
        mpi_round(tmp_path, index)


# -- two notebooks -------------------------------------------------------------------------------
NB_RUNNER = r'''
import sys
import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
# IPC sockets, one prefix per kernel: with TCP, jupyter_client picks free ports and frees them for the
# kernel to bind, and two kernels started at the same moment took the same port (ZMQError: Address
# already in use; the kernel never answered).
km = KernelManager(kernel_name="python3", transport="ipc", ip=sys.argv[3])
NotebookClient(nb, km=km, timeout=240, allow_errors=True).execute()
nbformat.write(nb, sys.argv[2])
'''


def notebook_cells(ready: Path, go: Path, number: int) -> list[str]:
    return [
        # imports first, then wait: both kernels reach ndustria's first use together
        f"import json, os, time, pathlib\nimport ndustria, ndustria_nb\nK = {number}\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.001)",
        "%load_ext ndustria",
        "from ndustria import task\n\n@task\ndef square(x):\n    return x * x\n\n"
        "@task\ndef total(values):\n    return sum(values)",
        "%%ndustria\nparts = [square(i) for i in range(8)]\nt = total(parts)",
        "%%task mine\nmine = (100 + K) ** 2",
        "print(json.dumps([t.result(), [p.result() for p in parts], mine]))",
    ]


def notebook_round(base: Path, index: int) -> None:
    """Two kernels under nbclient on a new HOME, released together by the file "go"; every output checked."""
    import nbformat

    runner = base / "runner.py"
    if not runner.exists():
        runner.write_text(NB_RUNNER)
    home = base / f"nb{index}"
    home.mkdir()
    go = home / "go"
    procs = []
    for number in range(2):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in notebook_cells(home / f"ready{number}", go, number)]
        nbformat.write(nb, home / f"in{number}.ipynb")
        procs.append(subprocess.Popen([sys.executable, str(runner), f"in{number}.ipynb", f"out{number}.ipynb",
                                       f"kernel{number}"],  # relative to home: short socket paths
                                      env=fresh_env(home), cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True, **AS_IN_A_TERMINAL))
    deadline = time.monotonic() + DEADLOCK_GUARD
    while not all((home / f"ready{n}").exists() for n in range(2)):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            break  # a kernel failed before the barrier: its outputs say why
        time.sleep(0.005)
    go.touch()
    results = [p.communicate(timeout=DEADLOCK_GUARD) for p in procs]
    for number, (p, (out, err)) in enumerate(zip(procs, results)):
        where = f"round {index}, kernel {number}"
        assert p.returncode == 0, f"{where}:\n{out}\n{err}"
        nb = nbformat.read(home / f"out{number}.ipynb", as_version=4)
        texts = ["".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) + o.get("evalue", "")
                         for o in cell.outputs) for cell in nb.cells]
        errors = [o for cell in nb.cells for o in cell.outputs if o.output_type == "error"]
        assert errors == [], f"{where}: {errors}"
        assert not any("Warning" in t for t in texts), f"{where}: {texts}"
        assert json.loads(texts[-1]) == [SQUARES, [i * i for i in range(8)], (100 + number) ** 2], f"{where}: {texts}"
    check_key_file(home)
    check_catalog(home / ".ndustria_cache", 2, "notebook")  # the %%ndustria cells' runs


@pytest.mark.slow
def test_two_notebooks_opened_at_once_on_a_new_account(tmp_path: Path) -> None:
    """NB_ROUNDS rounds: two kernels under nbclient, on a new HOME and the default cache, reach
    ``%load_ext ndustria``, ``%%ndustria`` and ``%%task`` cells at the same moment."""
    for index in range(NB_ROUNDS):
        notebook_round(tmp_path, index)
