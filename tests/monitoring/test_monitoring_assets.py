"""The monitoring assets on a trained champion's lake: drift against the training split, realized
quality from the real server's prediction log, and the retraining signal they leave for the sensor."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from starlette.testclient import TestClient

from assets import monitoring
from ml.lake.tables import (
    DRIFT_SIGNALS_TABLE,
    DRIFT_TABLE,
    FEATURES_TABLE,
    LIVE_PERFORMANCE_TABLE,
    PREDICTIONS_TABLE,
)
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA, append
from orchestration.retraining import retrain_sensor
from resources import DvcResource, LakeResource, RetrainPolicy
from serving.app import create_app
from tests.conftest import ASSETS, LAST_DAY, Served, bearer, day

ALL_ASSETS = [*ASSETS, monitoring.drift, monitoring.live_performance]


class Monitored:
    """A copy of the served platform's lake, so each test starts without a prediction log or signals.

    The monitoring tables are left out of the copy: the serving tests that share the trained
    platform log their answers to its lake.
    """

    def __init__(self, served: Served, tmp_path: Path) -> None:
        shutil.copytree(
            served.platform.root / "lake", tmp_path / "lake", ignore=shutil.ignore_patterns("monitoring")
        )
        self.served = served
        self.lake = LakeResource(root=str(tmp_path / "lake"))
        self.store = self.lake.store()

    def materialize(self, key: str, config: dict | None = None) -> dg.ExecuteInProcessResult:
        op = key.replace("/", "__")
        return dg.materialize(
            ALL_ASSETS,
            selection=[key],
            resources={**self.served.platform.resources, "lake": self.lake},
            run_config={"ops": {op: {"config": config}}} if config else None,
        )

    def retrain_tick(self, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(
                cursor=cursor,
                instance=instance,
                resources={
                    "lake": self.lake,
                    "dvc": DvcResource(repo_root=str(self.served.platform.repo)),
                    "retrain_policy": RetrainPolicy(new_feature_days=0),
                },
            )
            return retrain_sensor(context)

    @property
    def training_data(self) -> str:
        """The data a retraining would read: the served features end at LAST_DAY."""
        return f"cutoff-{LAST_DAY}:features-v{self.store.version(FEATURES_TABLE)}"


@pytest.fixture
def monitored(served: Served, tmp_path: Path) -> Monitored:
    return Monitored(served, tmp_path)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_drift_against_a_reference_too_short_to_set_limits_reports_every_feature_and_judges_none(
    monitored: Monitored,
) -> None:
    """The served champion learned from 8 days: not one 7-day block after the warm-up to set a limit from.

    (Judged against fixed limits, these two weeks breached on the trailing volumes, which
    double while the 28-day windows fill: the false alarm the calibration removes. The
    signal a real breach raises is tested on a year of data in test_drift_false_alarms.)
    """
    for _ in range(2):  # the second run replaces the first one's day
        result = monitored.materialize("monitoring/drift")
        assert checks(result) == {"no_feature_drift": True}
    table = monitored.store.read(DRIFT_TABLE)
    assert table.height == table["feature"].n_unique() >= 30
    assert set(table["as_of"]) == {day(14)} and set(table["window_first"]) == {day(8)}
    assert table["threshold"].null_count() == table.height and not table["breach"].any()
    assert set(table["threshold_basis"]) == {
        "not judged: 0 reference block(s) of 7 days after the 28 warm-up days, 4 needed to set a limit"
    }
    assert not {"month", "days_to_holiday"} & set(table["feature"])
    meta = metadata(result)
    assert meta["features_not_judged"].value == table.height
    assert meta["reference"].value == f"champion v{monitored.served.champion.version}'s training set, on disk"
    assert "origin_flights_28d" in meta["features"].value and "data:image/png;base64," in meta["plot"].value
    assert not monitored.store.exists(DRIFT_SIGNALS_TABLE)
    assert isinstance(monitored.retrain_tick(), dg.SkipReason)


def request_body(rows: list[dict]) -> dict:
    return {
        "flights": [
            {
                "carrier": r["carrier"],
                "origin": r["origin"],
                "dest": r["dest"],
                "scheduled_departure": r["sched_dep_utc"].isoformat(),
                "tailnum": r["tailnum"],
                "distance": r["distance"],
            }
            for r in rows
        ]
    }


def test_live_performance_scores_the_real_servers_answers_per_day_against_outcomes(
    monitored: Monitored,
) -> None:
    bronze = monitored.store.read_days("bronze/flights", "flight_date", day(12), day(14))
    bronze = bronze.filter(pl.col("tailnum").is_not_null()).sort(
        "flight_date", "sched_dep_utc", "carrier", "flight"
    )
    few = bronze.filter(pl.col("flight_date") == day(12)).head(30)
    full = bronze.filter(pl.col("flight_date") > day(12))
    ahead = full.tail(1).with_columns(
        pl.col("sched_dep_utc") + dt.timedelta(days=1)
    )  # day 15: no outcome yet
    invented = full.head(1).with_columns(  # an hour and minute no UA flight from EWR to ORD had
        carrier=pl.lit("UA"),
        origin=pl.lit("EWR"),
        dest=pl.lit("ORD"),
        sched_dep_utc=pl.lit(dt.datetime(2013, 1, 14, 8, 17, tzinfo=dt.UTC)),
    )
    assert bronze.join(invented, on=["carrier", "origin", "dest", "sched_dep_utc"]).is_empty()
    probabilities: list[float] = []
    config = monitored.served.config(lake_uri=monitored.lake.root)
    with TestClient(create_app(config)) as client:
        for frame in (few, *full.iter_slices(1000), ahead, invented, full.head(10)):
            answer = client.post("/v1/predict", json=request_body(frame.to_dicts()), headers=bearer())
            assert answer.status_code == 200, answer.text
            probabilities += [p["delay_probability"] for p in answer.json()["predictions"]]
    logged = monitored.store.read(PREDICTIONS_TABLE)
    assert logged.height == len(probabilities) == few.height + full.height + 12

    result = monitored.materialize(
        "monitoring/live_performance", {"min_outcomes": 100, "auc_floor": 0.5, "max_calibration_error": 1.0}
    )
    assert checks(result) == {"realized_quality": True}
    table = monitored.store.read(LIVE_PERFORMANCE_TABLE).sort("flight_date")
    assert table["status"].to_list() == ["too_few_outcomes", "scored", "scored", "pending"]
    assert table["roc_auc"][0] is None and table["roc_auc"][3] is None
    answered = full.with_columns(pl.Series("p", probabilities[few.height : few.height + full.height]))
    for row in table.filter(pl.col("status") == "scored").iter_rows(named=True):
        scored = answered.filter(
            pl.col("flight_date") == row["flight_date"], pl.col("arr_delay").is_not_null()
        )
        assert row["outcomes"] == scored.height
        assert row["roc_auc"] == pytest.approx(
            roc_auc_score(scored["arr_delay"] >= 15, scored["p"]), abs=1e-9
        )
        no_outcome = answered.filter(
            pl.col("flight_date") == row["flight_date"], pl.col("arr_delay").is_null()
        )
        assert row["cancelled"] + row["diverted"] == no_outcome.height > 0
        assert row["cancelled"] == no_outcome.filter(pl.col("dep_time").is_null()).height
    assert table.filter(pl.col("flight_date") == day(14))["unmatched"].to_list() == [1]
    meta = metadata(result)
    assert meta["duplicate_predictions"].value == 10 and "data:image/png;base64," in meta["plot"].value

    strict = monitored.materialize("monitoring/live_performance", {"auc_floor": 0.99})
    assert checks(strict) == {"realized_quality": False}
    assert monitored.store.read(LIVE_PERFORMANCE_TABLE).height == 4  # its days replaced, not appended
    (signal,) = monitored.store.read(DRIFT_SIGNALS_TABLE).iter_rows(named=True)
    assert (signal["source"], signal["metric"], signal["threshold"]) == (
        "monitoring/live_performance",
        "roc_auc",
        0.99,
    )
    # Both scored days breach the strict floor: one episode, from the first of them.
    assert signal["key"] == f"monitoring/live_performance@v{monitored.served.champion.version}:{day(13)}"
    assert metadata(strict)["breached_since"].value == day(13).isoformat()
    again = monitored.materialize("monitoring/live_performance", {"auc_floor": 0.995})
    assert checks(again) == {"realized_quality": False}
    assert monitored.store.read(DRIFT_SIGNALS_TABLE).height == 1  # the breach goes on: no new signal
    due = monitored.retrain_tick()
    assert isinstance(due, dg.SensorResult)
    assert [r.run_key for r in due.run_requests or []] == [f"train:{monitored.training_data}"]


def test_live_performance_before_any_prediction_is_logged_passes_and_says_so(monitored: Monitored) -> None:
    assert not monitored.store.exists(PREDICTIONS_TABLE)
    for _ in range(2):  # no log at all, then a log with no rows
        result = monitored.materialize("monitoring/live_performance")
        assert result.success and checks(result) == {"realized_quality": True}
        meta = metadata(result)
        assert meta["status"].value.startswith("no predictions logged")
        assert meta["days_scored"].value == 0 and meta["retraining_signal"].value is False
        (check,) = result.get_asset_check_evaluations()
        assert check.metadata["status"].value.startswith("no predictions logged")
        append(monitored.store, PREDICTIONS_TABLE, pl.DataFrame(schema=PREDICTION_LOG_SCHEMA), {})
    assert not monitored.store.exists(LIVE_PERFORMANCE_TABLE)
    assert not monitored.store.exists(DRIFT_SIGNALS_TABLE)


def test_drift_before_the_first_training_set_passes_and_says_so(tmp_path: Path) -> None:
    resources = {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "dvc": DvcResource(repo_root=str(tmp_path / "repo")),
    }
    result = dg.materialize([monitoring.drift], resources=resources)
    assert result.success and checks(result) == {"no_feature_drift": True}
    assert metadata(result)["status"].value.startswith("no training set yet")
    assert not resources["lake"].store().exists(DRIFT_TABLE)
