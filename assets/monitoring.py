"""Monitoring: feature drift against the champion's training set, and the served model's realized quality.

Both assets are unpartitioned and look at a recent window ending at the newest day
they find, because what they answer is "is the model still fit now?": drift of
one day is noisy (one day's weather is one sample of a season) and the comparison
needs several days against the reference; a realized AUC needs the outcomes that
landed, which arrive after the predictions. Daily partitions would invite backfilling
a year of drift numbers that no decision reads. Each run replaces its own days in its
table (`as_of` for drift, `flight_date` for live performance), so reruns never
duplicate and the tables keep a history across days.

Drift limits are not fixed numbers: each feature's limit is set by how much the
reference's own weeks differ from the whole reference (`ml.monitoring.drift`), and the
reference is the training set the champion learned from, restored from DVC by its md5
when the one on disk is newer (`ml.monitoring.reference`).

A breach fails the asset's check (not blocking: there is nothing downstream to stop)
and appends one row to `DRIFT_SIGNALS_TABLE`, which the retraining sensor reads. One
row per breach episode, not per run or per feature: a breach that goes on for days
keeps its first key (`ml.monitoring.signals`). Before there is anything to judge (no
training set, no prediction logged) an asset materializes what it found and its check
passes, saying why.
"""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from assets.bronze import flights
from assets.features import flight_features
from assets.metadata import commit_metadata, delta_metadata
from assets.training import training_set
from ml.evaluation.plots import png_markdown
from ml.features.flight_features import lookback_days
from ml.lake.tables import DRIFT_TABLE, LIVE_PERFORMANCE_TABLE
from ml.monitoring.drift import Calibration, drift_plot
from ml.monitoring.live_performance import PerformanceLimits, performance_plot
from ml.monitoring.reference import find_reference
from ml.monitoring.reports import (
    NothingToMonitor,
    drift_episode,
    drift_report,
    live_performance_episode,
    live_performance_report,
)
from ml.monitoring.shadow import ShadowPolicy, current_comparison
from ml.monitoring.signals import raise_signal
from ml.registry.dvc_repo import TRAINING_SET_PATH
from ml.registry.model_registry import ModelRegistry
from ml.text_tables import markdown_table
from resources import DvcResource, LakeResource

GROUP = "monitoring"
DRIFT = dg.AssetKey(["monitoring", "drift"])
LIVE_PERFORMANCE = dg.AssetKey(["monitoring", "live_performance"])
CALENDAR_FEATURES = ("month", "days_to_holiday", "days_since_holiday")
"""Features that move with the calendar by construction: a recent week always differs from the training months."""
CALENDAR_REASON = (
    "moves with the calendar by construction: a recent week always differs from the training months"
)
TRAFFIC_COUNTS = (
    "compared as each key's share of the day's traffic over the same window, not as counts: their level "
    "moves with the season, the holidays and the trailing windows filling at the start of the data"
)


