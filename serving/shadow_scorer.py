"""The challenger in shadow, scored off the request path and logged beside the champion's answer.

The request path only appends what it answered to a bounded queue (a lock held for a list
append); one thread scores the shadow model on the same flights through the same snapshot
lookups and hands its answers to the prediction log with `role="shadow"`, under the
request's id. A shadow never answers, so a slow or full queue drops shadow rows (counted)
rather than ever delaying a client; a non-finite shadow answer is counted and not logged.
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


class _Asked(NamedTuple):
    served: Served
    flights: list[Schedule]
    request_id: str
    flight_numbers: Sequence[int | None]
    requested_at: dt.datetime
    client: str
    unknown: Sequence[str]


class ShadowScorer:
    def __init__(self, prediction_log: PredictionLog, max_queued: int = MAX_QUEUED_REQUESTS) -> None:
        self._log = prediction_log
        self._max = max_queued
        self._queue: collections.deque[_Asked] = collections.deque()
        self._ready = threading.Condition()
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
        with self._ready:
            if self._stopping or len(self._queue) >= self._max:
                self.dropped.labels("queue_full" if not self._stopping else "closed").inc(len(flights))
                return
            self._queue.append(
                _Asked(served, flights, request_id, flight_numbers, requested_at, client, unknown)
            )
            self._ready.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Score what is queued, then stop: a graceful stop logs every shadow answer too."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                asked = self._queue.popleft()
            try:
                self._score(asked)
            except Exception:
                log.exception("the shadow failed to score request %s", asked.request_id)
                self.dropped.labels("error").inc(len(asked.flights))

    def _score(self, asked: _Asked) -> None:
        shadow = asked.served.shadow
        assert shadow is not None
        probabilities = asked.served.predict_shadow(asked.flights)
        version = shadow.version.version
        if not np.isfinite(probabilities).all():
            self.dropped.labels("nonfinite").inc(len(asked.flights))
            log.error("shadow v%s answered a non-finite probability to request %s", version, asked.request_id)
            return
        self.scored.labels(str(version)).inc(len(asked.flights))
        self._log.record(
            asked.flights,
            probabilities,
            version,
            asked.served.snapshot_id,
            asked.request_id,
            asked.flight_numbers,
            requested_at=asked.requested_at,
            client=asked.client,
            unknown=asked.unknown,
            role="shadow",
        )
