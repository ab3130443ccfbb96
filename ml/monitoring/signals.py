"""Retraining signals: the rows a monitoring breach leaves in `DRIFT_SIGNALS_TABLE` for the retraining sensor.

One signal per breach episode: the key names the monitor, the champion it judged and
the first observation of the episode (`episode_start`), so a breach that goes on for
days, and every rerun over it, keeps one key, while a breach after a clear observation
starts a new episode and a new key. A signal is written once per key. The time a
signal is raised is passed in by the caller, which reads the clock: the row says when
the breach was seen, and a test can pin it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

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


def episode_start(observations: Iterable[tuple[dt.date, bool]]) -> dt.date | None:
    """The first day of the breach episode that holds the newest breached observation; None without one.

    `observations` are (day, breached) pairs of one monitor and one model, in any order,
    at most one per day. An episode is a run of breached observations with no clear
    observation between them; days that were not observed (no monitoring run, no scored
    outcomes) neither extend nor end it.
    """
    ordered = sorted(observations)
    breached = [i for i, (_, is_breach) in enumerate(ordered) if is_breach]
    if not breached:
        return None
    first = breached[-1]
    while first > 0 and ordered[first - 1][1]:
        first -= 1
    return ordered[first][0]


def signal_key(source: str, champion_version: int | None, start: dt.date) -> str:
    """`monitoring/drift@v3:2013-01-08`: the monitor, the champion it judged (`none` before one) and the episode."""
    model = "none" if champion_version is None else f"v{champion_version}"
    return f"{source}@{model}:{start.isoformat()}"


def raise_signal(
    store: DeltaStore,
    key: str,
    source: str,
    breach: Mapping[str, object],
    as_of: dt.date,
    now: dt.datetime,
    since: dt.date | None = None,
) -> bool:
    """Append one retraining signal unless its key is already there; True when a row was written.

    `since` is the first day of the breach episode, named in the detail when given.
    """
    if store.exists(DRIFT_SIGNALS_TABLE):
        keys = store.scan(DRIFT_SIGNALS_TABLE).select("key").collect().get_column("key")
        if key in keys.to_list():
            return False
    feature = breach.get("feature")
    subject = f" on {feature}" if feature else ""
    episode = f", breached since {since}" if since is not None else ""
    detail = (
        f"{source}: {breach['metric']} {breach['value']:.4f}{subject} (limit {breach['threshold']})"
        f" as of {as_of}{episode}"
    )
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