class DriftConfig(dg.Config):
    window_days: int = Field(
        default=7, ge=1, description="Newest feature days compared with the champion's train split."
    )
    bins: int = Field(
        default=10, ge=2, description="Quantile bins of a numeric feature, fixed by the reference."
    )
    limit_factor: float = Field(
        default=1.5,
        gt=0,
        description="A feature breaches above this multiple of its statistic over the reference's own blocks "
        "(consecutive runs of window_days days, each compared with the whole reference).",
    )
    limit_quantile: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Which of the blocks' statistics the factor scales: 1.0 is the largest, 0.9 the 90th percentile.",
    )
    psi_floor: float = Field(
        default=0.1, gt=0, description="Smallest PSI limit of a numeric feature, however stable its blocks."
    )
    js_floor: float = Field(
        default=0.05,
        gt=0,
        description="Smallest Jensen-Shannon distance limit of a categorical feature, however stable its blocks.",
    )
    chi_square_alpha: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="A categorical feature breaches only when the chi-square test of its counts rejects at this level.",
    )
    warmup_days: int = Field(
        default=lookback_days(),
        ge=0,
        description="First days of the reference not cut into blocks: the trailing features are still filling there.",
    )
    min_reference_blocks: int = Field(
        default=4,
        ge=1,
        description="Blocks a reference needs to set limits; with fewer its features are reported, not judged.",
    )
    excluded_features: list[str] = Field(
        default=list(CALENDAR_FEATURES),
        description="Features not compared; the calendar features move with the calendar by construction. "
        f"Traffic counts (*_flights_7d, *_flights_28d) are not excluded: they are {TRAFFIC_COUNTS}.",
    )
    reference_cache: str = Field(
        default=".data/drift_references",
        description="Folder (relative to the DVC repository, or absolute) holding the champion's training set, "
        "restored once by its md5 when the one on disk is another; the default is in the git-ignored data folder.",
    )

    def calibration(self) -> Calibration:
        return Calibration(
            factor=self.limit_factor,
            quantile=self.limit_quantile,
            psi_floor=self.psi_floor,
            js_floor=self.js_floor,
            alpha=self.chi_square_alpha,
            warmup_days=self.warmup_days,
            min_blocks=self.min_reference_blocks,
        )

    def exclusions(self) -> dict[str, str]:
        """Each excluded feature with the reason the metadata gives."""
        return {
            f: CALENDAR_REASON if f in CALENDAR_FEATURES else "excluded by the run's configuration"
            for f in self.excluded_features
        }


class LivePerformanceConfig(dg.Config):
    lookback_days: int = Field(
        default=28, ge=1, description="Flight days scored, ending at the newest predicted day."
    )
    min_outcomes: int = Field(default=100, ge=1, description="Labelled flights a day needs to be scored.")
    auc_floor: float = Field(default=0.6, ge=0, le=1, description="A scored day under this ROC AUC breaches.")
    max_calibration_error: float = Field(
        default=0.1, gt=0, description="A scored day with a larger expected calibration error breaches."
    )
    bins: int = Field(default=10, ge=1, description="Quantile bins of the calibration error.")


def nothing_to_monitor(
    context: dg.AssetExecutionContext, check_name: str, nothing: NothingToMonitor, **counts: int
) -> dg.MaterializeResult:
    """A run with nothing to judge: no rows written, no signal, and a passing check that says why."""
    context.log.info(nothing.reason)
    metadata = {"status": nothing.reason, **counts, "retraining_signal": False}
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(check_name=check_name, passed=True, metadata=metadata)],
    )


@dg.asset(
    key=DRIFT,
    group_name=GROUP,
    deps=[flight_features, training_set],
    check_specs=[
        dg.AssetCheckSpec(
            "no_feature_drift",
            asset=DRIFT,
            description="No feature's drift over the limit its reference's own blocks set (a breach asks for retraining).",
        )
    ],
    kinds={"delta", "polars"},
)
def drift(
    context: dg.AssetExecutionContext, config: DriftConfig, lake: LakeResource, dvc: DvcResource
) -> dg.MaterializeResult:
    """Drift per feature: the newest feature days against the train split of the champion's training set."""
    store = lake.store()
    on_disk = dvc.path(TRAINING_SET_PATH)
    champion = ModelRegistry(store).champion()
    reference = find_reference(champion, dvc.repo(), on_disk, dvc.path(config.reference_cache))
    report = drift_report(
        store, reference, on_disk, config.window_days, config.calibration(), config.bins, config.exclusions()
    )
    if isinstance(report, NothingToMonitor):
        return nothing_to_monitor(context, "no_feature_drift", report, breached_features=0)
    context.log.info(f"drift reference: {report.reference.origin} ({report.reference.md5})")
    over, last, table = report.over, report.last, report.table
    commit = commit_metadata(context, last.isoformat())
    result = store.replace_days(DRIFT_TABLE, report.frame, "as_of", [last], commit)
    signalled = False
    episode = drift_episode(store, report.champion_version) if over.height else None
    if episode is not None:
        worst = over.row(0, named=True)
        now = dt.datetime.now(dt.UTC)
        source = DRIFT.to_user_string()
        signalled = raise_signal(store, episode.key, source, worst, last, now, since=episode.start)
        context.log.warning(
            f"{over.height} feature(s) drifted; worst: {worst['feature']} {worst['metric']} {worst['value']:.3f}"
            f" (limit {worst['threshold']:.3f})"
        )
    not_compared = pl.DataFrame(
        {"feature": list(report.not_compared), "reason": list(report.not_compared.values())},
        schema={"feature": pl.String, "reason": pl.String},
    )
    return dg.MaterializeResult(
        metadata=delta_metadata(
            result,
            report.frame,
            **report.summary,
            traffic_counts=TRAFFIC_COUNTS,
            not_compared=dg.MetadataValue.md(markdown_table(not_compared, max_rows=len(not_compared))),
            features=dg.MetadataValue.md(markdown_table(report.feature_summary, max_rows=len(table))),
            plot=dg.MetadataValue.md(png_markdown(drift_plot(table), "drift per feature against its limit")),
            retraining_signal=signalled,
            breached_since=episode.start.isoformat() if episode else None,
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name="no_feature_drift",
                passed=over.is_empty(),
                metadata={
                    "breaches": dg.MetadataValue.md(markdown_table(report.breach_summary, max_rows=20)),
                    "breached_features": over.height,
                    "features_not_judged": report.not_judged,
                    "reference_md5": report.reference.md5,
                    "calibration": report.calibration_summary,
                },
            )
        ],
    )


