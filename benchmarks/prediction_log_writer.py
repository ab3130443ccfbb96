"""The prediction log's writer alone ÷ the server's own maximum single-flight request rate, in one run.

    python -m benchmarks.prediction_log_writer [--quick]

Two measures, one after the other on the same machine:

* the writer in isolation: a `PredictionLog` with the server's default settings over a
  fresh lake, one thread handing it one-flight answers (and, second, 256-flight ones) as
  fast as `record` returns (waiting only while the queue is full, so nothing is dropped),
  until `close` has spooled and committed every row to Delta. Rows/s is the rows handed in
  ÷ the time from the first `record` to the end of `close`.
* the server: `python -m serving` (`benchmarks.serving_setup`) under `wrk` at its maximum
  rate, one flight per request on kept-alive connections, for 60 s after a 2 s warm-up.
  wrk counts the answers with status 200 it read (a Lua `response` callback), the server
  the ones it sent (`serving_requests_total`); they differ by the requests in flight when
  wrk's clock ran out (at most one per connection and run), answered after wrk stopped
  reading. A sampler reads the server's peak RSS (VmHWM) and the log's gauges from
  /metrics twice a second. After the server's graceful stop (SIGTERM), the rows in
  `monitoring/predictions` must equal the server's 200 answers, and lie between wrk's
  count and it plus the connections of both runs.

Target: the writer's rows/s at least twice the server's requests/s, so the log keeps up
with the server with room for a burst (the audit: a writer doing 1,000 rows/s behind a
server doing 1,970 requests/s, its queue full in 50 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import Report, arguments
from benchmarks.serving_load import WrkResult, logged_rows, wrk
from benchmarks.serving_setup import Server, build_platform, server
from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.online.features import Schedule
from serving.prediction_log import Answer, LogSettings, PredictionLog, encode

TARGET = 2.0
BATCH = 256
LOG_GAUGES = (
    "serving_prediction_log_queued_rows",
    "serving_prediction_log_spooled_rows",
    "serving_prediction_log_spool_bytes",
)


@dataclass(frozen=True)
class WriterRun:
    records: int
    rows: int
    handed_seconds: float
    total_seconds: float
    logged: int
    commits: int
    dropped: float

    @property
    def per_second(self) -> float:
        return self.rows / self.total_seconds

    def row(self, what: str) -> dict[str, object]:
        return {
            "records": what,
            "rows": f"{self.rows:,}",
            "handed in": f"{self.handed_seconds:.2f} s ({self.rows / self.handed_seconds:,.0f} rows/s)",
            "until committed": f"{self.total_seconds:.2f} s",
            "rows/s": f"{self.per_second:,.0f}",
            "Delta commits": self.commits,
            "rows in the table": f"{self.logged:,}",
            "dropped": int(self.dropped),
        }


def flights(count: int, day: dt.date) -> list[Schedule]:
    return [
        Schedule(
            "UA",
            "EWR",
            "ORD",
            dt.datetime.combine(day, dt.time(6 + i % 16, (7 * i) % 60), tzinfo=dt.UTC),
            "N14228",
            719,
        )
        for i in range(count)
    ]


def writer_run(folder: Path, records: int, per_record: int) -> WriterRun:
    """`records` answers of `per_record` flights handed to a fresh log as fast as it takes them."""
    store = DeltaStore(str(folder / "lake"))
    log = PredictionLog(store, folder / "spool", LogSettings())
    schedules = flights(per_record, dt.date(2013, 1, 14))
    probabilities = np.linspace(0.01, 0.99, per_record)
    numbers: list[int | None] = [None] * per_record
    ids = [f"bench-{n}" for n in range(records)]
    now = dt.datetime.now(dt.UTC)
    room = log.settings.max_queued_rows - per_record
    log.start()
    started = time.perf_counter()
    for request_id in ids:
        while log.queued_rows > room:  # as fast as the writer takes them, not faster: a drop is no measure
            time.sleep(0.0005)
        log.record(schedules, probabilities, 1, "snapshot", request_id, numbers, requested_at=now)
    handed = time.perf_counter() - started
    log.close()
    total = time.perf_counter() - started
    dropped = sum(s.value for s in log.dropped.collect()[0].samples if s.name.endswith("_total"))
    logged = int(store.read(PREDICTIONS_TABLE).height) if store.exists(PREDICTIONS_TABLE) else 0
    commits = sum(1 for h in store.history(PREDICTIONS_TABLE) if h.get("operation") == "WRITE")
    shutil.rmtree(folder)
    return WriterRun(records, records * per_record, handed, total, logged, commits, dropped)


def encode_cost(per_record: int, records: int) -> float:
    """Seconds per row of `encode` (answers to an Arrow batch: the spool thread's CPU, the server's GIL)."""
    schedules = flights(per_record, dt.date(2013, 1, 14))
    now = dt.datetime.now(dt.UTC)
    answers = [
        Answer(schedules, np.zeros(per_record), f"r{n}", now, 1, "snapshot", [None] * per_record)
        for n in range(records)
    ]
    encode(answers[:10])
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        encode(answers)
        best = min(best, time.perf_counter() - started)
    return best / (records * per_record)


class Sampler(threading.Thread):
    """Twice a second until the server exits: its peak RSS and the log's gauges, keeping the highest."""

    def __init__(self, running: Server):
        super().__init__(daemon=True, name="sampler")
        self.running = running
        self.peak_rss = 0
        self.highest = dict.fromkeys(LOG_GAUGES, 0.0)

    def run(self) -> None:
        while self.running.process.poll() is None:
            self.peak_rss = max(self.peak_rss, self.running.peak_rss())
            try:
                samples = self.running.metrics()
            except OSError:
                samples = {}  # shutting down
            for name in LOG_GAUGES:
                self.highest[name] = max(self.highest[name], samples.get(name, 0.0))
            time.sleep(0.5)


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="the wrk run at maximum rate (default 60)"
    )


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv, extra)
    report = Report("prediction_log_writer", args.quick)
    if shutil.which("wrk") is None:
        raise SystemExit("prediction_log_writer needs wrk (Debian: apt-get install wrk)")
    seconds = 10.0 if args.quick else args.seconds
    records = 50_000 if args.quick else 400_000
    with tempfile.TemporaryDirectory(prefix="bench-log-writer-") as tmp:
        root = Path(tmp)
        single = writer_run(root / "writer-1", records, 1)
        batched = writer_run(root / "writer-256", max(1, records // BATCH * 4), BATCH)
        per_row = encode_cost(1, 10_000)

        started = time.perf_counter()
        platform = build_platform(root / "platform", days=14)
        report.note(
            f"setup (replay, ingest, features, snapshot, training) took {time.perf_counter() - started:.1f} s"
        )
        body = platform.body(1)
        with server(platform, root / "server.log") as running:
            sampler = Sampler(running)
            sampler.start()
            runs: list[WrkResult] = [wrk(running, body, root, 2.0, args.connections)]
            runs.append(wrk(running, body, root, seconds, args.connections))
            at_end = running.metrics()
        sampler.join(30)  # it samples until the server has exited: the peak includes the shutdown
        logged = logged_rows(platform)
        server_log = (root / "server.log").read_text(errors="replace")

    load = runs[1]
    answered = sum(r.ok for r in runs)
    server_200 = at_end.get('serving_requests_total{endpoint="predict",status="200"}', 0.0)
    dropped = sum(v for k, v in at_end.items() if k.startswith("serving_prediction_log_dropped_rows_total"))
    report.table(
        "The writer alone: answers handed to `record` by one thread, until `close` committed them to Delta",
        [single.row("1 flight each"), batched.row(f"{BATCH} flights each")],
    )
    report.table(
        f"The server at its maximum single-flight rate: wrk, {args.connections} connections, {seconds:g} s "
        "(after a 2 s warm-up), server on 127.0.0.1",
        [
            {
                "requests/s": f"{load.per_second:,.0f}",
                "200 answers read by wrk (both runs)": f"{answered:,}",
                "200 answers sent by the server": f"{server_200:,.0f}",
                "rows logged after shutdown": f"{logged:,}",
                "dropped rows": int(dropped),
                "peak RSS of the server": f"{sampler.peak_rss / 2**20:,.0f} MiB",
                "highest queued rows": f"{sampler.highest['serving_prediction_log_queued_rows']:,.0f}",
                "highest spooled rows": f"{sampler.highest['serving_prediction_log_spooled_rows']:,.0f}",
                "highest spool size": f"{sampler.highest['serving_prediction_log_spool_bytes'] / 2**20:,.1f} MiB",
                "p50": f"{load.p50 * 1e3:.2f} ms",
                "p99": f"{load.p99 * 1e3:.2f} ms",
                "errors": load.errors,
            }
        ],
    )
    report.note(f"encode (answers to one Arrow batch, the spool thread's work): {per_row * 1e6:.2f} µs a row")
    if "Traceback" in server_log:
        report.note("the server logged a traceback; see its log")
    report.headline(
        f"writer rows/s ÷ server single-flight requests/s (target {TARGET:g})",
        single.per_second / load.per_second,
        TARGET,
        f"{single.per_second:,.0f} rows/s ÷ {load.per_second:,.0f} requests/s",
        at_least=True,
    )
    report.headline(
        "server's answers with status 200 not in the log after shutdown (or logged twice)",
        float(abs(server_200 - logged)),
        0.0,
        f"{server_200:,.0f} answered, {logged:,} logged",
    )
    in_flight = args.connections * len(runs)
    report.headline(
        f"rows logged outside [wrk's 200 count, + {in_flight} in flight at wrk's end]",
        float(not answered <= logged <= answered + in_flight),
        0.0,
        f"wrk read {answered:,} answers with status 200, {logged:,} rows logged",
    )
    report.headline(
        "rows the writer dropped or lost in isolation",
        float(single.rows - single.logged + batched.rows - batched.logged),
        0.0,
        f"{single.logged + batched.logged:,} of {single.rows + batched.rows:,} rows committed",
    )
    return report.finish(args.json)


if __name__ == "__main__":
    main()
