"""One install gives the product: a fresh venv, the README's first command and nothing else, then the
whole script tutorial and every CLI report it names, as a newcomer runs them (issue 18).

The checkout is copied (its tracked and new files, as `git ls-files` sees them) so the install cannot
touch this one; the venv gets packages from the index as a user's would (the user's pip cache, when
there is one, only saves downloads). HOME is a fresh folder: the default cache directory, config file
and signing key of a first-time user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

EXAMPLES = ("simple_example.py", "rerun_test.py", "pipeline_kwargs.py", "iterations_test.py")


def readme_first_command() -> str:
    """The first line of the README's first code block, without its comment."""
    block = re.search(r"```bash\n(.*?)\n", (ROOT / "README.md").read_text()).group(1)
    return block.split("#")[0].strip()


def copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the checkout installed into a new venv with the README's first command."""
    tmp = tmp_path_factory.mktemp("fresh")
    checkout, home = tmp / "ndustria", tmp / "home"
    copy_checkout(checkout)
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    bin_dir = tmp / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NDUSTRIA_", "VIRTUAL_ENV", "PYTHON", "JUPYTER"))}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip_cache = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip"  # the user's, whatever HOME says
    if pip_cache.is_dir():
        env["PIP_CACHE_DIR"] = str(pip_cache)
    command = readme_first_command()
    assert command == "pip install . && python examples/simple_example.py", command
    first = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True,
                           timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return {"env": env, "checkout": checkout, "home": home, "first": first, "bin": bin_dir}


def run(fresh: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd or fresh["home"], env=fresh["env"], capture_output=True, text=True,
                          timeout=600)


def test_the_readme_command_installs_and_runs_the_tutorial(fresh):
    out = fresh["first"].stdout
    assert out.count("Saved result of") == 10 and out.rstrip().endswith("All done.")
    assert (fresh["home"] / ".ndustria_cache" / "catalog.sqlite").is_file()  # the default cache directory


def test_every_example_and_every_report_of_the_tutorial(fresh):
    for script in EXAMPLES:  # the README's order, from another directory ("run them from any directory")
        done = run(fresh, "python", str(fresh["checkout"] / "examples" / script))
        assert done.returncode == 0, f"{script}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert done.stdout.rstrip().endswith("All done.") or script == "iterations_test.py", done.stdout[-500:]
    kwargs = run(fresh, "python", str(fresh["checkout"] / "examples" / "pipeline_kwargs.py"))
    assert "Starting a run with 0 tasks" in kwargs.stdout  # the second time: every task is a cache hit

    timing = run(fresh, "ndustria", "-t", "kwargs")
    assert timing.returncode == 0, timing.stderr
    assert "matrix_multiplication(N=1600)" in timing.stdout and "COMPUTED BY" in timing.stdout
    # the latest run's tasks are cache hits: each shows the run of pipeline_kwargs.py that computed it
    rows = [line for line in timing.stdout.splitlines() if line.startswith("matrix_") and "(" in line.split()[0]]
    assert len(rows) == 10 and all(re.search(r" cached +run \d+ \(kwargs, 20", r) for r in rows), rows
    memory = run(fresh, "ndustria", "-m", "kwargs")
    assert memory.returncode == 0, memory.stderr
    assert "HEAP PEAK" in memory.stdout and "MiB" in memory.stdout and "run it with" not in memory.stdout
    profile = run(fresh, "ndustria", "-p", "kwargs")
    assert profile.returncode == 0, profile.stderr
    assert profile.stdout.count("Task: ") == 10 and "return a @ b" in profile.stdout
    html = fresh["home"] / "kwargs.html"
    figures = run(fresh, "ndustria", "-p", "kwargs", "--html", str(html))
    assert figures.returncode == 0 and "Plotly.newPlot" in html.read_text(), figures.stderr
    runs = run(fresh, "ndustria", "runs")
    assert runs.returncode == 0 and "SKIPPED" in runs.stdout and "simple_example" in runs.stdout, runs.stderr
    listing = run(fresh, "ndustria", "cache", "ls")
    assert listing.returncode == 0 and "most recently used first" in listing.stdout, listing.stderr
    assert "matrix_parameters(matrix_multiplication(N=2048))" in listing.stdout


def test_the_notebook_layer_and_the_sidebar_come_with_it(fresh):
    probe = run(fresh, "python", "-c", "import ipywidgets, plotly, line_profiler, ipyparallel, IPython; "
                                       "import ndustria_nb.magics, ndustria_nb.widgets; print('ok')")
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr
    lab = run(fresh, "jupyter", "labextension", "list")
    assert "ndustria-labextension" in lab.stdout + lab.stderr and "enabled" in lab.stdout + lab.stderr
    server = run(fresh, "jupyter", "server", "extension", "list")
    assert re.search(r"ndustria_nb\b.*enabled", server.stdout + server.stderr), server.stdout + server.stderr


def test_what_is_not_installed_is_said_with_a_command_that_fits_this_install(fresh):
    """MPI stays an extra: asking for it says how to add it to *this* install (the folder it came from),
    never a PyPI name that would fetch another version, and where mpiexec comes from."""
    code = "from ndustria import Pipeline\nPipeline(backend='mpi')\n"
    proc = run(fresh, "python", "-c", code)
    assert proc.returncode == 1 and "ConfigError" in proc.stderr
    assert f"pip install '{fresh['checkout']}[mpi]'" in proc.stderr, proc.stderr
    assert "pip install mpich mpi4py" in proc.stderr and "pip install 'ndustria[mpi]" not in proc.stderr
