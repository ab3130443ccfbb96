"""The real server against bad clients: cut-off uploads, huge and slow headers, stalled bodies, a crowd.

One `python -m serving` per module, with short timeouts so the tests take seconds; what it
counted is read from its metrics port and what it logged from its stderr.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT, Served
from tests.serving.server_process import (
    ServerProcess,
    free_port,
    predict_head,
    read_answer,
    running_server,
    wait_for,
)
from tests.serving.test_api import flight

HEADER_TIMEOUT = 1.0
KEEP_ALIVE = 1.0
BODY_TIMEOUT = 4.0
MAX_CONCURRENCY = 3
SLACK = 1.5
"""How much later than its timeout the server may close a connection on a busy test machine."""


@pytest.fixture(scope="module")
def server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        served,
        tmp_path_factory.mktemp("http-server"),
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        KEEP_ALIVE_SECONDS=str(KEEP_ALIVE),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        MAX_CONCURRENCY=str(MAX_CONCURRENCY),
    ) as process:
        yield process


@pytest.fixture
def quiet(server: ServerProcess) -> Iterator[ServerProcess]:
    """The server with nothing in flight before and after the test, so counts are the test's own."""
    wait_for(lambda: in_flight(server) == 0, what="requests in flight to end")
    yield server
    wait_for(lambda: in_flight(server) == 0, what="requests in flight to end")


def in_flight(server: ServerProcess) -> float:
    return server.sample("serving_requests_in_flight")


def no_tracebacks(log: str) -> None:
    assert "Traceback" not in log, log
    assert "Exception in ASGI application" not in log, log


