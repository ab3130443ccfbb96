"""Feature drift between a reference sample (the training split) and recent rows.

Two statistics per feature, each with the reference fixing the yardstick, so a
number computed today is comparable with one computed last month:

- population stability index (PSI) over bins fixed by the reference: quantile bins
  for a numeric column, the reference's categories for a categorical one. Nulls are
  a bin of their own and so are categories the reference never saw, so a feed that
  starts sending nulls or new codes moves the PSI instead of vanishing from it.
- the two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical
  CDFs) on the non-null values of a numeric column; it has no meaning for unordered
  categories, which get PSI only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from ml.evaluation.plots import png

DEFAULT_BINS = 10
PSI_FLOOR = 1e-4
"""Share given to an empty bin so the PSI stays finite; with 10 bins a bin absent on one side costs ~0.9."""
NULL_BIN = "<null>"
UNSEEN_BIN = "<unseen>"

DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "kind": pl.String(),
    "psi": pl.Float64(),
    "ks": pl.Float64(),
    "bins": pl.Int32(),
    "reference_rows": pl.Int64(),
    "current_rows": pl.Int64(),
    "reference_null_rate": pl.Float64(),
    "current_null_rate": pl.Float64(),
    "unseen_rate": pl.Float64(),
}


@dataclass(frozen=True)
class Thresholds:
    """A feature breaches when its PSI or its KS statistic is above the limit."""

    psi: float = 0.2
    ks: float = 0.1


def numeric_edges(reference: pl.Series, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner cut points of `bins` quantile bins of the non-null reference values.

    Ties merge bins (a column with three distinct values has at most three), so a
    near-constant feature is not split into empty bins that would inflate its PSI.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    values = reference.drop_nulls().cast(pl.Float64).to_numpy()
    if values.size == 0:
        return np.array([], dtype=np.float64)
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def _numeric_counts(values: pl.Series, edges: np.ndarray) -> np.ndarray:
    """Rows per bin (value < first edge, ..., value >= last edge), then nulls."""
    present = values.drop_nulls().cast(pl.Float64).to_numpy()
    index = np.searchsorted(edges, present, side="right")
    counts = np.bincount(index, minlength=edges.size + 1).astype(np.float64)
    return np.append(counts, float(values.null_count()))


def _categorical_counts(values: pl.Series, categories: Sequence[str]) -> np.ndarray:
    """Rows per reference category, then unseen categories, then nulls."""
    present = values.drop_nulls().cast(pl.String)
    counts = present.value_counts()
    by_value = dict(zip(counts[present.name].to_list(), counts["count"].to_list(), strict=True))
    known = [float(by_value.get(c, 0)) for c in categories]
    unseen = float(sum(n for v, n in by_value.items() if v not in set(categories)))
    return np.array([*known, unseen, float(values.null_count())], dtype=np.float64)


def psi_of_counts(reference: np.ndarray, current: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """sum((c - r) * ln(c / r)) over bins of shares, each share at least `floor`."""
    if reference.shape != current.shape:
        raise ValueError(f"bin counts differ in shape: {reference.shape} and {current.shape}")
    if reference.sum() <= 0 or current.sum() <= 0:
        raise ValueError("PSI needs rows on both sides")
    r = np.maximum(reference / reference.sum(), floor)
    c = np.maximum(current / current.sum(), floor)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_statistic(reference: pl.Series, current: pl.Series) -> float | None:
    """Largest gap between the empirical CDFs of the non-null values; None when a side has none."""
    a = np.sort(reference.drop_nulls().cast(pl.Float64).to_numpy())
    b = np.sort(current.drop_nulls().cast(pl.Float64).to_numpy())
    if a.size == 0 or b.size == 0:
        return None
    points = np.concatenate([a, b])
    gap = (
        np.searchsorted(a, points, side="right") / a.size - np.searchsorted(b, points, side="right") / b.size
    )
    return float(np.max(np.abs(gap)))


def feature_drift(
    reference: pl.Series, current: pl.Series, categorical: bool, bins: int = DEFAULT_BINS
) -> dict[str, object]:
    """PSI, KS (numeric only) and null and unseen shares of one feature."""
    if reference.len() == 0 or current.len() == 0:
        raise ValueError(f"feature {reference.name!r}: no reference or no current rows to compare")
    unseen_rate = 0.0
    if categorical:
        categories = sorted(reference.drop_nulls().cast(pl.String).unique().to_list())
        r_counts = _categorical_counts(reference, categories)
        c_counts = _categorical_counts(current, categories)
        unseen_rate = float(c_counts[-2] / current.len())
        ks = None
    else:
        edges = numeric_edges(reference, bins)
        r_counts = _numeric_counts(reference, edges)
        c_counts = _numeric_counts(current, edges)
        ks = ks_statistic(reference, current)
    return {
        "feature": reference.name,
        "kind": "categorical" if categorical else "numeric",
        "psi": psi_of_counts(r_counts, c_counts),
        "ks": ks,
        "bins": int(r_counts.size),
        "reference_rows": reference.len(),
        "current_rows": current.len(),
        "reference_null_rate": reference.null_count() / reference.len(),
        "current_null_rate": current.null_count() / current.len(),
        "unseen_rate": unseen_rate,
    }


def drift_table(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int = DEFAULT_BINS,
) -> pl.DataFrame:
    """One row per feature (`DRIFT_SCHEMA`), largest PSI first."""
    missing = [c for c in (*numeric, *categorical) if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"feature column(s) missing from reference or current rows: {', '.join(missing)}")
    rows = [feature_drift(reference[c], current[c], categorical=False, bins=bins) for c in numeric]
    rows += [feature_drift(reference[c], current[c], categorical=True, bins=bins) for c in categorical]
    return pl.DataFrame(rows, schema=DRIFT_SCHEMA, orient="row").sort(
        ["psi", "feature"], descending=[True, False]
    )


def breaches(table: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """Rows of `drift_table` over a limit, with which statistic breached and its limit; worst first."""
    over_psi = pl.col("psi") > thresholds.psi
    over_ks = pl.col("ks").fill_null(-math.inf) > thresholds.ks
    return (
        table.filter(over_psi | over_ks)
        .with_columns(
            pl.when(over_psi).then(pl.lit("psi")).otherwise(pl.lit("ks")).alias("metric"),
        )
        .with_columns(
            pl.when(pl.col("metric") == "psi").then(pl.col("psi")).otherwise(pl.col("ks")).alias("value"),
            pl.when(pl.col("metric") == "psi")
            .then(pl.lit(thresholds.psi))
            .otherwise(pl.lit(thresholds.ks))
            .alias("threshold"),
        )
        .with_columns((pl.col("value") / pl.col("threshold")).alias("ratio"))
        .sort(["ratio", "feature"], descending=[True, False])
    )


def drift_plot(table: pl.DataFrame, thresholds: Thresholds, top: int = 15) -> bytes:
    """PSI and KS of the `top` features by PSI, with the limits drawn, as PNG bytes."""
    shown = table.sort("psi", descending=True).head(top).reverse()

    def draw(figure: Figure) -> None:
        psi_axis, ks_axis = figure.subplots(1, 2, sharey=True)
        names = shown["feature"].to_list()
        psi_axis.barh(names, shown["psi"].to_list(), color="tab:blue")
        psi_axis.axvline(thresholds.psi, color="tab:red", linestyle="--", label=f"limit {thresholds.psi}")
        psi_axis.set(xlabel="PSI", title="Population stability")
        psi_axis.legend(loc="lower right")
        psi_axis.tick_params(axis="y", labelsize=7)
        ks_axis.barh(names, shown["ks"].fill_null(0.0).to_list(), color="tab:orange")
        ks_axis.axvline(thresholds.ks, color="tab:red", linestyle="--", label=f"limit {thresholds.ks}")
        ks_axis.set(xlabel="KS statistic", title="Kolmogorov-Smirnov")
        ks_axis.legend(loc="lower right")

    return png(draw)
