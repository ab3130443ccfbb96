"""The prediction log across crashes of real `python -m serving` processes: the spool, its replay, no duplicates.

Each test runs the server as deployed (uvicorn, environment settings) over the shared
trained platform, with a client thread sending one-flight requests back to back, each
with its own request id, and noting when each 200 answer arrived. SIGKILL may lose what
the server had not yet spooled (at most `spool_seconds`, 0.2 s, on a good day); the
assertion allows 1.5 s so a busy machine cannot make it flaky, and the tests print what
was actually missing.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from devtools.processes import free_port
from ml.lake.tables import PREDICTIONS_TABLE
from serving.prediction_log import SPOOL_FOLDER
from tests.conftest import ADMIN_TOKEN, PROJECT, TOKEN, Served, bearer
from tests.serving.test_api import flight

MARGIN_SECONDS = 1.5
"""Answers that arrived at least this long before a SIGKILL must be in the table after the restart."""
START_SECONDS = 90.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(served: Served, cache: Path, log: Path) -> Server:
    """`python -m serving` on a free port, its output in `log`, ready when returned."""
    port = free_port()
    env = {
        **os.environ,
        "PLATFORM_LAKE_URI": str(served.platform.root / "lake"),
        "PLATFORM_ARTIFACTS_URI": str(served.platform.root / "models"),
        "PLATFORM_SERVING_TOKEN": TOKEN,
        "PLATFORM_SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
        "PLATFORM_SERVING_PORT": str(port),
        "PLATFORM_SERVING_METRICS_PORT": str(free_port()),
        "PLATFORM_SERVING_POLL_SECONDS": "0",
        "PLATFORM_SERVING_CACHE_DIR": str(cache),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, port, log)
    STARTED.append(process)
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert process.poll() is None, f"the server exited with {process.returncode}:\n{server.text()}"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                connection.close()
                return server
            connection.close()
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the server was not ready in {START_SECONDS} s:\n{server.text()}"
        time.sleep(0.1)


STARTED: list[subprocess.Popen[bytes]] = []
"""Every server a test started: killed at its end whatever happened, so a failure leaks no process."""


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test() -> Iterator[None]:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_server(server: Server, signal_number: int) -> None:
    server.process.send_signal(signal_number)
    try:
        server.process.wait(60)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


class Load(threading.Thread):
    """One-flight predicts back to back on a kept-alive connection until told to stop or the server goes."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.prefix = uuid.uuid4().hex[:12]
        self.answered: list[tuple[str, float]] = []
        """(request id, `time.monotonic()` when its 200 answer had been read)."""
        self.sent: set[str] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        body = json.dumps({"flights": [flight()]}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", **bearer()}
        try:
            for n in range(10**9):
                if self.stopping.is_set():
                    return
                request_id = f"{self.prefix}-{n}"
                self.sent.add(request_id)
                connection.request(
                    "POST", "/v1/predict", body=body, headers={**headers, "X-Request-ID": request_id}
                )
                answer = connection.getresponse()
                answer.read()
                if answer.status == 200:
                    self.answered.append((request_id, time.monotonic()))
        except (OSError, http.client.HTTPException):
            return  # the server is gone (killed, or closing its connections on SIGTERM)
        finally:
            connection.close()

    def run_for(self, seconds: float) -> None:
        """Start, and return once answers have been arriving for `seconds` (at least 100 of them)."""
        self.start()
        wait_for(
            lambda: len(self.answered) >= 100 and time.monotonic() - self.answered[0][1] >= seconds,
            f"{seconds} s of answers",
        )

    def halt(self) -> None:
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), "the load thread did not stop"


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def segments(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.arrows"))


def logged(served: Served, load: Load) -> pl.DataFrame:
    """The load's rows in the log table; fails on a duplicate (request id, position) or an id never sent."""
    rows = served.platform.store.read(PREDICTIONS_TABLE).filter(
        pl.col("request_id").str.starts_with(f"{load.prefix}-")
    )
    duplicates = rows.filter(pl.struct("request_id", "position").is_duplicated())
    assert duplicates.is_empty(), f"{duplicates.height} duplicated row(s): {duplicates.head(5)}"
    assert set(rows["request_id"]) <= load.sent
    return rows


def unlogged(rows: pl.DataFrame, load: Load, killed_at: float) -> tuple[list[float], list[float]]:
    """How long before the kill the answers missing from the table arrived: (all of them, beyond the margin)."""
    have = set(rows["request_id"])
    ages = sorted(killed_at - at for request_id, at in load.answered if request_id not in have)
    return ages, [age for age in ages if age >= MARGIN_SECONDS]


def report(what: str, load: Load, killed_at: float, ages: list[float]) -> None:
    per_second = len(load.answered) / max(1e-9, load.answered[-1][1] - load.answered[0][1])
    oldest = f"the oldest {max(ages) * 1e3:.0f} ms before the kill" if ages else "none"
    print(
        f"{what}: {len(load.answered)} answers at {per_second:,.0f}/s; "
        f"{len(ages)} answered but not logged ({oldest})"
    )


def test_a_sigkill_under_load_loses_at_most_the_last_second_and_the_restart_replays_the_rest(
    served: Served, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = start_server(served, cache, tmp_path / "first.log")
    load = Load(first.port)
    try:
        load.run_for(2.5)
    finally:
        killed_at = time.monotonic()
        first.process.kill()
        first.process.wait()
        load.halt()
    left = segments(cache / SPOOL_FOLDER)
    assert left, "the kill left nothing to replay: the test did not exercise the spool"

    second = start_server(served, cache, tmp_path / "second.log")
    wait_for(lambda: not segments(cache / SPOOL_FOLDER), "the replay of the spool")
    stop_server(second, signal.SIGTERM)

    rows = logged(served, load)
    ages, late = unlogged(rows, load, killed_at)
    report("SIGKILL", load, killed_at, ages)
    assert late == [], f"{len(late)} answer(s) older than {MARGIN_SECONDS} s before the kill are missing"
    assert rows.height >= len(load.answered) - len(ages) > 0
    assert "replaying" in second.text()


def test_sigterm_under_load_loses_no_answer(served: Served, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    server = start_server(served, cache, tmp_path / "server.log")
    load = Load(server.port)
    try:
        load.run_for(1.0)
    finally:
        stop_server(server, signal.SIGTERM)  # the load still running: requests in flight at the signal
        load.halt()
    # uvicorn re-raises the signal once its shutdown (our lifespan's included) has finished.
    assert server.process.returncode in (0, -signal.SIGTERM), server.text()
    assert "Application shutdown complete" in server.text()
    rows = logged(served, load)
    assert set(rows["request_id"]) >= {request_id for request_id, _ in load.answered}
    assert segments(cache / SPOOL_FOLDER) == []
    print(f"SIGTERM: {len(load.answered)} answers, {rows.height} logged, none missing")


def test_a_replay_cut_short_by_a_crash_and_run_again_commits_each_segment_once(
    served: Served, tmp_path: Path
) -> None:
    """A crash after a replayed segment's commit and before its file's deletion, rerun: no duplicate.

    The state such a crash leaves is made exactly: the first server's segments are copied
    aside after it is killed, the second server replays them (commit, then delete), takes
    traffic of its own and is killed too, and the copies are put back. The third server
    finds a spool holding the first server's segments, already committed, and the second
    server's, not yet committed.
    """
    cache, backup = tmp_path / "cache", tmp_path / "backup"
    spool = cache / SPOOL_FOLDER
    first = start_server(served, cache, tmp_path / "first.log")
    load_a = Load(first.port)
    try:
        load_a.run_for(1.0)
    finally:
        killed_a = time.monotonic()
        first.process.kill()
        first.process.wait()
        load_a.halt()
    backup.mkdir()
    copies = [Path(shutil.copy2(segment, backup)) for segment in segments(spool)]
    assert copies

    second = start_server(served, cache, tmp_path / "second.log")
    wait_for(lambda: not any((spool / c.name).exists() for c in copies), "the replay of the first spool")
    replayed = logged(served, load_a).height
    load_b = Load(second.port)
    try:
        load_b.run_for(1.0)
    finally:
        killed_b = time.monotonic()
        second.process.kill()
        second.process.wait()
        load_b.halt()
    for copy in copies:
        shutil.copy2(copy, spool)
    assert len(segments(spool)) > len(copies)  # the second server's own segment(s) too

    third = start_server(served, cache, tmp_path / "third.log")
    wait_for(lambda: not segments(spool), "the replay of both spools")
    stop_server(third, signal.SIGTERM)

    rows_a, rows_b = logged(served, load_a), logged(served, load_b)
    assert rows_a.height == replayed  # the first server's rows, committed once by the second
    assert "already committed" in third.text()
    for load, rows, killed_at in ((load_a, rows_a, killed_a), (load_b, rows_b, killed_b)):
        ages, late = unlogged(rows, load, killed_at)
        report("SIGKILL", load, killed_at, ages)
        assert late == [], f"{len(late)} answer(s) older than {MARGIN_SECONDS} s before the kill are missing"
