"""Cell states before running (issue 17, item 3), in-process: the kernel's answers for a notebook's cells.

Cells run with their notebook cell id, as JupyterLab sends it (``run_cell(..., cell_id=...)``); the
states are asked with the notebook's cells as the frontend sends them (ndustria_nb/kernel.py
``CellTracker.answer``). The browser side is in tests/test_notebook_browser.py.
"""

from __future__ import annotations

from typing import Any

from ndustria_nb import cellstate
from ndustria_nb.kernel import get_state


class Notebook:
    """An ordered list of (cell id, source) that runs cells as JupyterLab does and asks their states."""

    def __init__(self, shell: Any, cells: list[tuple[str, str]]) -> None:
        self.shell, self.cells = shell, list(cells)

    def edit(self, cell_id: str, source: str) -> None:
        self.cells = [(i, source if i == cell_id else s) for i, s in self.cells]

    def run(self, *ids: str) -> None:
        for cell_id, source in self.cells:
            if not ids or cell_id in ids:
                self.shell.run_cell(source, store_history=True, cell_id=cell_id)

    def ask(self) -> dict[str, Any]:
        """The reply to a states request on the comm, as the frontend gets it."""
        sent: list[dict[str, Any]] = []

        class Comm:
            def send(self, data: dict[str, Any]) -> None:
                sent.append(data)

        message = {"content": {"data": {"request": "states", "seq": 7,
                                        "cells": [{"id": i, "source": s} for i, s in self.cells]}}}
        get_state(self.shell).tracker.answer(Comm(), message)
        (reply,) = sent
        assert reply["seq"] == 7 and "error" not in reply, reply
        return reply

    def states(self) -> dict[str, str]:
        return {cell_id: v["state"] for cell_id, v in self.ask()["cells"].items()}

    def why(self, cell_id: str) -> str:
        return " / ".join(self.ask()["cells"][cell_id]["why"])


CHAIN = [("a", "n = 3"),
         ("b", "%%task make\ndata = list(range(n))"),
         ("c", "%%task use\ntotal = sum(data)"),
         ("d", "%%task other\nz = 7"),
         ("e", "t = total * 2"),
         ("f", "%%task again\nu = t + 1")]


def test_states_follow_edits_and_run_stale_runs_exactly_the_stale_cells_and_their_dependents(ip):
    nb = Notebook(ip, CHAIN)
    assert nb.states() == {"b": "never run", "c": "never run", "d": "never run", "f": "never run"}
    assert nb.ask()["stale"] == []  # never run is not stale: "run stale cells" leaves it alone
    nb.run()
    assert nb.states() == dict.fromkeys("bcdf", "cached")

    nb.edit("b", "%%task make\ndata = list(range(n + 1))")  # edited, not run
    assert nb.states() == {"b": "stale", "c": "stale", "d": "cached", "f": "stale"}
    assert nb.why("b") == "its code changed"
    assert nb.why("c") == "input data comes from %%task make, which is stale"
    assert "input t comes from the cell `t = total * 2`" in nb.why("f")
    assert nb.ask()["stale"] == ["b", "c", "e", "f"]  # in notebook order; plain cell e depends on c

    nb.run("b", "c", "e", "f")
    assert nb.states() == dict.fromkeys("bcdf", "cached")
    assert ip.user_ns["u"] == 13

    nb.edit("a", "n = 4")  # a plain cell that %%task make reads
    assert nb.states() == {"a": "stale", "b": "stale", "c": "stale", "d": "cached", "f": "stale"}
    assert nb.why("a") == "edited since it ran"
    assert nb.why("b") == "input n comes from the cell `n = 4`, which was edited since it ran"
    assert nb.ask()["stale"] == ["a", "b", "c", "e", "f"]


def test_stale_says_which_input_or_which_code_changed(ip):
    nb = Notebook(ip, [("g", "SCALE = 10\ndef helper(x):\n    return x * SCALE"), ("n", "n = 3"),
                       ("t", "%%task scaled\ndata = [helper(i) for i in range(n)]")])
    nb.run()
    assert nb.states()["t"] == "cached"
    ip.run_cell("n = 5")  # run in another cell, or by hand: the value counts
    assert nb.states()["t"] == "stale" and nb.why("t") == "input n changed"
    ip.run_cell("n = 3")
    assert nb.states()["t"] == "cached"  # back to a stored key
    ip.run_cell("def helper(x):\n    return x * SCALE + 1")
    assert nb.why("t") == "function helper: its code changed"
    ip.run_cell("def helper(x):\n    return x * SCALE")
    ip.run_cell("SCALE = 11")
    assert nb.states()["t"] == "stale"
    assert "function helper: global variable 'SCALE' changed" in nb.why("t")


