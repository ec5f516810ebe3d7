"""``File`` inputs, as a user relies on them: keyed by content, not re-read when unchanged, a Path in the task.

Each script runs in a fresh interpreter (the cache directory comes from the test's environment), so
a hit in a later run is a hit across processes, as it is for a user running a script twice.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import run_python, write_script

from ndustria import File
from ndustria.keys.hashing import hash_value

READER = """
import os, sys
from ndustria import File, Pipeline

target = os.path.abspath("data.txt")
opens = []


def audit(event, args):  # counts every open() of data.txt in this process, whoever opens it
    if event == "open" and isinstance(args[0], str) and os.path.abspath(args[0]) == target:
        opens.append(args[0])


sys.addaudithook(audit)
pipe = Pipeline(name="reader")


@pipe.AddFunction()
def shout(path):
    with open("runs.log", "a") as log:
        log.write("x")
    return type(path).__name__, path.read_text().upper()


h = shout(File("data.txt"))
pipe.run()
print("RESULT", h.result())
print("OPENS", len(opens))
"""


def _age(path: Path, ns: int | None = None) -> int:
    """Give ``path`` an mtime well in the past (``ns``, or ten seconds ago); returns it."""
    old = ns if ns is not None else path.stat().st_mtime_ns - 10 * 10**9
    os.utime(path, ns=(old, old))
    return old


def _runs(tmp_path: Path) -> int:
    log = tmp_path / "runs.log"
    return len(log.read_text()) if log.exists() else 0


def _run(script: Path, *args: str, env: dict | None = None) -> Any:
    out = run_python(script, *args, cwd=script.parent, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_a_file_is_keyed_by_its_content_and_not_read_again_while_unchanged(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("abcd")
    old = _age(data)
    script = write_script(tmp_path / "reader.py", READER)

    first = _run(script)
    assert "RESULT ('PosixPath', 'ABCD')" in first.stdout  # the task receives a pathlib.Path
    assert _runs(tmp_path) == 1

    again = _run(script)  # unchanged: a hit, and the file is not even opened (a stat answers)
    assert "Cache hit!" in again.stdout and "RESULT ('PosixPath', 'ABCD')" in again.stdout
    assert "OPENS 0" in again.stdout
    assert _runs(tmp_path) == 1
    with sqlite3.connect(cache_dir / "catalog.sqlite") as db:
        row = db.execute("SELECT size, mtime_ns, inode FROM file_digests WHERE path = ?",
                         (os.fsencode(os.path.realpath(data)),)).fetchone()
    assert row == (4, old, data.stat().st_ino)

    # New content of the same size, with the old mtime restored: the content is what counts.
    data.write_text("wxyz")
    _age(data, old)
    changed = _run(script)
    assert "RESULT ('PosixPath', 'WXYZ')" in changed.stdout and "Cache hit!" not in changed.stdout
    assert _runs(tmp_path) == 2
    assert "OPENS 0" in _run(script).stdout

    # Back to the first content: that result is a hit again (read once to see that it is the old content).
    data.write_text("abcd")
    _age(data, old)
    back = _run(script)
    assert "Cache hit!" in back.stdout and "RESULT ('PosixPath', 'ABCD')" in back.stdout
    assert "OPENS 1" in back.stdout
    assert _runs(tmp_path) == 2


FOLDER = """
import os, sys
from ndustria import File, Pipeline

pipe = Pipeline(name="folder")


@pipe.AddFunction()
def inventory(folder):
    with open(os.environ["RUNS"], "a") as log:
        log.write("x")
    return sorted((p.relative_to(folder).as_posix(), p.read_text()) for p in folder.rglob("*") if p.is_file())


