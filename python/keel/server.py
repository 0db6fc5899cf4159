"""``keel serve``: hosts saved endpoints over HTTP (JSON), the same Endpoint objects a notebook uses.

    POST /endpoints/<name>/predict   {"player_id": 42, "tenant": "studio-a"}  -> {prediction, variant, model,
                                                                                  version, fallback, missing, stale}
                                     [{...}, {...}]                          -> [{...}, {...}] (one batch)
    GET  /endpoints                  saved endpoints and their revisions
    GET  /endpoints/<name>           the endpoint's definition, revision, weights and counters
    GET  /healthz                    {"ok": true}  (the only route that needs no token)

Every other route needs ``Authorization: Bearer <token>``: the token given to ``keel serve``
(``--token-file`` or ``$KEEL_SERVE_TOKEN``), or a random one it prints at start. A missing or wrong
token is 401 PermissionDenied. Request bodies over 8 MiB are refused with 413.

Errors come back as ``{"error": <Kind>, "message": ...}`` with the kind's HTTP status (NotFound 404,
InvalidArgument 400, AlreadyExists/Conflict 409, PermissionDenied 403, PluginError 502, others 500).
A first, standard-library server: one process, a thread per connection, Python's GIL.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from keel import _core, errors

MAX_BODY = 8 << 20
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
        store = _core.EndpointStore(self.ws.native)
        names = [n for n in store.names() if self.names is None or n in self.names]
        return [{"name": n, "revision": store.current_revision(n)} for n in names]

    def close(self) -> None:
        for ep, lock in list(self._open.values()):
            with lock:
                ep.flush()


def _handler(host: EndpointHost, token: str | None):
    expected = None if token is None else f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "keel"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: access logs are the assignment log
            pass

        def _send(self, status: int, payload, headers: dict | None = None) -> None:
            body = json.dumps(payload, default=str).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
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

        def _authorized(self) -> bool:
            """Constant-time bearer check; answers 401 itself when the token is missing or wrong."""
            if expected is None:
                return True
            given = (self.headers.get("Authorization") or "").encode()
            if hmac.compare_digest(given, expected):
                return True
            self._send(401, {"error": "PermissionDenied",
                             "message": "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                        "with the token keel serve was started with"},
                       {"WWW-Authenticate": 'Bearer realm="keel"'})
            return False

        def do_GET(self):  # noqa: N802 - http.server's naming
            try:
                parts = self._parts()
                if parts == ["healthz"]:
                    self._send(200, {"ok": True})
                elif not self._authorized():
                    return
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
                if not self._authorized():
                    return
                parts = self._parts()
                if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "predict":
                    raise errors.NotFound(f"no route POST {self.path} (use /endpoints/<name>/predict)")
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.close_connection = True
                    self._send(413, {"error": "InvalidArgument",
                                     "message": f"request body of {length} bytes is over the {MAX_BODY} byte limit: "
                                                "send smaller batches"})
                    return
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


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class EndpointServer(ThreadingHTTPServer):
    """The HTTP server of ``keel serve``, holding the endpoints it hosts."""

    endpoints: EndpointHost


def make_server(ws, names: Iterable[str] | None = None, host: str = "127.0.0.1", port: int = 8080, *,
                token: str | None) -> EndpointServer:
    """A ThreadingHTTPServer hosting the workspace's saved endpoints (call ``serve_forever()``).

    ``token`` is the bearer token every request but /healthz must carry. ``None`` turns auth off,
    which is allowed only on a loopback host (behind a proxy that authenticates for you).
    """
    if token is None and host not in LOOPBACK:
        raise errors.InvalidArgument(f"refusing to serve on {host} without a token: pass token=... "
                                     "(keel serve --token-file, or $KEEL_SERVE_TOKEN)")
    if token is not None and len(token) < 16:
        raise errors.InvalidArgument(f"the serving token is {len(token)} characters long: use at least 16 "
                                     "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    endpoints = EndpointHost(ws, names)
    server = EndpointServer((host, port), _handler(endpoints, token))
    server.daemon_threads = True
    server.endpoints = endpoints
    return server


def serve(ws, names: Iterable[str] | None = None, host: str = "127.0.0.1", port: int = 8080,
          token: str | None = None) -> None:
    """Serve until interrupted. Without a token, a random one is made and printed once."""
    generated = token is None
    token = token or secrets.token_urlsafe(32)
    server = make_server(ws, names, host, port, token=token)
    print(f"keel serve: {', '.join(e['name'] for e in server.endpoints.saved()) or 'no endpoints yet'} "
          f"on http://{host}:{server.server_port}", flush=True)
    if generated:
        print(f"keel serve: token {token} (send 'Authorization: Bearer <token>'; set $KEEL_SERVE_TOKEN or "
              "--token-file to choose it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.endpoints.close()
        server.server_close()
