"""Faults a landing zone really sees, as a plan `make simulate --faults` follows day by day.

Each step of a plan is what lands at one moment: normally one day's flights and weather;
with faults, also a truncated file landing with its good neighbours in one sensor tick,
a wrong header, a re-delivery of an ingested day with other bytes, a second delivery of a
day under another name, a SIGKILL of the daemon, and the good re-deliveries of the two
bad days later on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ml.ingest.replay import replay

Corruption = Callable[[bytes], bytes]


def truncated(data: bytes) -> bytes:
    """Cut in the middle of a line, as a copy that stopped half way."""
    return data[: data.index(b"\n", len(data) // 2) + 7]


def wrong_header(data: bytes) -> bytes:
    """The first column renamed: the file no longer matches the contract."""
    header, _, rest = data.partition(b"\n")
    first, _, others = header.partition(b",")
    return b"renamed_" + first + b"," + others + b"\n" + rest


def other_bytes(data: bytes) -> bytes:
    """A correction of a delivered day: the same file without its last flight."""
    return data.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"


@dataclass(frozen=True)
class Landing:
    """One file put into the landing zone: a replayed day, maybe changed, maybe under another name."""

    dataset: str
    day: dt.date
    change: Corruption | None = None
    name: str = ""
    """A file name other than YYYY-MM-DD.csv (a duplicate delivery)."""

    @property
    def good(self) -> bool:
        return self.change is None or self.change is other_bytes

    def describe(self) -> str:
        what = self.change.__name__.replace("_", " ") if self.change else "good"
        return f"{self.dataset} {self.day}" + (f" as {self.name}" if self.name else "") + f" ({what})"


@dataclass(frozen=True)
class Step:
    landings: list[Landing]
    kill_daemon: bool = False
    after_quarantine: tuple[tuple[str, dt.date], ...] = ()
    """Files (dataset, day) that must have left the landing zone for quarantine before this
    step lands: a good re-delivery replaces a bad file only once the platform has seen it."""

    def ready(self, landing_dir: Path) -> bool:
        return not any(
            (landing_dir / d / f"{day.isoformat()}.csv").exists() for d, day in self.after_quarantine
        )


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    @property
    def quarantines(self) -> int:
        """Files that must end in quarantine: the bad ones and the duplicate names."""
        return sum(not landing.good or bool(landing.name) for s in self.steps for landing in s.landings)

    def final_days(self) -> set[dt.date]:
        """Days whose good file lands at some point: each must end in bronze and features."""
        return {
            landing.day for s in self.steps for landing in s.landings if landing.good and not landing.name
        }


def both(day: dt.date, flights: Corruption | None = None) -> list[Landing]:
    return [Landing("flights", day, flights), Landing("weather", day)]


def plan(first: dt.date, days: int, faults: bool) -> Plan:
    """One step per day; with faults (and at least 17 days), the faults at fixed days of the run."""
    day = [first + dt.timedelta(days=n) for n in range(days)]
    if not faults:
        return Plan([Step(both(d)) for d in day])
    if days < 17:
        raise ValueError("the fault plan needs at least 17 days")
    steps = [Step(both(d)) for d in day[:5]]
    steps.append(Step([*both(day[5]), *both(day[6], truncated), *both(day[7])]))  # one tick, one bad
    steps.append(Step([*both(day[8], wrong_header), *both(day[9]), *both(day[10])]))
    steps.append(Step([*both(day[11]), Landing("flights", day[2], other_bytes)]))  # a corrected day
    steps.append(Step([*both(day[12]), Landing("flights", day[12], name=f"{day[12]}.resent.csv")]))
    steps.append(Step(both(day[13]), kill_daemon=True))
    redelivered = [Landing("flights", day[6]), Landing("flights", day[8])]
    bad = tuple((r.dataset, r.day) for r in redelivered)
    steps.append(Step([*both(day[14]), *redelivered], after_quarantine=bad))
    steps += [Step(both(d)) for d in day[15:]]
    return Plan(steps)


def land(landing_dir: Path, landing: Landing, staging: Path) -> None:
    """Write one file of the plan: the replayed bytes of its day, changed as planned."""
    replay(staging, landing.day, landing.day, datasets=(landing.dataset,), force=True)
    data = (staging / landing.dataset / f"{landing.day.isoformat()}.csv").read_bytes()
    if landing.change is not None:
        data = landing.change(data)
    target = landing_dir / landing.dataset / (landing.name or f"{landing.day.isoformat()}.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)