h = inventory(File(sys.argv[1]))
pipe.run()
print("RESULT", h.result())
"""


def test_a_folder_is_keyed_by_its_files_names_and_contents(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "data" / "sub").mkdir(parents=True)
    (work / "data" / "a.txt").write_text("1")
    (work / "data" / ".hidden").write_text("h")
    (work / "data" / "sub" / "b.txt").write_text("2")
    (work / "outside.txt").write_text("o")
    (work / "data" / "link.txt").symlink_to(work / "outside.txt")
    script = write_script(work / "folder.py", FOLDER)
    env = {"RUNS": str(tmp_path / "runs.log")}

    def run(folder: str = "data") -> str:
        return _run(script, folder, env=env).stdout

    out = run()
    assert "('.hidden', 'h')" in out and "('link.txt', 'o')" in out and "('sub/b.txt', '2')" in out
    assert _runs(tmp_path) == 1
    assert "Cache hit!" in run() and _runs(tmp_path) == 1

    (work / "data" / ".hidden").write_text("H")  # a hidden file counts
    assert "('.hidden', 'H')" in run() and _runs(tmp_path) == 2
    (work / "data" / "sub" / "b.txt").rename(work / "data" / "sub" / "c.txt")  # a rename counts
    assert "('sub/c.txt', '2')" in run() and _runs(tmp_path) == 3
    (work / "outside.txt").write_text("O")  # symbolic links are followed
    assert "('link.txt', 'O')" in run() and _runs(tmp_path) == 4
    (work / "data" / "new.txt").write_text("")  # an added file counts, even an empty one
    assert "('new.txt', '')" in run() and _runs(tmp_path) == 5
    (work / "data" / "new.txt").unlink()  # removed again: the earlier result is a hit
    assert "Cache hit!" in run() and _runs(tmp_path) == 5

    # The same content elsewhere (another checkout, a moved folder) is the same input.
    shutil.copytree(work / "data", work / "elsewhere" / "copy")
    assert "Cache hit!" in run("elsewhere/copy") and _runs(tmp_path) == 5


MISSING = """
from ndustria import File, Pipeline

pipe = Pipeline(name="missing")


@pipe.AddFunction()
def other(x):
    open("ran.txt", "a").write("other")
    return x


@pipe.AddFunction()
def load(path, scale=1):
    open("ran.txt", "a").write("load")
    return path.read_text()


other(1)
load(File("data/run42.h5"), scale=2)
pipe.run()
"""


def test_a_missing_file_is_an_error_naming_task_parameter_and_path_before_anything_runs(tmp_path: Path) -> None:
    script = write_script(tmp_path / "missing.py", MISSING)
    out = run_python(script, cwd=tmp_path)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ndustria.errors.InputFileError: task load(File('data/run42.h5'), scale=2): "
                           "argument 'path': the input file ")
    assert os.path.join(os.path.realpath(tmp_path), "data", "run42.h5") in last
    assert "does not exist" in last and "create it" in last
    assert not (tmp_path / "ran.txt").exists()  # nothing ran, not even the task declared before it


CHANGED = """
import sys
from pathlib import Path
from ndustria import File, Pipeline, TaskError

pipe = Pipeline(name="changed", **({"backend": "processes", "engines": 1} if "processes" in sys.argv else {}))


@pipe.AddFunction()
def shout(path):
    with open("runs.log", "a") as log:
        log.write("x")
    return path.read_text().upper()


h = shout(File("data.txt"))
if "change" in sys.argv:
    Path("data.txt").write_text("newer")  # after the call declared the task, before it runs
try:
    pipe.run()
    print("RESULT", h.result())
except TaskError as exc:
    print("FAILED", exc)
"""


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_a_file_changed_after_the_call_fails_the_task_before_it_runs(tmp_path: Path, backend: str) -> None:
    (tmp_path / "data.txt").write_text("older")
    script = write_script(tmp_path / "changed.py", CHANGED)
    out = _run(script, "change", backend).stdout
    assert "FAILED" in out and "InputFileChangedError" in out
    assert "shout(File('data.txt'))" in out and "parameter 'path'" in out
    assert os.path.join(os.path.realpath(tmp_path), "data.txt") in out
    assert "changed after the task was declared" in out and "Run again to use the new content" in out
    assert _runs(tmp_path) == 0  # it did not run on content its key does not name
    again = _run(script, backend).stdout  # as the message says: run again
    assert "RESULT NEWER" in again and _runs(tmp_path) == 1


WRITER = """
from ndustria import File, Pipeline, TaskError

