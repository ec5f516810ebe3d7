"""The tutorial scripts in examples/ produce the original's console output."""

from __future__ import annotations

from pathlib import Path

from support import ROOT, run_python

EXAMPLES = ROOT / "examples"


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_simple_example_then_cache_hits_then_rerun(tmp_path: Path):
    first = run_python(EXAMPLES / "simple_example.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(lines(first.stdout, "[Added Task]")) == 10
    assert " Starting a run with 10 tasks." in first.stdout.splitlines()
    assert len(lines(first.stdout, "Saved result of")) == 10
    assert first.stdout.splitlines()[-1] == "All done."
    saved = lines(first.stdout, "Saved result of")
    assert all("matrix_multiplication" in s for s in saved[:5]), "producers run before consumers"

    second = run_python(EXAMPLES / "simple_example.py", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert len(lines(second.stdout, "[Cache hit!]")) == 10
    assert " Starting a run with 0 tasks." in second.stdout.splitlines()
    assert lines(second.stdout, "Saved result of") == []
    assert second.stdout.splitlines()[-1] == "All done."

    rerun = run_python(EXAMPLES / "rerun_test.py", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert len(lines(rerun.stdout, "[Cache hit!] matrix_multiplication")) == 5
    assert len(lines(rerun.stdout, "[Added Task] matrix_parameters")) == 5
    assert " Starting a run with 5 tasks." in rerun.stdout.splitlines()


def test_iterations_example(tmp_path: Path):
    proc = run_python(EXAMPLES / "iterations_test.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert " Starting a run with 6 tasks." in proc.stdout.splitlines()
    assert "moments:" in proc.stdout
