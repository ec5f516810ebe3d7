"""Where the cache lives, and how that is decided.

Precedence, highest first: a keyword argument > the ``NDUSTRIA_CACHE_DIR``
environment variable > the config file ``ndustria init`` wrote > the original
ndustria's ``~/.ndustria_config`` (a ``NDUSTRIA_CACHE_DIR=...`` line) >
``~/.ndustria_cache``. Nothing here edits shell start-up files.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ndustria.atomic import publish_whole, read_whole
from ndustria.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_CACHE_DIR = "NDUSTRIA_CACHE_DIR"
ENV_CONFIG_FILE = "NDUSTRIA_CONFIG_FILE"
LEGACY_CONFIG = "~/.ndustria_config"
DEFAULT_CACHE_DIR = "~/.ndustria_cache"


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (for `ndustria config` and error messages)."""

    value: str
    source: str


def config_file_path() -> Path:
    """The config file `ndustria init` writes (``$NDUSTRIA_CONFIG_FILE`` overrides the location)."""
    override = os.environ.get(ENV_CONFIG_FILE)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("ndustria")) / "config.toml"


def read_config_file(path: Path | None = None) -> dict[str, object]:
    """The settings in the config file, or ``{}`` when there is none."""
    path = path or config_file_path()
    if not path.is_file():
        return {}

    def fail(exc: ValueError) -> ConfigError:
        return ConfigError(f"cannot read the ndustria config file {path}: {exc}. Fix it or run `ndustria init`.")

    try:
        return read_whole(path, lambda data: tomllib.loads(data.decode("utf-8")), fail=fail)
    except FileNotFoundError:  # removed since the check
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the ndustria config file {path}: {exc}. Fix it or run `ndustria init`.") \
            from exc


def _read_legacy_config() -> str | None:
    path = Path(LEGACY_CONFIG).expanduser()
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip().removeprefix("export ").strip() == ENV_CACHE_DIR:
            return value.strip().strip("'\"")
    return None


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Setting:
    """Decide the cache directory by the documented precedence."""
    if cache_dir is not None:
        return Setting(_expand(cache_dir), "argument")
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Setting(_expand(env), f"environment {ENV_CACHE_DIR}")
    file_value = read_config_file().get("cache_dir")
    if file_value:
        return Setting(_expand(str(file_value)), f"config file {config_file_path()}")
    legacy = _read_legacy_config()
    if legacy:
        return Setting(_expand(legacy), f"legacy config {LEGACY_CONFIG}")
    return Setting(_expand(DEFAULT_CACHE_DIR), "default")


def write_config_file(settings: dict[str, str], path: Path | None = None) -> Path:
    """Write (merge) settings into the config file; returns its path."""
    path = path or config_file_path()
    merged = {**read_config_file(path), **settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# written by `ndustria init`; edit freely or run it again", ""]
    for name, value in sorted(merged.items()):
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name} = "{escaped}"')
    publish_whole(path, "\n".join(lines) + "\n", replace=True, mode=0o644)  # readers see the old file or this one
    return path


def _expand(value: str | os.PathLike) -> str:
    return str(Path(os.path.expandvars(os.fspath(value))).expanduser().absolute())
