"""Every answer of the server, spooled to local disk within a fraction of a second, then appended to Delta.

The request path hands `record` a plain `Answer` (the request's values as parsed, no
frame); `record` appends it to an in-memory queue under a lock and returns. Two threads
take it from there:

* the spool thread, every `spool_seconds` (0.2 s), turns what is queued into one Arrow
  record batch (columns built from the answers at once, `encode`) and appends it to the
  open segment of the local spool (`serving.spool`) with one `os.write`; a segment is
  sealed (fsynced, closed) at `batch_rows` rows or `flush_seconds` after its first row,
  and fsynced every `fsync_seconds` (1 s) while open;
* the commit thread appends sealed segments to `monitoring/predictions`, one Delta commit
  for a segment (or for several, up to `max_commit_bytes`, when it is behind), and deletes
  a segment only once the commit carrying it has landed. Each commit records the Delta
  transaction (spool writer id, last segment number), so the table says which segments
  it already holds and no segment is committed twice.

What a failure loses:

* SIGTERM (uvicorn's graceful stop runs `close`): nothing. The queue is spooled and every
  segment committed; what cannot be committed (the lake is down) stays in the spool.
* SIGKILL or a crash of the process: the answers still in the queue, at most the last
  `spool_seconds` plus the time one spool write takes (everything written is in the OS's
  page cache). The next start commits the spool's segments first ("replay"); a commit that
  had landed before the kill, its segment not yet deleted, is recognised by its
  transaction and skipped.
* A power loss or a kernel crash: additionally what was written since the last fsync, at
  most `fsync_seconds` (1 s) plus `spool_seconds`.

Bounded memory: the queue holds at most `max_queued_rows` rows and the spool at most
`max_spool_bytes` on disk (the lake is down for long); beyond either, new rows are dropped
and counted (`serving_prediction_log_dropped_rows`, logged), because blocking requests or
growing without bound would turn a monitoring outage into a serving outage. A failed
commit is retried with backoff, its segments kept.
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
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA, append
from ml.online.features import Schedule, flight_date
from serving.config import ServingConfig
from serving.spool import Segment, Spool, read_segment, table_uri_of

log = logging.getLogger("serving.prediction_log")
SPOOL_FOLDER = "prediction-spool"
TIMESTAMP = pa.timestamp("us", tz="UTC")
SPOOL_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("requested_at", TIMESTAMP),
        ("position", pa.int32()),
        ("model_version", pa.int64()),
        ("snapshot_id", pa.string()),
        ("carrier", pa.string()),
        ("flight", pa.int32()),
        ("origin", pa.string()),
        ("dest", pa.string()),
        ("sched_dep_utc", TIMESTAMP),
        ("tailnum", pa.string()),
        ("distance", pa.int32()),
        ("delay_probability", pa.float64()),
        ("role", pa.string()),
        ("client", pa.string()),
        ("unknown_fields", pa.string()),
    ]
)
"""`PREDICTION_LOG_SCHEMA` but `flight_date`, which the commit derives from `sched_dep_utc`."""


def spool_folder(config: ServingConfig) -> Path:
    """PLATFORM_SERVING_SPOOL_DIR, else a folder in the server's cache (which outlives a container restart)."""
    return config.spool_dir or config.cache_dir / SPOOL_FOLDER


class Answer(NamedTuple):
    """One request's answer as the request path hands it over: the values as they are, no frame."""

    flights: Sequence[Schedule]
    probabilities: np.ndarray
    request_id: str
    requested_at: dt.datetime
    model_version: int
    snapshot_id: str
    flight_numbers: Sequence[int | None]
    client: str = ""
    unknown: Sequence[str] | None = None
    """Per flight, the comma-separated fields the model had never seen ("" for none)."""
    role: str = "champion"


@dataclass(frozen=True)
class LogBatch:
    """One Delta commit: log rows of one spool writer's segments, up to `last_segment`."""

    frame: pl.DataFrame
    writer: str
    first_segment: int
    last_segment: int


Writer = Callable[[LogBatch], None]


