"""The task graph of one run, for the sidebar's graph view: nodes with state and duration, and edges.

A cached task's duration is that of the run that computed it (what it saves each time it is found).
Runs recorded before the catalog kept edges (``run_members.deps``) come without them (``edges: null``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core import NotFoundError, open_catalog

MAX_NODES = 400  # beyond this a drawing says little; the table lists every task


def run_graph(cache_dir: Path, run_id: int, limit: int = MAX_NODES) -> dict[str, Any]:
    """{"run_id", "pipeline", "nodes": [{key, task, function, status, duration, computed_in}], "edges":
    [[input key, dependent key]] or None, "total": number of tasks} of run ``run_id``."""
    with open_catalog(cache_dir) as catalog:
        run = catalog.run(run_id)
        if run is None:
            raise NotFoundError(f"No run {run_id} in {cache_dir}: list the runs with `ndustria runs`.")
        tasks = catalog.tasks(run_id)
        edges = catalog.edges(run_id)
        earlier = catalog.last_executions([t["key"] for t in tasks if t["status"] == "cached"])
    shown = tasks[:limit]
    keys = {t["key"] for t in shown}
    nodes = []
    for t in shown:
        before = earlier.get(t["key"]) if t["status"] == "cached" else None
        nodes.append({"key": t["key"], "task": t["task"], "function": t["function"], "status": t["status"],
                      "duration": before["wall_s"] if before else t["wall_s"],
                      "computed_in": before["run_id"] if before else None, "error": t["error"] or None})
    return {"run_id": run_id, "pipeline": run["pipeline"], "nodes": nodes, "total": len(tasks),
            "edges": None if edges is None else [[a, b] for a, b in edges if a in keys and b in keys]}