@dg.asset(
    key=LIVE_PERFORMANCE,
    group_name=GROUP,
    deps=[flights],
    check_specs=[
        dg.AssetCheckSpec(
            "realized_quality",
            asset=LIVE_PERFORMANCE,
            description="The champion's realized ROC AUC and calibration error per scored day within limits.",
        )
    ],
    kinds={"delta", "polars"},
)
def live_performance(
    context: dg.AssetExecutionContext, config: LivePerformanceConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """The prediction log joined with the flights that landed: realized ROC AUC and calibration per day."""
    store = lake.store()
    limits = PerformanceLimits(auc_floor=config.auc_floor, max_calibration_error=config.max_calibration_error)
    report = live_performance_report(store, config.lookback_days, config.min_outcomes, config.bins, limits)
    if isinstance(report, NothingToMonitor):
        return nothing_to_monitor(context, "realized_quality", report, predictions_logged=0, days_scored=0)
    over, table, days = report.over, report.table, report.days
    commit = commit_metadata(context, f"{days[0]}..{days[-1]}")
    result = store.replace_days(LIVE_PERFORMANCE_TABLE, report.frame, "flight_date", days, commit)
    signalled = False
    worst = over.row(0, named=True) if over.height else None
    episode = live_performance_episode(store, worst["model_version"]) if worst else None
    if worst and episode is not None:
        source, now = LIVE_PERFORMANCE.to_user_string(), dt.datetime.now(dt.UTC)
        as_of = worst["flight_date"]
        signalled = raise_signal(store, episode.key, source, worst, as_of, now, since=episode.start)
        context.log.warning(
            f"{over.height} day(s) under the limits; worst: {worst['flight_date']} {worst['metric']} {worst['value']:.3f}"
        )
    per_day = dg.MetadataValue.md(markdown_table(table, max_rows=len(table)))
    metadata = delta_metadata(
        result,
        report.frame,
        **report.summary,
        per_day=per_day,
        retraining_signal=signalled,
        breached_since=episode.start.isoformat() if episode else None,
    )
    if report.days_scored:
        plot = performance_plot(table, config.auc_floor)
        metadata["plot"] = dg.MetadataValue.md(png_markdown(plot, "realized quality"))
    comparison = current_comparison(ModelRegistry(store), ShadowPolicy.from_params({}))
    if comparison is not None:  # the challenger in shadow against the champion, on the same flights
        metadata["shadow_comparison"] = dg.MetadataValue.json(comparison.summary())
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="realized_quality",
                passed=over.is_empty(),
                metadata={
                    "champion_version": report.champion_version,
                    "breaches": dg.MetadataValue.md(markdown_table(report.breach_summary, 20)),
                    "auc_floor": config.auc_floor,
                    "max_calibration_error": config.max_calibration_error,
                    "days_scored": report.days_scored,
                },
            )
        ],
    )
