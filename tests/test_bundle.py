"""`pack` / `unpack`, as users do it: a script runs on one machine (its own HOME, cache directory and
signing key), its results travel in a bundle, and the same script on another machine (another HOME,
cache and key) finds them all cached."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import run_python, write_script

SCRIPT = """
    import os, sys
    import numpy as np
    from ndustria import Pipeline

    pipe = Pipeline(name="moving", timeit=True)

    @pipe.AddFunction()
    def make(n):
        return np.arange(n, dtype=np.float64) * 1.5

    @pipe.AddFunction()
    def total(a, b):
        return {"sum": float(a.sum() + b.sum()), "n": len(a) + len(b)}

    n = int(os.environ.get("FIRST", "1000"))
    a, b = make(n), make(2000)
    t = total(a, b)
    pipe.run()
    print("RESULTS", a.result()[:3].tolist(), float(a.result().sum()), float(b.result().sum()), t.result())
    if len(sys.argv) > 1:
        pipe.pack(save_to=sys.argv[1])
"""


def machine(root: Path) -> dict[str, str]:
    """The environment of a user on another machine: HOME, cache directory, signing key, config file."""
    (root / "home").mkdir(parents=True)
    (root / "work").mkdir()
    return {"HOME": str(root / "home"), "NDUSTRIA_CACHE_DIR": str(root / "cache"),
            "NDUSTRIA_SECRET_KEY_FILE": str(root / "home" / "secret.key"),
            "NDUSTRIA_CONFIG_FILE": str(root / "home" / "config.toml"), "WORK": str(root / "work")}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ndustria", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, input="", cwd=env["WORK"])


def run_script(env: dict[str, str], *args: str, first: int = 1000) -> subprocess.CompletedProcess:
    script = write_script(Path(env["WORK"]) / "moving.py", SCRIPT)
    proc = run_python(script, *args, cwd=Path(env["WORK"]), env={**env, "FIRST": str(first)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def results(proc: subprocess.CompletedProcess) -> str:
    return next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS"))


def computed(proc: subprocess.CompletedProcess) -> list[str]:
    """The tasks a run computed (saved a result of)."""
    return [line.split("Saved result of ", 1)[1].split(" to ")[0] for line in proc.stdout.splitlines()
            if line.startswith("Saved result of ")]


def all_hits(proc: subprocess.CompletedProcess) -> bool:
    out = proc.stdout
    return not computed(proc) and "[Recompute]" not in out and out.count("[Cache hit!]") == 3 and \
        "Warning" not in proc.stderr


@pytest.fixture
def there(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Two machines: where the results are computed and packed, and where they are unpacked."""
    return machine(tmp_path / "cluster"), machine(tmp_path / "laptop")


def packed(here: dict[str, str], tmp_path: Path) -> tuple[Path, str]:
    """Run the script on ``here`` and pack it from the script (``pipe.pack``); the bundle, the results."""
    bundle = tmp_path / "moving.tar.gz"
    first = run_script(here, str(bundle))
    assert sorted(computed(first)) == ["make(1000)", "make(2000)", "total(make(1000), make(2000))"]
    assert bundle.is_file()
    return bundle, results(first)


def stored_keys(env: dict[str, str]) -> set[str]:
    objects = Path(env["NDUSTRIA_CACHE_DIR"]) / "objects"
    return {p.name for p in objects.glob("*/*")} if objects.is_dir() else set()


def rewrite(bundle: Path, target: Path, change=None, keep=None) -> None:
    """Copy a bundle member by member, ``change(name, data)`` altering data, ``keep(index)`` dropping members."""
    with tarfile.open(bundle, "r:gz") as src, tarfile.open(target, "w:gz" if target.suffix == ".gz" else "w") as dst:
        for i, member in enumerate(src.getmembers()):
            if keep is not None and not keep(i):
                continue
            data = src.extractfile(member).read()
            data = change(member.name, data) if change else data
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))


