"""What running the product and its tests leaves behind stays out of the checkout (issue 18)."""

from __future__ import annotations

import subprocess

import pytest
from support import ROOT


@pytest.mark.parametrize("path", [
    "notebooks/.ipynb_checkpoints/01_quickstart-checkpoint.ipynb",  # opening a notebook in Jupyter
    ".ipynb_checkpoints/x.ipynb",
    ".virtual_documents/notebooks/01_quickstart.ipynb",  # JupyterLab's language server
    "labextension/lib/index.js",  # tsc
    "labextension/node_modules/x/package.json",
    "labextension/tsconfig.tsbuildinfo",
    "dist/ndustria-0.1.0-py3-none-any.whl",
    "build/lib/ndustria/__init__.py",
    "ndustria-labextension-0.1.0.tgz",  # npm pack
])
def test_generated_files_are_ignored(path):
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, timeout=60)
    assert proc.returncode == 0, f"{path} is not covered by .gitignore"


def test_the_built_lab_extension_is_not_ignored():
    """The prebuilt sidebar ships in the wheel: its committed assets must never be ignored."""
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", "ndustria_nb/labextension/static/style.js"],
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 1

