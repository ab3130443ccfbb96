"""Build the online snapshot from the lake: the feature table's last day fixes its window."""

from __future__ import annotations

import datetime as dt

import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER, FEATURES_TABLE
from ml.online.snapshot import OnlineSnapshot, build_snapshot, history_days, weather_days


def servable_first_day(last_day: dt.date, servable_days: int) -> dt.date:
    """First of the `servable_days` flight days that end on the day after `last_day`."""
    return last_day + dt.timedelta(days=1) - dt.timedelta(days=servable_days - 1)


def online_snapshot_from_lake(store: DeltaStore, servable_days: int) -> OnlineSnapshot:
    """Feature inputs up to the last feature day, with the versions of the tables they came from."""
    sources = {t: store.version(t) for t in (BRONZE_FLIGHTS, BRONZE_WEATHER, BRONZE_PLANES, FEATURES_TABLE)}
    last = (
        store.scan(FEATURES_TABLE, sources[FEATURES_TABLE])
        .select(pl.col("flight_date").max())
        .collect()
        .item()
    )
    if last is None:
        raise ValueError(f"{FEATURES_TABLE} has no rows: materialize features before the online snapshot")
    first = servable_first_day(last, servable_days)
    # Read at the versions the manifest records, so its sources name exactly what it holds.
    return build_snapshot(
        store.read_days(BRONZE_FLIGHTS, "flight_date", *history_days(first, last), sources[BRONZE_FLIGHTS]),
        store.read_days(BRONZE_WEATHER, "obs_date", *weather_days(first, last), sources[BRONZE_WEATHER]),
        store.read(BRONZE_PLANES, sources[BRONZE_PLANES]),
        first,
        last,
        sources,
    )
