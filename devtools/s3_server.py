"""An S3-compatible server (moto) on 127.0.0.1, for tests and benchmarks of the S3 code paths.

It runs as a process of its own, so that writers in other processes (parallel runs, DVC)
reach it like a real object store. The credentials it accepts are fake; `environment()`
gives the AWS_* variables that deltalake, pyarrow and DVC read from the process
environment, which is the only way the platform takes storage credentials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from devtools.processes import START_TIMEOUT, free_port, terminate, wait_until

REGION = "us-east-1"
FAKE_ACCESS_KEY_ID = "platform-test-key"
FAKE_SECRET_ACCESS_KEY = "platform-test-secret-not-a-real-one"


@dataclass(frozen=True)
class LocalS3:
    endpoint: str
    process: subprocess.Popen

    def environment(self) -> dict[str, str]:
        """The AWS_* variables a client of this server needs (fake credentials, plain HTTP)."""
        return {
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def storage_options(self) -> dict[str, str]:
        """Non-secret deltalake options (PLATFORM_STORAGE_OPTIONS) for this server.

        `conditional_put=etag` makes delta-rs commit with a conditional PUT, so concurrent
        writers cannot overwrite each other's log entry.
        """
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"}

    def storage_options_json(self) -> str:
        return json.dumps(self.storage_options())

    def create_buckets(self, *names: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        )
        for name in names:
            client.create_bucket(Bucket=name)


def _wait_until_up(endpoint: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    def status() -> int:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        return requests.get(f"{endpoint}/moto-api/", timeout=10).status_code

    wait_until(
        status,
        lambda code: code < 500,
        what=f"the moto server at {endpoint} to answer (log: {log})",
        timeout=timeout,
        interval=0.2,
        # Refused while it starts; slow to answer on a busy machine.
        retry_on=(requests.RequestException,),
        show=lambda code: f"HTTP {code}",
    )


@contextmanager
def local_s3(log: Path, timeout: float = START_TIMEOUT) -> Iterator[LocalS3]:
    """Start a moto server on a free port of 127.0.0.1, wait until it answers, stop it on exit."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
    try:
        _wait_until_up(endpoint, process, log, timeout)
        yield LocalS3(endpoint, process)
    finally:
        terminate(process, timeout=10)
