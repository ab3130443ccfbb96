"""Champion and shadow challenger judged on the same live flights, and the promotion policy that waits for it.

A challenger that passed offline evaluation can be served in shadow: the server scores it
off the request path for every request and logs its answers beside the champion's. Once
outcomes land, both are matched to the same flights (`match_outcomes`), and the shadow's
ROC AUC minus the champion's gets a paired day-bootstrap interval, as the offline gate's
comparisons do. The policy (`promotion:` in params.yaml) promotes the shadow when, after
`shadow_days` days with outcomes, the interval's lower bound is above -`shadow_margin`,
and rejects it when that bound is not; until then it waits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from ml.evaluation.bootstrap import Interval, paired_bootstrap
from ml.lake.delta import DeltaStore
from ml.lake.tables import BRONZE_FLIGHTS, PREDICTIONS_TABLE
from ml.monitoring.live_performance import SCHEDULE_KEY, match_outcomes
from ml.registry.model_registry import ModelRegistry

FLIGHT_KEY = (*SCHEDULE_KEY, "flight", "tailnum")
Action = Literal["wait", "promote", "reject"]


@dataclass(frozen=True)
class ShadowPolicy:
    """The `promotion:` section of params.yaml."""

    shadow_days: int
    """Days with outcomes a shadow must be judged on before promotion; 0 promotes a passed candidate at once."""
    shadow_margin: float
    """ROC AUC the shadow may lose to the champion (lower bound of the paired interval)."""
    shadow_min_flights: int
    """Paired flights with outcomes needed, whatever the days."""
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ShadowPolicy:
        section = dict(params.get("promotion") or {})
        unknown = sorted(set(section) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"params.yaml promotion: unknown {unknown}")
        policy = cls(
            shadow_days=int(section.get("shadow_days", 0)),
            shadow_margin=float(section.get("shadow_margin", 0.005)),
            shadow_min_flights=int(section.get("shadow_min_flights", 1000)),
            resamples=int(section.get("resamples", 1000)),
            confidence=float(section.get("confidence", 0.95)),
            seed=int(section.get("seed", 0)),
        )
        if policy.shadow_days < 0 or policy.shadow_margin < 0 or policy.shadow_min_flights < 1:
            raise ValueError(
                f"params.yaml promotion: days and margin must be >= 0, min flights >= 1 (got {policy})"
            )
        return policy

    @property
    def requires_shadow(self) -> bool:
        return self.shadow_days > 0


@dataclass(frozen=True)
class ShadowComparison:
    champion: int
    shadow: int
    days: int
    """Flight days with paired outcomes."""
    flights: int
    """Flights with an outcome that both models answered."""
    champion_auc: float | None
    shadow_auc: float | None
    difference: Interval | None
    """Shadow minus champion ROC AUC; None while there are no two classes to rank."""

    def summary(self) -> dict[str, Any]:
        d = self.difference
        return {
            "champion_version": self.champion,
            "shadow_version": self.shadow,
            "days": self.days,
            "flights": self.flights,
            "champion_roc_auc": self.champion_auc,
            "shadow_roc_auc": self.shadow_auc,
            "diff": d.estimate if d else None,
            "low": d.low if d else None,
            "high": d.high if d else None,
        }


def compare_shadow(
    matched: pl.DataFrame, champion: int, shadow: int, policy: ShadowPolicy
) -> ShadowComparison:
    """Both versions' latest answers to the same flights with outcomes (`match_outcomes` rows), paired by day."""
    labelled = matched.filter(pl.col("is_delayed").is_not_null())

    def answers(version: int, name: str) -> pl.DataFrame:
        rows = labelled.filter(pl.col("model_version") == version)
        return rows.select(*FLIGHT_KEY, "flight_date", "is_delayed", pl.col("delay_probability").alias(name))

    paired = answers(champion, "champion").join(
        answers(shadow, "shadow").drop("flight_date", "is_delayed"), on=list(FLIGHT_KEY), nulls_equal=True
    )
    y = paired["is_delayed"].cast(pl.Int8).to_numpy()
    days = int(paired["flight_date"].n_unique())
    if paired.is_empty() or y.min() == y.max():
        return ShadowComparison(champion, shadow, days, paired.height, None, None, None)
    boot = paired_bootstrap(
        y,
        paired["flight_date"].to_numpy(),
        {"shadow": paired["shadow"].to_numpy(), "champion": paired["champion"].to_numpy()},
        policy.resamples,
        policy.confidence,
        policy.seed,
    )
    return ShadowComparison(
        champion,
        shadow,
        days,
        paired.height,
        boot.point["champion"],
        boot.point["shadow"],
        boot.difference("shadow", "champion"),
    )


def shadow_decision(comparison: ShadowComparison, policy: ShadowPolicy) -> tuple[Action, str]:
    """What the policy does with the shadow now, and why (the reason kept in registry/events)."""
    c, d = comparison, comparison.difference
    evidence = f"{c.flights} paired flights over {c.days} day(s)"
    if c.days < policy.shadow_days or c.flights < policy.shadow_min_flights or d is None:
        return "wait", (
            f"v{c.shadow} in shadow: {evidence}; needs {policy.shadow_days} day(s) and "
            f"{policy.shadow_min_flights} flights with both classes"
        )
    figures = (
        f"shadow v{c.shadow} - champion v{c.champion} live ROC AUC {d.estimate:+.4f}, "
        f"{policy.confidence:.0%} interval [{d.low:+.4f}, {d.high:+.4f}] on {evidence}"
    )
    if d.low > -policy.shadow_margin:
        return "promote", f"{figures}; lower bound > -{policy.shadow_margin}: non-inferior"
    return "reject", f"{figures}; lower bound <= -{policy.shadow_margin}: inferior in shadow"


def shadow_comparison_from_lake(
    store: DeltaStore, champion: int, shadow: int, since: dt.datetime, policy: ShadowPolicy
) -> ShadowComparison:
    """The comparison over the answers logged since `since` (when the shadow started), whatever their flight days."""
    nothing = ShadowComparison(champion, shadow, 0, 0, None, None, None)
    if not store.exists(PREDICTIONS_TABLE) or not store.exists(BRONZE_FLIGHTS):
        return nothing
    predictions = (
        store.scan(PREDICTIONS_TABLE)
        .filter((pl.col("requested_at") >= since) & pl.col("model_version").is_in([champion, shadow]))
        .collect()
    )
    if predictions.is_empty():
        return nothing
    first, last = predictions["flight_date"].min(), predictions["flight_date"].max()
    flights = store.read_days(BRONZE_FLIGHTS, "flight_date", first, last)  # type: ignore[arg-type]
    return compare_shadow(match_outcomes(predictions, flights), champion, shadow, policy)


def current_comparison(registry: ModelRegistry, policy: ShadowPolicy) -> ShadowComparison | None:
    """The registry's shadow against its champion on what was logged since the shadow started; None without one."""
    shadow, champion = registry.shadow(), registry.champion()
    if shadow is None or champion is None:
        return None
    events = registry.events().filter(
        (pl.col("version") == shadow.version) & (pl.col("to_status") == "shadow")
    )
    started: dt.datetime = events["at"][-1]
    return shadow_comparison_from_lake(registry.store, champion.version, shadow.version, started, policy)
