"""Data-quality measures behind the asset checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import polars as pl


def schema_problems(actual: Mapping[str, pl.DataType], expected: Mapping[str, pl.DataType]) -> list[str]:
    problems = [f"missing column {c}" for c in expected if c not in actual]
    problems += [f"unexpected column {c}" for c in actual if c not in expected]
    problems += [
        f"column {c} is {actual[c]}, expected {t}"
        for c, t in expected.items()
        if c in actual and actual[c] != t
    ]
    return problems


def _sharing_a_hash(frame: pl.DataFrame, key: Sequence[str]) -> pl.Series | None:
    """None when every row's key is unique; else the rows whose key hash another row shares.

    Rows with the same key have the same hash, so the rows returned hold every duplicate
    (and perhaps a collision): the exact check then runs on them only. Hashing a million
    keys and counting distinct hashes cost a sixth of `is_duplicated` on the key columns.
    """
    hashes = frame.select(key).hash_rows()
    if hashes.n_unique() == frame.height:
        return None
    return hashes.is_duplicated()


def duplicate_keys(frame: pl.DataFrame, key: Iterable[str]) -> int:
    """Rows whose key another row shares."""
    columns = list(key)
    sharing = _sharing_a_hash(frame, columns)
    if sharing is None:
        return 0
    return int(frame.filter(sharing).select(columns).is_duplicated().sum())


def first_of_key(frame: pl.DataFrame, key: Iterable[str]) -> pl.Series:
    """For each row, whether it is the first with its key (`is_first_distinct` of the key)."""
    columns = list(key)
    first = pl.repeat(True, frame.height, dtype=pl.Boolean(), eager=True)
    sharing = _sharing_a_hash(frame, columns)
    if sharing is None:
        return first
    among = frame.filter(sharing).select(pl.struct(columns).is_first_distinct()).to_series()
    return first.scatter(sharing.arg_true(), among)


def null_rates(frame: pl.DataFrame, columns: Iterable[str]) -> dict[str, float]:
    if frame.height == 0:
        return {c: 0.0 for c in columns}
    return {c: frame[c].null_count() / frame.height for c in columns}


def rate_breaches(rates: Mapping[str, float], limits: Mapping[str, float]) -> dict[str, float]:
    return {c: r for c, r in rates.items() if r > limits[c]}
