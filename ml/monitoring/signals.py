"""Retraining signals: the rows a monitoring breach leaves in `DRIFT_SIGNALS_TABLE` for the retraining sensor.

A signal is written once per key, so a rerun of the same breached run (same window,
same model) does not start a second retraining. The time a signal is raised is passed
in by the caller, which reads the clock: the row says when the breach was seen, and a
test can pin it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.tables import DRIFT_SIGNALS_TABLE
from ml.monitoring.tables import append

SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "detail": pl.String(),
    "raised_at": pl.Datetime("us", "UTC"),
    "source": pl.String(),
    "feature": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "as_of": pl.Date(),
}
"""Rows of `DRIFT_SIGNALS_TABLE`: `key` and `detail` are what `retrain_sensor` reads."""


def raise_signal(
    store: DeltaStore, key: str, source: str, breach: Mapping[str, object], as_of: dt.date, now: dt.datetime
) -> bool:
    """Append one retraining signal unless its key is already there; True when a row was written."""
    if store.exists(DRIFT_SIGNALS_TABLE):
        keys = store.scan(DRIFT_SIGNALS_TABLE).select("key").collect().get_column("key")
        if key in keys.to_list():
            return False
    feature = breach.get("feature")
    subject = f" on {feature}" if feature else ""
    detail = f"{source}: {breach['metric']} {breach['value']:.4f}{subject} (limit {breach['threshold']}) as of {as_of}"
    row = pl.DataFrame(
        [
            {
                "key": key,
                "detail": detail,
                "raised_at": now,
                "source": source,
                "feature": feature,
                "metric": breach["metric"],
                "value": breach["value"],
                "threshold": breach["threshold"],
                "as_of": as_of,
            }
        ],
        schema=SIGNAL_SCHEMA,
    )
    append(store, DRIFT_SIGNALS_TABLE, row, {"writer": source, "key": key})
    return True
