"""The prediction log: every answer lands in Delta, off the request path, and a graceful stop loses nothing."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from starlette.testclient import TestClient

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA
from serving.app import app_state, create_app
from serving.prediction_log import LogSettings, PredictionLog
from tests.conftest import ADMIN_TOKEN, PROJECT, TOKEN, Served, bearer
from tests.serving.test_api import flight


def logged(store: DeltaStore) -> pl.DataFrame:
    return (
        store.read(PREDICTIONS_TABLE)
        if store.exists(PREDICTIONS_TABLE)
        else pl.DataFrame(schema=PREDICTION_LOG_SCHEMA)
    )


def post(client: TestClient, flights: int, request_id: str | None = None) -> list[float]:
    headers = bearer() | ({"X-Request-ID": request_id} if request_id else {})
    answer = client.post(
        "/v1/predict", json={"flights": [flight(distance=700 + i) for i in range(flights)]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return [p["delay_probability"] for p in answer.json()["predictions"]]


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def metric(client: TestClient, line_start: str) -> float:
    text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_every_answer_of_many_requests_lands_once_with_its_schedule_and_probability(
    served: Served, tmp_path: Path
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, LogSettings(batch_rows=25, flush_seconds=0.05))
    answers: dict[str, list[float]] = {}
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        for i in range(30):
            answers[f"req-{i}"] = post(client, flights=1 + i % 4, request_id=f"req-{i}")
    rows = logged(store)
    assert rows.height == sum(len(p) for p in answers.values()) == 73
    assert dict(rows.schema) == PREDICTION_LOG_SCHEMA
    by_request = (
        rows.sort("request_id", "position")
        .group_by("request_id", maintain_order=True)
        .agg("delay_probability")
    )
    assert {r: list(p) for r, p in by_request.iter_rows()} == answers
    first = rows.filter(pl.col("request_id") == "req-3").sort("position").row(0, named=True)
    assert (first["carrier"], first["origin"], first["dest"], first["tailnum"], first["distance"]) == (
        "UA",
        "EWR",
        "ORD",
        "N14228",
        700,
    )
    assert first["model_version"] == served.champion.version and first["flight"] is None
    assert first["flight_date"].isoformat() == "2013-01-14"


def test_a_flight_number_sent_with_a_flight_is_logged_to_match_its_outcome(
    served: Served, tmp_path: Path
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, LogSettings(batch_rows=1, flush_seconds=0.05))
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        body = {"flights": [flight(flight=1545), flight(distance=701)]}
        assert client.post("/v1/predict", json=body, headers=bearer()).status_code == 200
        refused = client.post("/v1/predict", json={"flights": [flight(flight=0)]}, headers=bearer())
    assert refused.status_code == 422 and "flights[0].flight" in refused.text
    assert logged(store).sort("position")["flight"].to_list() == [1545, None]


def test_a_request_never_waits_for_the_write(served: Served, tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    disk = threading.Event()
    writes: list[int] = []

    def stuck_disk(frame: pl.DataFrame) -> None:
        assert disk.wait(30), "the test never released the disk"
        log.write_to_lake(frame)
        writes.append(frame.height)

    log = PredictionLog(store, LogSettings(batch_rows=1, flush_seconds=0.01), write=stuck_disk)
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        post(client, 1)  # warm up
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            post(client, 5)
            timings.append(time.perf_counter() - started)
        # Every request returned while the first write is still blocked on the disk.
        assert not writes and not store.exists(PREDICTIONS_TABLE)
        assert log.queued_rows == 51
        assert max(timings) < 1.0, timings
        disk.set()
        wait_for(lambda: log.queued_rows == 0)
    assert logged(store).height == 51


def test_the_batch_size_or_the_interval_triggers_a_flush_before_any_stop(
    served: Served, tmp_path: Path
) -> None:
    by_size = DeltaStore(str(tmp_path / "size"))
    by_time = DeltaStore(str(tmp_path / "time"))
    size_log = PredictionLog(by_size, LogSettings(batch_rows=8, flush_seconds=3600))
    time_log = PredictionLog(by_time, LogSettings(batch_rows=10_000, flush_seconds=0.2))
    with TestClient(create_app(served.config(), prediction_log=size_log)) as client:
        post(client, 5)
        time.sleep(0.3)
        assert not by_size.exists(PREDICTIONS_TABLE)  # under the batch size, an hour to go
        post(client, 3)
        wait_for(lambda: by_size.exists(PREDICTIONS_TABLE) and logged(by_size).height == 8)
    with TestClient(create_app(served.config(), prediction_log=time_log)) as client:
        post(client, 2)
        wait_for(lambda: by_time.exists(PREDICTIONS_TABLE) and logged(by_time).height == 2)


def test_a_graceful_stop_writes_what_is_queued(served: Served, tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, LogSettings(batch_rows=10_000, flush_seconds=3600))
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        for _ in range(7):
            post(client, 3)
        assert log.queued_rows == 21 and not store.exists(PREDICTIONS_TABLE)
    assert logged(store).height == 21 and log.queued_rows == 0


def test_failing_writes_are_retried_and_logged_and_the_server_keeps_answering(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    calls: list[int] = []

    def flaky(frame: pl.DataFrame) -> None:
        calls.append(frame.height)
        if len(calls) <= 2:
            raise OSError("lake unreachable")
        log.write_to_lake(frame)

    log = PredictionLog(store, LogSettings(batch_rows=1, flush_seconds=0.01, retry_seconds=0.05), write=flaky)
    with (
        caplog.at_level(logging.ERROR, logger="serving.prediction_log"),
        TestClient(create_app(served.config(), prediction_log=log)) as client,
    ):
        post(client, 2)
        wait_for(lambda: len(calls) >= 3)
        post(client, 2)
        assert client.get("/healthz").status_code == 200
        wait_for(lambda: log.queued_rows == 0)
        assert metric(client, "serving_prediction_log_write_failures_total") == 2
    assert logged(store).height == 4  # the failed batch was written once, after its retries
    assert sum("lake unreachable" in r.exc_text for r in caplog.records if r.exc_text) == 2


def test_a_full_queue_drops_and_counts_instead_of_blocking(served: Served, tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    disk = threading.Event()

    def stuck_disk(frame: pl.DataFrame) -> None:
        disk.wait(30)
        log.write_to_lake(frame)

    log = PredictionLog(
        store, LogSettings(batch_rows=1, flush_seconds=0.01, max_queued_rows=5), write=stuck_disk
    )
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        post(client, 4)
        post(client, 3)  # 4 + 3 > 5: dropped, the request still answered
        post(client, 1)
        assert metric(client, 'serving_prediction_log_dropped_rows_total{reason="queue_full"}') == 3
        disk.set()
    assert logged(store).height == 5


def test_rows_that_cannot_be_written_by_the_stop_are_counted_and_the_stop_completes(
    served: Served, tmp_path: Path
) -> None:
    def down(frame: pl.DataFrame) -> None:
        raise OSError("lake down")

    log = PredictionLog(
        DeltaStore(str(tmp_path / "lake")),
        LogSettings(batch_rows=10_000, flush_seconds=3600, retry_seconds=0.01, close_attempts=2),
        write=down,
    )
    app = create_app(served.config(), prediction_log=log)
    with TestClient(app) as client:
        post(client, 3)
    registry = app_state(app).metrics.registry
    assert registry.get_sample_value("serving_prediction_log_write_failures_total") == 2
    assert (
        registry.get_sample_value("serving_prediction_log_dropped_rows_total", {"reason": "write_failed"})
        == 3
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_to_the_server_process_writes_every_answer_before_it_exits(
    served: Served, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PLATFORM_LAKE_URI": str(served.platform.root / "lake"),
        "PLATFORM_ARTIFACTS_URI": str(served.platform.root / "models"),
        "PLATFORM_SERVING_TOKEN": TOKEN,
        "PLATFORM_SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
        "PLATFORM_SERVING_PORT": str(port),
        "PLATFORM_SERVING_POLL_SECONDS": "0",
        "PLATFORM_SERVING_CACHE_DIR": str(tmp_path / "cache"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "serving"], cwd=PROJECT, env=env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
        ids = [f"sigterm-{uuid.uuid4().hex}" for _ in range(3)]
        for request_id in ids:
            body = json.dumps({"flights": [flight(), flight(carrier="B6")]}).encode()
            request = urllib.request.Request(
                f"{base}/v1/predict",
                data=body,
                headers={"Content-Type": "application/json", "X-Request-ID": request_id, **bearer()},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        server.send_signal(signal.SIGTERM)  # well before the default 5 s flush interval
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    # uvicorn re-raises the signal once its shutdown (our lifespan's included) has finished.
    assert server.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (server.stderr.read() if server.stderr else "")
    rows = served.platform.store.read(PREDICTIONS_TABLE).filter(pl.col("request_id").is_in(ids))
    assert rows.height == 6
