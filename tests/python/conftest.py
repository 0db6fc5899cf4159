import sys
import uuid
from pathlib import Path

import pytest

import keel

# tests/servers: the throwaway PostgreSQL, S3 and Redis servers (servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))


# These files run their `ws` tests twice: objects in the workspace directory, and on S3 (SeaweedFS,
# started once per session, a fresh bucket prefix per test). A test that looks at the workspace's
# own files (what a crash leaves in a view's folder) is marked `local_objects`.
S3_MODULES = {"test_registry", "test_features", "test_artifact_safety", "test_model_tampering", "test_serving"}


def pytest_configure(config):
    config.addinivalue_line("markers", "local_objects: the test reads the workspace directory's object files")


def pytest_generate_tests(metafunc):
    if ("ws" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in S3_MODULES
            and metafunc.definition.get_closest_marker("local_objects") is None):
        metafunc.parametrize("ws", ["local", "s3"], indirect=True)


@pytest.fixture
def ws(request, tmp_path):
    """A fresh workspace in a temporary directory (objects on S3 for the "s3" parameter)."""
    if getattr(request, "param", "local") == "s3":
        return keel.open(tmp_path / "ws.keel", artifacts=request.getfixturevalue("s3_prefix"))
    return keel.open(tmp_path / "ws.keel")


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
