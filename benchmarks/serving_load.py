"""Serving throughput under bounded load with wrk: single-flight requests/s, flights/s at batch 256, reloads.

    python -m benchmarks.serving_load [--quick]

The server is the real one (`python -m serving`, uvicorn, on 127.0.0.1) over a lake
built for the run (`benchmarks.serving_setup`). `wrk` (Debian package `wrk`) posts a
fixed predict body with the client token, for a bounded time on a bounded number of
kept-alive connections, and reports requests, latency percentiles and errors (socket
errors, and answers with a status of 400 or more). Three runs: one flight per request,
256 flights per request, and one flight per request while the registry's champion
changes ten times (promotion and rollback between two registered versions), each change
followed by `POST /v1/admin/reload`. The baseline is this process doing what the server
does for one flight (validation, lookup, encoding, onnxruntime) in a loop, in the same
run. After the server's graceful stop, the prediction log must hold one row per flight it
answered with status 200 (`serving_predictions_total`), no more, no fewer; wrk's own count
of 200 answers is lower by the requests in flight when each run's clock ran out. Targets (issue: 2 cores): at
least 1,000 single-flight requests/s; no error during the ten reloads; no answer missing
from the log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from benchmarks.common import Report, arguments, ratio
from benchmarks.serving_setup import ADMIN_TOKEN, TOKEN, Server, ServingPlatform, build_platform, post, server
from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.online.features import OnlineLookup
from ml.online.snapshot import current_id, load
from ml.training.onnx_model import OnnxModel
from serving.model_store import SCORING_THREADS
from serving.schemas import parse, schedules

REQUESTS_TARGET = 1_000
BATCH = 256
RELOADS = 10
RELOAD_SECONDS = 12.0
"""The reload run is never shorter than this (also with --quick): room for ten changes under load."""
THREADS = 2
MAX_BATCH = 1000
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.body = [==[{body}]==]

local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0 end
function response(status, headers, body) if status == 200 then ok = ok + 1 end end

done = function(summary, latency, requests)
  local e = summary.errors
  local answered = 0
  for _, thread in ipairs(threads) do answered = answered + thread:get("ok") end
  io.write(string.format(
    "WRK_JSON {{\\"requests\\": %d, \\"ok\\": %d, \\"duration_us\\": %d, \\"connect\\": %d, \\"read\\": %d, "
    .. "\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"p50_us\\": %d, \\"p90_us\\": %d, "
    .. "\\"p99_us\\": %d, \\"max_us\\": %d}}\\n",
    summary.requests, answered, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
"""A fixed predict body with the client token; `done` prints the summary as JSON, with the count of
answers whose status was 200 (summed over wrk's threads), which the prediction log must hold."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    ok: int
    """Answers with status 200."""
    seconds: float
    socket_errors: int
    status_errors: int
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors

    def row(self, what: str, flights: int) -> dict[str, object]:
        return {
            "load": what,
            "requests": self.requests,
            "requests/s": f"{self.per_second:,.0f}",
            "flights/s": f"{self.per_second * flights:,.0f}",
            "p50": f"{self.p50 * 1e3:.2f} ms",
            "p90": f"{self.p90 * 1e3:.2f} ms",
            "p99": f"{self.p99 * 1e3:.2f} ms",
            "max": f"{self.max * 1e3:.1f} ms",
            "socket errors": self.socket_errors,
            "status >= 400": self.status_errors,
        }


def wrk(running: Server, body: bytes, folder: Path, seconds: float, connections: int) -> WrkResult:
    """One bounded wrk run against /v1/predict with `body`."""
    script = folder / f"predict-{len(body)}.lua"
    script.write_text(LUA.format(token=TOKEN, body=body.decode()))
    command = [
        "wrk",
        f"--threads={THREADS}",
        f"--connections={connections}",
        f"--duration={seconds:g}s",
        "--timeout=10s",
        f"--script={script}",
        running.url("/v1/predict"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    found = json.loads(lines[-1].removeprefix("WRK_JSON "))
    return WrkResult(
        requests=found["requests"],
        ok=found["ok"],
        seconds=found["duration_us"] / 1e6,
        socket_errors=found["connect"] + found["read"] + found["write"] + found["timeout"],
        status_errors=found["status"],
        p50=found["p50_us"] / 1e6,
        p90=found["p90_us"] / 1e6,
        p99=found["p99_us"] / 1e6,
        max=found["max_us"] / 1e6,
    )


def reload_under_load(
    platform: ServingPlatform, running: Server, folder: Path, seconds: float, connections: int
) -> tuple[WrkResult, list[dict[str, object]]]:
    """wrk on one-flight requests while the champion changes `RELOADS` times; each change is reloaded.

    Changes are due at even steps of the run, leaving a step of load before the first and
    after the last; one that runs late (a registry write and a reload take a few hundred
    milliseconds on a busy machine) delays the next, and the run fails if wrk ends first.
    """
    registry = platform.registry
    outcome: dict[str, WrkResult] = {}
    load = threading.Thread(
        target=lambda: outcome.setdefault("wrk", wrk(running, platform.body(1), folder, seconds, connections))
    )
    load.start()
    changes: list[dict[str, object]] = []
    step = seconds / (RELOADS + 2)
    begun = time.perf_counter()
    connection = running.connection()
    try:
        for change in range(RELOADS):
            time.sleep(max(0.0, begun + (change + 1) * step - time.perf_counter()))
            target = platform.other if change % 2 == 0 else platform.champion
            if change % 4 < 2:
                registry.promote(target, f"load benchmark change {change}", now=dt.datetime.now(dt.UTC))
            else:
                registry.rollback(target, f"load benchmark rollback {change}", now=dt.datetime.now(dt.UTC))
            started = time.perf_counter()
            status, answer = post(connection, "/v1/admin/reload", b"", ADMIN_TOKEN)
            took = time.perf_counter() - started
            result = json.loads(answer)
            if status != 200 or result["model_version"] != target:
                raise RuntimeError(f"reload {change} answered {status}: {result}")
            changes.append(
                {
                    "change": change + 1,
                    "registry": "promote" if change % 4 < 2 else "rollback",
                    "now serving": f"v{target}",
                    "reload outcome": result["outcome"],
                    "reload took": f"{took * 1e3:.0f} ms",
                }
            )
        if not load.is_alive():
            raise RuntimeError("wrk ended before the last reload: lengthen the run")
    finally:
        connection.close()
        load.join()
        registry.promote(platform.champion, "load benchmark done", now=dt.datetime.now(dt.UTC))
    if "wrk" not in outcome:
        raise RuntimeError("wrk did not finish during the reloads")
    return outcome["wrk"], changes


def in_process_rate(platform: ServingPlatform, seconds: float) -> float:
    """One-flight predictions per second of this process doing the server's work, no HTTP."""
    model = OnnxModel(platform.registry.get(platform.champion).artifact_uri, threads=SCORING_THREADS)
    lookup = OnlineLookup(load(platform.lake_uri, current_id(platform.lake_uri) or ""))
    body = platform.body(1)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict_columns(lookup.columns(schedules(parse(body, MAX_BATCH))))
        calls += 1
    return calls / (time.perf_counter() - started)


def predicted_flights(running: Server) -> int:
    """Flights the server answered with status 200 (`serving_predictions_total`, counted as it logs them)."""
    samples = running.metrics()
    return int(sum(v for k, v in samples.items() if k.startswith("serving_predictions_total{")))


def logged_rows(platform: ServingPlatform) -> int:
    """Rows of the platform's prediction log; the lake is the run's own, so every row is the run's."""
    store = DeltaStore(platform.lake_uri)
    if not store.exists(PREDICTIONS_TABLE):
        return 0
    return int(store.scan(PREDICTIONS_TABLE).select(pl.len()).collect().item())


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv, extra)
    report = Report("serving_load", args.quick)
    if shutil.which("wrk") is None:
        raise SystemExit("serving_load needs wrk (Debian: apt-get install wrk)")
    seconds = 3.0 if args.quick else 10.0
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        platform = build_platform(root / "platform", days=14)
        report.note(
            f"setup (replay, ingest, features, snapshot, training) took {time.perf_counter() - started:.1f} s"
        )
        baseline = in_process_rate(platform, seconds)
        with server(platform, root / "server.log") as running:
            warm_up = wrk(running, platform.body(1), root, 1.0, args.connections)
            single = wrk(running, platform.body(1), root, seconds, args.connections)
            batch = wrk(running, platform.body(BATCH), root, seconds, args.connections)
            reloads, changes = reload_under_load(
                platform, running, root, max(seconds, RELOAD_SECONDS), args.connections
            )
            predicted = predicted_flights(running)
        # After the server's SIGTERM: its prediction log has committed every answer.
        read = warm_up.ok + single.ok + batch.ok * BATCH + reloads.ok
        in_flight = args.connections * (1 + 1 + BATCH + 1)  # a request a connection when each run ends
        logged = logged_rows(platform)
    rows = [
        single.row("1 flight per request", 1),
        batch.row(f"{BATCH} flights per request", BATCH),
        reloads.row(f"1 flight per request, {RELOADS} reloads meanwhile", 1),
    ]
    report.table(
        f"wrk, {THREADS} threads, {args.connections} connections, {seconds:g} s per run ({max(seconds, RELOAD_SECONDS):g} s with reloads), server on 127.0.0.1",
        rows,
    )
    report.table(f"The {RELOADS} champion changes during the last run", changes)
    report.table(
        "In-process baseline: the server's work for one flight in a loop (no HTTP)",
        [{"what": "validation + lookup + encoding + onnxruntime", "calls/s": f"{baseline:,.0f}"}],
    )
    for name, result in (("single", single), ("batch", batch)):
        if result.errors:
            report.note(f"the {name} run had {result.errors} error(s)")
    report.headline(
        f"single-flight requests/s ÷ {REQUESTS_TARGET:,} target",
        single.per_second / REQUESTS_TARGET,
        1.0,
        f"{single.per_second:,.0f} requests/s",
        at_least=True,
    )
    report.headline(
        "single-flight requests/s over HTTP ÷ in-process calls/s",
        single.per_second / baseline,
        None,
        f"{single.per_second:,.0f} ÷ {baseline:,.0f}",
    )
    report.headline(
        f"flights/s at batch {BATCH} ÷ flights/s at batch 1",
        batch.per_second * BATCH / single.per_second,
        None,
        f"{batch.per_second * BATCH:,.0f} flights/s",
    )
    report.headline(
        f"errors during {RELOADS} reloads under load",
        float(reloads.errors),
        0.0,
        f"{reloads.requests:,} requests, {reloads.socket_errors} socket errors, "
        f"{reloads.status_errors} with status >= 400",
    )
    report.headline(
        "flights answered with status 200 and not in the prediction log after shutdown (or logged twice)",
        float(abs(predicted - logged)),
        0.0,
        f"the server answered {predicted:,} flights, {logged:,} rows in {PREDICTIONS_TABLE}",
    )
    report.note(
        f"wrk read {read:,} flights in answers with status 200; {logged - read:,} more were logged, answered "
        f"after a wrk run's clock ran out (at most {in_flight:,}: a request a connection and run)"
    )
    if not read <= logged <= read + in_flight:
        report.note("the log disagrees with wrk's count beyond the requests in flight at its end")
    report.note(f"batch {BATCH}: {ratio(batch.p50 / single.p50)} the single-flight p50 latency")
    return report.finish(args.json)


if __name__ == "__main__":
    main()
