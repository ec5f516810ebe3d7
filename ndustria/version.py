"""The version of ndustria (read by the build, the CLI and bundles)."""

__version__ = "0.1.0"
