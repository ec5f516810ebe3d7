"""How ndustria was installed, and the ``pip`` command that adds a missing package to that install.

A checkout installed with ``pip install -e .`` (or ``pip install .``) records its folder in the
distribution's ``direct_url.json`` (PEP 610): the hint then names that folder
(``pip install -e '/home/you/ndustria[mpi]'``), never ``pip install 'ndustria[mpi]'``, which would fetch
another version from PyPI over the checkout. An install from PyPI gets a hint pinned to the installed
version; source code run without installing (``PYTHONPATH``) gets the checkout's folder.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ndustria.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding the imported ``ndustria`` package


@dataclass(frozen=True)
class Origin:
    """Where the running ndustria comes from: ``kind`` is "editable", "folder", "index" or "source"."""

    kind: str
    folder: str = ""
    version: str = ""


def origin() -> Origin:
    """How the ndustria being imported was installed."""
    from importlib import metadata  # imported when needed (~15 ms): only an error message asks

    here = PACKAGE_ROOT
    try:
        dist = metadata.distribution("ndustria")
    except metadata.PackageNotFoundError:
        return Origin("source", str(here))
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    url = urlparse(direct.get("url", ""))
    folder = unquote(url.path) if "dir_info" in direct and url.scheme == "file" else ""
    editable = bool(folder) and bool(direct["dir_info"].get("editable"))
    imported_from = Path(folder).resolve() if editable else Path(str(dist.locate_file(""))).resolve()
    if imported_from != here and (here / "pyproject.toml").is_file():
        return Origin("source", str(here))  # a checkout on sys.path, not the installed copy
    if folder:
        return Origin("editable" if editable else "folder", folder, dist.version)
    return Origin("index", "", dist.version)


def install_command(extra: str | None = None, packages: tuple[str, ...] = ()) -> str:
    """The command that adds ``extra`` (or, for a dependency missing from a broken install, ``packages``)
    to this ndustria install, without replacing it by another version."""
    if extra is None:
        return f"pip install {' '.join(packages)}"
    found = origin()
    if found.kind != "index" and Path(found.folder).is_dir():
        flag = "" if found.kind == "folder" else "-e "
        return f"pip install {flag}'{found.folder}[{extra}]'"
    pinned = f"=={found.version}" if found.version else ""
    return f"pip install 'ndustria[{extra}]{pinned}'"


def has_module(name: str) -> bool:
    """Whether ``import name`` can find the module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing, or sys.modules[name] is None
        return False


def require(module: str, needed_for: str, *, extra: str | None = None, also: str = "") -> None:
    """Raise :class:`ConfigError` now if ``module`` cannot be imported: ``needed_for`` says what asked for
    it, the message says how to install it into this ndustria install (``also``: a last sentence)."""
    if module in sys.modules and sys.modules[module] is not None:
        return
    if has_module(module):
        return
    how = install_command(extra, (module,))
    raise ConfigError(f"{needed_for} needs {module}, which is not installed in this environment ({sys.prefix}): "
                      f"{how}{'. ' + also if also else ''}")
