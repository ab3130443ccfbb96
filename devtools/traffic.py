"""The model server of `make simulate`: `python -m serving` as a process, and clients asking it.

The server starts before any model exists and becomes ready once the loop has promoted a
champion and published an online snapshot; every landed day, the simulation asks it for
the next day's scheduled flights, as clients would the evening before, so monitoring
later joins those predictions with the outcomes that land.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from devtools.processes import free_port, terminate
from devtools.services import PROJECT
from ml.ingest.source_data import read_source
from ml.settings import NEW_YORK

TAILNUM = r"^[A-Z0-9]{1,10}$"


@dataclass
class ModelServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    token: str = field(repr=False)
    answered: int = 0
    refused: int = 0
    last_refusal: str = ""

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def ready(self) -> bool:
        try:
            return self._request("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def predict(self, flights: list[dict[str, object]]) -> int | None:
        """Ask for the flights; the champion's version when answered, None when refused."""
        status, body = self._request("POST", "/v1/predict", json.dumps({"flights": flights}).encode())
        if status != 200:
            self.refused += len(flights)
            self.last_refusal = f"{status} {body[:300].decode(errors='replace')}"
            return None
        self.answered += len(flights)
        return int(json.loads(body)["model_version"])


@functools.cache
def _source_flights() -> pl.DataFrame:
    """The source's flights, read once per process (the simulation asks for a day at every step)."""
    return read_source("flights")


def scheduled_flights(day: dt.date, limit: int) -> list[dict[str, object]]:
    """Up to `limit` flights scheduled on `day`, as a client knows them before departure."""
    zone = ZoneInfo(NEW_YORK)
    frame = (
        _source_flights()
        .filter(
            (pl.col("year").cast(pl.Int32) == day.year)
            & (pl.col("month").cast(pl.Int32) == day.month)
            & (pl.col("day").cast(pl.Int32) == day.day)
        )
        .head(limit)
    )
    flights = []
    for row in frame.iter_rows(named=True):
        departure = dt.datetime(
            day.year, day.month, day.day, int(row["hour"]), int(row["minute"]), tzinfo=zone
        )
        flight: dict[str, object] = {
            "carrier": row["carrier"],
            "origin": row["origin"],
            "dest": row["dest"],
            "scheduled_departure": departure.isoformat(),
            "distance": int(row["distance"]),
            "flight": int(row["flight"]),
        }
        if row["tailnum"] and pl.Series([row["tailnum"]]).str.contains(TAILNUM).item():
            flight["tailnum"] = row["tailnum"]
        flights.append(flight)
    return flights


@contextmanager
def model_server(root: Path, env: Mapping[str, str]) -> Iterator[ModelServer]:
    """`python -m serving` on a free port of 127.0.0.1 over the simulation's lake; stopped with SIGTERM."""
    port, token = free_port(), secrets.token_hex(16)
    log = root / "model-server.log"
    settings = {
        **os.environ,
        **env,
        "PLATFORM_SERVING_TOKEN": token,
        "PLATFORM_SERVING_ADMIN_TOKEN": secrets.token_hex(16),
        "PLATFORM_SERVING_HOST": "127.0.0.1",
        "PLATFORM_SERVING_PORT": str(port),
        "PLATFORM_SERVING_METRICS_PORT": str(free_port()),
        "PLATFORM_SERVING_POLL_SECONDS": "2",
        "PLATFORM_SERVING_CACHE_DIR": str(root / "serving-cache"),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"], cwd=PROJECT, env=settings, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield ModelServer(port, process, log, token)
    finally:
        terminate(process, timeout=20)
