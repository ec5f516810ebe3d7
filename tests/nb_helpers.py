"""Helpers for the notebook tests: build notebooks with nbformat, run them in fresh kernels with nbclient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient


def setup_cell(cache_dir: Path) -> str:
    return (f"import os\nos.environ['NDUSTRIA_CACHE_DIR'] = {str(cache_dir)!r}\n"
            "%load_ext ndustria")


def run_notebook(cells: list[str], cwd: Path, timeout: int = 120) -> Any:
    """Execute ``cells`` top to bottom in a fresh kernel (errors kept as outputs); the executed notebook."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def text(cell: Any) -> str:
    """Everything a cell printed (streams, text/plain of displays, error names and values)."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def mimes(cell: Any) -> set[str]:
    return {m for out in cell.outputs if out.output_type in ("display_data", "execute_result") for m in out.data}


def errors(cell: Any) -> list[Any]:
    return [out for out in cell.outputs if out.output_type == "error"]
