"""Every answer of the server, appended to a Delta table in batches, off the request path.

A request only puts its rows on an in-memory queue (a lock held for a list append);
a writer thread turns what is queued into one Delta append every `batch_rows` rows
or `flush_seconds`, whichever comes first. The queue is bounded: when it is full
(the lake is slow or down), new rows are dropped and counted
(`serving_prediction_log_dropped_rows`, logged), because blocking requests or
growing without bound would turn a monitoring outage into a serving outage. A failed
write keeps its rows at the head of the queue and is retried with backoff. On a
graceful stop (the app's lifespan shutdown, which uvicorn runs on SIGTERM) `close`
drains the queue and writes it before the process ends.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from prometheus_client import CollectorRegistry, Counter, Gauge

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA, append
from ml.online.features import Schedule, flight_date
from serving.schemas import request_frame

log = logging.getLogger("serving.prediction_log")
Writer = Callable[[pl.DataFrame], None]


@dataclass(frozen=True)
class LogSettings:
    batch_rows: int = 1000
    flush_seconds: float = 5.0
    max_queued_rows: int = 100_000
    retry_seconds: float = 1.0
    """First wait after a failed write; doubles per failure up to `max_retry_seconds`."""
    max_retry_seconds: float = 30.0
    close_attempts: int = 3
    """Writes tried on a graceful stop before the rows still queued are given up (and counted)."""
    drop_log_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.batch_rows < 1 or self.max_queued_rows < 1 or self.close_attempts < 1:
            raise ValueError("batch_rows, max_queued_rows and close_attempts must be at least 1")
        if self.flush_seconds <= 0 or self.retry_seconds < 0:
            raise ValueError("flush_seconds must be positive and retry_seconds not negative")


@dataclass(frozen=True)
class _Answer:
    """One request's answer, as given: converted to rows by the writer, not by the request."""

    flights: Sequence[Schedule]
    probabilities: np.ndarray
    request_id: str
    requested_at: dt.datetime
    model_version: int
    snapshot_id: str
    flight_numbers: Sequence[int | None]

    @property
    def rows(self) -> int:
        return len(self.flights)