@dataclass(frozen=True)
class LogSettings:
    batch_rows: int = 10_000
    """Rows of a segment, and so at least of a Delta commit: a commit costs 15-25 ms and a file,
    whatever its size, so at 2,000 answers/s this is one commit every 5 s."""
    flush_seconds: float = 5.0
    """A segment is committed at most this long after its first row: how stale the table may be."""
    spool_seconds: float = 0.2
    """Queued answers reach the spool (the OS) at least this often: what a SIGKILL may lose."""
    fsync_seconds: float = 1.0
    """The open segment is fsynced at least this often: what a power loss may lose."""
    max_queued_rows: int = 100_000
    max_spool_bytes: int = 256 << 20
    """Under the pod's emptyDir limit (deploy/k8s/serving.yaml, 1 GiB shared with the model cache):
    about 1.5 million rows, a lake outage of ~12 minutes at 2,000 answers/s."""
    max_commit_bytes: int = 16 << 20
    """Segments of one writer committed together when the writer is behind (after an outage, a replay)."""
    retry_seconds: float = 1.0
    """First wait after a failed commit; doubles per failure up to `max_retry_seconds`."""
    max_retry_seconds: float = 30.0
    close_attempts: int = 3
    """Commits tried on a graceful stop before what is left is left in the spool for the next start."""
    drop_log_seconds: float = 10.0

    def __post_init__(self) -> None:
        if min(self.batch_rows, self.max_queued_rows, self.close_attempts) < 1:
            raise ValueError("batch_rows, max_queued_rows and close_attempts must be at least 1")
        if min(self.max_spool_bytes, self.max_commit_bytes) < 1:
            raise ValueError("max_spool_bytes and max_commit_bytes must be at least 1")
        if self.flush_seconds <= 0 or self.fsync_seconds <= 0 or self.retry_seconds < 0:
            raise ValueError(
                "flush_seconds and fsync_seconds must be positive and retry_seconds not negative"
            )
        if not 0 < self.spool_seconds <= 1:
            raise ValueError(
                "spool_seconds must be in (0, 1]: a SIGKILL may lose at most a second of answers"
            )


