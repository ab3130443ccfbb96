"""Data-quality measures behind the asset checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def duplicate_keys(frame: pl.DataFrame, key: Iterable[str]) -> int:
    return int(frame.select(list(key)).is_duplicated().sum())


def null_rates(frame: pl.DataFrame, columns: Iterable[str]) -> dict[str, float]:
    if frame.height == 0:
        return {c: 0.0 for c in columns}
    return {c: frame[c].null_count() / frame.height for c in columns}


def rate_breaches(rates: Mapping[str, float], limits: Mapping[str, float]) -> dict[str, float]:
    return {c: r for c, r in rates.items() if r > limits[c]}
