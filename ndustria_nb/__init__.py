"""ndustria's notebook layer: magics, the per-kernel pipeline, widgets and the server extension.

It imports ``ndustria``; ``ndustria`` never imports it (except lazily for ``%load_ext ndustria``).
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Register ndustria's magics (the notebook layer's own issue fills this in)."""
    from ndustria import NdustriaError

    raise NdustriaError("the notebook layer (%load_ext ndustria) is not available in this version yet")


def unload_ipython_extension(ipython: Any) -> None:
    return None