def test_unpacked_results_are_cache_hits_with_the_same_values(there, tmp_path):
    here, laptop = there
    bundle, expected = packed(here, tmp_path)
    proc = cli(laptop, "unpack", str(bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Imported 3 of 3 results" in proc.stdout
    again = run_script(laptop)
    assert all_hits(again), again.stdout + again.stderr
    assert results(again) == expected
    assert cli(laptop, "cache", "verify").returncode == 0  # signed with the laptop's own key, checksums right
    assert Path(laptop["NDUSTRIA_SECRET_KEY_FILE"]).read_text() != Path(here["NDUSTRIA_SECRET_KEY_FILE"]).read_text()


def test_the_packed_runs_show_in_reports_and_the_sidebar(there, tmp_path):
    here, laptop = there
    bundle, _ = packed(here, tmp_path)
    assert cli(laptop, "unpack", str(bundle)).returncode == 0
    runs = cli(laptop, "runs")
    assert runs.returncode == 0 and "moving" in runs.stdout, runs.stdout + runs.stderr
    timing = cli(laptop, "-t", "moving")
    assert timing.returncode == 0, timing.stdout + timing.stderr
    for task in ("make(1000)", "make(2000)", "total(make(1000), make(2000))"):
        assert task in timing.stdout
    from ndustria_nb.server import core

    cache = Path(laptop["NDUSTRIA_CACHE_DIR"])
    (run,) = [r for r in core.list_runs(cache) if r["pipeline"] == "moving"]
    assert run["counts"]["done"] == 3
    tasks = core.run_tasks(cache, run["run_id"])["tasks"]
    assert {t["task"] for t in tasks} == {"make(1000)", "make(2000)", "total(make(1000), make(2000))"}
    assert all(t["status"] == "done" and t["duration"] is not None for t in tasks)


def test_cli_pack_takes_the_latest_run_or_all_runs(there, tmp_path):
    here, laptop = there
    run_script(here, first=1000)
    run_script(here, first=3000)  # the latest run: make(3000), make(2000), total(...)
    latest, every = tmp_path / "latest.tar.gz", tmp_path / "every.tar"
    proc = cli(here, "pack", "moving", "-o", str(latest))
    assert proc.returncode == 0 and "Packed 3 results" in proc.stdout, proc.stdout + proc.stderr
    proc = cli(here, "pack", "moving", "-o", str(every), "--all-runs")
    assert proc.returncode == 0 and "Packed 5 results" in proc.stdout, proc.stdout + proc.stderr
    assert cli(laptop, "unpack", str(latest)).returncode == 0
    assert all_hits(run_script(laptop, first=3000))
    assert "make(1000)" in computed(run_script(laptop, first=1000))  # not in the latest run's bundle
    other = machine(tmp_path / "desktop")
    assert cli(other, "unpack", str(every)).returncode == 0
    assert all_hits(run_script(other, first=1000)) and all_hits(run_script(other, first=3000))


def test_an_altered_entry_is_refused_by_name_and_only_its_task_recomputes(there, tmp_path):
    here, laptop = there
    bundle, expected = packed(here, tmp_path)
    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    victim = next(e for e in manifest["entries"] if e["task"] == "make(2000)")

    def flip(name: str, data: bytes) -> bytes:
        if name != f"objects/{victim['key'][:2]}/{victim['key']}":
            return data
        pos = len(data) - 100  # inside the array's bytes
        return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]

    altered = tmp_path / "altered.tar.gz"
    rewrite(bundle, altered, change=flip)
    proc = cli(laptop, "unpack", str(altered))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "make(2000)" in proc.stderr and victim["key"] in proc.stderr and "checksum" in proc.stderr
    assert "Imported 2 of 3 results" in proc.stdout
    assert victim["key"] not in stored_keys(laptop) and len(stored_keys(laptop)) == 2
    verify = cli(laptop, "cache", "verify")
    assert verify.returncode == 0 and "0 damaged" in verify.stdout, verify.stdout
    from ndustria.record.catalog import Catalog

    catalog = Catalog(laptop["NDUSTRIA_CACHE_DIR"])
    assert catalog.entry(victim["key"]) is None  # the refused entry's row is not imported
    catalog.close()
    again = run_script(laptop)
    assert computed(again) == ["make(2000)"], again.stdout
    assert results(again) == expected


@pytest.mark.parametrize("how", ["cut gzip", "missing entry"])
def test_a_truncated_bundle_imports_nothing(there, tmp_path, how):
    here, laptop = there
    bundle, _ = packed(here, tmp_path)
    broken = tmp_path / ("broken.tar.gz" if how == "cut gzip" else "broken.tar")
    if how == "cut gzip":
        broken.write_bytes(bundle.read_bytes()[: bundle.stat().st_size * 2 // 3])
    else:  # a plain tar cut right after a member: the last entry is gone
        rewrite(bundle, broken, keep=lambda i: i < 4)
    proc = cli(laptop, "unpack", str(broken))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "truncated" in proc.stderr and "nothing was imported" in proc.stderr
    cache = Path(laptop["NDUSTRIA_CACHE_DIR"])
    assert stored_keys(laptop) == set() and list((cache / "tmp").iterdir()) == []
    assert "No runs" in cli(laptop, "runs").stdout
    assert len(computed(run_script(laptop))) == 3


def test_unpacking_twice_changes_nothing(there, tmp_path):
    here, laptop = there
    bundle, expected = packed(here, tmp_path)
    assert cli(laptop, "unpack", str(bundle)).returncode == 0
    runs, entries = cli(laptop, "runs").stdout, cli(laptop, "cache", "ls").stdout
    assert cli(laptop, "unpack", str(bundle)).returncode == 0
    assert cli(laptop, "runs").stdout == runs
    assert [line.split()[0] for line in cli(laptop, "cache", "ls").stdout.splitlines()] == \
        [line.split()[0] for line in entries.splitlines()]
    again = run_script(laptop)
    assert all_hits(again) and results(again) == expected


def test_round_trip_back_to_the_first_machine_adds_no_duplicate_runs(there, tmp_path):
    here, laptop = there
    bundle, _ = packed(here, tmp_path)
    before = cli(here, "runs").stdout
    assert cli(here, "unpack", str(bundle)).returncode == 0  # the runs are already there
    assert cli(here, "runs").stdout == before
    assert all_hits(run_script(here))


def test_pack_of_a_pipeline_that_never_ran_is_a_clear_error(there, tmp_path):
    here, _ = there
    target = tmp_path / "none.tar.gz"
    proc = cli(here, "pack", "moving", "-o", str(target))
    assert proc.returncode == 2 and "run pipeline 'moving' first" in proc.stderr, proc.stderr
    run_script(here)
    proc = cli(here, "pack", "nosuch", "-o", str(target))
    assert proc.returncode == 2 and "'nosuch' has no recorded run" in proc.stderr and "moving" in proc.stderr
    assert not target.exists() and not list(tmp_path.glob(".none.tar.gz*"))
    script = write_script(Path(here["WORK"]) / "fresh.py", """
        from ndustria import Pipeline
        pipe = Pipeline(name="fresh")
        pipe.pack(save_to="fresh.tar.gz")
    """)
    proc = run_python(script, cwd=Path(here["WORK"]), env=here)
    assert proc.returncode != 0 and "BundleError" in proc.stderr and "'fresh' has no recorded run" in proc.stderr


def test_bundles_of_a_newer_format_or_with_unlisted_members_are_refused_whole(there, tmp_path):
    here, laptop = there
    bundle, _ = packed(here, tmp_path)

    def newer(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        return json.dumps({**json.loads(data), "version": 99, "ndustria": "9.0"}).encode()

    future = tmp_path / "future.tar.gz"
    rewrite(bundle, future, change=newer)
    proc = cli(laptop, "unpack", str(future))
    assert proc.returncode == 2 and "newer ndustria" in proc.stderr and "upgrade" in proc.stderr, proc.stderr
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(bundle, "r:gz") as src, tarfile.open(evil, "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        bad = tarfile.TarInfo("../../escaped.txt")
        bad.size = 4
        dst.addfile(bad, io.BytesIO(b"gotcha"[:4]))
    proc = cli(laptop, "unpack", str(evil))
    assert proc.returncode == 2 and "../../escaped.txt" in proc.stderr and "nothing was imported" in proc.stderr
    assert not list(tmp_path.rglob("escaped.txt")) and stored_keys(laptop) == set()
    not_a_bundle = tmp_path / "notes.tar.gz"
    with tarfile.open(not_a_bundle, "w:gz") as dst:
        info = tarfile.TarInfo("notes.txt")
        info.size = 2
        dst.addfile(info, io.BytesIO(b"hi"))
    proc = cli(laptop, "unpack", str(not_a_bundle))
    assert proc.returncode == 2 and "not an ndustria bundle" in proc.stderr


def test_catalogs_from_before_task_rows_kept_cache_keys_still_pack(there, tmp_path):
    import sqlite3

    from ndustria.record.catalog import Catalog

    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "catalog.sqlite") as db:  # task_runs as it was before store_key
        db.execute("CREATE TABLE task_runs (run_id INTEGER, key TEXT, task TEXT, function TEXT, status TEXT,"
                   " engine TEXT, host TEXT, pid INTEGER, start REAL, end REAL, wall_s REAL, cpu_s REAL,"
                   " error TEXT, metrics TEXT, PRIMARY KEY (run_id, key))")
    Catalog(old).close()
    with sqlite3.connect(old / "catalog.sqlite") as db:
        assert "store_key" in {row[1] for row in db.execute("PRAGMA table_info(task_runs)")}
    here, laptop = there
    run_script(here)
    with sqlite3.connect(Path(here["NDUSTRIA_CACHE_DIR"]) / "catalog.sqlite") as db:
        db.execute("UPDATE task_runs SET store_key = NULL")  # rows written by an older ndustria
    bundle = tmp_path / "old.tar.gz"
    proc = cli(here, "pack", "moving", "-o", str(bundle))
    assert proc.returncode == 0 and "Packed 3 results" in proc.stdout, proc.stdout + proc.stderr
    assert cli(laptop, "unpack", str(bundle)).returncode == 0
    assert all_hits(run_script(laptop))


MEASURE = """
    import resource, sys
    from ndustria.show.cli import main
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status = main(sys.argv[1:])
    print("GROWTH_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    sys.exit(status)
"""


def test_packing_and_unpacking_stream_instead_of_holding_results_in_memory(there, tmp_path):
    here, laptop = there
    script = write_script(Path(here["WORK"]) / "big.py", """
        import numpy as np
        from ndustria import Pipeline
        pipe = Pipeline(name="big", verbose=False)

        @pipe.AddFunction()
        def block(i):
            return np.arange(96 << 20, dtype=np.uint8) + i  # 96 MiB each

        handles = [block(i) for i in range(3)]
        pipe.run()
    """)
    assert run_python(script, cwd=Path(here["WORK"]), env=here).returncode == 0
    measure = write_script(tmp_path / "measure.py", MEASURE)
    bundle = tmp_path / "big.tar.gz"
    for env, args in ((here, ("pack", "big", "-o", str(bundle))), (laptop, ("unpack", str(bundle)))):
        proc = run_python(measure, *args, cwd=Path(env["WORK"]), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        growth = int(proc.stdout.split("GROWTH_KIB")[1])
        assert growth < 64 << 10, f"{args[0]} grew by {growth} KiB for 288 MiB of results"
    assert len(stored_keys(laptop)) == 3


def test_unpack_help_says_importing_is_a_trust_decision(there):
    _, laptop = there
    proc = cli(laptop, "unpack", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "trust decision" in text and "pickles" in text and "only unpack bundles from people you trust" in text


def test_the_progress_bar_draws_on_a_terminal_only():
    from ndustria.record.bundle import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen, log = Terminal(), io.StringIO()
    bar = Progress(4 << 20, "Packing x", after=0, stream=screen)
    bar.update(2 << 20)
    bar.close()
    assert "Packing x [" in screen.getvalue() and "4.0 MiB" in screen.getvalue() and screen.getvalue().endswith("\n")
    quiet = Progress(4 << 20, "Packing x", after=0, stream=log)
    quiet.update(4 << 20)
    quiet.close()
    assert log.getvalue() == ""
