"""No training/serving skew: the server answers the test split as the offline batch prediction does."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal
from starlette.testclient import TestClient

from ml.features.flight_features import build_features
from ml.online.features import ONLINE_COLUMNS, REQUEST_SCHEMA, online_features
from ml.online.snapshot import build_snapshot, current_id, load
from ml.settings import NEW_YORK
from ml.training.onnx_model import OnnxModel
from tests.conftest import LAST_DAY, MAX_BATCH, Served, bearer, day

TOLERANCE = 1e-6


def schedule(frame: pl.DataFrame) -> list[dict]:
    """The request a client would send for these flights; half of the departures in local time."""
    flights = []
    for i, row in enumerate(frame.iter_rows(named=True)):
        departure: dt.datetime = row["sched_dep_utc"]
        if i % 2:
            departure = departure.astimezone(dt.timezone(dt.timedelta(hours=-5)))
        flights.append(
            {
                "carrier": row["carrier"],
                "origin": row["origin"],
                "dest": row["dest"],
                "scheduled_departure": departure.isoformat(),
                "tailnum": row["tailnum"],
                "distance": row["distance"],
            }
        )
    return flights


def test_served_probabilities_equal_offline_batch_predictions_on_the_test_split(
    served: Served, client: TestClient
) -> None:
    test = pl.read_parquet(served.test_split)
    assert test.height > 2 * MAX_BATCH and test["flight_date"].max() == LAST_DAY
    offline = OnnxModel(served.champion.artifact_uri).predict(test)
    flights = schedule(test)
    online, versions = [], set()
    for start in range(0, len(flights), MAX_BATCH):
        answer = client.post(
            "/v1/predict", json={"flights": flights[start : start + MAX_BATCH]}, headers=bearer()
        )
        assert answer.status_code == 200, answer.text
        for prediction in answer.json()["predictions"]:
            online.append(prediction["delay_probability"])
            versions.add(prediction["model_version"])
    assert versions == {served.champion.version}
    assert len(online) == test.height
    difference = np.abs(np.asarray(online) - offline.astype(np.float64))
    assert difference.max() <= TOLERANCE, f"{int((difference > TOLERANCE).sum())} flights differ"
    assert np.unique(np.round(offline, 4)).size > 100  # a model that answers a constant would prove nothing


def test_online_rows_equal_the_feature_table_rows_of_the_test_split(served: Served) -> None:
    lake = str(served.platform.root / "lake")
    snapshot = load(lake, current_id(lake) or "")
    test = pl.read_parquet(served.test_split)
    online = online_features(test.select(list(REQUEST_SCHEMA)), snapshot)
    assert_frame_equal(online, test.select(ONLINE_COLUMNS))


def test_flights_after_the_snapshot_get_the_latest_windows_and_weather_within_three_hours(
    served: Served,
) -> None:
    """A snapshot through day 13 answers day 14 as the feature table does, save weather it cannot know."""
    store = served.platform.store
    flights, weather = store.read("bronze/flights"), store.read("bronze/weather")
    planes = store.read("bronze/planes")
    snapshot = build_snapshot(flights, weather, planes, day(10), day(13))
    offline = build_features(flights, weather, planes, [day(14)])
    online = online_features(offline.select(list(REQUEST_SCHEMA)), snapshot)
    trailing = [c for c in ONLINE_COLUMNS if "_flights_" in c or "_delay_rate_" in c]
    assert_frame_equal(online.select(trailing), offline.select(trailing))
    # No day-14 flight departs within 3 hours of when the last report of day 13 was known (an hour
    # after its bucket), so none has weather...
    assert online["weather_time"].null_count() == online.height
    # ...while a departure 2.5 hours after it was known gets it, and one 3.5 hours after does not.
    last_bucket = weather.filter(pl.col("obs_date") <= day(13), pl.col("origin") == "EWR")["time_hour"].max()
    known = last_bucket + dt.timedelta(hours=1)
    night = offline.filter(pl.col("origin") == "EWR").head(2).select(list(REQUEST_SCHEMA))
    night = night.with_columns(
        pl.Series("sched_dep_utc", [known + dt.timedelta(minutes=m) for m in (150, 210)])
    )
    assert online_features(night, snapshot)["weather_time"].to_list() == [known, None]
    # Two days later still uses the windows ending with the snapshot's last day.
    later = online_features(
        offline.select(list(REQUEST_SCHEMA)).with_columns(pl.col("sched_dep_utc") + dt.timedelta(days=2)),
        snapshot,
    )
    assert_frame_equal(later.select(trailing), offline.select(trailing))
    local_day = later["sched_dep_utc"].dt.convert_time_zone(NEW_YORK).dt.date()
    assert (local_day == day(16)).all()
