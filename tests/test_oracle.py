"""Differential oracle (issue 13): a cached run returns exactly what the same code returns without a cache.

A small user project lives on disk: a script, local modules (constants, helpers, a decorator factory),
a base class and a subclass in two modules, a package with a sub-module. Each behavioural *site* of the
project adds its own power of two to the final number when it is switched on, so every edit is visible
in the result. Hypothesis draws sequences of edits — switching a site on or off (a constant, a helper's
body, a helper's helper, a decorator argument, a decorator's wrapper body, a base-class method, a helper
called by a method, a sub-module function), cosmetic rewrites (docstrings, comments, blank lines,
parentheses) and undos — and after each one runs the script in a fresh interpreter on the same cache.
The script prints the pipeline's result and the value of the very same functions called directly,
without ndustria; both must be equal (and equal to the value the sites predict). When the behaviour is
one the sequence already ran, no task may execute: cosmetic edits and reverts are cache hits.

Failures are collected over all sequences (each sequence stops at its first failure, since the cache is
polluted from then on) and reported together at the end, with the edit that exposed each one.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from support import run_python

# site -> (file, bit it adds when on). part_c repeats the class sites shifted by 8 bits (see SCRIPT).
SITES = {
    "module-constant": ("oc_consts.py", 1),
    "helper-global": ("oc_helpers.py", 2),
    "helper-of-helper": ("oc_helpers.py", 4),
    "decorator-argument": ("oc_helpers.py", 8),
    "wrapper-body": ("oc_deco.py", 16),
    "base-class-method": ("oc_base.py", 32),
    "method-helper": ("oc_helpers.py", 64),
    "submodule-function": ("oc_pkg/sub.py", 128),
}
CLASS_SITES = ("base-class-method", "method-helper")
FILES = ("oc_consts.py", "oc_helpers.py", "oc_deco.py", "oc_base.py", "oc_shapes.py", "oc_pkg/__init__.py",
         "oc_pkg/sub.py")


def _bit(on: dict[str, bool], site: str) -> int:
    return SITES[site][1] if on[site] else 0


def render(rel: str, on: dict[str, bool]) -> str:
    """Source of one project file, in its plain style, for the sites switched on."""
    b = {site: _bit(on, site) for site in SITES}
    if rel == "oc_consts.py":
        return f"K0 = {b['module-constant']}\n"
    if rel == "oc_helpers.py":
        return (
            "from oc_deco import offset\n\n"
            f"BONUS = {b['helper-global']}\n\n\n"
            "def inner():\n"
            f"    return {b['helper-of-helper']}\n\n\n"
            "def helper():\n"
            "    return inner() + BONUS\n\n\n"
            f"@offset({b['decorator-argument']})\n"
            "def decorated():\n"
            "    return 0\n\n\n"
            "def method_helper():\n"
            f"    return {b['method-helper']}\n"
        )
    if rel == "oc_deco.py":
        extra = f" + {b['wrapper-body']}" if on["wrapper-body"] else ""
        return (
            "import functools\n\n\n"
            "def offset(k):\n"
            "    def decorate(f):\n"
            "        @functools.wraps(f)\n"
            "        def wrapper(*args, **kwargs):\n"
            f"            return f(*args, **kwargs) + k{extra}\n"
            "        return wrapper\n"
            "    return decorate\n"
        )
    if rel == "oc_base.py":
        return (
            "class Base:\n"
            "    def base_bit(self):\n"
            f"        return {b['base-class-method']}\n\n"
            "    def total(self):\n"
            "        return self.base_bit() + self.own_bit()\n"
        )
    if rel == "oc_shapes.py":
        return (
            "from oc_base import Base\n"
            "from oc_helpers import method_helper\n\n\n"
            "class Shape(Base):\n"
            "    def own_bit(self):\n"
            "        return method_helper()\n"
        )
    if rel == "oc_pkg/__init__.py":
        return ""
    if rel == "oc_pkg/sub.py":
        return f"def sub_bit():\n    return {b['submodule-function']}\n"
    raise ValueError(rel)


_HEADER = re.compile(r"^(\s*)(def|class) .*:$")
_RETURN = re.compile(r"^(\s*)return (.*)$")


def restyle(source: str, style: int) -> str:
    """The same code with a different look: 1 adds docstrings and comments, 2 blank lines, comments and
    parentheses. Neither changes what the code does (nor its AST, docstrings aside)."""
    if style == 0:
        return source
    top = ['"""A module docstring."""', "# a comment at the top", ""]
    out = top if style == 1 else ["", "# reformatted", ""]
    for line in source.splitlines():
        ret = _RETURN.match(line)
        if style == 2 and ret:
            line = f"{ret.group(1)}return ({ret.group(2)})  # the value"
        out.append(line)
        header = _HEADER.match(line)
        if header:
            inner = header.group(1) + "    "
            doc = [f'{inner}"""What this does."""', f"{inner}# why"]
            out += doc if style == 1 else ["", f"{inner}# body"]
    return "\n".join(out) + "\n"


MAIN = """\
\"\"\"The user's pipeline: run it as a script, or import it and call main().\"\"\"

