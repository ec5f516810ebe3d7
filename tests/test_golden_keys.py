"""Literal keys, pinned: a change of the key format (or of what a key covers) is a deliberate edit here.

Existing caches stay valid only while these digests hold: a refactor that moves modules, renames
internal helpers or reorders code must leave every one of them as it is. The project below uses
only builtins, so its digests do not depend on installed package versions. Code digests name the
Python version (builtins count by it) and depend on its bytecode and AST: they are pinned per
``major.minor``, with the version token fixed to the one they were recorded under. Value digests do
not depend on the Python version.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ndustria import File, Pipeline
from ndustria.keys import library

PROJECT = '''
import dataclasses

SCALE = 3
TABLE = {"a": 1, "b": (2.5, "x")}


def helper(x):
    return x * SCALE


@dataclasses.dataclass
class Config:
    n: int
    label: str = "run"

    def weight(self):
        return self.n * 2


def build(pipe):
    @pipe.AddFunction()
    def produce(n, offset=1):
        # a comment does not count
        return [helper(i) + offset for i in range(n)]

    @pipe.AddFunction()
    def consume(values, config):
        return sum(values) * config.weight() + TABLE["a"]

    @pipe.AddFunction()
    def read(path):
        return path.read_text()

    @pipe.AddFunction(version="2")
    def versioned(x):
        return x

    @pipe.AddFunction()
    def arrays(a, frame_like):
        return a.sum() + len(frame_like)

    return produce, consume, read, versioned, arrays
'''

# Pinned on the code before the package was split into subpackages (issue 15); Python 3.11.
CODE_PINS = {
    (3, 11): {
        "produce(4)": "8effb33f388d1924b2891c881a48d67e",
        "produce(4, offset=2)": "09921c67bab0fb2c6774ef7811e2fd04",
        "consume(produce(4), Config(n=2, label='run'))": "48f3ad6f24326a8352ff878439edc562",
        "read(File)": "7a00b2e8212c750fcf11a185076e6c34",
        "versioned(7)": "d2500e4d95c1def78e78592f2ba86780",
        "arrays(ndarray)": "72549cc3c742378e4b86047b0e902a56",
    },
}

VALUE_PINS = {
    "int": "cba21bfd17d8bc17f51c70dd31cc3d09",
    "str": "75901f4001f092a8357a5f82e2c89012",
    "list": "1bd8f3c2a3861353557ef8f9e17c036a",
    "dict": "229d584596aae5cb0970382f1bbc4b69",
    "float-nan": "7cfb1cc5352f12fa8c7e4eaa3dd0beb0",
    "ndarray": "ccc38a01cee5b134e5a87bba57fccdf9",
    "bytes": "c80bab6a952734ee5c425078cb21a5b2",
}

RESULT_KEY_PIN = "cfb496840891c4df572236963f8d44f8"
RECORDED_UNDER = "python 3.11.7"


def load_project(tmp_path: Path):
    path = tmp_path / "golden_project.py"
    path.write_text(textwrap.dedent(PROJECT))
    spec = importlib.util.spec_from_file_location("golden_project", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["golden_project"] = module
    spec.loader.exec_module(module)
    return module


def declared(tmp_path: Path) -> dict[str, str]:
    project = load_project(tmp_path)
    try:
        pipe = Pipeline(name="golden", verbose=False)
        produce, consume, read, versioned, arrays = project.build(pipe)
        data = tmp_path / "data.txt"
        data.write_text("the same bytes\n")
        ids = {
            "produce(4)": produce(4).id,
            "produce(4, offset=2)": produce(4, offset=2).id,
            "consume(produce(4), Config(n=2, label='run'))": consume(produce(4), project.Config(2)).id,
            "read(File)": read(File(data)).id,
            "versioned(7)": versioned(7).id,
            "arrays(ndarray)": arrays(np.arange(12, dtype=np.int64).reshape(3, 4), [1, 2]).id,
        }
        pipe.close()
        return ids
    finally:
        sys.modules.pop("golden_project", None)


def value_digests() -> dict[str, str]:
    from ndustria.keys.hashing import ValueHasher

    hasher = ValueHasher()
    values = {
        "int": 12345678901234567890,
        "str": "ndustria ✓",
        "list": [1, 2.0, "three", None, True],
        "dict": {"b": 2, "a": [1, (2, 3)], 3: frozenset({1, 2})},
        "float-nan": float("nan"),
        "ndarray": np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2],
        "bytes": b"\x00\x01" * 1000,
    }
    return {name: hasher.digest(value).hex() for name, value in values.items()}


def test_value_digests_are_pinned():
    assert value_digests() == VALUE_PINS


def test_result_key_is_pinned():
    from ndustria.keys.maker import result_key

    assert result_key("a" * 32, [("b" * 32, "c" * 32), ("d" * 32, "e" * 32)]) == RESULT_KEY_PIN


@pytest.fixture
def recorded_python(monkeypatch):
    """Builtins count by the Python version: key them as under the version the pins were recorded with."""
    library.clear_caches()
    monkeypatch.setattr(library, "PYTHON", RECORDED_UNDER)
    yield
    monkeypatch.undo()
    library.clear_caches()


def test_task_ids_are_pinned(tmp_path, recorded_python):
    pins = CODE_PINS.get(sys.version_info[:2])
    if pins is None:
        pytest.fail(f"no pinned code digests for Python {sys.version_info[0]}.{sys.version_info[1]}: "
                    "record them from a commit known to keep existing caches valid")
    assert declared(tmp_path) == pins


def test_the_same_project_in_another_folder_has_the_same_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert declared(tmp_path / "a") == declared(tmp_path / "b")
