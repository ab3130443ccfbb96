"""Drift alarms that mean drift, on the real 2013 data: quiet over undrifted weeks, loud on a real shift.

The reference is the default training set's train split (January to September); the
weeks judged are the test months, November and December, which the model never saw and
which differ from the reference by season, holidays and traffic, but not by any fault.
The eight weeks end on December 28: the source's weather stops on December 30, so the
last days of the year have no weather at all, which the monitor rightly flags.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import dagster as dg
import polars as pl
import pytest

from assets.monitoring import CALENDAR_FEATURES, CALENDAR_REASON
from ml.features.flight_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from ml.lake.tables import DRIFT_SIGNALS_TABLE, DRIFT_TABLE
from ml.monitoring.drift import Calibration, ReferenceProfile, drift_table, fit_reference
from ml.training.training_set import SplitSizes, split_by_time
from orchestration.retraining import retrain_sensor
from resources import RetrainPolicy
from tests.monitoring.conftest import CALM_LAST, TRAIN_LAST, YEAR_LAST, YearPlatform, days_of, write_days

NUMERIC = [c for c in NUMERIC_FEATURES if c not in CALENDAR_FEATURES]
WEEKS = [dt.date(2013, 11, 3) + dt.timedelta(days=7 * i) for i in range(8)]
"""First days of eight consecutive weeks of the test months: Nov 3..9, ..., Dec 22..28."""
SHIFTED_WEEK = (dt.date(2013, 11, 10), dt.date(2013, 11, 16))
DELAY_RATES = [c for c in NUMERIC if "_delay_rate_" in c]
Shift = Callable[[pl.DataFrame], pl.DataFrame]


def week(features: pl.DataFrame, first: dt.date) -> pl.DataFrame:
    return days_of(features, first, first + dt.timedelta(days=6))


def delays_up(frame: pl.DataFrame) -> pl.DataFrame:
    """Every trailing delay rate up 30 points (at most 1): the airports' delays far above any training month."""
    return frame.with_columns([pl.min_horizontal(pl.col(c) + 0.3, pl.lit(1.0)).alias(c) for c in DELAY_RATES])


@pytest.fixture(scope="module")
def profile(year_features: pl.DataFrame) -> ReferenceProfile:
    """The default training set's train split, calibrated for 7-day windows with the default settings."""
    train = split_by_time(year_features, YEAR_LAST, SplitSizes(validation_days=31, test_days=61))["train"]
    assert train["flight_date"].min() == dt.date(2013, 1, 1) and train["flight_date"].max() == TRAIN_LAST
    return fit_reference(train, NUMERIC, list(CATEGORICAL_FEATURES), Calibration(), block_days=7)


def test_undrifted_test_weeks_raise_at_most_one_alarm_where_fixed_limits_raise_one_every_week(
    profile: ReferenceProfile, year_features: pl.DataFrame
) -> None:
    tables = {first: drift_table(profile, week(year_features, first)) for first in WEEKS}
    breached = {first: t.filter("breach")["feature"].to_list() for first, t in tables.items()}
    assert sum(bool(b) for b in breached.values()) <= 1, breached
    # The old yardstick, PSI > 0.2 or KS > 0.1 for every feature, on the same statistics:
    fixed = {
        first: t.filter((pl.col("psi") > 0.2) | (pl.col("ks") > 0.1)).height for first, t in tables.items()
    }
    assert all(n >= 5 for n in fixed.values()), fixed
    # Every limit is derived from the reference's own blocks, and the table says how.
    table = tables[WEEKS[0]]
    assert table["threshold"].null_count() == 0 and set(table["reference_blocks"]) == {35}
    temp = table.filter(pl.col("feature") == "temp").row(0, named=True)
    assert temp["threshold"] == pytest.approx(1.5 * temp["block_statistic"])
    assert temp["threshold_basis"].startswith("1.5 x max of 35 reference blocks of 7 days")


def units(feature: str, factor: float, offset: float = 0.0) -> Shift:
    """A feed that starts sending `feature` in other units."""
    return lambda frame: frame.with_columns(((pl.col(feature) + offset) * factor).alias(feature))


