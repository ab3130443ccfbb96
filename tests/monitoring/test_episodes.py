"""One signal per breach episode: a breach that goes on keeps its key, a breach after a clear look gets a new one.

The monitoring tables are written as the assets write them (each run replaces its own
days), and a signal is raised as the assets raise it, on a local lake without Dagster.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.tables import DRIFT_SIGNALS_TABLE, DRIFT_TABLE, LIVE_PERFORMANCE_TABLE
from ml.monitoring.reports import Episode, drift_episode, live_performance_episode
from ml.monitoring.signals import episode_start, raise_signal, signal_key

NOW = dt.datetime(2013, 7, 1, tzinfo=dt.UTC)
BREACH = {"metric": "roc_auc", "value": 0.55, "threshold": 0.6}


def day(n: int) -> dt.date:
    return dt.date(2013, 6, 1) + dt.timedelta(days=n - 1)


def test_the_episode_is_the_run_of_breaches_holding_the_newest_one() -> None:
    assert episode_start([]) is None
    assert episode_start([(day(1), False), (day(2), False)]) is None
    assert episode_start([(day(3), True), (day(1), True), (day(2), True)]) == day(1)  # any order
    assert episode_start([(day(1), True), (day(2), False), (day(3), True)]) == day(3)
    assert episode_start([(day(1), True), (day(2), True), (day(3), False)]) == day(1)
    assert episode_start([(day(1), True), (day(5), True)]) == day(1)  # unobserved days end nothing


def test_the_key_names_the_monitor_the_champion_and_the_episode() -> None:
    assert signal_key("monitoring/drift", 3, day(8)) == "monitoring/drift@v3:2013-06-08"
    assert signal_key("monitoring/drift", None, day(8)) == "monitoring/drift@none:2013-06-08"


def signals(store: DeltaStore) -> list[str]:
    return sorted(store.read(DRIFT_SIGNALS_TABLE)["key"]) if store.exists(DRIFT_SIGNALS_TABLE) else []


def drift_run(store: DeltaStore, as_of: dt.date, breached: bool, champion: int = 1) -> Episode | None:
    """What `monitoring/drift` does: replace its day, then signal the episode if this run breached."""
    frame = pl.DataFrame({"feature": ["dep_hour", "distance"], "breach": [breached, False]}).with_columns(
        pl.lit(as_of).alias("as_of")
    )
    store.replace_days(DRIFT_TABLE, frame, "as_of", [as_of], {})
    episode = drift_episode(store, champion) if breached else None
    if episode is not None:
        raise_signal(store, episode.key, DRIFT_TABLE, BREACH, as_of, NOW, since=episode.start)
    return episode


def test_daily_drift_runs_signal_once_per_episode(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    drift_run(store, day(1), False)
    for n in (2, 3, 4):
        episode = drift_run(store, day(n), True)
        assert episode is not None and episode.start == day(2)
    drift_run(store, day(4), True)  # a rerun of the same day
    assert signals(store) == ["monitoring/drift@v1:2013-06-02"]

    drift_run(store, day(5), False)
    drift_run(store, day(6), True)
    assert signals(store) == ["monitoring/drift@v1:2013-06-02", "monitoring/drift@v1:2013-06-06"]
    drift_run(store, day(7), True, champion=2)  # a new champion, still drifting: its own signal
    assert "monitoring/drift@v2:2013-06-06" in signals(store)
    detail = store.read(DRIFT_SIGNALS_TABLE).filter(pl.col("key") == "monitoring/drift@v1:2013-06-06")[
        "detail"
    ]
    assert detail.item().endswith("as of 2013-06-06, breached since 2013-06-06")


def live_run(store: DeltaStore, days: dict[int, str], version: int = 1) -> Episode | None:
    """What `monitoring/live_performance` does: replace the window's days, then signal the newest breach's episode.

    `days` maps a day to `breach`, `clear` or `pending` (not scored).
    """
    frame = pl.DataFrame(
        {
            "flight_date": [day(n) for n in days],
            "model_version": [version] * len(days),
            "status": ["pending" if v == "pending" else "scored" for v in days.values()],
            "breach": [v == "breach" for v in days.values()],
        }
    )
    store.replace_days(LIVE_PERFORMANCE_TABLE, frame, "flight_date", frame["flight_date"].to_list(), {})
    episode = live_performance_episode(store, version) if "breach" in days.values() else None
    if episode is not None:
        raise_signal(
            store, episode.key, LIVE_PERFORMANCE_TABLE, BREACH, day(max(days)), NOW, since=episode.start
        )
    return episode


def test_a_new_breach_after_a_clear_day_signals_while_the_old_breach_is_still_in_the_window(
    tmp_path: Path,
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    live_run(store, {1: "clear", 2: "breach", 3: "breach"})
    # The next run's window still holds days 2 and 3; day 4 has no outcomes yet, day 5 breaches worse.
    episode = live_run(store, {2: "breach", 3: "breach", 4: "pending", 5: "breach"})
    assert episode == Episode(day(2), "monitoring/live_performance@v1:2013-06-02")
    assert signals(store) == ["monitoring/live_performance@v1:2013-06-02"]

    episode = live_run(store, {3: "breach", 4: "pending", 5: "breach", 6: "clear", 7: "breach"})
    assert episode is not None and episode.start == day(7)
    assert signals(store) == [
        "monitoring/live_performance@v1:2013-06-02",
        "monitoring/live_performance@v1:2013-06-07",
    ]
    live_run(store, {6: "clear", 7: "breach", 8: "breach"})  # goes on: nothing new
    assert len(signals(store)) == 2


def test_an_episode_is_one_models(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    live_run(store, {1: "breach", 2: "breach"}, version=1)
    live_run(store, {3: "clear"}, version=2)
    assert live_performance_episode(store, 2) is None
    episode = live_run(store, {4: "breach"}, version=2)
    assert episode is not None and episode.key == "monitoring/live_performance@v2:2013-06-04"
