"""Feature frames to model inputs: category codes and standardized numbers, fitted on train only.

The same object runs in training (before PyTorch) and in the model server (before
onnxruntime), so it uses polars and numpy only and is stored as JSON: a server must
not need torch, and a pickled preprocessor could run arbitrary code when loaded.

Everything is learned from the train split: statistics taken over validation or test
rows would leak the evaluation period into the inputs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

FORMAT_VERSION = 1
UNKNOWN = 0
"""Code of a null, or of a category that train never saw; real categories start at 1."""


@dataclass(frozen=True)
class Preprocessor:
    """Vocabularies, numeric statistics and missing indicators learned from a train split.

    Every numeric column gets a missing indicator, whether or not train had nulls in it:
    a request without a weather report or a plane record must say so to the network,
    not pass for the train mean (files written before kept indicators only for columns
    with nulls in train; `missing_indicators` lists them, so those still load).

    Numbers are clipped to the range seen in train before they are standardized. The
    splits are consecutive periods, so later rows bring values train never had
    (trailing counts that grow with traffic, weather of a season train never saw);
    a network would extrapolate its learned slopes into them, while clipping answers
    as the nearest trained value, as gradient-boosted trees do.
    """

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    vocabularies: dict[str, list[str]]
    means: dict[str, float]
    stds: dict[str, float]
    lows: dict[str, float]
    highs: dict[str, float]
    missing_indicators: tuple[str, ...]
    log_scaled: tuple[str, ...] = ()
    """Non-negative columns with a long right tail in train (skewness over `SKEWNESS_LIMIT`; on
    2013 only `precip`), taken as log1p before the statistics: on a raw scale a downpour sits
    many standard deviations out and every dry or drizzling hour looks the same to the network.
    Trees split on ranks and need none."""

    @classmethod
    def fit(cls, train: pl.DataFrame, categorical: Sequence[str], numeric: Sequence[str]) -> Preprocessor:
        if train.is_empty():
            raise ValueError("cannot fit a preprocessor on an empty train split")
        _require_columns(train, [*categorical, *numeric])
        vocabularies = {c: _vocabulary(train[c]) for c in categorical}
        means, stds, lows, highs = {}, {}, {}, {}
        logged: list[str] = []
        for column in numeric:
            values = _as_float(train, column)
            known = values[~np.isnan(values)]
            if _is_right_skewed(known):
                logged.append(column)
                known = np.log1p(known)
            if known.size == 0:
                means[column], stds[column], lows[column], highs[column] = 0.0, 1.0, 0.0, 0.0
                continue
            std = float(known.std())
            means[column] = float(known.mean())
            stds[column] = std if std > 0 else 1.0
            lows[column], highs[column] = float(known.min()), float(known.max())
        return cls(
            categorical=tuple(categorical),
            numeric=tuple(numeric),
            vocabularies=vocabularies,
            means=means,
            stds=stds,
            lows=lows,
            highs=highs,
            missing_indicators=tuple(numeric),
            log_scaled=tuple(logged),
        )

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes: the vocabulary plus the unknown code."""
        return [len(self.vocabularies[c]) + 1 for c in self.categorical]

    @property
    def numeric_width(self) -> int:
        return len(self.numeric) + len(self.missing_indicators)

    def transform(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Codes (int64 [N, C]) and numbers (float32 [N, F]: standardized columns, then indicators).

        A null number becomes 0, the train mean, and its indicator says it was missing.
        """
        _require_columns(frame, [*self.categorical, *self.numeric])
        codes = np.zeros((frame.height, len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            codes[:, j] = (
                frame[column]
                .cast(pl.String)
                .replace_strict(self._codes[column], default=UNKNOWN, return_dtype=pl.Int64)
                .to_numpy()
            )
        values = np.empty((frame.height, len(self.numeric)), dtype=np.float64)
        for j, column in enumerate(self.numeric):
            values[:, j] = _as_float(frame, column)
        return codes, self._scale(values)

    def transform_columns(self, columns: Mapping[str, Sequence[object]]) -> tuple[np.ndarray, np.ndarray]:
        """`transform` of a few rows held as lists (None for a null), without building a frame.

        The model server's path for small requests (`ml.online.features.OnlineLookup`);
        numbers go through the same `_scale`, so both paths give the same bytes.
        """
        _require_columns(columns, [*self.categorical, *self.numeric])
        rows = len(columns[self.numeric[0] if self.numeric else self.categorical[0]])
        vocabularies = [self._codes[c] for c in self.categorical]
        codes = np.array(
            [
                [vocabulary.get(value, UNKNOWN) for vocabulary, value in zip(vocabularies, row, strict=True)]  # type: ignore[call-overload]
                for row in zip(*(columns[c] for c in self.categorical), strict=True)
            ],
            dtype=np.int64,
        ).reshape(rows, len(self.categorical))
        values = np.array([columns[c] for c in self.numeric], dtype=np.float64).T.reshape(
            rows, len(self.numeric)
        )
        return codes, self._scale(values)

    @functools.cached_property
    def _codes(self) -> dict[str, dict[str, int]]:
        return {
            column: {value: code for code, value in enumerate(self.vocabularies[column], start=1)}
            for column in self.categorical
        }

    @functools.cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lows, highs, means and stds as arrays in the order of `numeric`."""
        return tuple(  # type: ignore[return-value]
            np.array([table[c] for c in self.numeric], dtype=np.float64)
            for table in (self.lows, self.highs, self.means, self.stds)
        )

    def _scale(self, values: np.ndarray) -> np.ndarray:
        """Float64 numbers [N, len(numeric)] with NaN for nulls -> the model's float32 input."""
        lows, highs, means, stds = self._bounds
        missing = np.isnan(values)
        if self.log_scaled:
            values = values.copy()
            for column in self.log_scaled:
                j = self.numeric.index(column)
                values[:, j] = np.log1p(np.maximum(values[:, j], 0.0))
        numbers = np.zeros((values.shape[0], self.numeric_width), dtype=np.float32)
        numbers[:, : len(self.numeric)] = np.where(
            missing, 0.0, (np.clip(values, lows, highs) - means) / stds
        )
        for k, column in enumerate(self.missing_indicators):
            numbers[:, len(self.numeric) + k] = missing[:, self.numeric.index(column)]
        return numbers

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        data = json.loads(text)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"preprocessor format version {version!r} is not {FORMAT_VERSION}")
        for key in ("categorical", "numeric", "missing_indicators", "log_scaled"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> Preprocessor:
        return cls.from_json(path.read_text())


SKEWNESS_LIMIT = 2.0


def _is_right_skewed(known: np.ndarray) -> bool:
    """Non-negative with a long right tail (sample skewness above `SKEWNESS_LIMIT`), judged on train."""
    if known.size < 3 or known.min() < 0:
        return False
    std = known.std()
    return bool(std > 0 and np.mean(((known - known.mean()) / std) ** 3) > SKEWNESS_LIMIT)


def _vocabulary(values: pl.Series) -> list[str]:
    """Non-null values by descending frequency, ties by value: the same train rows give the same codes."""
    counts = values.cast(pl.String).drop_nulls().value_counts(name="n")
    return counts.sort(["n", values.name], descending=[True, False])[values.name].to_list()


def _as_float(frame: pl.DataFrame, column: str) -> np.ndarray:
    """A column as float64 with NaN for nulls (and for NaN values, which mean the same)."""
    return frame[column].cast(pl.Float64).fill_nan(None).to_numpy(allow_copy=True).astype(np.float64)


def _require_columns(frame: pl.DataFrame | Mapping[str, object], columns: Sequence[str]) -> None:
    present = frame.columns if isinstance(frame, pl.DataFrame) else frame
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"feature column(s) {', '.join(missing)} missing from the frame")