def reset(sock: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0), as a client that crashes does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_client_that_leaves_mid_upload_is_a_disconnect_not_a_server_error(quiet: ServerProcess) -> None:
    server = quiet
    before = server.metrics()
    body = json.dumps({"flights": [flight()] * 20}).encode()
    leavers = 30
    for i in range(leavers):
        sock = server.connect()
        sock.sendall(predict_head(len(body) + 5000) + body[:100])
        wait_for(lambda: in_flight(server) == 1, what="the upload to reach the endpoint")
        reset(sock) if i % 3 == 0 else sock.close()
        wait_for(lambda: in_flight(server) == 0, what="the endpoint to notice")
    server.closed.clear()

    def counted(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return server.metrics().get(key, 0.0) - before.get(key, 0.0)

    wait_for(
        lambda: counted("serving_client_disconnects_total", endpoint="predict") == leavers, what="disconnects"
    )
    assert counted("serving_requests_total", endpoint="predict", status="499") == leavers
    assert counted("serving_requests_total", endpoint="predict", status="500") == 0
    assert server.predict([flight()]).status == 200  # and the server is as good as before
    no_tracebacks(server.stderr())


def test_a_64_kb_header_is_refused_with_a_json_431_at_once_or_trickled(quiet: ServerProcess) -> None:
    server = quiet
    refused = server.sample("serving_refused_requests_total", reason="headers_too_large")
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
    sock = server.connect()
    sock.sendall(head + b"a" * 64 * 1024 + b"\r\n\r\n")
    answer, _ = read_answer(sock)
    assert answer is not None and answer.status == 431
    assert answer.headers["content-type"] == "application/json"
    assert [e["field"] for e in answer.json()["errors"]] == ["headers"]
    trickle = server.connect()
    trickle.sendall(head)
    sent = len(head)
    while not select.select([trickle], [], [], 0.005)[0]:  # until the server answers
        assert sent < 64 * 1024, "no answer to 64 KB of headers"
        trickle.sendall(b"a" * 1024)
        sent += 1024
    assert sent < 24 * 1024  # answered right after the 16 KB limit, not at the end
    answer, _ = read_answer(trickle)
    assert answer is not None and answer.status == 431
    # Headers of a real client's size pass, at once or trickled (each byte counted once).
    assert server.request("GET", "/healthz", headers={"X-Padding": "a" * 12 * 1024}).status == 200
    slow = server.connect()
    slow.sendall(head)
    for _ in range(12):
        slow.sendall(b"a" * 1024)
        time.sleep(0.01)
    slow.sendall(b"\r\nX-Other: b\r\nConnection: close\r\n\r\n")
    answer, _ = read_answer(slow)
    assert answer is not None and answer.status == 200
    wait_for(
        lambda: server.sample("serving_refused_requests_total", reason="headers_too_large") == refused + 2,
        what="the refusals to be counted",
    )
    no_tracebacks(server.stderr())


def test_a_connection_stuck_in_its_headers_is_closed_within_the_header_timeout(quiet: ServerProcess) -> None:
    server = quiet
    slow = server.connect()
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    slow.settimeout(0.2)
    answer = b""
    while time.monotonic() - started < HEADER_TIMEOUT + SLACK:  # a byte every 0.2 s: never done
        try:
            slow.sendall(b"X")
            answer += slow.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if answer:
            break
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + SLACK, elapsed
    assert b'"field":"headers"' in answer
    # A connection that sends nothing at all is closed as well, without an answer.
    silent = server.connect()
    answer_, elapsed = read_answer(silent)
    assert answer_ is None and elapsed <= HEADER_TIMEOUT + SLACK
    assert server.sample("serving_refused_requests_total", reason="header_timeout") >= 2


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(quiet: ServerProcess) -> None:
    sock = quiet.connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(5)
    first = b""
    while not first.endswith(b'{"status":"ok"}'):  # the whole first answer, however it is split
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ")
    rest, elapsed = read_answer(sock)
    assert rest is None and KEEP_ALIVE - 0.1 <= elapsed <= KEEP_ALIVE + SLACK, elapsed


def test_a_stalled_body_is_answered_408_within_the_body_timeout(quiet: ServerProcess) -> None:
    sock = quiet.connect()
    body = json.dumps({"flights": [flight()]}).encode()
    sock.sendall(predict_head(len(body), request_id="stalled-upload") + body[:10])
    answer, elapsed = read_answer(sock, BODY_TIMEOUT + 10)
    assert answer is not None and answer.status == 408, answer
    assert [e["field"] for e in answer.json()["errors"]] == ["body"]
    assert answer.headers["x-request-id"] == "stalled-upload"
    assert BODY_TIMEOUT - 0.1 <= elapsed <= BODY_TIMEOUT + SLACK, elapsed


def test_requests_over_the_concurrency_limit_get_a_json_503_and_probes_still_answer(
    quiet: ServerProcess,
) -> None:
    server = quiet
    refused = server.sample("serving_refused_requests_total", reason="concurrency")
    holders = []
    for _ in range(MAX_CONCURRENCY):  # each waits for a body that does not come (yet)
        sock = server.connect()
        sock.sendall(predict_head(1000))
        holders.append(sock)
    wait_for(lambda: server.sample("serving_requests_in_flight") == MAX_CONCURRENCY, what="the holders")
    answer = server.predict([flight()])
    assert answer.status == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["retry-after"] == "1"
    assert [e["type"] for e in answer.json()["errors"]] == ["overloaded"]
    assert "x-request-id" in answer.headers
    assert server.request("GET", "/healthz").status == 200
    assert server.request("GET", "/readyz").status == 200
    assert server.sample("serving_refused_requests_total", reason="concurrency") == refused + 1
    for sock in holders:
        sock.close()
    wait_for(lambda: server.sample("serving_requests_in_flight") == 0, what="the holders to leave")
    assert server.predict([flight()]).status == 200


def test_the_metrics_are_on_their_own_port_only(quiet: ServerProcess) -> None:
    server = quiet
    answer = server.request("GET", "/metrics")
    assert answer.status == 404 and answer.json()["errors"][0]["field"] == "path"
    assert ("serving_model_version", ()) in server.metrics()
    with socket.create_connection(("127.0.0.1", server.metrics_port)) as sock:
        sock.sendall(b"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        other, _ = read_answer(sock)
    assert other is not None and other.status == 404


def test_an_answer_names_the_request_id_and_the_model_version(quiet: ServerProcess, served: Served) -> None:
    answer = quiet.predict([flight()], request_id="trace-7")
    assert answer.status == 200
    assert answer.headers["x-request-id"] == "trace-7"
    assert answer.headers["x-model-version"] == str(served.champion.version)
    made = quiet.request("GET", "/healthz").headers["x-request-id"]
    assert len(made) == 32 and made != quiet.request("GET", "/healthz").headers["x-request-id"]


def test_a_request_that_is_not_http_gets_a_json_400(quiet: ServerProcess) -> None:
    sock = quiet.connect()
    sock.sendall(b"\x16\x03\x01 this is no HTTP\r\n\r\n")
    answer, _ = read_answer(sock)
    assert answer is not None and answer.status == 400
    assert answer.json()["errors"][0]["type"] == "invalid_http"


def test_stopping_after_all_this_is_clean(served: Served, tmp_path: Path) -> None:
    """A server that met every bad client above in one life still stops cleanly on SIGTERM."""
    with running_server(served, tmp_path, HEADER_TIMEOUT_SECONDS="1", BODY_TIMEOUT_SECONDS="1") as server:
        idle = server.connect()
        partial = server.connect()
        partial.sendall(b"GET /healthz HTTP/1.1\r\n")
        uploading = server.connect()
        uploading.sendall(predict_head(1000))
        wait_for(lambda: server.sample("serving_requests_in_flight") == 1, what="the upload")
        status = server.stop()
        assert idle and status in (0, -15)
        log = server.stderr()
    assert "Application shutdown complete" in log
    no_tracebacks(log)


def test_a_metrics_port_in_use_stops_the_server_at_once_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "PLATFORM_LAKE_URI": str(tmp_path / "lake"),
            "PLATFORM_SERVING_TOKEN": "c",
            "PLATFORM_SERVING_ADMIN_TOKEN": "a",
            "PLATFORM_SERVING_PORT": str(free_port()),
            "PLATFORM_SERVING_METRICS_PORT": str(port),
            "PLATFORM_SERVING_CACHE_DIR": str(tmp_path / "cache"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "serving"],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen for metrics on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
