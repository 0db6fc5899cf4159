"""``keel serve``: hosts saved endpoints over HTTP (JSON), the same Endpoint objects a notebook uses.

    POST /endpoints/<name>/predict   {"player_id": 42, "tenant": "studio-a"}  -> {prediction, variant, model, version}
                                     [{...}, {...}]                          -> [{...}, {...}] (one batch)
    GET  /endpoints                  saved endpoints and their revisions
    GET  /endpoints/<name>           the endpoint's definition, revision, weights and counters
    GET  /healthz                    {"ok": true}

Errors come back as ``{"error": <Kind>, "message": ...}`` with the kind's HTTP status (NotFound 404,
InvalidArgument 400, AlreadyExists/Conflict 409, PermissionDenied 403, PluginError 502, others 500).
A first, standard-library server: one process, a thread per connection, Python's GIL.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable

from keel import _core, errors

STATUS = {"NotFound": 404, "InvalidArgument": 400, "AlreadyExists": 409, "Conflict": 409, "PermissionDenied": 403,
          "PluginError": 502, "Corrupt": 500, "Internal": 500}


class EndpointHost:
    """The endpoints one server hosts, opened on first use (``names``: only these; None: any saved)."""

    def __init__(self, ws, names: Iterable[str] | None = None):
        self.ws = ws
        self.names = set(names) if names else None
        self._open: dict = {}
        self._lock = threading.Lock()
        for name in self.names or ():
            self.get(name)  # fail at start when a named endpoint does not exist

    def get(self, name: str):
        if self.names is not None and name not in self.names:
            raise errors.NotFound(f"endpoint '{name}' is not hosted here (hosted: {', '.join(sorted(self.names))})")
        with self._lock:
            ep = self._open.get(name)
            if ep is None:
                ep = self._open[name] = (self.ws.endpoint(name), threading.Lock())
        return ep

    def saved(self) -> list[dict]:
        store = _core.EndpointStore(self.ws._native)
        names = [n for n in store.names() if self.names is None or n in self.names]
        return [{"name": n, "revision": store.current_revision(n)} for n in names]

    def close(self) -> None:
        for ep, lock in list(self._open.values()):
            with lock:
                ep.flush()


def _handler(host: EndpointHost):
    class Handler(BaseHTTPRequestHandler):
        server_version = "keel"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: access logs are the assignment log
            pass

        def _send(self, status: int, payload) -> None:
            body = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _fail(self, exc: Exception) -> None:
            if isinstance(exc, errors.KeelError):
                kind = type(exc).__name__
                self._send(STATUS.get(kind, 500), {"error": kind, "message": str(exc)})
            else:
                self._send(500, {"error": "Internal", "message": f"{type(exc).__name__}: {exc}"})

        def _parts(self) -> list[str]:
            return [p for p in self.path.split("?", 1)[0].split("/") if p]

        def do_GET(self):  # noqa: N802 - http.server's naming
            try:
                parts = self._parts()
                if parts == ["healthz"]:
                    self._send(200, {"ok": True})
                elif parts == ["endpoints"]:
                    self._send(200, host.saved())
                elif len(parts) == 2 and parts[0] == "endpoints":
                    ep, lock = host.get(parts[1])
                    with lock:
                        self._send(200, {"name": ep.name, "revision": ep.revision, "definition": ep.definition,
                                         "stats": ep.stats()})
                else:
                    raise errors.NotFound(f"no route GET {self.path}")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
                self._fail(exc)

        def do_POST(self):  # noqa: N802
            try:
                parts = self._parts()
                if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "predict":
                    raise errors.NotFound(f"no route POST {self.path} (use /endpoints/<name>/predict)")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except json.JSONDecodeError as err:
                    raise errors.InvalidArgument(f"request body is not JSON: {err}") from None
                ep, lock = host.get(parts[1])
                with lock:
                    if isinstance(body, dict):
                        out = ep.predict(body)
                    elif isinstance(body, list) and all(isinstance(r, dict) for r in body):
                        out = ep.predict_batch(body)
                    else:
                        raise errors.InvalidArgument("POST a JSON object (one request) or a list of objects")
                self._send(200, out)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)

    return Handler


def make_server(ws, names: Iterable[str] | None = None, host: str = "127.0.0.1", port: int = 8080):
    """A ThreadingHTTPServer hosting the workspace's saved endpoints (call ``serve_forever()``)."""
    endpoints = EndpointHost(ws, names)
    server = ThreadingHTTPServer((host, port), _handler(endpoints))
    server.daemon_threads = True
    server.endpoints = endpoints
    return server


def serve(ws, names: Iterable[str] | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    server = make_server(ws, names, host, port)
    print(f"keel serve: {', '.join(e['name'] for e in server.endpoints.saved()) or 'no endpoints yet'} "
          f"on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.endpoints.close()
        server.server_close()
