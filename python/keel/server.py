"""``keel serve`` from Python: starts the native server (``keel-server``, C++, no Python in its request path).

    server = keel.serve(ws, ["churn"])            # a laptop: a random token, loopback, any free port
    server.predict("churn", {"player_id": 42})    # {"prediction": ..., "variant": ..., ...}
    server.stop()                                  # or `with keel.serve(...) as server:`

The server runs in its own process and reads the same workspace files as the notebook: a new
endpoint revision, a moved alias or new weights are served within a second, without a restart.
Its routes, auth, limits and metrics are in the README ("Serving over HTTP").
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from keel import errors

_STARTUP_SECONDS = 60.0


def server_binary() -> str:
    """The ``keel-server`` executable: the one beside this package (wheel or developer build), else PATH."""
    here = Path(__file__).resolve().parent / "bin" / "keel-server"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("keel-server")
    if found:
        return found
    raise errors.NotFound(f"keel-server is not built: expected {here} (run `make build` in the Keel checkout, "
                          "or install the keel wheel, which ships it)")


def server_args(workspace: str, endpoints: Iterable[str] = (), *, host: str = "127.0.0.1", port: int = 8080,
                token_file: str | None = None, config: str | None = None, threads: int | None = None,
                tls_cert: str | None = None, tls_key: str | None = None, artifacts: str | None = None) -> list[str]:
    """The keel-server command line for these settings (flags override a --config file)."""
    args = [server_binary()]
    if config:
        args += ["--config", config]
    args += ["--workspace", workspace, "--host", host, "--port", str(port)]
    if artifacts:
        args += ["--artifacts", artifacts]
    for name in endpoints:
        args += ["--endpoint", name]
    if token_file:
        args += ["--token-file", token_file]
    if threads:
        args += ["--threads", str(threads)]
    if tls_cert:
        args += ["--tls-cert", tls_cert]
    if tls_key:
        args += ["--tls-key", tls_key]
    return args


def error_from_stderr(text: str, code: int | None) -> errors.KeelError:
    """The KeelError keel-server reported as its last JSON line on stderr (or a generic one)."""
    for line in reversed(text.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "error" in doc:
            kind = getattr(errors, str(doc["error"]), errors.Internal)
            if isinstance(kind, type) and issubclass(kind, errors.KeelError):
                return kind(doc.get("message", ""))
    return errors.Internal(f"keel-server exited with code {code} before listening: {text.strip()[-2000:]}")


class Server:
    """A running ``keel-server`` process: where it listens, its token, a small client, ``stop()``."""

    def __init__(self, process: subprocess.Popen, announced: dict, token: str | None, token_dir: str | None):
        self.process = process
        self.url: str = announced["url"]
        self.port: int = int(announced["port"])
        self.endpoints: list[str] = list(announced.get("endpoints") or [])
        self.token = token
        self._token_dir = token_dir
        # stderr is drained on a thread so a chatty server never blocks on a full pipe.
        self._stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header a client sends (empty when the server runs without auth)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def request(self, method: str, path: str, body: Any = None, *, accept: str = "application/json",
                timeout: float = 30.0) -> tuple[int, bytes]:
        """One HTTP call: (status, body bytes). Errors are answers here, not exceptions."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={**self.headers, "Accept": accept, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        status, raw = self.request(method, path, body)
        doc = json.loads(raw) if raw else None
        if status >= 400:
            kind = getattr(errors, str((doc or {}).get("error")), errors.Internal)
            if not (isinstance(kind, type) and issubclass(kind, errors.KeelError)):
                kind = errors.Internal
            raise kind(f"HTTP {status}: {(doc or {}).get('message', raw[:200])}")
        return doc

    def predict(self, endpoint: str, request: dict | Sequence[dict]) -> Any:
        """POST /v1/endpoints/{endpoint}/predict: one answer for a dict, a list for a list (one batch)."""
        return self._json("POST", f"/v1/endpoints/{endpoint}/predict", request)

    def online_features(self, features: Sequence[str], entities: dict[str, Sequence[Any]]) -> Any:
        """POST /v1/features/online, as the caller this server's token names."""
        return self._json("POST", "/v1/features/online", {"features": list(features), "entities": entities})

    def endpoint(self, name: str) -> Any:
        """GET /v1/endpoints/{name}: definition, revision, variants, counters."""
        return self._json("GET", f"/v1/endpoints/{name}")

    def metrics(self) -> str:
        """GET /metrics: the Prometheus text."""
        return self.request("GET", "/metrics", accept="text/plain")[1].decode()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (requests in flight finish), then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._token_dir:
            shutil.rmtree(self._token_dir, ignore_errors=True)
            self._token_dir = None
        # The pipes end with the process: close them (the stderr reader sees EOF first).
        self._drain.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None and not self._drain.is_alive():
                pipe.close()
        return self.process.returncode

    def log(self) -> str:
        """What the server wrote on stderr lately (its last 200 lines)."""
        return "".join(self._stderr)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.process.returncode}"
        return f"<keel.Server {self.url} pid={self.pid} {state} endpoints={self.endpoints}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        return html_table([{"url": self.url, "pid": self.pid, "running": self.running(),
                            "endpoints": ", ".join(self.endpoints) or "(every saved one)",
                            "auth": "bearer token" if self.token else "none (loopback)"}], title="keel serve")


