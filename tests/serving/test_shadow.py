"""A challenger in shadow: scored on every request off the request path, logged beside the champion,
judged on the outcomes that land, and promoted by the shadow verdict when it holds up."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import yaml
from starlette.testclient import TestClient

from assets import monitoring
from ml.lake.tables import PREDICTIONS_TABLE
from ml.monitoring.shadow import ShadowPolicy, shadow_comparison_from_lake
from ml.registry.model_registry import FILES
from orchestration.shadow_jobs import shadow_verdict
from serving.app import create_app
from tests.conftest import ASSETS, LAST_DAY, Platform, Served, bearer
from tests.serving.conftest import Lab

NEW_YORK = ZoneInfo("America/New_York")
FLIGHT_DAY = LAST_DAY + dt.timedelta(days=1)
"""The day after the snapshot's last: served ahead of its outcomes, which land afterwards."""


def _requests(landing: Path, flights: int) -> list[dict]:
    """The day's scheduled flights as a client sends them (with flight and tail numbers)."""
    rows = pl.read_csv(landing / "flights" / f"{FLIGHT_DAY.isoformat()}.csv", infer_schema_length=0)
    rows = rows.filter(pl.col("tailnum").is_not_null() & pl.col("arr_delay").is_not_null()).head(flights)
    return [
        {
            "carrier": r["carrier"],
            "flight": int(r["flight"]),
            "origin": r["origin"],
            "dest": r["dest"],
            "scheduled_departure": dt.datetime(
                FLIGHT_DAY.year,
                FLIGHT_DAY.month,
                FLIGHT_DAY.day,
                int(r["hour"]),
                int(r["minute"]),
                tzinfo=NEW_YORK,
            ).isoformat(),
            "tailnum": r["tailnum"],
            "distance": int(r["distance"]),
        }
        for r in rows.iter_rows(named=True)
    ]


def test_champion_and_shadow_answer_the_same_flights_and_the_verdict_promotes_a_non_inferior_shadow(
    lab: Lab, served: Served
) -> None:
    challenger = lab.register(lab.copy_model("challenger"), served.champion.lineage[FILES])
    gate = {"passed": True, "beats_champion": "passed offline (the shared fixture's model, copied)"}
    lab.registry.update_metrics(challenger, {**served.champion.metrics, "gate": gate})
    now = dt.datetime.now(dt.UTC)
    lab.registry.start_shadow(challenger, "passed its gate: serving in shadow", now=now)
    requests = _requests(served.platform.landing_dir, 400)

    with TestClient(create_app(lab.config())) as client:
        described = client.get("/v1/model", headers=bearer()).json()
        assert (described["model_version"], described["shadow"]["model_version"]) == (1, challenger)
        for start in range(0, len(requests), 50):
            batch = requests[start : start + 50]
            answer = client.post(
                "/v1/predict",
                json={"flights": batch},
                headers={**bearer(), "X-Request-Id": f"shadowed-{start}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == 1  # the shadow never answers
    # The graceful stop scored what the shadow had queued and logged both roles.
    logged = lab.registry.store.read(PREDICTIONS_TABLE).filter(
        pl.col("request_id").str.starts_with("shadowed-")
    )
    by_role = {role: rows for (role,), rows in logged.group_by("role")}
    assert set(by_role) == {"champion", "shadow"}
    assert by_role["champion"].height == by_role["shadow"].height == len(requests)
    assert set(by_role["shadow"]["model_version"]) == {challenger}
    pairs = by_role["champion"].join(by_role["shadow"], on=["request_id", "position"], suffix="_shadow")
    assert pairs.height == len(requests)

    # The day's outcomes land: bronze ingests the day's landing file into the lab's lake.
    platform = Platform(lab.root)
    shutil.copytree(served.platform.landing_dir, platform.landing_dir)
    repo = lab.root / "repo"
    repo.mkdir()
    params = yaml.safe_load((served.platform.repo / "params.yaml").read_text())
    params["promotion"] = {"shadow_days": 1, "shadow_margin": 0.005, "shadow_min_flights": 300}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    platform.bronze(FLIGHT_DAY)

    policy = ShadowPolicy.from_params(params)
    comparison = shadow_comparison_from_lake(lab.registry.store, 1, challenger, now, policy)
    assert comparison.days == 1 and comparison.flights >= 300
    assert comparison.difference is not None and comparison.difference.estimate == 0.0  # the same weights
    # Monitoring shows both versions' realized quality per day, and the paired comparison.
    monitored = dg.materialize(
        [*ASSETS, monitoring.live_performance],
        selection=["monitoring/live_performance"],
        resources=platform.resources,
        run_config={"ops": {"monitoring__live_performance": {"config": {"min_outcomes": 100}}}},
    )
    shown = monitored.get_asset_materialization_events()[0].materialization.metadata
    assert shown["shadow_comparison"].value == {**comparison.summary()}
    scored = lab.registry.store.read("monitoring/live_performance").filter(
        pl.col("flight_date") == FLIGHT_DAY
    )
    assert set(scored["model_version"]) == {1, challenger}
    result = shadow_verdict.execute_in_process(resources=platform.resources)
    assert result.success and result.output_for_node("judge_shadow") == "promote"
    assert lab.registry.champion().version == challenger and lab.registry.shadow() is None
    observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    verdict = observed[0].event_specific_data.asset_observation.metadata["shadow"].value
    assert verdict["flights"] == comparison.flights and verdict["action"] == "promote"


def test_a_backlog_is_scored_in_pieces_grouped_by_what_answered_it() -> None:
    from serving.shadow_scorer import MAX_BATCH_FLIGHTS, _Asked, _batches

    one, other = object(), object()
    asked = [
        _Asked(served, [None] * flights, f"r{i}", [], dt.datetime.now(dt.UTC), "c", [])  # type: ignore[arg-type]
        for i, (served, flights) in enumerate([(one, 3000), (other, 10), (one, 2000), (one, 1), (other, 5)])
    ]
    batches = _batches(asked)
    assert [[a.request_id for a in b] for b in batches] == [["r0"], ["r1", "r4"], ["r2", "r3"]]
    assert all(sum(len(a.flights) for a in b) <= MAX_BATCH_FLIGHTS for b in batches)
