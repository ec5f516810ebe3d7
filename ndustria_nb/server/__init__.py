"""The ndustria server extension: JSON endpoints over the catalog, for the JupyterLab sidebar."""

from .handlers import ROUTES, NdustriaServer, setup_handlers

__all__ = ["ROUTES", "NdustriaServer", "setup_handlers"]
