"""`python -m serving` as a real process on 127.0.0.1, and raw sockets to talk to it like a bad client.

What uvicorn does with a connection (a partial header, a body cut short, an idle socket) only
shows in a real server, so these tests start one over the shared champion (`tests.conftest.served`)
and read its metrics port and its stderr (kept in a file: a pipe nobody reads would fill up).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN, PROJECT, TOKEN, Served


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path
    closed: list[socket.socket] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """One request with urllib; an HTTP error status is an answer, not an exception."""
        request = urllib.request.Request(
            f"{self.base}{path}", data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Answer(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    def predict(self, flights: list[dict], token: str = TOKEN, request_id: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        if request_id:
            headers["X-Request-Id"] = request_id
        return self.request("POST", "/v1/predict", json.dumps({"flights": flights}).encode(), headers)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of the metrics port: (name, sorted labels) -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.closed.append(sock)
        return sock

    def stop(self, seconds: float = 30) -> int:
        """SIGTERM, as a pod's stop sends it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(seconds)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def server_env(served: Served, folder: Path, **settings: str) -> dict[str, str]:
    """The environment of a server over the shared champion; `settings` are PLATFORM_SERVING_* (no prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env.update(
        {
            "PLATFORM_LAKE_URI": str(served.platform.root / "lake"),
            "PLATFORM_ARTIFACTS_URI": str(served.platform.root / "models"),
            "PLATFORM_SERVING_POLL_SECONDS": "0",
            "PLATFORM_SERVING_CACHE_DIR": str(folder / "cache"),
            "PLATFORM_SERVING_SPOOL_DIR": str(folder / "spool"),
        }
    )
    if "TOKENS_FILE" not in settings:
        env["PLATFORM_SERVING_TOKEN"] = TOKEN
    if "ADMIN_TOKENS_FILE" not in settings:
        env["PLATFORM_SERVING_ADMIN_TOKEN"] = ADMIN_TOKEN
    env.update({f"PLATFORM_SERVING_{name}": value for name, value in settings.items()})
    return env


@contextmanager
def running_server(served: Served, folder: Path, **settings: str) -> Iterator[ServerProcess]:
    """A ready server (`/readyz` answered 200) on free ports; killed at the end if still running."""
    folder.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    env = server_env(served, folder, PORT=str(port), METRICS_PORT=str(metrics_port), **settings)
    log = folder / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"], cwd=PROJECT, env=env, stdout=stderr, stderr=stderr
        )
    server = ServerProcess(process, port, metrics_port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, server.stderr()
            try:
                with urllib.request.urlopen(f"{server.base}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the server did not become ready:\n" + server.stderr()
                time.sleep(0.1)
        yield server
    finally:
        for sock in server.closed:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def read_answer(sock: socket.socket, seconds: float = 10.0) -> tuple[Answer | None, float]:
    """What the server sends until it closes the connection, parsed, and how long that took."""
    sock.settimeout(seconds)
    started = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    return parse_answer(data), time.monotonic() - started


def parse_answer(data: bytes) -> Answer | None:
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body)


def predict_head(content_length: int, token: str = TOKEN, request_id: str = "") -> bytes:
    """The request line and headers of a predict request whose body is still to come."""
    extra = f"X-Request-Id: {request_id}\r\n" if request_id else ""
    return (
        "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {content_length}\r\n{extra}\r\n"
    ).encode()
