"""ipyparallel clusters: the local one ndustria starts, or one the user attaches.

A local cluster is started on first use with ``ipp.Cluster(n=engines)`` and kept
in a module-level registry, so every pipeline of the process reuses it (starting
one takes seconds); it is stopped at exit, or at once when a run is interrupted.
A cluster the user passes (``cluster=`` an ``ipp.Cluster``, an ``ipp.Client``, a
profile name, a cluster id or a ``ipcontroller-client.json`` path) is used as it
is and never stopped by ndustria — that is how MPI, SSH and batch-system engines
are reached.

Tasks go through ipyparallel's own load balancer: ``LoadBalancedView.executor``; the
local cluster's scheduler may hand each engine two submissions (``TaskScheduler.hwm=2``),
so an engine holds its next batch while it runs one. Engines must be able to import
ndustria (same environment, or installed there), and, unless ``shared_cache=False``, see
the cache directory at the same path.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ndustria.errors import ConfigError, NdustriaError
from ndustria.install import require

log = logging.getLogger("ndustria")

_LOCK = threading.Lock()
_CLUSTERS: dict[int, Any] = {}  # engines -> a running ipp.Cluster that ndustria started
_CLIENTS: dict[int, Any] = {}  # id(cluster) -> its connected ipp.Client


def _ipp() -> Any:
    require("ipyparallel", "the ipyparallel backend")
    import ipyparallel

    return ipyparallel


def local_client(engines: int) -> Any:
    """A client of this process's local cluster with ``engines`` engines, started on first use."""
    with _LOCK:
        cluster = _CLUSTERS.get(engines)
        if cluster is not None and _alive(_CLIENTS.get(id(cluster))):
            return _CLIENTS[id(cluster)]
        ipp = _ipp()
        log.info("starting a local ipyparallel cluster with %d engines", engines)
        cluster = ipp.Cluster(n=engines, log_level=40, shutdown_atexit=False,  # stopped by stop_local
                              controller_args=["--TaskScheduler.hwm=2"])
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(engines, timeout=120)
        _CLUSTERS[engines], _CLIENTS[id(cluster)] = cluster, client
        return client


def _alive(client: Any) -> bool:
    return client is not None and not getattr(client, "_closed", False) and len(client.ids) > 0


def stop_local(engines: int | None = None) -> None:
    """Stop the local cluster(s) ndustria started (all of them when ``engines`` is None)."""
    with _LOCK:
        sizes = list(_CLUSTERS) if engines is None else [engines]
        for n in sizes:
            cluster = _CLUSTERS.pop(n, None)
            if cluster is None:
                continue
            client = _CLIENTS.pop(id(cluster), None)
            try:
                if client is not None:
                    client.close()
                cluster.stop_cluster_sync()
            except Exception as exc:  # pragma: no cover - best effort at exit
                log.warning("could not stop the ipyparallel cluster: %s", exc)


def local_cluster(engines: int) -> Any | None:
    """The running ``ipp.Cluster`` ndustria started with ``engines`` engines, if any."""
    return _CLUSTERS.get(engines)


atexit.register(stop_local)


def watchdog(client: Any, engines: int | None, grace: float = 60.0) -> Callable[[], None]:
    """A check the scheduler calls while it waits: engines that died are replaced (local cluster)
    and a cluster left with no engines for ``grace`` seconds ends the run instead of hanging it."""
    since: float | None = None
    next_start = 0.0

    def check() -> None:
        nonlocal since, next_start
        alive = len(client.ids)
        now = time.monotonic()
        since = None if alive else (since or now)
        cluster = _CLUSTERS.get(engines) if engines else None
        if cluster is not None and alive < engines and now >= next_start:
            log.warning("%d of %d ipyparallel engines died; starting replacements", engines - alive, engines)
            cluster.start_engines_sync(n=engines - alive)
            next_start = now + 30  # give them time to register
        if since is not None and now - since > grace:
            raise NdustriaError(f"the ipyparallel cluster has had no engines for {grace:.0f} s; the run was "
                                "stopped. Start engines (or let ndustria start its own cluster) and run again.")

    return check


def attach(cluster: Any) -> Any:
    """An ``ipp.Client`` for what the user passed as ``cluster=``."""
    ipp = _ipp()
    if isinstance(cluster, ipp.Client):
        return cluster
    if isinstance(cluster, ipp.Cluster):
        return cluster.connect_client_sync()
    if isinstance(cluster, (str, os.PathLike)):
        return _client_from_name(ipp, os.fspath(cluster))
    raise ConfigError(f"cluster= takes an ipyparallel Cluster or Client, a profile name, a cluster id or a "
                      f"connection file, not {type(cluster).__name__}")


def _client_from_name(ipp: Any, name: str) -> Any:
    if name.endswith(".json") and Path(name).expanduser().is_file():
        return ipp.Client(url_file=str(Path(name).expanduser()))
    errors = []
    for kwargs in ({"profile": name}, {"cluster_id": name}):
        try:
            return ipp.Client(**kwargs)
        except Exception as exc:  # noqa: BLE001 - ipyparallel raises several kinds here
            errors.append(f"{kwargs}: {exc}")
    raise ConfigError(f"cannot connect to the ipyparallel cluster {name!r} (tried it as a profile and as a "
                      f"cluster id: {'; '.join(errors)}). Start it with `ipcluster start` or pass the Cluster.")
