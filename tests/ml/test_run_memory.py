"""Runs planned under a memory budget: the days a slice may hold, from the budget and the traffic, and
the slices one run works through."""

from __future__ import annotations

import datetime as dt

import pytest

from ml.ingest.run_memory import GIB, MAX_DAYS_PER_RUN, run_memory
from ml.settings import SettingsError


def test_at_2013_traffic_a_year_is_one_slice_and_at_100x_a_slice_is_a_few_weeks() -> None:
    demo = run_memory({}, window_days=28)
    assert demo.days_per_slice() == demo.days_per_run() == MAX_DAYS_PER_RUN
    heavy = run_memory({"PLATFORM_FLIGHTS_PER_DAY": "92000"}, window_days=28)
    days = heavy.days_per_slice()
    assert 1 <= days < 60
    assert heavy.peak_bytes(days) <= heavy.budget_bytes < heavy.peak_bytes(days + 1)
    assert heavy.days_per_run() == MAX_DAYS_PER_RUN  # a run works through a year of slices


def test_a_run_works_through_its_days_in_slices_of_the_plan() -> None:
    heavy = run_memory({"PLATFORM_FLIGHTS_PER_DAY": "92000", "PLATFORM_SLICES_PER_RUN": "2"}, 28)
    size = heavy.days_per_slice()
    assert heavy.days_per_run() == 2 * size
    first = dt.date(2026, 1, 1)
    days = [first + dt.timedelta(days=n) for n in range(2 * size + 1)]
    slices = heavy.slices(list(reversed(days)))
    assert [len(s) for s in slices] == [size, size, 1]
    assert [d for s in slices for d in s] == days  # in day order, each day once
    assert run_memory({}, 28).slices(days) == [days]


def test_a_bigger_budget_holds_more_days_and_a_tiny_one_still_runs_a_day() -> None:
    traffic = {"PLATFORM_FLIGHTS_PER_DAY": "92000"}
    small = run_memory({**traffic, "PLATFORM_RUN_MEMORY_GIB": "4"}, 28).days_per_slice()
    large = run_memory({**traffic, "PLATFORM_RUN_MEMORY_GIB": "16"}, 28).days_per_slice()
    assert large > 3 * small
    assert run_memory({**traffic, "PLATFORM_RUN_MEMORY_GIB": "0.5"}, 28).days_per_slice() == 1
    assert run_memory({"PLATFORM_RUN_MEMORY_GIB": "2"}, 28).budget_bytes == 2 * GIB


def test_traffic_above_the_plan_is_reported_with_the_setting_to_change() -> None:
    plan = run_memory({"PLATFORM_FLIGHTS_PER_DAY": "1000"}, 28)
    assert plan.overloaded(flights=30 * 1100, days=30) is None
    warning = plan.overloaded(flights=30 * 9200, days=30)
    assert warning is not None and "PLATFORM_FLIGHTS_PER_DAY=10120" in warning


@pytest.mark.parametrize("value", ["four", "0", "-1", "nan", "inf"])
def test_a_bad_budget_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="PLATFORM_RUN_MEMORY_GIB"):
        run_memory({"PLATFORM_RUN_MEMORY_GIB": value}, 28)
    with pytest.raises(SettingsError, match=f"PLATFORM_FLIGHTS_PER_DAY='{value}'"):
        run_memory({"PLATFORM_FLIGHTS_PER_DAY": value}, 28)


@pytest.mark.parametrize("value", ["eight", "0", "-2", "2.5"])
def test_a_bad_number_of_slices_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=f"PLATFORM_SLICES_PER_RUN='{value}'"):
        run_memory({"PLATFORM_SLICES_PER_RUN": value}, 28)


def test_traffic_whose_single_day_exceeds_the_budget_says_so() -> None:
    plan = run_memory({"PLATFORM_FLIGHTS_PER_DAY": "920000"}, 28)
    assert plan.days_per_slice() == 1 and not plan.fits
    assert "over the 4.00 GiB budget" in plan.describe() and "PLATFORM_RUN_MEMORY_GIB" in plan.describe()
    assert run_memory({"PLATFORM_FLIGHTS_PER_DAY": "92000"}, 28).fits
