"""What is new in the landing zone since the last look: the logic of the landing sensor.

A file is known by a signature (size and modification time, or the object store's ETag)
so a tick lists the zone without reading any file. A file is requested once it has
settled (unchanged for `settle_seconds`), so a file still being copied waits for the
next tick; a known file whose signature changed is requested again and reported.
Days are batched into contiguous ranges so that hundreds of new files become a few
range runs, not hundreds of runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ml.ingest.landing_zone import LandedFile


@dataclass(frozen=True)
class DayRange:
    dataset: str
    first: dt.date
    last: dt.date
    files: tuple[LandedFile, ...]

    @property
    def run_key(self) -> str:
        """Unique per range and content: the same files never make a second run."""
        signatures = ",".join(f.signature for f in self.files)
        return f"{self.dataset}:{self.first}..{self.last}:{_digest(signatures)}"


@dataclass(frozen=True)
class Plan:
    ranges: list[DayRange]
    changed: list[LandedFile]
    settling: list[LandedFile]
    cursor: dict[str, str]
    vanished: list[str] = field(default_factory=list)


def _digest(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()[:12]


def read_cursor(raw: str | None) -> dict[str, str]:
    """uri -> signature of every file already requested."""
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError(f"landing sensor cursor is not {{'files': {{uri: signature}}}}: {raw[:200]!r}")
    return {str(k): str(v) for k, v in data["files"].items()}


def write_cursor(files: Mapping[str, str]) -> str:
    return json.dumps({"files": dict(sorted(files.items()))}, separators=(",", ":"))


def contiguous(files: Sequence[LandedFile], max_days: int) -> list[DayRange]:
    """Runs of consecutive days of one dataset, at most `max_days` each."""
    ranges: list[DayRange] = []
    by_dataset: dict[str, list[LandedFile]] = {}
    for f in sorted(files, key=lambda f: (f.dataset, f.day)):
        by_dataset.setdefault(f.dataset, []).append(f)
    for dataset, items in by_dataset.items():
        batch: list[LandedFile] = []
        for f in items:
            if batch and ((f.day - batch[-1].day).days != 1 or len(batch) >= max_days):
                ranges.append(DayRange(dataset, batch[0].day, batch[-1].day, tuple(batch)))
                batch = []
            batch.append(f)
        if batch:
            ranges.append(DayRange(dataset, batch[0].day, batch[-1].day, tuple(batch)))
    return ranges


@dataclass(frozen=True)
class LandingRun:
    """One run the landing sensor asks for: some datasets' bronze over a day range, and the
    features of those days when every dataset they read landed in it."""

    datasets: tuple[str, ...]
    first: dt.date
    last: dt.date
    run_key: str

    @property
    def with_features(self) -> bool:
        return len(self.datasets) > 1


def landing_runs(ranges: Sequence[DayRange], together: Sequence[str]) -> list[LandingRun]:
    """Ranges of the `together` datasets over the same days become one run, with the features.

    A day's flights and weather usually land together: ingesting both and building the day's
    features in one run saves the automation tick and the second run's start (freshness).
    A range one of them lacks is a bronze run of its own, and automation builds the features.
    """
    by_span: dict[tuple[dt.date, dt.date], dict[str, DayRange]] = {}
    for r in ranges:
        by_span.setdefault((r.first, r.last), {})[r.dataset] = r
    runs: list[LandingRun] = []
    for (first, last), found in sorted(by_span.items()):
        if set(together) <= set(found):
            keys = "|".join(found[d].run_key for d in together)
            runs.append(LandingRun(tuple(together), first, last, keys))
            found = {d: r for d, r in found.items() if d not in together}
        runs += [LandingRun((d,), first, last, r.run_key) for d, r in sorted(found.items())]
    return runs


def plan(
    present: Iterable[LandedFile],
    seen: Mapping[str, str],
    now: dt.datetime,
    settle_seconds: float,
    max_days_per_run: int,
) -> Plan:
    """The runs to request for what is in the zone now, and the cursor after requesting them."""
    cursor = dict(seen)
    ready: list[LandedFile] = []
    changed: list[LandedFile] = []
    settling: list[LandedFile] = []
    listed: set[str] = set()
    for f in present:
        listed.add(f.uri)
        if seen.get(f.uri) == f.signature:
            continue
        if f.modified is not None and (now - f.modified).total_seconds() < settle_seconds:
            settling.append(f)
            continue
        if f.uri in seen:
            changed.append(f)
        ready.append(f)
        cursor[f.uri] = f.signature
    vanished = sorted(uri for uri in seen if uri not in listed)
    return Plan(contiguous(ready, max_days_per_run), changed, settling, cursor, vanished)
