"""Cache eviction: a size limit, least recently used first, never what the current run uses.

The limit comes from ``Pipeline(max_cache_size=...)`` > ``$NDUSTRIA_MAX_CACHE_SIZE`` > the
config file's ``max_size`` > none. Sizes are bytes or strings like ``"10GB"``, ``"500 MiB"``;
ages (``ndustria cache gc --older-than``) are seconds or strings like ``"7d"``, ``"12h"``.
"Used" is the catalog's ``last_used`` (set when an entry is written or found cached); an
entry the catalog does not know counts as used when its file was last modified.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ndustria.config import read_config_file
from ndustria.errors import ConfigError, CorruptEntryError

__all__ = ["GcResult", "collect", "enforce_limit", "parse_age", "parse_size", "resolve_max_size", "verify_all"]

log = logging.getLogger("ndustria")
ENV_MAX_SIZE = "NDUSTRIA_MAX_CACHE_SIZE"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_AGES = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def _parse(value: int | float | str, units: dict[str, int], what: str, example: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        m = _NUMBER.fullmatch(str(value))
        if not m or m[2].lower() not in units:
            raise ConfigError(f"invalid {what} {value!r}: use a number with a unit, like {example}")
        number, unit = float(m[1]), m[2].lower()
    if number < 0:
        raise ConfigError(f"invalid {what} {value!r}: it must not be negative")
    return number * units[unit]


def parse_size(value: int | float | str) -> int:
    """Bytes from ``10**9``, ``"10GB"`` (10**9), ``"1.5 GiB"`` (2**30 * 1.5), ``"500MB"``..."""
    return int(_parse(value, _UNITS, "size", '"10GB" or "500MiB"'))


def parse_age(value: int | float | str) -> float:
    """Seconds from ``3600``, ``"7d"``, ``"12h"``, ``"30min"``, ``"90s"``, ``"2w"``."""
    return _parse(value, _AGES, "age", '"7d", "12h" or "30min"')


def resolve_max_size(argument: int | str | None = None) -> int | None:
    """The size limit in bytes by the precedence above; None when there is none."""
    if argument is not None:
        return parse_size(argument)
    env = os.environ.get(ENV_MAX_SIZE)
    if env:
        return parse_size(env)
    value = read_config_file().get("max_size")
    return parse_size(value) if value not in (None, "") else None  # type: ignore[arg-type]


@dataclass
class GcResult:
    """What a collection removed, and what is left."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    freed: int = 0
    remaining: int = 0
    kept_in_use: int = 0  # bytes over the limit that the current run still uses


def _rows(store: Any, catalog: Any) -> list[dict[str, Any]]:
    known = {row["key"]: row for row in catalog.entries()}
    rows = []
    for key, (size, written) in store.stats().items():
        row = dict(known.get(key) or {"key": key, "task": "(unknown task)"})
        row["size"] = size
        row["last_used"] = row.get("last_used") or written
        rows.append(row)
    rows.sort(key=lambda r: r["last_used"])  # least recently used first
    return rows


def collect(store: Any, catalog: Any, *, max_size: int | None = None, older_than: float | None = None,
            keep: Iterable[str] = (), dry_run: bool = False) -> GcResult:
    """Remove entries unused for ``older_than`` seconds, then the least recently used until the
    cache holds at most ``max_size`` bytes. Keys in ``keep`` are never removed. ``dry_run``: only
    say what would be removed."""
    keep = set(keep)
    rows = _rows(store, catalog)
    result = GcResult(remaining=sum(r["size"] for r in rows))
    now = time.time()
    for row in rows:
        old = older_than is not None and now - row["last_used"] > older_than
        over = max_size is not None and result.remaining > max_size
        if not (old or over):
            continue
        if row["key"] in keep:
            continue
        if not dry_run:
            store.remove(row["key"])
            catalog.remove_entry(row["key"])
        result.removed.append(row)
        result.freed += row["size"]
        result.remaining -= row["size"]
    if max_size is not None and result.remaining > max_size:
        result.kept_in_use = result.remaining - max_size
    return result


def enforce_limit(store: Any, catalog: Any, max_size: int | None, keep: Iterable[str]) -> GcResult | None:
    """Called at the end of a run: apply the size limit, sparing the run's own entries."""
    if max_size is None:
        return None
    result = collect(store, catalog, max_size=max_size, keep=keep)
    if result.removed:
        log.info("cache over %d bytes: removed %d least recently used entries (%d bytes)",
                 max_size, len(result.removed), result.freed)
    if result.kept_in_use:
        log.warning("the cache at %s is %d bytes over its limit with entries the current run uses",
                    store.root, result.kept_in_use)
    return result


def verify_all(store: Any, catalog: Any, *, remove: bool = True) -> tuple[int, list[CorruptEntryError]]:
    """Check every checksum of every entry; damaged ones are removed. Returns (checked, damaged)."""
    checked, damaged = 0, []
    for key in list(store.keys()):
        try:
            store.verify(key)
        except KeyError:  # removed meanwhile
            continue
        except CorruptEntryError as exc:
            damaged.append(exc)
            if remove:
                store.remove(key)
                catalog.remove_entry(key)
        checked += 1
    return checked, damaged
