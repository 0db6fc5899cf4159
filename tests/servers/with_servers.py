"""Runs a command with throwaway servers, for CTest: starts them, runs it, stops them, exits with its code.

    python3 tests/servers/with_servers.py --postgres --s3 [--redis] -- <command> [args...]

The command sees, for the servers asked for:
  --postgres  KEEL_TEST_PG_URL (postgresql://postgres@127.0.0.1:PORT/keel)
  --s3        KEEL_TEST_S3_ENDPOINT, KEEL_TEST_S3_BUCKET (created), AWS_ENDPOINT_URL_S3,
              AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
  --redis     KEEL_TEST_REDIS_URL
The servers are stopped also when the command fails or this script is interrupted or terminated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import PostgresServer, RedisServer, S3Server, ServerError

TEST_BUCKET = "keel-test"


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):  # CTest's timeout, or a CI runner ending the job
    raise _Terminated()


def _end(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait()


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: with_servers.py [--postgres] [--s3] [--redis] -- <command> [args...]", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description="Run a command with throwaway test servers.")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--s3", action="store_true")
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("no command after --")

    signal.signal(signal.SIGTERM, _on_sigterm)
    env = dict(os.environ)
    try:
        with contextlib.ExitStack() as stack:
            if args.postgres:
                pg = stack.enter_context(PostgresServer())
                env["KEEL_TEST_PG_URL"] = pg.url
            if args.s3:
                s3 = stack.enter_context(S3Server())
                env.update(KEEL_TEST_S3_ENDPOINT=s3.endpoint, KEEL_TEST_S3_BUCKET=s3.create_bucket(TEST_BUCKET),
                           AWS_ENDPOINT_URL_S3=s3.endpoint, AWS_ACCESS_KEY_ID=s3.access_key,
                           AWS_SECRET_ACCESS_KEY=s3.secret_key, AWS_REGION=s3.region)
            if args.redis:
                redis = stack.enter_context(RedisServer())
                env["KEEL_TEST_REDIS_URL"] = redis.url
            try:
                child = subprocess.Popen(command, env=env)
            except OSError as error:
                print(f"with_servers.py: cannot run {command[0]}: {error}", file=sys.stderr)
                return 127
            stack.callback(_end, child)  # runs first on the way out: the command ends before its servers
            return child.wait()
    except ServerError as error:
        print(f"with_servers.py: {error}", file=sys.stderr)
        return 1
    except (_Terminated, KeyboardInterrupt):
        print("with_servers.py: interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
