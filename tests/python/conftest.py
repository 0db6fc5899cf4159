import sys
from pathlib import Path

import pytest

import keel

# tests/servers: the throwaway PostgreSQL, S3 and Redis servers (servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))


@pytest.fixture
def ws(tmp_path):
    """A fresh workspace in a temporary directory."""
    return keel.open(tmp_path / "ws.keel")


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
