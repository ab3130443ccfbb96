"""What `make simulate` counts as a failure: not a retried start, a quarantined file or the gate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from devtools.alert_receiver import AlertReceiver
from devtools.faults import Landing, other_bytes, plan, truncated, wrong_header
from devtools.simulation_report import Timeline, overlapping_trainings, unalerted, unexplained_failures
from ml.alerts import post_alert


def run(run_id: str, status: str, job: str = "bronze_ingestion", **tags: str) -> dict:
    return {
        "runId": run_id,
        "jobName": job,
        "status": status,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
        "startTime": None,
        "endTime": None,
    }


def test_a_failed_start_that_was_retried_is_no_failure_and_one_that_was_not_is() -> None:
    timeline = Timeline()
    timeline.runs = {
        "a": run("a", "FAILURE"),
        "b": run("b", "SUCCESS", **{"dagster/parent_run_id": "a"}),
        "c": run("c", "FAILURE"),
    }
    unexplained = unexplained_failures(timeline, dg.DagsterInstance.ephemeral())
    assert list(unexplained) == ["c"]
    assert "the run itself" in unexplained["c"]


def test_overlapping_trainings_are_found() -> None:
    timeline = Timeline()
    first, second, third = (run(k, "SUCCESS", job="train_evaluate_promote") for k in "xyz")
    first.update(startTime=10.0, endTime=20.0)
    second.update(startTime=20.0, endTime=30.0)
    third.update(startTime=25.0, endTime=40.0)
    timeline.runs = {r["runId"]: r for r in (first, second, third)}
    assert overlapping_trainings(timeline) == [("y", "z")]


def test_the_fault_plan_quarantines_three_files_and_every_day_ends_good() -> None:
    first = dt.date(2013, 1, 1)
    faulty = plan(first, 20, faults=True)
    assert faulty.quarantines == 3
    assert faulty.final_days() == {first + dt.timedelta(days=n) for n in range(20)}
    changes = [landing.change for step in faulty.steps for landing in step.landings]
    assert changes.count(truncated) == changes.count(wrong_header) == changes.count(other_bytes) == 1
    assert sum(step.kill_daemon for step in faulty.steps) == 1
    redelivery = next(step for step in faulty.steps if step.after_quarantine)
    assert {(landing.dataset, landing.day) for landing in redelivery.landings} >= set(
        redelivery.after_quarantine
    )
    assert not any(isinstance(x, Landing) and x.name for x in plan(first, 5, faults=False).steps[0].landings)


def test_a_failed_run_or_quarantined_file_without_an_alert_is_named(tmp_path: Path) -> None:
    quarantine = tmp_path / "quarantine" / "flights"
    quarantine.mkdir(parents=True)
    for name in ("2013-01-07.csv", "2013-01-07.csv.reason.json", "2013-01-09.csv"):
        (quarantine / name).write_text("x")
    timeline = Timeline()
    timeline.runs = {"a": run("a", "FAILURE"), "b": run("b", "FAILURE"), "c": run("c", "SUCCESS")}
    with AlertReceiver() as receiver:
        post_alert(receiver.url, {"text": "a failed", "platform": {"kind": "run_failure", "run_id": "a"}})
        destination = str(quarantine / "2013-01-07.csv")
        post_alert(
            receiver.url, {"text": "moved", "platform": {"kind": "quarantine", "destination": destination}}
        )
        receiver.wait_for(2)
        assert unalerted(timeline, receiver, tmp_path / "quarantine") == [
            "run b",
            "quarantined 2013-01-09.csv",
        ]