@pytest.mark.parametrize(
    ("shift", "touched", "at_least"),
    [
        (delays_up, set(DELAY_RATES), 3),
        (units("pressure", 0.02953), {"pressure"}, 1),  # inHg, not millibars
        (units("temp", 5 / 9, -32.0), {"temp"}, 1),  # Celsius, not Fahrenheit
        (units("visib", 1.609), {"visib"}, 1),  # kilometres, not miles
    ],
    ids=["delay-rates-up", "pressure-in-inHg", "temp-in-celsius", "visibility-in-km"],
)
def test_a_week_shifted_out_of_the_references_range_breaches_on_what_moved_and_nothing_else(
    profile: ReferenceProfile, year_features: pl.DataFrame, shift: Shift, touched: set[str], at_least: int
) -> None:
    calm = drift_table(profile, days_of(year_features, *SHIFTED_WEEK))
    assert not calm["breach"].any()
    shifted = drift_table(profile, shift(days_of(year_features, *SHIFTED_WEEK)))
    breached = set(shifted.filter("breach")["feature"])
    assert len(breached) >= at_least and breached <= touched, shifted.head(8)


def test_a_window_shorter_than_a_week_is_judged_against_blocks_as_short(
    year_features: pl.DataFrame,
) -> None:
    """Three days hold three weekdays: against 7-day blocks `weekday` would breach by construction."""
    train = split_by_time(year_features, YEAR_LAST, SplitSizes(31, 61))["train"]
    three_days = days_of(year_features, dt.date(2013, 11, 12), dt.date(2013, 11, 14))
    week_blocks = fit_reference(train, ["weekday"], [], Calibration(), block_days=7)
    assert drift_table(week_blocks, three_days)["breach"].to_list() == [True]
    matching = fit_reference(train, ["weekday"], [], Calibration(), block_days=3)
    assert drift_table(matching, three_days)["breach"].to_list() == [False]


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_a_week_of_delays_far_above_training_raises_one_signal_in_its_first_monitoring_run(
    year_platform: YearPlatform, year_features: pl.DataFrame
) -> None:
    p = year_platform
    md5 = p.repo.locked_output("training_set", "data/training_set").md5
    version = p.install_champion(md5)

    calm = p.materialize("monitoring/drift")  # Nov 3..9, undrifted
    assert checks(calm) == {"no_feature_drift": True}
    meta = metadata(calm)
    assert meta["window"].value == f"2013-11-03..{CALM_LAST}"
    assert meta["reference_md5"].value == md5 and meta["features_not_judged"].value == 0
    assert meta["reference"].value == f"champion v{version}'s training set, on disk"
    assert (
        f"| days_to_holiday | {CALENDAR_REASON} |" in meta["not_compared"].value
        and "share of the day's traffic" in meta["traffic_counts"].value
    )
    assert not p.store.exists(DRIFT_SIGNALS_TABLE)

    write_days(p.store, delays_up(days_of(year_features, *SHIFTED_WEEK)))
    shifted = p.materialize("monitoring/drift")
    assert checks(shifted) == {"no_feature_drift": False}
    (signal,) = p.store.read(DRIFT_SIGNALS_TABLE).iter_rows(named=True)
    as_of = SHIFTED_WEEK[1]
    assert signal["key"] == f"monitoring/drift@v{version}:{as_of}"
    assert signal["feature"] in DELAY_RATES and signal["value"] > signal["threshold"]
    assert metadata(shifted)["retraining_signal"].value is True
    table = p.store.read(DRIFT_TABLE)
    assert set(table["as_of"]) == {CALM_LAST, as_of}
    latest = table.filter(pl.col("as_of") == as_of)
    assert set(latest.filter("breach")["feature"]) <= set(DELAY_RATES)
    assert set(latest["reference_md5"]) == {md5} and set(latest["reference_cutoff"]) == {CALM_LAST}

    again = p.materialize("monitoring/drift")  # the same breach: no second signal
    assert (
        checks(again) == {"no_feature_drift": False} and metadata(again)["retraining_signal"].value is False
    )
    assert p.store.read(DRIFT_SIGNALS_TABLE).height == 1
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"lake": p.lake, "dvc": p.dvc, "retrain_policy": RetrainPolicy(new_feature_days=0)},
        )
        due = retrain_sensor(context)
    assert isinstance(due, dg.SensorResult)
    (request,) = due.run_requests or []
    assert request.tags["platform/trigger"] == "drift" and request.tags["platform/signals"] == signal["key"]
