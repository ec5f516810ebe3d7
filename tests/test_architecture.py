"""The layout explains the architecture, and stays that way (issue 15).

- the import contract in pyproject.toml (``lint-imports``): a task's life runs down the layers
  notebook -> pipeline -> show -> run -> record -> store -> keys -> task -> records, with no
  upward import and no cycle, type-only imports included;
- no module uses another module's ``_private`` names (attributes or imports);
- each subpackage says in its docstring which step it owns and what it may import;
- the public API (``ndustria.__all__``) and the original's import paths stay importable.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import ndustria

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ndustria", "ndustria_nb")
SUBPACKAGES = ("keys", "store", "record", "run", "show")
# Third-party private names used on purpose, each with its reason in the module that uses it.
ALLOWED_PRIVATE = {("ndustria/run/pickling.py", "_code_reduce")}  # cloudpickle's code reducer


def test_the_import_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_the_contract_catches_an_upward_type_only_import(tmp_path):
    """The contract must fail on the kind of edge that made the old 12-module cycle: a lower layer
    importing an upper one for a type hint."""
    copy = tmp_path / "repo"
    for package in PACKAGES:
        _copy_tree(ROOT / package, copy / package)
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    task = copy / "ndustria" / "task.py"
    task.write_text(task.read_text() + "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from ndustria.pipeline import Pipeline  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache", "--config", str(copy / "pyproject.toml")], cwd=copy, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(copy), "PATH": ""})
    assert proc.returncode != 0 and "ndustria.task -> ndustria.pipeline" in proc.stdout, proc.stdout


def _copy_tree(src: Path, dst: Path) -> None:
    for path in src.rglob("*.py"):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines: functions, classes, assigned names, attributes set on self/cls, parameters."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.split(".")[0])
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_uses_another_modules_private_names():
    modules = _modules()
    defined = {path: _defined_names(tree) for path, tree in modules.items()}
    ours = {name for names in defined.values() for name in names if _private(name)}
    found = []
    for path, tree in modules.items():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                if node.attr in ours and node.attr not in defined[path]:
                    found.append(f"{rel}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _private(alias.name) and (rel, alias.name) not in ALLOWED_PRIVATE:
                        found.append(f"{rel}:{node.lineno}: from {node.module} import {alias.name}")
    assert not found, "private names used outside their module:\n" + "\n".join(found)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_says_what_it_owns_and_may_import(name):
    module = importlib.import_module(f"ndustria.{name}")
    doc = module.__doc__ or ""
    assert "of a task's life" in doc and "May import" in doc, doc
    listed = {p.stem for p in (ROOT / "ndustria" / name).glob("*.py")} - {"__init__"}
    assert all(f"{name}.{stem}" in doc for stem in listed), f"modules missing from ndustria.{name}'s docstring"


def test_modules_stay_small():
    """About 600 lines a module and 50 a function (issue 15): a new long one is split, not waved through."""
    too_long = []
    for path, tree in _modules().items():
        rel = path.relative_to(ROOT).as_posix()
        if len(path.read_text().splitlines()) > 650:
            too_long.append(f"{rel}: {len(path.read_text().splitlines())} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{rel}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "\n".join(too_long)


def test_public_names_and_the_originals_paths_import():
    for name in ndustria.__all__:
        assert hasattr(ndustria, name), name
    from ndustria.Cache import Cache
    from ndustria.Pipeline import Pipeline
    from ndustria.Task import Task

    from ndustria.store import Store

    assert Pipeline is ndustria.Pipeline and Task is ndustria.TaskHandle and Cache is Store


def test_python_m_ndustria_is_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "ndustria", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ndustria {ndustria.__version__}"
