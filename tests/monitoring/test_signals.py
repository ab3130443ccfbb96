"""Retraining signals on a local lake, without Dagster: the caller's clock is what is stored, once per key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ml.lake.delta import DeltaStore
from ml.lake.tables import DRIFT_SIGNALS_TABLE
from ml.monitoring.signals import SIGNAL_SCHEMA, raise_signal

AS_OF = dt.date(2013, 6, 30)
BREACH = {"feature": "dep_hour", "metric": "psi", "value": 0.31234, "threshold": 0.2}


def test_the_passed_in_time_is_stored_and_a_repeated_key_writes_nothing(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    now = dt.datetime(2013, 7, 1, 6, 30, 15, tzinfo=dt.UTC)

    assert raise_signal(store, "feature-drift-2013-06-30", "monitoring/drift", BREACH, AS_OF, now)
    later = now + dt.timedelta(hours=3)
    assert not raise_signal(store, "feature-drift-2013-06-30", "monitoring/drift", BREACH, AS_OF, later)

    rows = store.read(DRIFT_SIGNALS_TABLE)
    assert rows.schema == SIGNAL_SCHEMA
    assert rows.to_dicts() == [
        {
            "key": "feature-drift-2013-06-30",
            "detail": "monitoring/drift: psi 0.3123 on dep_hour (limit 0.2) as of 2013-06-30",
            "raised_at": now,
            "source": "monitoring/drift",
            "feature": "dep_hour",
            "metric": "psi",
            "value": 0.31234,
            "threshold": 0.2,
            "as_of": AS_OF,
        }
    ]
    assert store.table(DRIFT_SIGNALS_TABLE).version() == 0


def test_a_new_key_appends_a_row_and_a_day_breach_names_no_feature(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    now = dt.datetime(2013, 7, 1, tzinfo=dt.UTC)
    raise_signal(store, "feature-drift-2013-06-30", "monitoring/drift", BREACH, AS_OF, now)

    day = {"metric": "roc_auc", "value": 0.55, "threshold": 0.6, "flight_date": AS_OF}
    assert raise_signal(
        store, "live-performance-v3-2013-06-30", "monitoring/live_performance", day, AS_OF, now
    )

    rows = store.read(DRIFT_SIGNALS_TABLE).sort("key")
    assert rows["key"].to_list() == ["feature-drift-2013-06-30", "live-performance-v3-2013-06-30"]
    assert rows.row(1, named=True)["detail"] == (
        "monitoring/live_performance: roc_auc 0.5500 (limit 0.6) as of 2013-06-30"
    )
    assert rows.row(1, named=True)["feature"] is None