class PredictionLog:
    """The queue and its writer thread; `record` never waits on disk."""

    def __init__(self, store: DeltaStore, settings: LogSettings | None = None, write: Writer | None = None):
        self.store = store
        self.settings = settings or LogSettings()
        self._write = write or self.write_to_lake
        self._queue: collections.deque[_Answer] = collections.deque()
        self._queued_rows = 0
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._dropped_since_log = 0
        self._last_drop_log = -float("inf")
        self.written = Counter(
            "serving_prediction_log_written_rows", "Prediction rows appended to the log table.", registry=None
        )
        self.dropped = Counter(
            "serving_prediction_log_dropped_rows",
            "Prediction rows not logged, by reason (queue_full, write_failed, closed).",
            ["reason"],
            registry=None,
        )
        self.failures = Counter(
            "serving_prediction_log_write_failures",
            "Failed appends to the log table (retried).",
            registry=None,
        )
        self.queued = Gauge(
            "serving_prediction_log_queued_rows", "Prediction rows waiting to be written.", registry=None
        )

    def register(self, registry: CollectorRegistry) -> None:
        """Expose the log's metrics with the app's own."""
        for metric in (self.written, self.dropped, self.failures, self.queued):
            registry.register(metric)

    def record(
        self,
        flights: Sequence[Schedule],
        probabilities: np.ndarray,
        model_version: int,
        snapshot_id: str,
        request_id: str | None = None,
        flight_numbers: Sequence[int | None] | None = None,
        *,
        requested_at: dt.datetime,
    ) -> str:
        """Queue one request's answers; returns the request id. Rows are built by the writer, not here."""
        answer = _Answer(
            flights=flights,
            probabilities=np.asarray(probabilities, dtype=np.float64),
            request_id=(request_id or uuid.uuid4().hex)[:128],
            requested_at=requested_at,
            model_version=model_version,
            snapshot_id=snapshot_id,
            flight_numbers=flight_numbers if flight_numbers is not None else [None] * len(flights),
        )
        with self._condition:
            reason = "closed" if self._stopping and self._thread is None else None
            if reason is None and self._queued_rows + answer.rows > self.settings.max_queued_rows:
                reason = "queue_full"
            if reason is None:
                self._queue.append(answer)
                self._queued_rows += answer.rows
                self.queued.set(self._queued_rows)
                if self._queued_rows >= self.settings.batch_rows:
                    self._condition.notify()
                return answer.request_id
            self._dropped(answer.rows, reason)
        return answer.request_id

    def start(self) -> None:
        with self._condition:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then stop the writer; rows that cannot be written are counted."""
        with self._condition:
            self._stopping = True
            thread = self._thread
            self._condition.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error(
                    "prediction log writer still busy after %ss; %s row(s) queued", timeout, self.queued_rows
                )
                return
        if self.queued_rows:
            self._drain()  # never started, or rows queued while the writer was finishing
        with self._condition:
            self._thread = None

    @property
    def queued_rows(self) -> int:
        with self._condition:
            return self._queued_rows

    def write_to_lake(self, frame: pl.DataFrame) -> None:
        append(self.store, PREDICTIONS_TABLE, frame, {"writer": "serving", "rows": str(frame.height)})

    def _run(self) -> None:
        failures = 0
        last_flush = time.monotonic()
        while True:
            with self._condition:
                while not self._stopping:
                    if failures:
                        wait = min(
                            self.settings.retry_seconds * 2 ** (failures - 1), self.settings.max_retry_seconds
                        )
                        due = last_flush + wait
                    else:
                        if self._queued_rows >= self.settings.batch_rows:
                            break
                        due = last_flush + self.settings.flush_seconds
                    remaining = due - time.monotonic()
                    if remaining <= 0:
                        break
                    self._condition.wait(remaining)
                if self._stopping:
                    break
            last_flush = time.monotonic()
            failures = 0 if self._write_queued() else failures + 1
        self._drain()

    def _drain(self) -> None:
        """The graceful-stop path: a few attempts to write what is queued, then count what is left."""
        for attempt in range(self.settings.close_attempts):
            if self._write_queued():
                return
            if attempt < self.settings.close_attempts - 1:
                time.sleep(min(self.settings.retry_seconds * 2**attempt, self.settings.max_retry_seconds))
        with self._condition:
            lost, self._queued_rows = self._queued_rows, 0
            self._queue.clear()
            self.queued.set(0)
        if lost:
            self.dropped.labels("write_failed").inc(lost)
            log.error("prediction log: %s row(s) could not be written before stopping and are lost", lost)

    def _write_queued(self) -> bool:
        """Write what is queued now as one append; on failure put it back at the head. True unless it failed."""
        with self._condition:
            answers = list(self._queue)
            self._queue.clear()
        if not answers:
            return True
        rows = sum(a.rows for a in answers)
        try:
            self._write(rows_of(answers))
        except Exception:
            self.failures.inc()
            log.exception("prediction log: appending %s row(s) failed; will retry", rows)
            with self._condition:
                self._queue.extendleft(reversed(answers))
            return False
        with self._condition:
            self._queued_rows -= rows
            self.queued.set(self._queued_rows)
        self.written.inc(rows)
        return True

    def _dropped(self, rows: int, reason: str) -> None:
        """Count dropped rows; log at most every `drop_log_seconds` so a full queue cannot flood the log."""
        self.dropped.labels(reason).inc(rows)
        self._dropped_since_log += rows
        now = time.monotonic()
        if now - self._last_drop_log >= self.settings.drop_log_seconds:
            log.warning(
                "prediction log: dropped %s row(s) (%s; %s queued, limit %s)",
                self._dropped_since_log,
                reason,
                self._queued_rows,
                self.settings.max_queued_rows,
            )
            self._dropped_since_log = 0
            self._last_drop_log = now


def rows_of(answers: list[_Answer]) -> pl.DataFrame:
    """The log rows (`PREDICTION_LOG_SCHEMA`) of queued answers."""
    parts = []
    for a in answers:
        flights = request_frame(list(a.flights))
        parts.append(
            flights.with_columns(
                pl.Series("flight", list(a.flight_numbers), dtype=pl.Int32),
                pl.lit(a.request_id).alias("request_id"),
                pl.lit(a.requested_at, dtype=PREDICTION_LOG_SCHEMA["requested_at"]).alias("requested_at"),
                pl.int_range(pl.len(), dtype=pl.Int32).alias("position"),
                pl.lit(a.model_version, dtype=pl.Int64).alias("model_version"),
                pl.lit(a.snapshot_id).alias("snapshot_id"),
                flight_date(pl.col("sched_dep_utc")).alias("flight_date"),
                pl.Series("delay_probability", a.probabilities, dtype=pl.Float64),
            ).select([pl.col(c).cast(t) for c, t in PREDICTION_LOG_SCHEMA.items()])
        )
    return pl.concat(parts, how="vertical")
