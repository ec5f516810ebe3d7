"""HTTP layer of the server extension: authenticated JSON handlers, a route table, one error format.

Every route but ``caches`` takes ``?cache=PATH`` (one of the folders ``caches`` lists; default: the
server's own cache).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tornado.httputil
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from traitlets import Unicode
from traitlets.config import Configurable

from ndustria.config import resolve_cache_dir

from .. import registry
from . import caches, core, graph

API = "ndustria/api"


class NdustriaServer(Configurable):
    """Settings of the ndustria server extension (``c.NdustriaServer.cache_dir = ...``)."""

    cache_dir = Unicode(None, allow_none=True, config=True,
                        help="Cache directory to show; default: NDUSTRIA_CACHE_DIR, `ndustria init`'s config file, "
                             "then ~/.ndustria_cache.")


def status_for(exc: BaseException) -> tuple[int, str]:
    """HTTP status and message for an exception raised while serving a request."""
    if isinstance(exc, tornado.web.HTTPError):
        return exc.status_code, exc.log_message or exc.reason or tornado.httputil.responses.get(exc.status_code, "")
    if isinstance(exc, core.NotFoundError):
        return 404, str(exc)
    if isinstance(exc, caches.ForbiddenCacheError):
        return 403, str(exc)
    if isinstance(exc, ValueError):
        return 400, str(exc)
    return 500, f"{type(exc).__name__}: {exc}"


class BaseHandler(APIHandler):
    """Answers JSON; every error as ``{"code": ..., "message": ...}``."""

    def initialize(self, settings: NdustriaServer, registry_file: Path) -> None:
        self.ndustria = settings
        self.registry_file = registry_file

    @property
    def default_cache_dir(self) -> Path:
        return Path(resolve_cache_dir(self.ndustria.cache_dir or None).value)

    @property
    def cache_dir(self) -> Path:
        """The cache the request names (``?cache=PATH``: the server's or a kernel's), else the server's."""
        return caches.resolve(self.get_query_argument("cache", None), self.default_cache_dir, self.registry_file)

    def reply(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        code, message = status_for(value) if value is not None else (500, "")
        if code < 500:  # the user's mistake or a missing cache: one line, no traceback
            self.log.warning("ndustria API %s %s: %s", self.request.method, self.request.path, message)
        else:
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        code, message = (status_for(exc_info[1]) if exc_info and exc_info[1] is not None
                         else (status_code, self._reason))
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": code, "message": message}))


class RunsHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        limit = int(self.get_query_argument("limit", "50"))
        self.reply({"cache_dir": str(self.cache_dir), "runs": core.list_runs(self.cache_dir, limit)})


class TasksHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        self.reply(core.run_tasks(self.cache_dir, int(run_id)))


class CacheHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply({"cache_dir": str(self.cache_dir), "entries": core.cache_entries(self.cache_dir)})


class CacheEntryHandler(BaseHandler):
    @tornado.web.authenticated
    def delete(self, key: str) -> None:
        self.reply(core.delete_entry(self.cache_dir, key))


class GraphHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        self.reply(graph.run_graph(self.cache_dir, int(run_id)))


class CachesHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.reply({"default": str(self.default_cache_dir),
                    "caches": caches.choices(self.default_cache_dir, self.registry_file)})


ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"caches", CachesHandler),
    (r"runs", RunsHandler),
    (r"runs/(\d+)/tasks", TasksHandler),
    (r"runs/(\d+)/graph", GraphHandler),
    (r"cache", CacheHandler),
    (r"cache/([^/]+)", CacheEntryHandler),
]


def setup_handlers(server_app: Any) -> None:
    """Register the routes under ``<base_url>/ndustria/api/``."""
    web_app = server_app.web_app
    settings = NdustriaServer(parent=server_app)
    registry_file = registry.registry_path(getattr(server_app, "runtime_dir", None))
    base = url_path_join(web_app.settings["base_url"], API)
    web_app.add_handlers(".*$", [(url_path_join(base, path), handler,
                                  {"settings": settings, "registry_file": registry_file})
                                 for path, handler in ROUTES])
