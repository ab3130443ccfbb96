"""The challenger in shadow, scored off the request path and logged beside the champion's answer.

The request path only appends what it answered to a bounded queue (a lock held for a list
append, no wake-up); every `interval` one thread takes all that is queued, scores it in one
call of the shadow model per served snapshot (the same lookups as the champion's) and hands
each request's answers to the prediction log with `role="shadow"`, under the request's id.
Batching is what keeps the request path's cost near zero: a thread woken per request would
take the interpreter from the event loop while it writes the answer. A shadow never
answers, so a full queue drops shadow rows (counted) rather than ever delaying a client; a
non-finite shadow answer is counted and not logged.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from ml.online.features import Schedule
from serving.model_store import Served
from serving.prediction_log import PredictionLog

log = logging.getLogger("serving.shadow")
MAX_QUEUED_REQUESTS = 10_000
INTERVAL_SECONDS = 0.05
MAX_BATCH_FLIGHTS = 4096
"""Flights of one shadow model call: a backlog is scored in pieces, not in one huge array."""


class _Asked(NamedTuple):
    served: Served
    flights: list[Schedule]
    request_id: str
    flight_numbers: Sequence[int | None]
    requested_at: dt.datetime
    client: str
    unknown: Sequence[str]


class ShadowScorer:
    def __init__(
        self,
        prediction_log: PredictionLog,
        max_queued: int = MAX_QUEUED_REQUESTS,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._log = prediction_log
        self._max = max_queued
        self._interval = interval
        self._queue: collections.deque[_Asked] = collections.deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.scored = Counter(
            "serving_shadow_predictions",
            "Flights the shadow scored, by version.",
            ["model_version"],
            registry=None,
        )
        self.dropped = Counter(
            "serving_shadow_dropped",
            "Shadow rows not scored or not logged, by reason.",
            ["reason"],
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        for metric in (self.scored, self.dropped):
            registry.register(metric)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(
        self,
        served: Served,
        flights: list[Schedule],
        request_id: str,
        flight_numbers: Sequence[int | None],
        requested_at: dt.datetime,
        client: str,
        unknown: Sequence[str],
    ) -> None:
        """Queue one answered request for the shadow (no-op without one); never blocks on scoring."""
        if served.shadow is None:
            return
        with self._lock:
            if self._stopping or len(self._queue) >= self._max:
                self.dropped.labels("closed" if self._stopping else "queue_full").inc(len(flights))
                return
            self._queue.append(
                _Asked(served, flights, request_id, flight_numbers, requested_at, client, unknown)
            )

    def close(self, timeout: float = 30.0) -> None:
        """Score what is queued, then stop: a graceful stop logs every shadow answer too."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._stopping:
                    self._lock.wait(self._interval)
                taken = list(self._queue)
                self._queue.clear()
                stopping = self._stopping
            for group in _batches(taken):
                try:
                    self._score(group)
                except Exception:
                    log.exception("the shadow failed to score %d request(s)", len(group))
                    self.dropped.labels("error").inc(sum(len(a.flights) for a in group))
            if stopping:
                return

    def _score(self, group: list[_Asked]) -> None:
        """One model call for the requests of one `Served`, then one log record per request."""
        served = group[0].served
        shadow = served.shadow
        assert shadow is not None
        probabilities = served.predict_shadow([f for asked in group for f in asked.flights])
        version = shadow.version.version
        start = 0
        for asked in group:
            answers = probabilities[start : start + len(asked.flights)]
            start += len(asked.flights)
            if not np.isfinite(answers).all():
                self.dropped.labels("nonfinite").inc(len(asked.flights))
                log.error(
                    "shadow v%s answered a non-finite probability to request %s", version, asked.request_id
                )
                continue
            self.scored.labels(str(version)).inc(len(asked.flights))
            self._log.record(
                asked.flights,
                answers,
                version,
                served.snapshot_id,
                asked.request_id,
                asked.flight_numbers,
                requested_at=asked.requested_at,
                client=asked.client,
                unknown=asked.unknown,
                role="shadow",
            )


def _batches(taken: list[_Asked]) -> list[list[_Asked]]:
    """The queued requests by the `Served` they were answered with, in pieces of at most MAX_BATCH_FLIGHTS."""
    batches: list[list[_Asked]] = []
    open_batch: dict[int, tuple[list[_Asked], int]] = {}
    for asked in taken:
        key = id(asked.served)
        batch, flights = open_batch.get(key, ([], 0))
        if batch and flights + len(asked.flights) > MAX_BATCH_FLIGHTS:
            batch, flights = [], 0
        if not batch:
            batches.append(batch)
        batch.append(asked)
        open_batch[key] = (batch, flights + len(asked.flights))
    return batches