def test_failed_and_removed_results(ip):
    nb = Notebook(ip, [("n", "n = 3"), ("t", "%%task risky\ndata = [1 / (n - 3)]")])
    nb.run()
    assert nb.states()["t"] == "failed" and "ZeroDivisionError" in nb.why("t")
    nb.edit("t", "%%task risky\ndata = [1 / (n - 2)]")
    assert nb.states()["t"] == "stale" and nb.why("t") == "its code changed"
    nb.run("t")
    assert nb.states()["t"] == "cached"
    get_state(ip).pipeline.store.remove(next(iter(get_state(ip).pipeline.store.keys())))
    assert nb.states()["t"] == "stale" and "gone" in nb.why("t")


def test_after_a_restart_inputs_not_yet_defined_are_judged_by_the_cells_that_set_them(ip):
    nb = Notebook(ip, [("n", "n = 3"), ("t", "%%task make\ndata = list(range(n))")])
    nb.run()
    tracker = get_state(ip).tracker
    ip.user_ns.pop("n")
    tracker.ran.clear()  # what a new kernel knows: nothing ran, nothing defined, records on disk
    assert nb.states()["t"] == "cached"
    assert nb.why("t").startswith("assuming n as when it was stored")
    nb.edit("n", "n = 4")
    assert nb.states()["t"] == "stale"
    assert nb.why("t") == "input n: the cell `n = 4`, which sets it, changed"
    assert nb.ask()["stale"] == ["n", "t"]  # n must run first: the kernel does not have it


def test_ndustria_cells_follow_their_tasks_and_declaring_them_changes_nothing(ip, capsys):
    nb = Notebook(ip, [("g", "from ndustria import task\n@task\ndef sq(x):\n    return x * x\n"
                             "@task\ndef f(x):\n    if x == 9:\n        raise ValueError('nine')\n    return x"),
                       ("n", "n = 3"), ("r", "%%ndustria\nr = [f(sq(i)) for i in range(n)]")])
    assert nb.states()["r"] == "unknown"  # sq is not defined in the kernel yet
    assert "run the cells above first" in nb.why("r")
    nb.run()
    pipe = get_state(ip).pipeline
    assert nb.states()["r"] == "cached"
    capsys.readouterr()
    tasks, pending = list(pipe.tasks), pipe.pending()
    nb.edit("n", "n = 4")
    nb.run("n")
    assert nb.states()["r"] == "stale"  # f(sq(3)) = f(9) will fail, but it has not run yet
    assert nb.why("r") == "sq(3): a new task / f(sq(3)): a new task"
    assert pipe.tasks == tasks and pipe.pending() == pending  # probing declared nothing for real
    assert capsys.readouterr().out == ""  # and printed nothing
    nb.run("r")
    assert nb.states()["r"] == "failed" and "f(sq(3)): ValueError: nine" in nb.why("r")
    ip.run_cell("@task\ndef sq(x):\n    return x * x + 1", cell_id="g")
    assert nb.states()["r"] == "stale"
    assert "sq(0): the code of sq changed" in nb.why("r")


def test_a_slow_ndustria_cell_is_stopped_and_said_unknown(ip, monkeypatch):
    monkeypatch.setattr(cellstate, "PROBE_SECONDS", 0.5)
    nb = Notebook(ip, [("s", "%%ndustria\nimport time\nwhile True:\n    time.sleep(0.01)")])
    assert nb.states()["s"] == "unknown" and "took more than 0.5 s" in nb.why("s")


def test_no_answer_while_a_cell_runs(ip):
    tracker = get_state(ip).tracker
    tracker.stack.append(object())  # as during an async cell, when comm messages still come in
    try:
        sent = []
        tracker.answer(type("C", (), {"send": lambda self, d: sent.append(d)})(),
                       {"content": {"data": {"request": "states", "seq": 1, "cells": []}}})
    finally:
        tracker.stack.pop()
    assert sent == [{"reply": "states", "seq": 1, "busy": True}]


def test_finding_a_state_runs_no_magic_no_shell_command_and_no_pipeline(ip, tmp_path):
    witness = tmp_path / "ran.txt"
    nb = Notebook(ip, [("g", "from ndustria import task\n@task\ndef sq(x):\n    open(" + repr(str(witness)) +
                             ", 'a').write('x')\n    return x * x"),
                       ("m", "%%ndustria\nr = sq(2)\n%ndustria cache clear"),
                       ("s", "%%ndustria\nr = sq(3)\n!touch " + str(tmp_path / "shell.txt")),
                       ("p", "%%ndustria\nr = sq(4)\nimport ndustria\nndustria.default_pipeline().run()")])
    nb.run("g")
    for cell_id in ("m", "s"):
        assert nb.states()[cell_id] == "unknown" and "line magics and shell commands are not run" in nb.why(cell_id)
    assert nb.states()["p"] == "unknown" and "run() inside declaring_only()" in nb.why("p")
    assert not witness.exists() and not (tmp_path / "shell.txt").exists()
    assert get_state(ip).pipeline.pending() == []