from pathlib import Path

import oc_consts
import oc_pkg.sub
from oc_helpers import decorated, helper
from oc_shapes import Shape

from ndustria import Pipeline

pipe = Pipeline(name="oracle")


def mark(name):
    with open(Path(__file__).with_name("runs.log"), "a") as log:
        log.write(name + "\\n")


@pipe.AddFunction()
def part_a():
    mark("part_a")
    return oc_consts.K0 + helper() + decorated()


@pipe.AddFunction()
def part_b(shape):
    mark("part_b")
    return shape.total() + oc_pkg.sub.sub_bit()


@pipe.AddFunction()
def part_c():
    mark("part_c")
    return Shape().total() * 256


@pipe.AddFunction()
def combine(a, b, c):
    mark("combine")
    return a + b + c


def main():
    \"\"\"(cached result, the same functions called without ndustria, the tasks that executed).\"\"\"
    log = Path(__file__).with_name("runs.log")
    log.unlink(missing_ok=True)
    h = combine(part_a(), part_b(Shape()), part_c())
    pipe.run()
    computed = log.read_text().split() if log.exists() else []
    plain = combine.func(part_a.func(), part_b.func(Shape()), part_c.func())
    log.unlink(missing_ok=True)
    return h.result(), plain, computed


if __name__ == "__main__":
    cached, plain, computed = main()
    print("RESULT", cached)
    print("PLAIN", plain)
    print("COMPUTED", ",".join(computed))
