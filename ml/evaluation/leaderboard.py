"""The evaluation leaderboard and the promotion gate of a candidate model.

The gate gives three separate verdicts, each with the numbers behind it, so the
evaluation asset can block on each as its own asset check and a failed check says
which comparison failed and by how much. A lead is judged by its paired day-bootstrap
interval, not by one number: on two months of test days a 0.003 ROC AUC lead is well
inside the noise, and promoting on it would replace models at random.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import polars as pl

from ml.evaluation.bootstrap import Interval, PairedBootstrap
from ml.text_tables import text_table

RANKED_BY = "roc_auc"
COLUMN_ORDER = (
    "roc_auc",
    "roc_auc_low",
    "roc_auc_high",
    "pr_auc",
    "log_loss",
    "brier",
    "rows",
    "positive_rate",
    "mean_prediction",
)
"""Headline metrics first, whatever order a stored metrics dict came back in; others follow."""
CANDIDATE, CHAMPION, BOOSTED_TREES = "candidate", "champion", "boosted_trees"
MIN_RESAMPLES = 1000
"""Below this the 2.5% percentile rests on fewer than 25 resamples and is itself noise."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def leaderboard(rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> pl.DataFrame:
    """One row per model (name, role, its numeric metrics), best ROC AUC first, ties by name.

    Entries that are not numbers (a baseline's chosen settings) are no column: they
    belong to one model, and the table compares models.
    """
    if not rows:
        raise ValueError("no models for the leaderboard")
    names = [name for name, _, _ in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"model name(s) appear more than once: {', '.join(duplicates)}")
    lacking = [name for name, _, metrics in rows if RANKED_BY not in metrics]
    if lacking:
        raise ValueError(f"model(s) {', '.join(lacking)} have no {RANKED_BY} to rank by")
    seen = dict.fromkeys(k for _, _, metrics in rows for k, v in metrics.items() if _is_number(v))
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
class GateSettings:
    """The `gate:` section of params.yaml (its comments say what each setting means)."""

    champion_margin: float
    baseline_margin: float
    max_calibration_error: float
    resamples: int
    confidence: float
    seed: int
    refuse_dirty_source: bool = False
    """Refuse a candidate trained from a source tree with uncommitted changes (it is always recorded)."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> GateSettings:
        """Settings from the params section; a missing or misspelt key is an error, not a default."""
        names = [f.name for f in fields(cls)]
        optional = {"refuse_dirty_source"}
        missing = [n for n in names if section.get(n) is None and n not in optional]
        unknown = sorted(set(section) - set(names))
        if missing or unknown:
            raise ValueError(
                f"params.yaml gate: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
            )
        settings = cls(
            champion_margin=float(section["champion_margin"]),
            baseline_margin=float(section["baseline_margin"]),
            max_calibration_error=float(section["max_calibration_error"]),
            resamples=int(section["resamples"]),
            confidence=float(section["confidence"]),
            seed=int(section["seed"]),
            refuse_dirty_source=_boolean(section.get("refuse_dirty_source", False)),
        )
        settings._check()
        return settings

    def _check(self) -> None:
        problems = [
            "margins must be >= 0" if min(self.champion_margin, self.baseline_margin) < 0 else "",
            "max_calibration_error must lie in (0, 1]" if not 0 < self.max_calibration_error <= 1 else "",
            f"resamples must be >= {MIN_RESAMPLES}" if self.resamples < MIN_RESAMPLES else "",
            "confidence must lie in (0, 1)" if not 0 < self.confidence < 1 else "",
            "seed must be >= 0" if self.seed < 0 else "",
        ]
        if any(problems):
            raise ValueError(f"params.yaml gate: {'; '.join(p for p in problems if p)} (got {self})")

    def margin(self, other: str) -> float:
        return self.champion_margin if other == CHAMPION else self.baseline_margin


@dataclass(frozen=True)
class Verdict:
    passed: bool
    explanation: str
    figures: dict[str, float | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """The candidate against one other model: the interval of its ROC AUC lead and the margin it may lose."""

    other: str
    difference: Interval
    margin: float
    confidence: float
    resamples: int

    @property
    def passed(self) -> bool:
        """The whole interval, not just its middle, must clear -margin: a lead inside the noise is no lead."""
        return self.difference.low > -self.margin

    def verdict(self) -> Verdict:
        d = self.difference
        relation, outcome = (">", "passes") if self.passed else ("<=", "fails")
        return Verdict(
            self.passed,
            f"candidate - {self.other.replace('_', ' ')} ROC AUC {d.estimate:+.4f}, {self.confidence:.0%} "
            f"interval [{d.low:+.4f}, {d.high:+.4f}] over {self.resamples} day resamples; "
            f"lower bound {relation} -margin = {0.0 - self.margin:+.4f}: {outcome}",
            self.summary(),
        )

    def summary(self) -> dict[str, Any]:
        d = self.difference
        return {
            "diff": d.estimate,
            "low": d.low,
            "high": d.high,
            "margin": self.margin,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class SourceTree:
    """Whether the candidate's code was a commit, or a commit with uncommitted changes."""

    commit: str
    changed: tuple[str, ...]
    refuse_dirty: bool

    @property
    def passed(self) -> bool:
        return not (self.changed and self.refuse_dirty)

    def verdict(self) -> Verdict:
        if not self.changed:
            return Verdict(
                True, f"trained from commit {self.commit} with a clean tree: passes", self.summary()
            )
        changed = ", ".join(self.changed[:5]) + (" ..." if len(self.changed) > 5 else "")
        rule = "gate.refuse_dirty_source is set: fails" if self.refuse_dirty else "recorded; passes"
        return Verdict(
            self.passed,
            f"trained from commit {self.commit} with uncommitted changes ({changed}); {rule}",
            self.summary(),
        )

    def summary(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": bool(self.changed), "passed": self.passed}


@dataclass(frozen=True)
class Calibration:
    """The candidate's expected calibration error on the test split against its bound."""

    error: float
    bound: float

    @property
    def passed(self) -> bool:
        return self.error <= self.bound

    def verdict(self) -> Verdict:
        relation, outcome = ("<=", "passes") if self.passed else (">", "fails")
        return Verdict(
            self.passed,
            f"candidate expected calibration error {self.error:.4f} {relation} bound {self.bound:.4f}: {outcome}",
            self.summary(),
        )

    def summary(self) -> dict[str, Any]:
        return {"expected_calibration_error": self.error, "max": self.bound, "passed": self.passed}


@dataclass(frozen=True)
class GateResult:
    versus: dict[str, Comparison]
    """Keyed by the other model; no champion key when there is no champion yet."""
    calibration: Calibration
    bootstrap: PairedBootstrap
    settings: GateSettings
    source: SourceTree | None = None
    """None when the candidate's source tree is not known (a model registered outside the platform)."""

    @property
    def beats_champion(self) -> Verdict:
        if CHAMPION not in self.versus:
            return Verdict(True, "no champion yet: nothing to compare with, passes")
        return self.versus[CHAMPION].verdict()

    @property
    def beats_boosted_trees(self) -> Verdict:
        return self.versus[BOOSTED_TREES].verdict()

    @property
    def calibrated(self) -> Verdict:
        return self.calibration.verdict()

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """By asset check name."""
        return {
            "beats_champion": self.beats_champion,
            "beats_boosted_trees": self.beats_boosted_trees,
            "calibrated": self.calibrated,
            "clean_source": self.clean_source,
        }

    @property
    def clean_source(self) -> Verdict:
        if self.source is None:
            return Verdict(True, "the candidate's source tree was not recorded: passes")
        return self.source.verdict()

    @property
    def passed(self) -> bool:
        """Promotion needs every verdict."""
        return all(v.passed for v in self.verdicts.values())

    def aucs(self) -> dict[str, Interval]:
        """Each model's own test ROC AUC with its interval, on the same resamples as the differences."""
        return {name: self.bootstrap.auc(name) for name in self.bootstrap.point}

    def table(self) -> pl.DataFrame:
        """One row per verdict: the estimate, its interval, the bound it had to clear and the outcome."""
        rows = [
            (f"vs {c.other}", c.difference.estimate, c.difference.low, c.difference.high, -c.margin, c.passed)
            for c in self.versus.values()
        ]
        rows.append(
            (
                "calibration error",
                self.calibration.error,
                None,
                None,
                self.calibration.bound,
                self.calibration.passed,
            )
        )
        return pl.DataFrame(
            rows,
            schema={
                "check": pl.String,
                "estimate": pl.Float64,
                "low": pl.Float64,
                "high": pl.Float64,
                "bound": pl.Float64,
                "passed": pl.Boolean,
            },
            orient="row",
        ).with_columns(pl.col("estimate", "low", "high", "bound").round(4))

    def figures(self) -> dict[str, float]:
        """Flat numbers for the evaluation's metadata, which the UI can plot across runs."""
        flat = {
            f"auc_diff_vs_{other}{suffix}": value
            for other, c in self.versus.items()
            for suffix, value in (
                ("", c.difference.estimate),
                ("_low", c.difference.low),
                ("_high", c.difference.high),
            )
        }
        candidate = self.bootstrap.auc(CANDIDATE)
        return {
            **flat,
            "roc_auc_low": candidate.low,
            "roc_auc_high": candidate.high,
            "expected_calibration_error": self.calibration.error,
        }

    def summary(self) -> dict[str, Any]:
        """What the registry and evaluation.json keep of the decision: verdicts, intervals, margins."""
        return {
            "passed": self.passed,
            **{name: verdict.explanation for name, verdict in self.verdicts.items()},
            "margins": {
                CHAMPION: self.settings.champion_margin,
                BOOSTED_TREES: self.settings.baseline_margin,
            },
            "comparisons": {
                o: (c.summary() if (c := self.versus.get(o)) else None) for o in (CHAMPION, BOOSTED_TREES)
            },
            "calibration": self.calibration.summary(),
            "resamples": self.bootstrap.resamples,
            "confidence": self.bootstrap.confidence,
            "seed": self.bootstrap.seed,
            "days": self.bootstrap.days,
        }


def gate(
    bootstrap: PairedBootstrap,
    calibration_error: float,
    settings: GateSettings,
    source: Mapping[str, Any] | None = None,
) -> GateResult:
    """Whether a candidate may replace the champion.

    It may lose up to `champion_margin` ROC AUC to the champion (retraining on newer
    days moves the test split, so small drops are noise, not regressions) and up to
    `baseline_margin` to boosted trees on the same features, each judged by the lower
    bound of the paired interval; and its probabilities must be calibrated within
    `max_calibration_error`, since serving reports them as delay chances. A `source` tree
    (the registry's lineage entry) with uncommitted changes fails only when
    `refuse_dirty_source` is set.
    """
    missing = [n for n in (CANDIDATE, BOOSTED_TREES) if n not in bootstrap.point]
    if missing:
        raise ValueError(
            f"the gate needs a bootstrap of {', '.join(missing)} (has: {', '.join(bootstrap.point)})"
        )
    versus = {
        other: Comparison(
            other,
            bootstrap.difference(CANDIDATE, other),
            settings.margin(other),
            bootstrap.confidence,
            bootstrap.resamples,
        )
        for other in (CHAMPION, BOOSTED_TREES)
        if other in bootstrap.point
    }
    tree = (
        SourceTree(str(source["commit"]), tuple(source.get("changed", [])), settings.refuse_dirty_source)
        if source
        else None
    )
    return GateResult(
        versus, Calibration(calibration_error, settings.max_calibration_error), bootstrap, settings, tree
    )


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"params.yaml gate: refuse_dirty_source must be true or false, not {value!r}")
    return value
