"""The `ndustria` command, run as a user would: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ndustria import Pipeline


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ndustria.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def populate() -> Pipeline:
    pipe = Pipeline(name="clitest", verbose=False)

    @pipe.AddFunction()
    def square(x):
        return [x * x] * 1000

    @pipe.AddFunction()
    def other(x):
        return x

    for i in range(3):
        square(i)
    other(1)
    pipe.run()
    return pipe


def test_help_lists_the_commands():
    proc = cli("--help")
    assert proc.returncode == 0
    for word in ("init", "cache", "config"):
        assert word in proc.stdout


def test_init_writes_the_config_file_and_never_touches_shell_files(tmp_path):
    target = tmp_path / "mycache"
    env = {"NDUSTRIA_CACHE_DIR": ""}
    proc = cli("init", "--cache-dir", str(target), env=env)
    assert proc.returncode == 0, proc.stderr
    config = Path(os.environ["NDUSTRIA_CONFIG_FILE"])
    assert str(target) in config.read_text()
    assert target.is_dir()
    home = Path(os.environ["HOME"])
    assert not (home / ".bashrc").exists() and not (home / ".profile").exists()
    shown = cli("config", env=env)
    assert str(target) in shown.stdout and "config file" in shown.stdout


def test_ndustria_init_alias(tmp_path):
    exe = Path(sys.executable).with_name("ndustria-init")
    proc = subprocess.run([str(exe), "--cache-dir", str(tmp_path / "c2")], capture_output=True, text=True,
                          env={**os.environ, "NDUSTRIA_CACHE_DIR": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "c2") in Path(os.environ["NDUSTRIA_CONFIG_FILE"]).read_text()


def test_cache_ls_rm_and_clear(cache_dir):
    pipe = populate()
    proc = cli("cache")
    assert proc.returncode == 0, proc.stderr
    assert "square(0)" in proc.stdout and "other(1)" in proc.stdout and "4 entries" in proc.stdout
    assert "KiB" in proc.stdout or " B " in proc.stdout

    proc = cli("cache", "rm", "square(1)")
    assert proc.returncode == 0 and "Removed square(1)" in proc.stdout
    assert len(list(pipe.store.keys())) == 3

    proc = cli("cache", "rm", "squ*")
    assert proc.stdout.count("Removed") == 2
    assert cli("cache", "rm", "nothing-like-this").returncode == 1

    proc = cli("-c")
    assert proc.returncode == 0 and "Removed 1 entries" in proc.stdout
    assert list(pipe.store.keys()) == []
    assert "empty" in cli("cache", "ls").stdout


def test_cache_clear_subcommand(cache_dir):
    populate()
    proc = cli("cache", "clear", "--yes")
    assert proc.returncode == 0 and "Removed 4 entries" in proc.stdout
