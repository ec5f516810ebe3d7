"""ndustria's notebook layer: magics, the per-kernel pipeline, widgets and the server extension.

It imports ``ndustria``; ``ndustria`` never imports it (except lazily for ``%load_ext ndustria``).
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ndustria``: register ``%%task``, ``%%ndustria`` and ``%ndustria``, set up the kernel pipeline."""
    from .kernel import get_state
    from .magics import NdustriaMagics

    get_state(ipython)
    ipython.register_magics(NdustriaMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ndustria``: remove the magics and stop the kernel's cluster."""
    from .kernel import drop_state

    magics = ipython.magics_manager.magics
    for kind, name in (("cell", "task"), ("cell", "ndustria"), ("line", "ndustria")):
        magics[kind].pop(name, None)
    ipython.magics_manager.registry.pop("NdustriaMagics", None)
    drop_state(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server extension (JSON endpoints under ``/ndustria/api/``) lives in this module."""
    return [{"module": "ndustria_nb"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab sidebar, for ``jupyter labextension develop``."""
    return [{"src": "labextension", "dest": "ndustria-labextension"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the ndustria API routes with a running Jupyter server."""
    from .server import setup_handlers

    setup_handlers(server_app)
    server_app.log.info("ndustria server extension loaded: /ndustria/api/")