class PredictionLog:
    """The queue, the spool and the two threads; `record` never waits on disk or on the lake."""

    def __init__(
        self,
        store: DeltaStore,
        spool_dir: Path,
        settings: LogSettings | None = None,
        write: Writer | None = None,
    ):
        self.store = store
        self.spool_dir = spool_dir
        self.settings = settings or LogSettings()
        self._write = write or self.write_to_lake
        self._wake_rows = max(1, min(self.settings.batch_rows, self.settings.max_queued_rows // 4))
        self._lock = threading.Lock()
        self._spool_wake = threading.Condition(self._lock)
        self._commit_wake = threading.Condition(self._lock)
        self._stopped = threading.Event()
        self._queue: list[Answer] = []
        self._queued_rows = 0
        self._pending: collections.deque[Segment] = collections.deque()
        self._spooled_rows = 0
        self._spool_bytes = 0
        self._spool: Spool | None = None
        self._spool_finished = False
        self._uncertain = False
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._dropped_since_log = 0
        self._last_drop_log = -float("inf")
        self.written = Counter(
            "serving_prediction_log_written_rows",
            "Prediction rows committed to the log table.",
            registry=None,
        )
        self.replayed = Counter(
            "serving_prediction_log_replayed_rows",
            "Rows committed from spool segments an earlier process left (included in written).",
            registry=None,
        )
        self.skipped = Counter(
            "serving_prediction_log_replay_skipped_segments",
            "Spool segments found already committed (a crash between commit and delete) and deleted.",
            registry=None,
        )
        self.dropped = Counter(
            "serving_prediction_log_dropped_rows",
            "Prediction rows not logged, by reason (queue_full, spool_full, spool_failed, closed).",
            ["reason"],
            registry=None,
        )
        self.failures = Counter(
            "serving_prediction_log_write_failures",
            "Failed commits to the log table (retried; their rows stay in the spool).",
            registry=None,
        )
        self.queued = Gauge(
            "serving_prediction_log_queued_rows", "Prediction rows in memory, not yet spooled.", registry=None
        )
        self.spooled = Gauge(
            "serving_prediction_log_spooled_rows",
            "Prediction rows this process spooled and has not yet committed.",
            registry=None,
        )
        self.spool_size = Gauge(
            "serving_prediction_log_spool_bytes", "Bytes of spool segments not yet committed.", registry=None
        )

    @classmethod
    def for_config(cls, config: ServingConfig) -> PredictionLog:
        return cls(DeltaStore(config.lake_uri, config.storage_options or None), spool_folder(config))

    def register(self, registry: CollectorRegistry) -> None:
        """Expose the log's metrics with the app's own."""
        for metric in (
            self.written,
            self.replayed,
            self.skipped,
            self.dropped,
            self.failures,
            self.queued,
            self.spooled,
            self.spool_size,
        ):
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
        client: str = "",
        unknown: Sequence[str] | None = None,
        role: str = "champion",
    ) -> str:
        """Queue one request's answers; returns the request id. Rows are built by the spool thread."""
        answer = Answer(
            flights,
            np.asarray(probabilities, dtype=np.float64),
            (request_id or uuid.uuid4().hex)[:128],
            requested_at,
            model_version,
            snapshot_id,
            flight_numbers if flight_numbers is not None else [None] * len(flights),
            client,
            unknown,
            role,
        )
        rows = len(flights)
        if not rows:
            return answer.request_id
        with self._lock:
            if self._stopping:
                self._dropped(rows, "closed")
            elif self._queued_rows + rows > self.settings.max_queued_rows:
                self._dropped(rows, "queue_full")
            elif self._spool_bytes >= self.settings.max_spool_bytes:
                self._dropped(rows, "spool_full")
            else:
                self._queue.append(answer)
                before, self._queued_rows = self._queued_rows, self._queued_rows + rows
                if before < self._wake_rows <= self._queued_rows:
                    self._spool_wake.notify()
        return answer.request_id

    def start(self) -> None:
        """Lock the spool, queue the segments earlier processes left for commit, start both threads."""
        with self._lock:
            if self._threads:
                return
        encode([_WARM_UP])
        spool = Spool(self.spool_dir, SPOOL_SCHEMA, self.store.uri(PREDICTIONS_TABLE))
        leftovers = self._own(spool.open())
        with self._lock:
            self._spool, self._stopping, self._spool_finished = spool, False, False
            self._stopped.clear()
            self._pending.extend(leftovers)
            self._spool_bytes += sum(s.size for s in leftovers)
            self.spool_size.set(self._spool_bytes)
            self._threads = [
                threading.Thread(target=self._spool_loop, name="prediction-log-spool", daemon=True),
                threading.Thread(target=self._commit_loop, name="prediction-log-writer", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
        if leftovers:
            log.info(
                "prediction log: replaying %s spool segment(s) (%s bytes) left in %s",
                len(leftovers),
                sum(s.size for s in leftovers),
                self.spool_dir,
            )

    def close(self, timeout: float | None = None) -> None:
        """Spool what is queued and commit every segment; what cannot be committed stays in the spool."""
        with self._lock:
            if not self._threads and not self._queue:
                self._stopping = True
                return
        if not self._threads:
            self.start()  # answers recorded before a start: spooled and committed now
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
            self._spool_wake.notify_all()
            self._commit_wake.notify_all()
        self._stopped.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error(
                    "prediction log: %s still busy after %ss; %s row(s) not yet committed",
                    thread.name,
                    timeout,
                    self.pending_rows,
                )
                return
        with self._lock:
            spool, self._spool, self._threads = self._spool, None, []
            left = len(self._pending)
        if spool is not None:
            spool.close()
        if left:
            log.error(
                "prediction log: %s segment(s), %s row(s), could not be committed and stay in %s "
                "for the next start to commit",
                left,
                self.pending_rows,
                self.spool_dir,
            )

    @property
    def pending_rows(self) -> int:
        """Rows recorded and not yet committed, queued or spooled (not counting leftovers of earlier processes)."""
        with self._lock:
            return self._queued_rows + self._spooled_rows

    @property
    def queued_rows(self) -> int:
        """Rows recorded and not yet written to the spool."""
        with self._lock:
            return self._queued_rows

    @property
    def spooled_segments(self) -> int:
        with self._lock:
            return len(self._pending)

    def write_to_lake(self, batch: LogBatch) -> None:
        metadata = {
            "writer": "serving",
            "rows": str(batch.frame.height),
            "spool_writer": batch.writer,
            "spool_segments": f"{batch.first_segment}-{batch.last_segment}",
        }
        append(self.store, PREDICTIONS_TABLE, batch.frame, metadata, (batch.writer, batch.last_segment))

    def committed_segment(self, writer: str) -> int:
        """The last segment of `writer` the log table holds (0 for none): its Delta transaction version."""
        if not self.store.exists(PREDICTIONS_TABLE):
            return 0
        return self.store.table(PREDICTIONS_TABLE).transaction_version(writer) or 0

    def _own(self, leftovers: list[Segment]) -> list[Segment]:
        """The leftover segments for this log's table; another table's (the lake setting changed) are kept."""
        ours, table_uri = [], self.store.uri(PREDICTIONS_TABLE)
        for segment in leftovers:
            uri = table_uri_of(segment.path)
            if uri is None or uri == table_uri:
                ours.append(segment)
            else:
                log.warning(
                    "prediction log: spool segment %s is for %s, not %s; left as it is",
                    segment.path,
                    uri,
                    table_uri,
                )
        return ours

    def _spool_loop(self) -> None:
        spool = self._spool
        assert spool is not None
        settings = self.settings
        last_sync = time.monotonic()
        while True:
            with self._lock:
                due = time.monotonic() + settings.spool_seconds
                while not self._stopping and self._queued_rows < self._wake_rows:
                    remaining = due - time.monotonic()
                    if remaining <= 0:
                        break
                    self._spool_wake.wait(remaining)
                answers, self._queue = self._queue, []
                stopping = self._stopping
            if answers:
                self._spool_answers(spool, answers)
            now = time.monotonic()
            if spool.open_rows and (
                stopping
                or spool.open_rows >= settings.batch_rows
                or now - spool.opened_at >= settings.flush_seconds
            ):
                self._hand_over(spool.seal())
                last_sync = now
            elif spool.open_rows and now - last_sync >= settings.fsync_seconds:
                try:
                    spool.sync()
                except OSError:
                    log.exception("prediction log: fsync of the spool failed; a power loss could lose rows")
                last_sync = now
            if stopping:
                break
        with self._lock:
            self._spool_finished = True
            self._commit_wake.notify_all()

    def _spool_answers(self, spool: Spool, answers: list[Answer]) -> None:
        rows = sum(len(a.flights) for a in answers)
        try:
            written = spool.append(encode(answers))
        except Exception:
            log.exception("prediction log: spooling %s row(s) failed; they are dropped", rows)
            self._hand_over(spool.seal())
            with self._lock:
                self._queued_rows -= rows
                self._dropped(rows, "spool_failed")
                self.queued.set(self._queued_rows)
            return
        with self._lock:
            self._queued_rows -= rows
            self._spooled_rows += rows
            self._spool_bytes += written
            self.queued.set(self._queued_rows)
            self.spooled.set(self._spooled_rows)
            self.spool_size.set(self._spool_bytes)

    def _hand_over(self, segment: Segment | None) -> None:
        if segment is not None:
            with self._lock:
                self._pending.append(segment)
                self._commit_wake.notify()

    def _commit_loop(self) -> None:
        failures = closing_failures = 0
        while True:
            with self._lock:
                while not self._pending and not self._spool_finished:
                    self._commit_wake.wait()
                if not self._pending:
                    return
                group = self._next_group()
                stopping = self._stopping
            if self._commit(group):
                failures = 0
                continue
            failures += 1
            if stopping:
                closing_failures += 1
                if closing_failures >= self.settings.close_attempts:
                    return
                time.sleep(self._backoff(closing_failures))
            else:
                self._stopped.wait(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        return min(self.settings.retry_seconds * 2 ** (failures - 1), self.settings.max_retry_seconds)

    def _next_group(self) -> list[Segment]:
        """The head segment and the ones after it of the same writer, up to `max_commit_bytes`."""
        head = self._pending[0]
        group, size = [head], head.size
        for segment in list(self._pending)[1:]:
            if segment.writer != head.writer or size + segment.size > self.settings.max_commit_bytes:
                break
            group.append(segment)
            size += segment.size
        return group

    def _commit(self, group: list[Segment]) -> bool:
        """Commit `group` as one append and delete its files; False (segments kept) when that failed."""
        writer = group[0].writer
        replay = self._spool is None or writer != self._spool.writer
        try:
            committed = self.committed_segment(writer) if replay or self._uncertain else 0
            tables = [self._read(s) for s in group if s.seq > committed]
            rows = sum(t.num_rows for t in tables)
            if rows:
                table = pa.concat_tables(tables)
                ahead = [s.seq for s in group if s.seq > committed]
                self._write(LogBatch(log_frame(table), writer, ahead[0], ahead[-1]))
        except Exception:
            self.failures.inc()
            self._uncertain = True
            log.exception("prediction log: committing %s spool segment(s) failed; will retry", len(group))
            return False
        self._uncertain = False
        for segment in group:
            segment.path.unlink(missing_ok=True)
        skipped = sum(s.seq <= committed for s in group)
        with self._lock:
            for _ in group:
                self._pending.popleft()
            self._spooled_rows -= sum(s.rows or 0 for s in group)
            self._spool_bytes -= sum(s.size for s in group)
            self.spooled.set(self._spooled_rows)
            self.spool_size.set(self._spool_bytes)
        self.written.inc(rows)
        if replay:
            self.replayed.inc(rows)
        if skipped:
            self.skipped.inc(skipped)
            log.info(
                "prediction log: %s spool segment(s) of %s were already committed; deleted", skipped, writer
            )
        return True

    def _read(self, segment: Segment) -> pa.Table:
        contents = read_segment(segment.path)
        if contents is None:
            log.warning(
                "prediction log: spool segment %s has no complete schema; nothing to commit", segment.path
            )
            return SPOOL_SCHEMA.empty_table()
        if contents.torn_bytes:
            log.warning(
                "prediction log: %s byte(s) after the last complete batch of %s ignored (a write cut short)",
                contents.torn_bytes,
                segment.path,
            )
        return contents.table.replace_schema_metadata(None)

    def _dropped(self, rows: int, reason: str) -> None:
        """Count dropped rows (under the lock); log at most every `drop_log_seconds` so drops cannot flood the log."""
        self.dropped.labels(reason).inc(rows)
        self._dropped_since_log += rows
        now = time.monotonic()
        if now - self._last_drop_log >= self.settings.drop_log_seconds:
            log.warning(
                "prediction log: dropped %s row(s) (%s; %s queued of at most %s, spool %s of at most %s bytes)",
                self._dropped_since_log,
                reason,
                self._queued_rows,
                self.settings.max_queued_rows,
                self._spool_bytes,
                self.settings.max_spool_bytes,
            )
            self._dropped_since_log = 0
            self._last_drop_log = now


_WARM_UP = Answer(
    [Schedule("UA", "EWR", "ORD", dt.datetime(2013, 1, 1, tzinfo=dt.UTC), None, 1)],
    np.zeros(1),
    "warm-up",
    dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    0,
    "",
    [None],
)
"""Encoded once by `start`: pyarrow imports pandas on its first time-zone-aware conversion, which holds
the GIL for a few hundred milliseconds; at start-up, not on the first spool write under load."""


def encode(answers: Sequence[Answer]) -> pa.RecordBatch:
    """The spool rows (`SPOOL_SCHEMA`) of queued answers: one Arrow array per column for all of them."""
    counts = np.fromiter((len(a.flights) for a in answers), dtype=np.int64, count=len(answers))
    total = int(counts.sum())
    carrier, origin, dest, departure, tailnum, distance = zip(
        *(f for a in answers for f in a.flights), strict=True
    )
    spread = None if total == len(answers) else pa.array(np.repeat(np.arange(len(answers)), counts))

    def per_request(values: list[object], type_: pa.DataType) -> pa.Array:
        array = pa.array(values, type_)
        return array if spread is None else array.take(spread)

    starts = np.repeat(np.cumsum(counts) - counts, counts)
    columns = [
        per_request([a.request_id for a in answers], pa.string()),
        per_request([a.requested_at for a in answers], TIMESTAMP),
        pa.array((np.arange(total) - starts).astype(np.int32)),
        per_request([a.model_version for a in answers], pa.int64()),
        per_request([a.snapshot_id for a in answers], pa.string()),
        pa.array(carrier, pa.string()),
        pa.array([n for a in answers for n in a.flight_numbers], pa.int32()),
        pa.array(origin, pa.string()),
        pa.array(dest, pa.string()),
        pa.array(departure, TIMESTAMP),
        pa.array(tailnum, pa.string()),
        pa.array(distance, pa.int32()),
        pa.array(np.concatenate([a.probabilities for a in answers])),
        per_request([a.role for a in answers], pa.string()),
        per_request([a.client for a in answers], pa.string()),
        pa.array([u for a in answers for u in (a.unknown or [""] * len(a.flights))], pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SPOOL_SCHEMA)


def log_frame(table: pa.Table) -> pl.DataFrame:
    """The log rows (`PREDICTION_LOG_SCHEMA`) of spooled rows: one frame per commit, not per request."""
    frame = pl.DataFrame(table)
    # Segments spooled by an older server lack the newest columns: they read as null.
    missing = [
        pl.lit(None, t).alias(c)
        for c, t in PREDICTION_LOG_SCHEMA.items()
        if c not in frame.columns and c != "flight_date"
    ]
    return frame.with_columns(flight_date(pl.col("sched_dep_utc")).alias("flight_date"), *missing).select(
        [pl.col(c).cast(t) for c, t in PREDICTION_LOG_SCHEMA.items()]
    )
