"""The drift statistics against hand-computed values and scipy, and how the reference sets each limit."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from ml.monitoring.drift import (
    Calibration,
    CategoryBins,
    NumericBins,
    breaches,
    chi_square,
    drift_plot,
    drift_table,
    fit_reference,
    js_distance,
    ks_statistic,
    numeric_edges,
    psi_of_counts,
    reference_blocks,
    traffic_shares,
)

FIRST = dt.date(2013, 3, 1)
NO_WARMUP = Calibration(warmup_days=0)


def test_psi_of_two_bins_by_hand() -> None:
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi_of_counts(np.array([50.0, 50.0]), np.array([80.0, 20.0])) == pytest.approx(expected, abs=1e-12)
    assert psi_of_counts(np.array([3.0, 7.0]), np.array([30.0, 70.0])) == 0.0


def test_numeric_bins_are_the_references_quantiles_with_a_bin_on_each_side_of_its_range_and_one_for_nulls() -> (
    None
):
    bins = NumericBins.of(pl.Series("x", list(range(1, 11))), bins=2)
    assert (bins.low, bins.inner.tolist(), bins.high, bins.size) == (1.0, [5.5], 10.0, 5)
    current = pl.Series("x", [0.0, 1.0, 5.0, 5.5, 10.0, 11.0, None, float("nan")])
    assert bins.index(current).tolist() == [0, 1, 1, 2, 2, 3, 4, 4]
    # A reference of nulls only has no range: every value is outside it.
    empty = NumericBins.of(pl.Series("x", [None, None], dtype=pl.Float64), bins=10)
    assert empty.index(pl.Series([3.0, None])).tolist() == [2, 3]  # above the range, null


def test_a_value_holding_a_bins_share_of_the_reference_gets_a_bin_of_its_own() -> None:
    precip = pl.Series("precip", [0.0] * 8 + [0.1, 0.5])  # no rain most hours
    edges = numeric_edges(precip, bins=4)
    assert edges[0] == 0.0 and edges[1] == np.nextafter(0.0, 1.0)
    assert NumericBins.of(precip, 4).index(pl.Series([0.0, 0.1])).tolist() == [1, 2]


def test_categories_come_from_the_reference_and_unseen_ones_and_nulls_are_bins() -> None:
    bins = CategoryBins.of(pl.Series("c", ["b", "a", "a", None]))
    assert bins.categories == ("a", "b") and bins.size == 4
    assert bins.index(pl.Series("c", ["a", "z", None, "b", "a"])).tolist() == [0, 2, 3, 1, 0]


def test_jensen_shannon_distance_and_chi_square_equal_scipy() -> None:
    reference, current = np.array([50.0, 30.0, 20.0, 0.0]), np.array([10.0, 30.0, 40.0, 5.0])
    assert js_distance(reference, current) == pytest.approx(
        jensenshannon(reference, current, base=2), abs=1e-12
    )
    assert js_distance(reference, reference * 3) == 0.0
    statistic, p_value, _, _ = chi2_contingency(np.vstack([reference, current]), correction=False)
    assert chi_square(reference, current) == pytest.approx((p_value, math.sqrt(statistic / 185.0)), abs=1e-12)
    # A bin empty on both sides is dropped; one bin left cannot differ.
    assert chi_square(np.array([5.0, 0.0]), np.array([7.0, 0.0])) == (1.0, 0.0)


def test_ks_equals_scipy_with_ties_and_unequal_sizes() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 30, 1_000).astype(float)
    b = rng.integers(3, 35, 317).astype(float)
    assert ks_statistic(pl.Series(a), pl.Series(b)) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    assert ks_statistic(pl.Series([None], dtype=pl.Float64), pl.Series(b)) is None


def test_a_traffic_count_is_compared_as_its_keys_share_of_the_days_traffic() -> None:
    day1, day2 = FIRST, FIRST + dt.timedelta(days=1)
    frame = pl.DataFrame(
        {
            "flight_date": [day1, day1, day1, day2, day2],
            "origin": ["EWR", "EWR", "JFK", "EWR", "JFK"],
            "origin_flights_28d": [300, 300, 100, 0, 0],  # day 2: nothing flew in the window yet
            "distance": [1, 2, 3, 4, 5],
        }
    )
    shared = traffic_shares(frame, ["origin_flights_28d", "distance"])
    assert shared["origin_flights_28d"].to_list() == [0.75, 0.75, 0.25, None, None]
    assert shared["distance"].to_list() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="'carrier_flights_7d' needs column"):
        traffic_shares(frame.with_columns(carrier_flights_7d=pl.lit(1)), ["carrier_flights_7d"])


def test_blocks_end_on_the_references_last_day_and_skip_the_warm_up_and_a_partial_block() -> None:
    days = pl.Series("flight_date", [FIRST + dt.timedelta(days=i) for i in range(20)])
    blocks = reference_blocks(days, block_days=7, warmup_days=3)
    # Days 14..20 are block 0 and 7..13 block 1; days 1..6 would reach into the 3 warm-up days.
    assert blocks.tolist() == [-1] * 6 + [1] * 7 + [0] * 7


def weeks(rng: np.random.Generator, n_weeks: int, rows_per_day: int, shift: float = 0.0) -> pl.DataFrame:
    n = n_weeks * 7 * rows_per_day
    return pl.DataFrame(
        {
            "flight_date": [FIRST + dt.timedelta(days=i // rows_per_day) for i in range(n)],
            "x": rng.normal(shift, 1.0, n),
            "carrier": rng.choice(["UA", "B6", "EV"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def test_each_limit_is_the_factor_times_the_largest_block_statistic_above_a_floor() -> None:
    rng = np.random.default_rng(3)
    reference = weeks(rng, 10, 50)
    calibration = Calibration(factor=2.0, psi_floor=0.01, js_floor=0.5, warmup_days=0)
    profile = fit_reference(reference, ["x"], ["carrier"], calibration, block_days=7)
    x, carrier = profile.features
    assert profile.blocks == 10 and x.block_statistics.size == 10
    newest = reference.filter(pl.col("flight_date") >= FIRST + dt.timedelta(days=63))["x"]
    by_hand = psi_of_counts(x.counts, np.bincount(x.bins.index(newest), minlength=x.bins.size).astype(float))
    assert x.block_statistics[0] == pytest.approx(by_hand, abs=1e-12)
    assert x.threshold == pytest.approx(2.0 * x.block_statistics.max())
    assert x.threshold > 0.01
    assert x.threshold_basis == f"2 x max of 10 reference blocks of 7 days ({x.block_statistics.max():.4g})"
    assert carrier.threshold == 0.5 and carrier.threshold_basis.startswith("floor 0.5 (2 x max of 10")


def test_a_reference_with_too_few_blocks_reports_its_features_and_judges_none() -> None:
    rng = np.random.default_rng(5)
    profile = fit_reference(weeks(rng, 3, 50), ["x"], ["carrier"], NO_WARMUP, block_days=7)
    table = drift_table(profile, weeks(rng, 1, 50, shift=5.0))
    assert table["threshold"].null_count() == 2 and not table["breach"].any()
    assert table["threshold_basis"][0] == (
        "not judged: 3 reference block(s) of 7 days after the 0 warm-up days, 4 needed to set a limit"
    )
    assert table.filter(pl.col("feature") == "x")["out_of_range_rate"][0] > 0.5


def test_a_shifted_window_breaches_and_an_unshifted_one_does_not() -> None:
    rng = np.random.default_rng(13)
    profile = fit_reference(weeks(rng, 20, 100), ["x"], ["carrier"], NO_WARMUP, block_days=7)
    same = drift_table(profile, weeks(rng, 1, 100))
    assert not same["breach"].any() and breaches(same).is_empty()
    shifted = drift_table(profile, weeks(rng, 1, 100, shift=0.5))
    (row,) = breaches(shifted).iter_rows(named=True)
    assert (row["feature"], row["metric"], row["kind"]) == ("x", "psi", "numeric")
    assert row["value"] > row["threshold"] and row["ratio"] == pytest.approx(row["value"] / row["threshold"])
    assert shifted["feature"].to_list() == ["x", "carrier"]  # worst first


def test_a_feature_breaches_only_when_its_bin_counts_differ_significantly_as_well_as_far() -> None:
    rng = np.random.default_rng(11)
    profile = fit_reference(weeks(rng, 20, 100), ["x"], ["carrier"], NO_WARMUP, block_days=7)
    few = pl.DataFrame(
        {"flight_date": [FIRST] * 4, "x": [1.5, 1.7, 2.0, 0.0], "carrier": ["EV", "EV", "EV", "B6"]}
    )
    for row in drift_table(profile, few).iter_rows(named=True):
        assert row["value"] > row["threshold"] and row["p_value"] > 0.01 and not row["breach"], row
    many = pl.DataFrame(
        {
            "flight_date": [FIRST] * 400,
            "x": rng.normal(1.0, 1.0, 400),
            "carrier": ["EV"] * 300 + ["B6"] * 50 + ["XX"] * 50,
        }
    )
    x, carrier = (
        r
        for r in sorted(
            drift_table(profile, many).iter_rows(named=True), key=lambda r: r["kind"] == "categorical"
        )
    )
    assert x["breach"] and x["p_value"] < 1e-6 and x["metric"] == "psi"
    assert carrier["breach"] and carrier["p_value"] < 1e-6 and carrier["unseen_rate"] == 0.125
    assert carrier["metric"] == "js" and carrier["cramers_v"] > 0


def test_a_missing_feature_column_fails_naming_it_and_the_plot_is_a_png() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="missing from the reference rows: nope"):
        fit_reference(weeks(rng, 5, 10), ["nope"], [], NO_WARMUP, block_days=7)
    profile = fit_reference(weeks(rng, 5, 10), ["x"], ["carrier"], NO_WARMUP, block_days=7)
    with pytest.raises(ValueError, match="missing from the current rows: carrier"):
        drift_table(profile, weeks(rng, 1, 10).drop("carrier"))
    assert drift_plot(drift_table(profile, weeks(rng, 1, 10, shift=1.0))).startswith(b"\x89PNG")