def _write_token(token: str) -> tuple[str, str]:
    """A private directory holding the token in a 0600 file: (directory, file)."""
    folder = tempfile.mkdtemp(prefix="keel-serve-")
    path = os.path.join(folder, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return folder, path


def serve(workspace: Any, endpoints: Iterable[str] | None = None, *, host: str = "127.0.0.1", port: int = 0,
          token: str | None = None, config: str | None = None, threads: int | None = None,
          tls_cert: str | None = None, tls_key: str | None = None, env: dict[str, str] | None = None) -> Server:
    """Starts ``keel-server`` on ``workspace`` (a keel.Workspace, its path or its PostgreSQL URL) and waits
    until it listens.

    Without ``token`` and ``config``, a random static token is made (``server.token``): nothing is
    served unauthenticated by default. ``port=0`` picks a free port (``server.port``). A server that
    cannot start raises the KeelError it reported (a bad flag, an unknown endpoint, a port in use).
    """
    path = os.fspath(getattr(workspace, "location", workspace))  # a directory or a PostgreSQL URL
    token_dir = token_file = None
    if token is None and config is None:
        token = secrets.token_urlsafe(32)
    if token is not None:
        token_dir, token_file = _write_token(token)
    args = server_args(path, endpoints or (), host=host, port=port, token_file=token_file, config=config,
                       threads=threads, tls_cert=tls_cert, tls_key=tls_key) + ["--json"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_server_env(env))
    announced = _read_announcement(process)
    if announced is None:
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if token_dir:
            shutil.rmtree(token_dir, ignore_errors=True)
        raise error_from_stderr(err or "", process.returncode)
    return Server(process, announced, token, token_dir)


def _server_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The server's environment: this process's, with this process's plugin search path, so a plugin
    ref resolves in the server as it does in the notebook (keel.plugins.set_search_path included)."""
    from keel import plugins
    env = {**os.environ, **(extra or {})}
    roots = plugins.search_path() + [p for p in env.get("KEEL_PLUGIN_PATH", "").split(":") if p]
    env["KEEL_PLUGIN_PATH"] = ":".join(dict.fromkeys(roots))
    return env


def _read_announcement(process: subprocess.Popen) -> dict | None:
    """The JSON line keel-server prints once it listens; None when it exits (or stalls) first."""
    assert process.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(_STARTUP_SECONDS)
    if not box or not box[0].strip():
        if process.poll() is None:
            process.kill()
        return None
    try:
        doc = json.loads(box[0])
    except ValueError:
        process.kill()
        return None
    return doc if isinstance(doc, dict) and "port" in doc else None
