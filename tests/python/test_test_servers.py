"""The test servers themselves: each answers while up, enforces what it should, and is gone after stop."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from s3_request import signed_request
from servers import LOOPBACK, PostgresServer, RedisServer, S3Server, ServerError, _port_is_free

ROOT = Path(__file__).resolve().parents[2]


def _listening(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _psql(url, sql):
    return subprocess.run(["psql", url, "-Atc", sql], capture_output=True, text=True, timeout=30)


def test_postgres_answers_queries(postgres_server):
    result = _psql(postgres_server.url, "select current_database(), 6 * 7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "keel|42"
    assert postgres_server.url.startswith(f"postgresql://postgres@{LOOPBACK}:")


def test_s3_enforces_credentials(s3_server):
    bucket = s3_server.create_bucket("harness-check")
    url = f"{s3_server.endpoint}/{bucket}/hello.txt"
    status, _ = signed_request("PUT", url, s3_server.access_key, s3_server.secret_key, body=b"hello")
    assert status == 200
    status, body = signed_request("GET", url, s3_server.access_key, s3_server.secret_key)
    assert (status, body) == (200, b"hello")
    status, body = signed_request("GET", url, s3_server.access_key, "not-the-secret")
    assert status == 403 and b"SignatureDoesNotMatch" in body
    status, body = signed_request("GET", url, "NOSUCHACCESSKEY", s3_server.secret_key)
    assert status == 403 and b"InvalidAccessKeyId" in body


def test_redis_answers_ping(redis_server):
    result = subprocess.run(["redis-cli", "-p", str(redis_server.port), "ping"], capture_output=True, text=True,
                            timeout=10)
    assert result.stdout.strip() == "PONG"


@pytest.mark.parametrize("kind", [PostgresServer, S3Server, RedisServer])
def test_stop_frees_the_port_and_removes_the_folder(kind):
    with kind() as server:
        port, folder = server.port, server.dir
        assert _listening(port)
        assert folder.is_dir()
    assert not _listening(port)
    assert _port_is_free(port)
    assert not folder.exists()


def test_a_failing_test_still_stops_the_server():
    with pytest.raises(RuntimeError, match="the test failed"), RedisServer() as server:
        port, folder = server.port, server.dir
        raise RuntimeError("the test failed")
    assert not _listening(port)
    assert not folder.exists()


def test_a_missing_binary_says_to_run_make_deps(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ServerError, match=r"redis-server .* run `make deps`"):
        RedisServer()


def test_with_servers_exports_the_addresses_and_passes_the_exit_code():
    script = ("import os, sys; print(os.environ['KEEL_TEST_REDIS_URL']); sys.exit(7)")
    result = subprocess.run([sys.executable, str(ROOT / "tests/servers/with_servers.py"), "--redis", "--",
                             sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 7, result.stderr
    url = result.stdout.strip()
    assert url.startswith(f"redis://{LOOPBACK}:")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert not _listening(port)