"""
# import order for reloading in one process: every module after the ones it imports
MODULES = ("oc_deco", "oc_consts", "oc_helpers", "oc_base", "oc_shapes", "oc_pkg", "oc_pkg.sub", "oc_main")


def expected(on: dict[str, bool]) -> int:
    return sum(_bit(on, s) for s in SITES) + 256 * sum(_bit(on, s) for s in CLASS_SITES)


class Project:
    """The project on disk: which sites are on, each file's style, and the history for undo."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.on = dict.fromkeys(SITES, False)
        self.style = dict.fromkeys(FILES, 0)
        self.history: list[tuple[dict, dict]] = []
        self.seen: set[tuple] = set()
        (root / "oc_main.py").write_text(MAIN)
        for rel in FILES:
            self.write(rel)

    def write(self, rel: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(restyle(render(rel, self.on), self.style[rel]))
        stamp = max(time.time_ns(), old + 2_000_000_000)  # a new mtime for ndustria's and .pyc's checks
        os.utime(path, ns=(stamp, stamp))

    def apply(self, edit: tuple) -> None:
        before_on, before_style = dict(self.on), dict(self.style)
        if edit[0] == "undo":
            if not self.history:
                return
            self.on, self.style = self.history.pop()
        else:
            self.history.append((before_on, before_style))
            if edit[0] == "flip":
                self.on[edit[1]] = not self.on[edit[1]]
            else:
                self.style[edit[1]] = edit[2]
        for rel in FILES:
            if edit[0] == "style" and rel == edit[1]:
                self.write(rel)  # written even when the style is unchanged: a touch
            elif render(rel, before_on) != render(rel, self.on) or before_style[rel] != self.style[rel]:
                self.write(rel)

    def run_fresh(self) -> tuple[int, int, list[str]]:
        """Run the script in a fresh interpreter on this project's cache."""
        proc = run_python(self.root / "oc_main.py", cwd=self.root, timeout=60,
                          env={"NDUSTRIA_CACHE_DIR": str(self.root / "cache")})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = dict(line.split(" ", 1) for line in proc.stdout.splitlines()
                   if line.split(" ", 1)[0] in ("RESULT", "PLAIN", "COMPUTED"))
        return int(out["RESULT"]), int(out["PLAIN"]), [t for t in out["COMPUTED"].split(",") if t]

    def run_here(self) -> tuple[int, int, list[str]]:
        """Reload every project module (each after the ones it imports, as a careful %autoreload would),
        so the code in memory is the code on disk, then run main() with a new Pipeline on the same cache."""
        importlib.invalidate_caches()
        for name in MODULES:
            module = sys.modules.get(name)
            if module is None:
                importlib.import_module(name)
            else:
                importlib.reload(module)
        main = sys.modules["oc_main"]
        try:
            return main.main()
        finally:
            main.pipe.close()


@contextmanager
def imported_from(root: Path) -> Iterator[None]:
    """Make the project importable in this process, with its own cache; forget its modules afterwards."""
    saved = os.environ.get("NDUSTRIA_CACHE_DIR")
    os.environ["NDUSTRIA_CACHE_DIR"] = str(root / "cache")
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in MODULES:
            sys.modules.pop(name, None)
        if saved is None:
            os.environ.pop("NDUSTRIA_CACHE_DIR", None)
        else:
            os.environ["NDUSTRIA_CACHE_DIR"] = saved


def describe(edit: tuple) -> str:
    if edit[0] == "flip":
        return f"edit {edit[1]} ({SITES[edit[1]][0]})"
    if edit[0] == "style":
        return f"restyle {edit[1]} to style {edit[2]}"
    return "undo"


def first_failure(project: Project, edits: list[tuple],
                  run: Callable[[], tuple[int, int, list[str]]]) -> str | None:
    """Run the project, then again after each edit; the first disagreement with the uncached value, if any.

    A sequence stops there: from then on its cache holds a wrong entry and later runs prove nothing more."""
    steps = [("initial run",), *edits]
    for i, edit in enumerate(steps):
        if i:
            project.apply(edit)
        cached, plain, computed = run()
        want = expected(project.on)
        assert plain == want, f"the test project itself is wrong: {plain} != {want} after {steps[:i + 1]}"
        where = f"step {i} [{'initial run' if i == 0 else describe(edit)}]"
        if cached != plain:
            return (f"{where}: stale, cached {cached} != uncached {plain} (bits {cached ^ plain:#b}); "
                    f"ran {computed}")
        state = tuple(sorted(project.on.items()))
        if state in project.seen and computed:
            return f"{where}: this behaviour is cached already, yet {computed} ran"
        project.seen.add(state)
    return None


FLIP = st.tuples(st.just("flip"), st.sampled_from(sorted(SITES)))
EDITS = st.one_of(  # behavioural edits three times as often as each of the others
    FLIP, FLIP, FLIP,
    st.tuples(st.just("style"), st.sampled_from(FILES), st.integers(0, 2)),
    st.tuples(st.just("undo")),
)
EVERY_SITE = [("flip", site) for site in sorted(SITES)] + [("undo",)] * 2
EVERY_FILE = EVERY_SITE + [("style", rel, 1 + n % 2) for n, rel in enumerate(FILES)] + [("undo",)] * 3


def report(tried: list[list[str]], failures: list[str], started: float) -> None:
    summary = f"{len(tried)} edit sequences in {time.monotonic() - started:.1f} s, {len(failures)} failed"
    print(summary)
    for n, edits in enumerate(tried):
        print(f"  sequence {n}: {edits}")
    assert not failures, summary + ":\n" + "\n".join(failures)


# Failures are collected, not raised inside the example: hypothesis would stop at the first one, and
# shrinking costs a fresh interpreter per step. Every sequence is listed with what it found.
NO_SHRINK = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])


def test_cached_runs_agree_with_uncached_runs(tmp_path):
    """Each run a fresh interpreter, as a user running a script again after editing it."""
    tried: list[list[str]] = []
    failures: list[str] = []

    @settings(max_examples=6, **NO_SHRINK)
    @given(edits=st.lists(EDITS, min_size=3, max_size=5))
    @example(edits=EVERY_SITE)  # each site at least once, whatever the draws
    def sequence(edits: list[tuple]) -> None:
        root = tmp_path / f"example{len(tried)}"
        root.mkdir()
        tried.append([describe(e) for e in edits])
        project = Project(root)
        found = first_failure(project, edits, project.run_fresh)
        if found:
            failures.append(f"sequence {len(tried) - 1} {found}")

    started = time.monotonic()
    sequence()
    report(tried, failures, started)


def test_cached_runs_agree_with_uncached_runs_in_one_process(tmp_path):
    """All runs of a sequence in this process, modules reloaded after each edit (a notebook with
    %autoreload): the code in memory is the code on disk, so its fingerprint must follow it too."""
    tried: list[list[str]] = []
    failures: list[str] = []

    @settings(max_examples=40, **NO_SHRINK)
    @given(edits=st.lists(EDITS, min_size=3, max_size=8))
    @example(edits=EVERY_FILE)
    def sequence(edits: list[tuple]) -> None:
        root = tmp_path / f"example{len(tried)}"
        root.mkdir()
        tried.append([describe(e) for e in edits])
        project = Project(root)
        with imported_from(root):
            found = first_failure(project, edits, project.run_here)
        if found:
            failures.append(f"sequence {len(tried) - 1} {found}")

    started = time.monotonic()
    sequence()
    report(tried, failures, started)
