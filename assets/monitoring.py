"""Monitoring: feature drift against the training snapshot, and the served model's realized quality.

Both assets are unpartitioned and look at a recent window ending at the newest day
they find, because what they answer is "is the model still fit now?": drift of
one day is noisy (one day's weather is one sample of a season) and the comparison
needs several days against the reference; a realized AUC needs the outcomes that
landed, which arrive after the predictions. Daily partitions would invite backfilling
a year of drift numbers that no decision reads. Each run replaces its own days in its
table (`as_of` for drift, `flight_date` for live performance), so reruns never
duplicate and the tables keep a history across days.

A breach fails the asset's check (not blocking: there is nothing downstream to stop)
and appends one row to `DRIFT_SIGNALS_TABLE`, which the retraining sensor reads. One
row per breach episode, not per run or per feature: a breach that goes on for days
keeps its first key (`ml.monitoring.signals`). Before there is anything to judge (no
training set, no prediction logged) an asset materializes what it found and its check
passes, saying why.
"""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.bronze import flights
from assets.features import flight_features
from assets.metadata import commit_metadata, delta_metadata
from assets.training import training_set
from ml.evaluation.plots import png_markdown
from ml.lake.tables import DRIFT_TABLE, LIVE_PERFORMANCE_TABLE
from ml.monitoring.drift import Thresholds, drift_plot
from ml.monitoring.live_performance import PerformanceLimits, performance_plot
from ml.monitoring.reports import (
    NothingToMonitor,
    drift_episode,
    drift_report,
    live_performance_episode,
    live_performance_report,
)
from ml.monitoring.signals import raise_signal
from ml.registry.dvc_repo import TRAINING_SET_PATH
from ml.text_tables import markdown_table
from resources import DvcResource, LakeResource

GROUP = "monitoring"
DRIFT = dg.AssetKey(["monitoring", "drift"])
LIVE_PERFORMANCE = dg.AssetKey(["monitoring", "live_performance"])
CALENDAR_FEATURES = ("month", "days_to_holiday", "days_since_holiday")
"""Features that move with the calendar by construction: a recent week always differs from the training months."""


class DriftConfig(dg.Config):
    window_days: int = Field(
        default=7, ge=1, description="Newest feature days compared with the training split."
    )
    psi_threshold: float = Field(default=0.2, gt=0, description="A feature with a larger PSI breaches.")
    ks_threshold: float = Field(
        default=0.1, gt=0, description="A numeric feature with a larger KS statistic breaches."
    )
    bins: int = Field(
        default=10, ge=2, description="Quantile bins of a numeric feature, fixed by the reference."
    )
    excluded_features: list[str] = Field(
        default=list(CALENDAR_FEATURES),
        description="Features not compared (calendar features drift by design).",
    )


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
            description="No feature's PSI or KS statistic over its limit (a breach asks for retraining).",
        )
    ],
    kinds={"delta", "polars"},
)
def drift(
    context: dg.AssetExecutionContext, config: DriftConfig, lake: LakeResource, dvc: DvcResource
) -> dg.MaterializeResult:
    """PSI and KS per feature: the newest feature days against the training split the champion learned from."""
    store = lake.store()
    thresholds = Thresholds(psi=config.psi_threshold, ks=config.ks_threshold)
    folder = dvc.path(TRAINING_SET_PATH)
    report = drift_report(
        store, folder, config.window_days, thresholds, config.bins, config.excluded_features
    )
    if isinstance(report, NothingToMonitor):
        return nothing_to_monitor(context, "no_feature_drift", report, breached_features=0)
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
        )
    return dg.MaterializeResult(
        metadata=delta_metadata(
            result,
            report.frame,
            **report.summary,
            features=dg.MetadataValue.md(markdown_table(table, max_rows=len(table))),
            plot=dg.MetadataValue.md(png_markdown(drift_plot(table, thresholds), "drift per feature")),
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
                    "psi_threshold": config.psi_threshold,
                    "ks_threshold": config.ks_threshold,
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
