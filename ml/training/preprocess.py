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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.training.moments import Moments

FORMAT_VERSION = 1
Batches = Callable[[Sequence[str]], Iterable[pl.DataFrame]]
"""Reads the given columns of a split batch by batch, in the same order each time it is called."""
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
        """`fit_batches` of one frame held in memory: its statistics are numpy's, to the bit."""
        _require_columns(train, [*categorical, *numeric])
        return cls.fit_batches(lambda columns: [train.select(columns)], categorical, numeric)

    @classmethod
    def fit_batches(cls, read: Batches, categorical: Sequence[str], numeric: Sequence[str]) -> Preprocessor:
        """Fit on a train split read batch by batch (in file order), holding one batch at a time.

        Category counts add up exactly and numeric moments merge (`ml.training.moments`), so the
        result does not depend on how the split is cut into batches beyond float rounding (about
        1e-15 relative). A second pass reads only the columns found long-tailed, for the moments of
        their logarithm (on 2013 one column: Parquet decodes just that one).
        """
        counts: dict[str, Counter[str]] = {c: Counter() for c in categorical}
        raw = dict.fromkeys(numeric, Moments())
        rows = 0
        for batch in read([*categorical, *numeric]):
            _require_columns(batch, [*categorical, *numeric])
            rows += batch.height
            for column in categorical:
                seen = batch[column].cast(pl.String).drop_nulls().value_counts(name="n")
                counts[column].update(dict(zip(seen[column].to_list(), seen["n"].to_list(), strict=True)))
            for column, moments in _batch_moments(batch, numeric).items():
                raw[column] = raw[column].merge(moments)
        if rows == 0:
            raise ValueError("cannot fit a preprocessor on an empty train split")
        logged = [column for column in numeric if _is_right_skewed(raw[column])]
        logs = dict.fromkeys(logged, Moments())
        for batch in read(logged) if logged else ():
            for column, moments in _batch_moments(batch, logged, np.log1p).items():
                logs[column] = logs[column].merge(moments)
        means, stds, lows, highs = {}, {}, {}, {}
        for column in numeric:
            moments = logs.get(column, raw[column])
            if moments.count == 0:
                means[column], stds[column], lows[column], highs[column] = 0.0, 1.0, 0.0, 0.0
                continue
            means[column] = moments.mean
            stds[column] = moments.std if moments.std > 0 else 1.0
            lows[column], highs[column] = moments.low, moments.high
        return cls(
            categorical=tuple(categorical),
            numeric=tuple(numeric),
            vocabularies={c: _vocabulary(c, counts[c]) for c in categorical},
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
        codes, scaled = self.encode(frame)
        return codes, self.inputs(scaled)

    def encode(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Codes (int64 [N, C]) and standardized numbers (float32 [N, len(numeric)], NaN where missing).

        The compact form of `transform`'s output, a third of its bytes: training encodes a split
        once in this form and expands it a window at a time with `inputs`.
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
        values = frame.select(_float_column(column) for column in self.numeric).to_numpy()
        return codes, self._standardize(values.reshape(frame.height, len(self.numeric)))

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
        return self.inputs(self._standardize(values))

    def _standardize(self, values: np.ndarray) -> np.ndarray:
        """Float64 numbers with NaN for nulls -> float32 clipped, log-scaled, standardized, NaN kept."""
        lows, highs, means, stds = self._bounds
        missing = np.isnan(values)
        known = np.where(missing, means, values)  # np.clip is several times slower with NaN in it
        if self.log_scaled:
            for column in self.log_scaled:
                j = self.numeric.index(column)
                known[:, j] = np.log1p(np.maximum(known[:, j], 0.0))
        scaled = ((np.clip(known, lows, highs) - means) / stds).astype(np.float32)
        scaled[missing] = np.nan
        return scaled

    def inputs(self, scaled: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`encode`'s standardized numbers -> the model's float32 input: 0 for a missing value, then indicators.

        Written into `out` (float32 [N, numeric_width]) when given, so a caller can reuse its buffer.
        """
        missing = np.isnan(scaled)
        numbers = np.empty((scaled.shape[0], self.numeric_width), dtype=np.float32) if out is None else out
        standardized = numbers[:, : len(self.numeric)]
        np.copyto(standardized, scaled)
        np.copyto(standardized, np.float32(0.0), where=missing)
        numbers[:, len(self.numeric) :] = missing[:, self._indicator_columns]
        return numbers

    @functools.cached_property
    def _indicator_columns(self) -> list[int]:
        return [self.numeric.index(column) for column in self.missing_indicators]

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


def _batch_moments(
    batch: pl.DataFrame, columns: Sequence[str], transform: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict[str, Moments]:
    """Moments of each column's known values in one batch (of `transform` of them, if given)."""
    values = batch.select(_float_column(column) for column in columns).to_numpy()
    moments = {}
    for j, column in enumerate(columns):
        known = values[:, j][~np.isnan(values[:, j])]
        moments[column] = Moments.of(known if transform is None else transform(known))
    return moments


def _is_right_skewed(moments: Moments) -> bool:
    """Non-negative with a long right tail (sample skewness above `SKEWNESS_LIMIT`), judged on train."""
    if moments.count < 3 or moments.low < 0:
        return False
    return bool(moments.std > 0 and moments.skewness > SKEWNESS_LIMIT)


def _vocabulary(column: str, counts: Counter[str]) -> list[str]:
    """Non-null values by descending frequency, ties by value: the same train rows give the same codes."""
    table = pl.DataFrame(
        {column: list(counts), "n": list(counts.values())}, schema={column: pl.String, "n": pl.Int64}
    )
    return table.sort(["n", column], descending=[True, False])[column].to_list()


def _float_column(column: str) -> pl.Expr:
    """A column as float64 with null for NaN, which means the same (numpy then shows both as NaN)."""
    return pl.col(column).cast(pl.Float64).fill_nan(None)


def _require_columns(frame: pl.DataFrame | Mapping[str, object], columns: Sequence[str]) -> None:
    present = frame.columns if isinstance(frame, pl.DataFrame) else frame
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"feature column(s) {', '.join(missing)} missing from the frame")