pipe = Pipeline(name="writer")


@pipe.AddFunction()
def append(path):
    text = path.read_text()
    path.write_text(text + "!")  # its input changes while it runs
    return text


h = append(File("data.txt"))
try:
    pipe.run()
except TaskError as exc:
    print("FAILED", exc)
print("STORED", pipe.store.contains(h.key))
"""


def test_a_file_changed_while_the_task_runs_leaves_no_result_under_the_old_key(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("text")
    out = _run(write_script(tmp_path / "writer.py", WRITER)).stdout
    assert "FAILED" in out and "InputFileChangedError" in out and "append(File('data.txt'))" in out
    assert "changed while the task ran" in out and "its result was not stored" in out
    assert "STORED False" in out


PARALLEL = """
import os
from ndustria import File, Pipeline

pipe = Pipeline(name="parallel", parallel=True, backend="processes", engines=2)


@pipe.AddFunction()
def describe(path, more):
    kinds = [type(m).__name__ for m in more[0]] + [type(v).__name__ for v in more[1].values()]
    return type(path).__name__, kinds, os.getpid(), path.read_text()


h = describe(File("data.txt"), more=[(File("data.txt"), 1), {"folder": File("sub")}])
pipe.run()
kind, kinds, pid, text = h.result()
print("RESULT", kind, kinds, text, pid != os.getpid())
"""


def test_a_task_on_worker_processes_receives_paths_too(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("content")
    (tmp_path / "sub").mkdir()
    out = _run(write_script(tmp_path / "parallel.py", PARALLEL)).stdout
    assert "RESULT PosixPath ['PosixPath', 'int', 'PosixPath'] content True" in out


def test_the_key_of_a_file_is_its_kind_and_content_never_its_path(tmp_path: Path) -> None:
    a, b, folder = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "folder"
    a.write_bytes(b"\x00" * 1000)
    b.write_bytes(b"\x00" * 1000)
    folder.mkdir()
    assert hash_value(File(a)) == hash_value(File(str(b)))  # same content, another path
    assert hash_value(File(a)) != hash_value(str(a)) != hash_value(a)
    assert hash_value(File(folder)) != hash_value(File(a))
    b.write_bytes(b"\x00" * 999 + b"\x01")
    assert hash_value(File(a)) != hash_value(File(b))
    assert File("a.bin") == File(os.path.abspath("a.bin")) and os.fspath(File(a)) == str(a)


@pytest.fixture
def ip(ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared shell (conftest.py), working in this test's folder (its cells read relative paths)."""
    monkeypatch.chdir(tmp_path)
    return ip


def test_a_task_cell_is_keyed_by_the_content_of_the_files_it_reads(ip: Any, tmp_path: Path, cache_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.txt"
    data.write_text("abcd")
    old = _age(data)
    ip.run_cell("from ndustria import File\ndata = File('data.txt')")
    cell = "text = open(data).read()\nprint('ran', text)"
    literal = "other = File('data.txt').path.read_text()\nprint('ran literal', other)"

    def run(body: str) -> str:
        capsys.readouterr()
        ip.run_cell_magic("task", "", body)
        return capsys.readouterr().out

    assert "ran abcd" in run(cell) and "ran literal abcd" in run(literal)
    assert "restored text" in run(cell) and "restored other" in run(literal)
    with sqlite3.connect(cache_dir / "catalog.sqlite") as db:  # the kernel remembers the digest too
        assert db.execute("SELECT size FROM file_digests WHERE path = ?",
                          (os.fsencode(os.path.realpath(data)),)).fetchone() == (4,)

    data.write_text("wxyz")  # same size, same mtime: new content
    _age(data, old)
    assert "ran wxyz" in run(cell) and "ran literal wxyz" in run(literal)
    assert ip.user_ns["text"] == "wxyz" == ip.user_ns["other"]

    ip.run_cell("data = File('missing.txt')")
    with pytest.raises(Exception, match=r"%%task cell: input 'data': the input file .*missing.txt does not exist"):
        ip.run_cell_magic("task", "", cell)
