"""A prediction log written before the role, client and unknown_fields columns gains them on the next append."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.monitoring.tables import PREDICTION_LOG_SCHEMA, append

NEW_COLUMNS = ("role", "client", "unknown_fields")


def _row(request_id: str) -> dict:
    departure = dt.datetime(2013, 3, 1, 14, tzinfo=dt.UTC)
    return {
        "request_id": request_id,
        "requested_at": departure,
        "position": 0,
        "model_version": 1,
        "snapshot_id": "s",
        "carrier": "UA",
        "flight": None,
        "origin": "EWR",
        "dest": "ORD",
        "sched_dep_utc": departure,
        "tailnum": None,
        "distance": 719,
        "flight_date": departure.date(),
        "delay_probability": 0.3,
        "role": "champion",
        "client": "mobile-app",
        "unknown_fields": "dest",
    }


def test_old_rows_read_as_null_in_the_new_columns_and_new_rows_keep_them(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    old = pl.DataFrame([_row("old")], schema=PREDICTION_LOG_SCHEMA).drop(*NEW_COLUMNS)
    append(store, PREDICTIONS_TABLE, old, {"test": "before"})
    append(
        store, PREDICTIONS_TABLE, pl.DataFrame([_row("new")], schema=PREDICTION_LOG_SCHEMA), {"test": "after"}
    )
    rows = store.read(PREDICTIONS_TABLE).sort("request_id")
    assert set(PREDICTION_LOG_SCHEMA) == set(rows.columns)
    assert rows.filter(pl.col("request_id") == "old").select(NEW_COLUMNS).row(0) == (None, None, None)
    assert rows.filter(pl.col("request_id") == "new").select(NEW_COLUMNS).row(0) == (
        "champion",
        "mobile-app",
        "dest",
    )
