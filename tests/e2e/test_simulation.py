"""`make simulate --faults`: twenty days land one by one with faults, through the real webserver and daemon.

A truncated file lands in the same tick as its good neighbours, a wrong header beside
two good days, a re-delivery of an ingested day with other bytes, a duplicate name, a
SIGKILL of the daemon, and later good re-deliveries of the two bad days. Without any
manual step every day must end in bronze and features, trainings must be one per
trigger and never two at once, no candidate may be left unevaluated, and the receiver
must hold one alert per quarantined file and per failed run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from devtools.alert_receiver import read_alerts
from devtools.simulate import main
from devtools.simulation_report import TRAINING_JOB
from ml.lake.delta import DeltaStore
from ml.registry.model_registry import ModelRegistry

pytestmark = pytest.mark.slow

FIRST = dt.date(2013, 1, 1)
DAYS = 20


@pytest.mark.timeout(900)
def test_twenty_days_with_faults_end_whole_without_a_manual_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "sim"
    code = main(
        [
            "--root",
            str(root),
            "--days",
            str(DAYS),
            "--interval",
            "3",
            "--retrain-days",
            "7",
            "--faults",
            "--no-serve",
            # Ends by itself once done (about 5 minutes on an idle 2-core machine).
            "--timeout",
            "720",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SIGKILL to the daemon" in out and "the new daemon is heartbeating" in out

    store = DeltaStore(str(root / "data" / "lake"))
    every_day = {FIRST + dt.timedelta(days=n) for n in range(DAYS)}
    for table, column in (
        ("bronze/flights", "flight_date"),
        ("bronze/weather", "obs_date"),
        ("features/flight_features", "flight_date"),
    ):
        assert set(store.read(table)[column].unique()) == every_day, f"{table} is missing days"
    # The corrected day holds the corrected file (one flight fewer), recorded in the landing log.
    log = store.read("bronze/flights_landing_log").filter(pl.col("day") == FIRST + dt.timedelta(days=2))
    assert log.height == 1
    stored = store.read("bronze/flights").filter(pl.col("flight_date") == FIRST + dt.timedelta(days=2))
    assert stored.height == log["landing_rows"].item() - log["rejected"].item()

    quarantine = root / "data" / "quarantine" / "flights"
    bad = sorted(p.name for p in quarantine.iterdir() if not p.name.endswith(".reason.json"))
    assert bad == ["2013-01-07.csv", "2013-01-09.csv", "2013-01-13.resent.csv"]

    instance = dg.DagsterInstance.from_config(str(root / "dagster_home"))
    runs = instance.get_runs()
    failed = {r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE}
    alerts = read_alerts(root / "alerts.jsonl")
    quarantined = [a["platform"] for a in alerts if a["platform"]["kind"] == "quarantine"]
    assert sorted(a["destination"].rsplit("/", 1)[-1] for a in quarantined) == bad, "one alert per file"
    failure_alerts = [a["platform"] for a in alerts if a["platform"]["kind"] == "run_failure"]
    assert sorted(a["run_id"] for a in failure_alerts) == sorted(failed), "one alert per failed run"
    for alert in failure_alerts:
        assert alert["url"].endswith(f"/runs/{alert['run_id']}")
    # The bad files failed the run (or runs: the sensor may batch them in one range) that read them,
    # whose alert names each file and where it was quarantined; the good days beside them landed.
    bronze_failures = [a for a in failure_alerts if "bronze/flights" in a["assets"]]
    assert 1 <= len(bronze_failures) <= 2, bronze_failures
    errors = " ".join(e for a in bronze_failures for e in a["errors"])
    assert "2013-01-07.csv" in errors and "2013-01-09.csv" in errors and "quarantined to" in errors

    trainings = sorted(
        (r for r in runs if r.job_name == TRAINING_JOB),
        key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp,
    )
    assert trainings, out
    keys = [r.tags.get("dagster/run_key") for r in trainings]
    assert len(set(keys)) == len(keys), f"one training per trigger: {keys}"
    spans = []
    for run in trainings:
        record = instance.get_run_record_by_id(run.run_id)
        assert record is not None and record.start_time and record.end_time
        spans.append((record.start_time, record.end_time))
    spans.sort()
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    statuses = [m.status for m in ModelRegistry(store).versions()]
    assert "candidate" not in statuses, f"a candidate was left unevaluated: {statuses}"
    assert len(statuses) == len(trainings)
    assert re.search(r"- trainings: \d+ \(run keys: .+\), overlapping: 0", out), out
    assert re.search(r"- alerts: \d+ \(.*quarantine 3.*\)", out), out
    assert re.search(r"freshness \(landing -> features\): p50 [\d.]+s, max [\d.]+s", out), out
