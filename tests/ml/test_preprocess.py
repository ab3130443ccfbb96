"""The preprocessor learns from train only, maps unknowns and nulls safely, and survives JSON."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml.training.preprocess import UNKNOWN, Preprocessor

CATEGORICAL = ("carrier", "origin")
NUMERIC = ("distance", "temp", "flat")


def frame(carrier: list, origin: list, distance: list, temp: list, flat: list) -> pl.DataFrame:
    return pl.DataFrame(
        {"carrier": carrier, "origin": origin, "distance": distance, "temp": temp, "flat": flat},
        schema={
            "carrier": pl.String,
            "origin": pl.String,
            "distance": pl.Int32,
            "temp": pl.Float64,
            "flat": pl.Float64,
        },
    )


@pytest.fixture
def train() -> pl.DataFrame:
    return frame(
        carrier=["UA", "UA", "AA", "DL"],
        origin=["EWR", "JFK", "JFK", None],
        distance=[100, 200, 300, 400],
        temp=[10.0, None, 30.0, 20.0],
        flat=[5.0, 5.0, 5.0, 5.0],
    )


@pytest.fixture
def fitted(train: pl.DataFrame) -> Preprocessor:
    return Preprocessor.fit(train, CATEGORICAL, NUMERIC)


def test_statistics_come_from_train_only(fitted: Preprocessor) -> None:
    later = frame(["UA"] * 2, ["LGA"] * 2, [5000, 6000], [90.0, 95.0], [1.0, 2.0])
    refit_on_all = Preprocessor.fit(
        pl.concat([frame(["UA"], ["EWR"], [100], [10.0], [5.0]), later]), CATEGORICAL, NUMERIC
    )
    fitted.transform(later)  # transforming never changes what was learned
    assert fitted.means["distance"] == 250.0
    assert fitted.stds["distance"] == pytest.approx(np.std([100, 200, 300, 400]))
    assert fitted.means["temp"] == 20.0  # the null is not a zero
    assert fitted.vocabularies == {"carrier": ["UA", "AA", "DL"], "origin": ["JFK", "EWR"]}
    assert refit_on_all.means["distance"] != fitted.means["distance"]


def test_zero_spread_column_is_not_divided_by_zero(fitted: Preprocessor, train: pl.DataFrame) -> None:
    assert fitted.stds["flat"] == 1.0
    _, numbers = fitted.transform(train)
    assert np.isfinite(numbers).all()
    assert (numbers[:, NUMERIC.index("flat")] == 0.0).all()


def test_unknown_and_null_categories_map_to_zero(fitted: Preprocessor) -> None:
    rows = frame(["UA", "ZZ", None], ["LGA", "JFK", "EWR"], [1, 2, 3], [1.0, 2.0, 3.0], [5.0] * 3)
    codes, _ = fitted.transform(rows)
    assert codes.dtype == np.int64 and codes.shape == (3, 2)
    assert codes[:, 0].tolist() == [1, UNKNOWN, UNKNOWN]
    assert codes[:, 1].tolist() == [UNKNOWN, 1, 2]
    assert fitted.cardinalities == [4, 3]


def test_nulls_become_zero_with_an_indicator_for_every_numeric_column(fitted: Preprocessor) -> None:
    """Train had no null distance, yet a request without one still says so (no silent train mean)."""
    rows = frame(["UA", "UA"], ["JFK", "JFK"], [None, 250], [None, 20.0], [5.0, float("nan")])
    _, numbers = fitted.transform(rows)
    assert fitted.missing_indicators == NUMERIC
    width = 2 * len(NUMERIC)
    assert numbers.dtype == np.float32 and numbers.shape == (2, width) and fitted.numeric_width == width
    assert numbers[0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]  # null distance and temp, both flagged
    assert numbers[1].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # NaN counts as missing too


def test_values_outside_the_train_range_are_clipped(fitted: Preprocessor) -> None:
    _, numbers = fitted.transform(frame(["UA"] * 2, ["JFK"] * 2, [10_000, -50], [20.0] * 2, [5.0] * 2))
    top = (400 - 250) / fitted.stds["distance"]
    assert numbers[:, 0] == pytest.approx([top, -top])


def test_json_round_trip_keeps_the_transform(fitted: Preprocessor, train: pl.DataFrame, tmp_path) -> None:
    text = fitted.to_json()
    assert "pickle" not in text
    again = Preprocessor.from_json(text)
    assert again == fitted
    path = tmp_path / "preprocess.json"
    fitted.save(path)
    loaded = Preprocessor.load(path)
    for a, b in zip(fitted.transform(train), loaded.transform(train), strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_columns_and_empty_train_are_errors(train: pl.DataFrame, fitted: Preprocessor) -> None:
    with pytest.raises(ValueError, match="temp"):
        fitted.transform(train.drop("temp"))
    with pytest.raises(ValueError, match="empty"):
        Preprocessor.fit(train.head(0), CATEGORICAL, NUMERIC)
