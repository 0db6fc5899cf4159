import os
import sys
import uuid
from pathlib import Path

import pytest

import keel

# tests/servers: the throwaway PostgreSQL, S3 and Redis servers (servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))


# The test files whose `ws` runs on both metadata backends: each test once on SQLite, once on the
# session's PostgreSQL in a schema of its own.
BOTH_BACKENDS = {"test_tracking", "test_registry", "test_lineage", "test_features", "test_serving"}


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rpartition(".")[2]
    if "ws" in metafunc.fixturenames and module in BOTH_BACKENDS:
        metafunc.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def backend(request):
    """The metadata backend of `ws`: "sqlite" unless the test file runs on both."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def run_sql(backend, request):
    """run_sql(ws, sql): SQL straight into the workspace's metadata, past Keel (to fake what Keel
    would not write, such as another host's heartbeat), on either backend."""
    def run(ws, sql: str) -> None:
        if backend == "sqlite":
            import sqlite3
            with sqlite3.connect(Path(ws.path) / "keel.db") as db:
                db.executescript(sql)
            return
        import subprocess
        server = request.getfixturevalue("postgres_server")
        schema = ws.metadata.rpartition("schema=")[2]
        subprocess.run([str(server.bin / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql, server.url],
                       check=True, capture_output=True, env={**os.environ, "PGOPTIONS": f"-csearch_path={schema}"})
    return run


@pytest.fixture
def ws(tmp_path, backend, request):
    """A fresh workspace: a temporary directory, or a fresh schema on the session's PostgreSQL with
    its files in a temporary directory."""
    if backend == "sqlite":
        return keel.open(tmp_path / "ws.keel")
    server = request.getfixturevalue("postgres_server")
    return keel.open(f"{server.url}?schema=t_{uuid.uuid4().hex[:16]}", artifacts=tmp_path / "ws.keel")


# One server of each kind per session, started only when a test asks for it and stopped at the end of
# the session (failures included). A missing binary fails the test with the fix (`make deps`); no skip.
@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL: `.url` is postgresql://postgres@127.0.0.1:PORT/keel."""
    from servers import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """SeaweedFS's S3 gateway: `.endpoint`, `.access_key`, `.secret_key`, `.region`, `create_bucket(name)`."""
    from servers import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server():
    """A throwaway redis-server: `.url` is redis://127.0.0.1:PORT/0."""
    from servers import RedisServer

    with RedisServer() as server:
        yield server
