import os
import sys
import uuid
from pathlib import Path

import pytest

import keel

# tests/servers: the throwaway PostgreSQL, S3 and Redis servers (servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))


# The `ws` of these files runs on every shape a workspace takes. "sqlite": a directory (keel.db and
# object files). "s3": SQLite metadata, objects on S3 (SeaweedFS). "postgres": a team workspace,
# metadata in a schema of its own on the session's PostgreSQL, objects on S3 where the file runs on
# S3 too, else in a temporary directory. Servers start once per session; each test gets a fresh schema
# and bucket prefix. A test that looks at the workspace's own object files (what a crash leaves in a
# view's folder) is marked `local_objects`.
S3_MODULES = {"test_registry", "test_features", "test_artifact_safety", "test_model_tampering", "test_serving"}
POSTGRES_MODULES = {"test_tracking", "test_registry", "test_lineage", "test_features", "test_serving", "test_defs",
                    "test_quality", "test_quality_rules", "test_quality_store", "test_pii_readers"}


def pytest_configure(config):
    config.addinivalue_line("markers", "local_objects: the test reads the workspace directory's object files")


def pytest_generate_tests(metafunc):
    if "ws" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    local_objects = metafunc.definition.get_closest_marker("local_objects") is not None
    shapes = ["sqlite"]
    if module in S3_MODULES and not local_objects:
        shapes.append("s3")
    if module in POSTGRES_MODULES:
        shapes.append("postgres")
    if len(shapes) > 1:
        metafunc.parametrize("backend", shapes, indirect=True)


@pytest.fixture
def backend(request):
    """The shape of `ws`: "sqlite" unless the test file runs on several."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def run_sql(backend, request):
    """run_sql(ws, sql): SQL straight into the workspace's metadata, past Keel (to fake what Keel
    would not write, such as another host's heartbeat), on either backend."""
    def run(ws, sql: str) -> None:
        if backend != "postgres":
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
    """A fresh workspace of the test's shape (see above)."""
    if backend == "sqlite":
        return keel.open(tmp_path / "ws.keel")
    if backend == "s3":
        return keel.open(tmp_path / "ws.keel", artifacts=request.getfixturevalue("s3_prefix"))
    server = request.getfixturevalue("postgres_server")
    url = f"{server.url}?schema=t_{uuid.uuid4().hex[:16]}"
    module = request.module.__name__.rpartition(".")[2]
    if module in S3_MODULES and request.node.get_closest_marker("local_objects") is None:
        return keel.open(url, artifacts=request.getfixturevalue("s3_prefix"), cache_dir=tmp_path / "cache")
    return keel.open(url, artifacts=tmp_path / "ws.keel")


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    """A bucket of the session's S3 server, for workspaces' objects."""
    return s3_server.create_bucket("keel-objects")


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The AWS variables pointing at the session's S3 server (inherited by subprocesses)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_REGION", s3_server.region)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("KEEL_ARTIFACTS", raising=False)
    return s3_server


@pytest.fixture
def s3_prefix(s3_env, s3_bucket):
    """A fresh s3://bucket/prefix for one test's workspace (the AWS variables set)."""
    return f"s3://{s3_bucket}/t-{uuid.uuid4().hex[:12]}"


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
