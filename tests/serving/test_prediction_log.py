"""The prediction log in process: every answer lands in Delta once, off the request path, through the spool.

The crash and restart tests of real server processes are in `test_log_durability.py`.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA
from ml.online.features import Schedule
from serving.app import app_state, create_app
from serving.prediction_log import SPOOL_FOLDER, LogBatch, LogSettings, PredictionLog, spool_folder
from serving.spool import SpoolInUseError
from tests.conftest import Served, bearer
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


def metric(client: TestClient, name: str, **labels: str) -> float:
    return app_state(client.app).metrics.registry.get_sample_value(name, labels) or 0.0  # type: ignore[arg-type]


def sample(log: PredictionLog, name: str, **labels: str) -> float:
    registry = CollectorRegistry()
    log.register(registry)
    return registry.get_sample_value(name, labels) or 0.0


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.arrows"))


def schedule(distance: int = 719) -> Schedule:
    return Schedule("UA", "EWR", "ORD", dt.datetime(2013, 1, 14, 13, 30, tzinfo=dt.UTC), "N14228", distance)


def record(log: PredictionLog, flights: int, request_id: str) -> None:
    log.record(
        [schedule(700 + i) for i in range(flights)],
        np.linspace(0.1, 0.9, flights),
        1,
        "snapshot",
        request_id,
        requested_at=dt.datetime.now(dt.UTC),
    )


def test_every_answer_of_many_requests_lands_once_with_its_schedule_and_probability(
    served: Served, tmp_path: Path
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, tmp_path / "spool", LogSettings(batch_rows=25, flush_seconds=0.05))
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
    assert segments(tmp_path / "spool") == []  # every segment deleted once committed


def test_a_flight_number_sent_with_a_flight_is_logged_to_match_its_outcome(
    served: Served, tmp_path: Path
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, tmp_path / "spool", LogSettings(batch_rows=1, flush_seconds=0.05))
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        body = {"flights": [flight(flight=1545), flight(distance=701)]}
        assert client.post("/v1/predict", json=body, headers=bearer()).status_code == 200
        refused = client.post("/v1/predict", json={"flights": [flight(flight=0)]}, headers=bearer())
    assert refused.status_code == 422 and "flights[0].flight" in refused.text
    assert logged(store).sort("position")["flight"].to_list() == [1545, None]


def test_the_default_spool_is_in_the_cache_unless_a_folder_is_set(served: Served, tmp_path: Path) -> None:
    assert spool_folder(served.config()) == served.config().cache_dir / SPOOL_FOLDER
    assert spool_folder(served.config(spool_dir=tmp_path / "spool")) == tmp_path / "spool"


def test_a_request_never_waits_for_the_write(served: Served, tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    disk = threading.Event()
    writes: list[int] = []

    def stuck_lake(batch: LogBatch) -> None:
        assert disk.wait(30), "the test never released the lake"
        log.write_to_lake(batch)
        writes.append(batch.frame.height)

    log = PredictionLog(
        store, tmp_path / "spool", LogSettings(batch_rows=1, flush_seconds=0.01), write=stuck_lake
    )
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        post(client, 1)  # warm up
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            post(client, 5)
            timings.append(time.perf_counter() - started)
        # Every request returned while the first commit is still blocked on the lake.
        assert not writes and not store.exists(PREDICTIONS_TABLE)
        assert log.pending_rows == 51
        assert max(timings) < 1.0, timings
        wait_for(lambda: len(segments(tmp_path / "spool")) >= 2)  # spooled meanwhile, not held in memory
        disk.set()
        wait_for(lambda: log.pending_rows == 0)
    assert logged(store).height == 51


def test_the_batch_size_or_the_interval_triggers_a_commit_before_any_stop(
    served: Served, tmp_path: Path
) -> None:
    by_size = DeltaStore(str(tmp_path / "size"))
    by_time = DeltaStore(str(tmp_path / "time"))
    size_log = PredictionLog(by_size, tmp_path / "spool-size", LogSettings(batch_rows=8, flush_seconds=3600))
    time_log = PredictionLog(
        by_time, tmp_path / "spool-time", LogSettings(batch_rows=10_000, flush_seconds=0.2)
    )
    with TestClient(create_app(served.config(), prediction_log=size_log)) as client:
        post(client, 5)
        wait_for(lambda: size_log.pending_rows == 5 and len(segments(tmp_path / "spool-size")) == 1)
        time.sleep(0.3)
        assert not by_size.exists(PREDICTIONS_TABLE)  # spooled, under the batch size, an hour to go
        post(client, 3)
        wait_for(lambda: by_size.exists(PREDICTIONS_TABLE) and logged(by_size).height == 8)
    with TestClient(create_app(served.config(), prediction_log=time_log)) as client:
        post(client, 2)
        wait_for(lambda: by_time.exists(PREDICTIONS_TABLE) and logged(by_time).height == 2)


def test_a_graceful_stop_commits_what_is_queued_and_spooled(served: Served, tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, tmp_path / "spool", LogSettings(batch_rows=10_000, flush_seconds=3600))
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        for _ in range(7):
            post(client, 3)
        assert log.pending_rows == 21 and not store.exists(PREDICTIONS_TABLE)
    assert logged(store).height == 21 and log.pending_rows == 0
    assert segments(tmp_path / "spool") == []
    assert (
        sample(log, "serving_prediction_log_spool_bytes")
        == sample(log, "serving_prediction_log_spooled_rows")
        == 0
    )


def test_failing_commits_are_retried_and_logged_and_the_server_keeps_answering(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    calls: list[int] = []

    def flaky(batch: LogBatch) -> None:
        calls.append(batch.frame.height)
        if len(calls) <= 2:
            raise OSError("lake unreachable")
        log.write_to_lake(batch)

    settings = LogSettings(batch_rows=1, flush_seconds=0.01, retry_seconds=0.05)
    log = PredictionLog(store, tmp_path / "spool", settings, write=flaky)
    with (
        caplog.at_level(logging.ERROR, logger="serving.prediction_log"),
        TestClient(create_app(served.config(), prediction_log=log)) as client,
    ):
        post(client, 2)
        wait_for(lambda: len(calls) >= 3)
        post(client, 2)
        assert client.get("/healthz").status_code == 200
        wait_for(lambda: log.pending_rows == 0)
        assert metric(client, "serving_prediction_log_write_failures_total") == 2
    rows = logged(store)
    assert rows.height == 4  # the failed segment was committed once, after its retries
    assert rows.select("request_id", "position").is_unique().all()
    assert sum("lake unreachable" in r.exc_text for r in caplog.records if r.exc_text) == 2


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, tmp_path / "spool", LogSettings(max_queued_rows=5))
    record(log, 4, "a")  # not started: nothing takes from the queue
    record(log, 3, "b")  # 4 + 3 > 5: dropped
    record(log, 1, "c")
    assert sample(log, "serving_prediction_log_dropped_rows_total", reason="queue_full") == 3
    assert log.pending_rows == 5
    log.start()
    log.close()
    assert sorted(logged(store)["request_id"].unique()) == ["a", "c"] and logged(store).height == 5


def test_a_full_spool_drops_and_counts_while_the_lake_is_down(served: Served, tmp_path: Path) -> None:
    def down(batch: LogBatch) -> None:
        raise OSError("lake down")

    settings = LogSettings(batch_rows=1, flush_seconds=0.01, max_spool_bytes=2_000, close_attempts=1)
    log = PredictionLog(DeltaStore(str(tmp_path / "lake")), tmp_path / "spool", settings, write=down)
    with TestClient(create_app(served.config(), prediction_log=log)) as client:
        for _ in range(20):  # a one-flight segment is about 1 kB
            if metric(client, "serving_prediction_log_spool_bytes") >= 2_000:
                break
            post(client, 1)
            wait_for(lambda: log.queued_rows == 0)
        assert metric(client, "serving_prediction_log_dropped_rows_total", reason="spool_full") == 0
        post(client, 4)  # the spool is full: dropped, the request still answered
        assert metric(client, "serving_prediction_log_dropped_rows_total", reason="spool_full") == 4
        assert client.get("/healthz").status_code == 200


def test_what_the_stop_cannot_commit_stays_in_the_spool_and_the_next_start_commits_it(
    served: Served, tmp_path: Path
) -> None:
    def down(batch: LogBatch) -> None:
        raise OSError("lake down")

    store = DeltaStore(str(tmp_path / "lake"))
    spool = tmp_path / "spool"
    settings = LogSettings(batch_rows=10_000, flush_seconds=3600, retry_seconds=0.01, close_attempts=2)
    app = create_app(served.config(), prediction_log=PredictionLog(store, spool, settings, write=down))
    with TestClient(app) as client:
        post(client, 3, "kept-1")
    registry = app_state(app).metrics.registry
    assert registry.get_sample_value("serving_prediction_log_write_failures_total") == 2
    assert registry.get_sample_value("serving_prediction_log_spooled_rows") == 3
    assert len(segments(spool)) == 1 and not store.exists(PREDICTIONS_TABLE)

    again = PredictionLog(store, spool, settings)
    again.start()
    wait_for(lambda: again.spooled_segments == 0)
    again.close()
    assert logged(store)["request_id"].to_list() == ["kept-1"] * 3
    assert sample(again, "serving_prediction_log_replayed_rows_total") == 3 and segments(spool) == []
    assert sample(again, "serving_prediction_log_spool_bytes") == 0


def test_a_torn_last_batch_is_ignored_and_the_complete_ones_are_committed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def down(batch: LogBatch) -> None:
        raise OSError("lake down")

    store = DeltaStore(str(tmp_path / "lake"))
    spool = tmp_path / "spool"
    first = PredictionLog(store, spool, LogSettings(retry_seconds=0, close_attempts=1), write=down)
    first.start()
    record(first, 2, "whole")
    wait_for(lambda: first.queued_rows == 0)
    record(first, 3, "torn")
    first.close()  # the lake is down: both batches stay in the spool, in one segment
    # What a kill in the middle of the second write would have left: its message cut short.
    [segment] = segments(spool)
    segment.write_bytes(segment.read_bytes()[:-10])
    replay = PredictionLog(store, spool)
    with caplog.at_level(logging.WARNING, logger="serving.prediction_log"):
        replay.start()
        wait_for(lambda: replay.spooled_segments == 0)
        replay.close()
    assert logged(store)["request_id"].to_list() == ["whole", "whole"]
    assert any("after the last complete batch" in r.getMessage() for r in caplog.records)
    assert segments(spool) == []


def test_the_maintenance_compaction_keeps_the_record_of_committed_segments(tmp_path: Path) -> None:
    """`orchestration.maintenance` compacts, vacuums and checkpoints every table, this one included."""
    store = DeltaStore(str(tmp_path / "lake"))
    log = PredictionLog(store, tmp_path / "spool", LogSettings(batch_rows=2))
    log.start()
    for n in range(3):  # three segments, three commits, three files
        record(log, 2, f"r{n}")
        wait_for(lambda: log.pending_rows == 0)
    log.close()
    [writer] = {h["spool_writer"] for h in store.history(PREDICTIONS_TABLE) if "spool_writer" in h}
    before = log.committed_segment(writer)
    assert before >= 3
    stats = store.maintain(PREDICTIONS_TABLE, retention_hours=0)
    assert stats["files_removed"] and stats["files_vacuumed"]
    assert log.committed_segment(writer) == before and logged(store).height == 6


def test_a_second_process_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    first = PredictionLog(store, tmp_path / "spool")
    first.start()
    try:
        with pytest.raises(SpoolInUseError, match="in use by another process"):
            PredictionLog(store, tmp_path / "spool").start()
    finally:
        first.close()
    second = PredictionLog(store, tmp_path / "spool")
    second.start()
    second.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
