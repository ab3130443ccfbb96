"""The evaluation leaderboard and the promotion gate of a candidate model.

The gate gives two separate verdicts, each with the numbers behind it, so the
evaluation asset can block on each as its own asset check and a failed check says
which comparison failed and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ml.text_tables import text_table

RANKED_BY = "roc_auc"
COLUMN_ORDER = ("roc_auc", "pr_auc", "log_loss", "brier", "rows", "positive_rate", "mean_prediction")
"""Headline metrics first, whatever order a stored metrics dict came back in; others follow."""
EQUAL_WITHIN = 1e-12
"""AUC differences below this are float rounding (0.70 - 0.01 is not exactly 0.69) and count as equal."""


def leaderboard(rows: Sequence[tuple[str, str, Mapping[str, float]]]) -> pl.DataFrame:
    """One row per model (name, role, its metrics), best ROC AUC first, ties by name."""
    if not rows:
        raise ValueError("no models for the leaderboard")
    names = [name for name, _, _ in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"model name(s) appear more than once: {', '.join(duplicates)}")
    lacking = [name for name, _, metrics in rows if RANKED_BY not in metrics]
    if lacking:
        raise ValueError(f"model(s) {', '.join(lacking)} have no {RANKED_BY} to rank by")
    seen = dict.fromkeys(k for _, _, metrics in rows for k in metrics)
    keys = [k for k in COLUMN_ORDER if k in seen] + [k for k in seen if k not in COLUMN_ORDER]
    records = [
        {"name": name, "role": role, **{k: metrics.get(k) for k in keys}} for name, role, metrics in rows
    ]
    frame = pl.DataFrame(
        records, schema={"name": pl.String, "role": pl.String, **dict.fromkeys(keys, pl.Float64)}
    )
    if "rows" in keys:
        frame = frame.with_columns(pl.col("rows").cast(pl.Int64))
    return frame.sort([RANKED_BY, "name"], descending=[True, False])


def leaderboard_text(frame: pl.DataFrame, digits: int = 4) -> str:
    """The leaderboard as a fixed-width terminal table, floats rounded to `digits`."""

    def shown(value: object) -> object:
        if value is None:
            return "-"
        return f"{value:.{digits}f}" if isinstance(value, float) else value

    return text_table([{k: shown(v) for k, v in row.items()} for row in frame.iter_rows(named=True)])


@dataclass(frozen=True)
class Verdict:
    passed: bool
    explanation: str


@dataclass(frozen=True)
class GateResult:
    beats_champion: Verdict
    beats_boosted_trees: Verdict

    @property
    def passed(self) -> bool:
        """Promotion needs both verdicts."""
        return self.beats_champion.passed and self.beats_boosted_trees.passed


def _auc(metrics: Mapping[str, float], who: str) -> float:
    if RANKED_BY not in metrics:
        raise ValueError(f"the {who} metrics have no {RANKED_BY} (keys: {', '.join(metrics)})")
    return float(metrics[RANKED_BY])


def _at_least(value: float, reference: float, allowance: float, who: str, what: str) -> Verdict:
    threshold = reference - allowance
    passed = value >= threshold - EQUAL_WITHIN
    relation = ">=" if passed else "<"
    outcome = "passes" if passed else "fails"
    return Verdict(
        passed,
        f"candidate ROC AUC {value:.4f} {relation} {who} ROC AUC {reference:.4f} - {what} {allowance:.4f}"
        f" = {threshold:.4f}: {outcome}",
    )


def gate(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    boosted: Mapping[str, float],
    margin: float,
    tolerance: float = 0.0,
) -> GateResult:
    """Whether a candidate may replace the champion.

    It may lose up to `margin` ROC AUC to the champion (retraining on newer days
    moves the test split, so small drops are noise, not regressions), and up to
    `tolerance` to boosted trees on the same features (default none: a network that
    trees beat is not worth serving).
    """
    if margin < 0 or tolerance < 0:
        raise ValueError(f"margin and tolerance must be >= 0, got {margin} and {tolerance}")
    value = _auc(candidate, "candidate")
    if champion is None:
        versus_champion = Verdict(True, f"no champion yet: candidate ROC AUC {value:.4f} passes")
    else:
        versus_champion = _at_least(value, _auc(champion, "champion"), margin, "champion", "margin")
    versus_trees = _at_least(value, _auc(boosted, "boosted trees"), tolerance, "boosted trees", "tolerance")
    return GateResult(beats_champion=versus_champion, beats_boosted_trees=versus_trees)
