"""The scale curves' bare polars baseline: lean (no Dagster in its process) and doing the same work."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl

from benchmarks.bare_polars import bare_chunk, bare_features
from ml.features.flight_features import KEY_COLUMNS, lookback_days

PROJECT = Path(__file__).resolve().parents[1]


def test_the_bare_script_imports_neither_dagster_nor_deltalake() -> None:
    """Importing the code location costs a second a process: a baseline paying it would flatter the run."""
    probe = "import sys, benchmarks.bare_polars; print(sorted({'dagster', 'deltalake'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_run_by_run_the_bare_script_builds_the_features_of_the_csvs(
    tmp_path: Path, replayed_landing: Path
) -> None:
    """Two runs, the second reading its trailing window from the first's Parquet: the same features as one read of the CSVs."""
    first = dt.date(2013, 1, 1)
    split, last = first + dt.timedelta(days=lookback_days()), first + dt.timedelta(days=lookback_days() + 4)
    out = tmp_path / "bare"
    bare_chunk(out, replayed_landing, first, split - dt.timedelta(days=1))
    second = bare_chunk(out, replayed_landing, split, last)

    days = [split + dt.timedelta(days=n) for n in range((last - split).days + 1)]
    expected = bare_features(replayed_landing, days, flights_from=first, weather_from=first)
    written = pl.read_parquet(out / "features" / f"{split}.parquet")
    assert second["feature_rows"] == expected.height > 0
    assert written.sort(KEY_COLUMNS).equals(expected.sort(KEY_COLUMNS))
    assert sorted(p.name for p in (out / "bronze_flights").iterdir()) == [
        f"{first}.parquet",
        f"{split}.parquet",
    ]
