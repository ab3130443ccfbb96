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
row per breached run, not per feature: the sensor starts one run per new signal key.
"""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from assets.features import flight_features
from assets.ingestion import flights
from assets.metadata import commit_metadata, delta_metadata
from assets.training import TRAINING_SET_PATH, training_set
from ml.evaluation.plots import png_markdown
from ml.features.flight_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from ml.lake.delta import DeltaStore
from ml.lake.schemas import BRONZE_FLIGHTS_SCHEMA
from ml.monitoring.drift import Thresholds, breaches, drift_plot, drift_table
from ml.monitoring.live_performance import (
    daily_performance,
    match_outcomes,
    performance_breaches,
    performance_plot,
)
from ml.monitoring.tables import DRIFT_TABLE, LIVE_PERFORMANCE_TABLE, PREDICTIONS_TABLE, append
from ml.registry.model_registry import ModelRegistry
from ml.text_tables import markdown_table
from ml.training.training_set import FEATURES_TABLE, read_manifest, read_split
from resources import DvcResource, LakeResource
from resources.automation import DRIFT_SIGNALS_TABLE

GROUP = "monitoring"
DRIFT = dg.AssetKey(["monitoring", "drift"])
LIVE_PERFORMANCE = dg.AssetKey(["monitoring", "live_performance"])
CALENDAR_FEATURES = ("month", "days_to_holiday", "days_since_holiday")
"""Features that move with the calendar by construction: a recent week always differs from the training months."""
BRONZE_FLIGHTS = "bronze/flights"

SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "detail": pl.String(),
    "raised_at": pl.Datetime("us", "UTC"),
    "source": pl.String(),
    "feature": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "as_of": pl.Date(),
}
"""Rows of `DRIFT_SIGNALS_TABLE`: `key` and `detail` are what `retrain_sensor` reads."""


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


def raise_signal(store: DeltaStore, key: str, source: str, breach: dict[str, object], as_of: dt.date) -> bool:
    """Append one retraining signal unless its key is already there; True when a row was written."""
    if store.exists(DRIFT_SIGNALS_TABLE):
        keys = store.scan(DRIFT_SIGNALS_TABLE).select("key").collect().get_column("key")
        if key in keys.to_list():
            return False
    feature = breach.get("feature")
    subject = f" on {feature}" if feature else ""
    detail = f"{source}: {breach['metric']} {breach['value']:.4f}{subject} (limit {breach['threshold']}) as of {as_of}"
    row = pl.DataFrame(
        [
            {
                "key": key,
                "detail": detail,
                "raised_at": dt.datetime.now(dt.UTC),
                "source": source,
                "feature": feature,
                "metric": breach["metric"],
                "value": breach["value"],
                "threshold": breach["threshold"],
                "as_of": as_of,
            }
        ],
        schema=SIGNAL_SCHEMA,
    )
    append(store, DRIFT_SIGNALS_TABLE, row, {"writer": source, "key": key})
    return True


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
    folder = dvc.path(TRAINING_SET_PATH)
    cutoff = dt.date.fromisoformat(read_manifest(folder)["cutoff"])
    reference = read_split(folder, "train")
    last = store.scan(FEATURES_TABLE).select(pl.col("flight_date").max()).collect().item()
    if last is None:
        raise ValueError(f"{FEATURES_TABLE} has no rows: nothing recent to compare with the training split")
    first = last - dt.timedelta(days=config.window_days - 1)
    current = store.read_days(FEATURES_TABLE, "flight_date", first, last)
    excluded = set(config.excluded_features)
    thresholds = Thresholds(psi=config.psi_threshold, ks=config.ks_threshold)
    table = drift_table(
        reference,
        current,
        [c for c in NUMERIC_FEATURES if c not in excluded],
        [c for c in CATEGORICAL_FEATURES if c not in excluded],
        config.bins,
    )
    over = breaches(table, thresholds)
    frame = table.with_columns(
        pl.lit(last, pl.Date).alias("as_of"),
        pl.lit(first, pl.Date).alias("window_first"),
        pl.lit(cutoff, pl.Date).alias("reference_cutoff"),
        pl.col("feature").is_in(over["feature"].implode()).alias("breach"),
    )
    result = store.replace_days(
        DRIFT_TABLE, frame, "as_of", [last], commit_metadata(context, last.isoformat())
    )
    signalled = False
    if over.height:
        worst = over.row(0, named=True)
        signalled = raise_signal(
            store, f"feature-drift-{last}-vs-cutoff-{cutoff}", DRIFT.to_user_string(), worst, last
        )
        context.log.warning(
            f"{over.height} feature(s) drifted; worst: {worst['feature']} {worst['metric']} {worst['value']:.3f}"
        )
    plot = drift_plot(table, thresholds)
    summary = over.select("feature", "metric", "value", "threshold")
    return dg.MaterializeResult(
        metadata=delta_metadata(
            result,
            frame,
            window=f"{first}..{last}",
            reference_cutoff=cutoff.isoformat(),
            reference_rows=reference.height,
            current_rows=current.height,
            features=dg.MetadataValue.md(markdown_table(table, max_rows=len(table))),
            plot=dg.MetadataValue.md(png_markdown(plot, "drift per feature")),
            retraining_signal=signalled,
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name="no_feature_drift",
                passed=over.is_empty(),
                metadata={
                    "breaches": dg.MetadataValue.md(markdown_table(summary, max_rows=20)),
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
    if not store.exists(PREDICTIONS_TABLE):
        raise ValueError(f"no prediction log at {store.uri(PREDICTIONS_TABLE)}: the model server writes it")
    last = store.scan(PREDICTIONS_TABLE).select(pl.col("flight_date").max()).collect().item()
    first = last - dt.timedelta(days=config.lookback_days - 1)
    predictions = store.read_days(PREDICTIONS_TABLE, "flight_date", first, last)
    outcomes = (
        store.read_days(BRONZE_FLIGHTS, "flight_date", first, last)
        if store.exists(BRONZE_FLIGHTS)
        else pl.DataFrame(schema=BRONZE_FLIGHTS_SCHEMA)
    )
    matched = match_outcomes(predictions, outcomes)
    table = daily_performance(matched, config.min_outcomes, config.bins)
    champion = ModelRegistry(store).champion()
    version = champion.version if champion is not None else None
    over = performance_breaches(table, config.auc_floor, config.max_calibration_error, version)
    breached = over.select("flight_date", "model_version")
    frame = table.join(
        breached.with_columns(pl.lit(True).alias("breach")), on=["flight_date", "model_version"], how="left"
    ).with_columns(pl.col("breach").fill_null(False))
    days = sorted(set(frame["flight_date"].to_list()))
    result = store.replace_days(
        LIVE_PERFORMANCE_TABLE, frame, "flight_date", days, commit_metadata(context, f"{days[0]}..{days[-1]}")
    )
    signalled = False
    if over.height:
        worst = over.row(0, named=True)
        key = f"live-performance-v{worst['model_version']}-{worst['flight_date']}"
        signalled = raise_signal(store, key, LIVE_PERFORMANCE.to_user_string(), worst, worst["flight_date"])
        context.log.warning(
            f"{over.height} day(s) under the limits; worst: {worst['flight_date']} {worst['metric']} {worst['value']:.3f}"
        )
    totals = {
        name: int(table[name].sum())
        for name in ("predictions", "pending", "unmatched", "ambiguous", "cancelled", "diverted", "outcomes")
    }
    scored = table.filter(pl.col("status") == "scored")
    metadata = delta_metadata(
        result,
        frame,
        window=f"{first}..{last}",
        predictions_logged=predictions.height,
        duplicate_predictions=predictions.height - matched.height,
        **totals,
        days_scored=scored.height,
        days_not_scored=table.height - scored.height,
        per_day=dg.MetadataValue.md(markdown_table(table, max_rows=len(table))),
        retraining_signal=signalled,
    )
    if scored.height:
        metadata["plot"] = dg.MetadataValue.md(
            png_markdown(performance_plot(table, config.auc_floor), "realized quality")
        )
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="realized_quality",
                passed=over.is_empty(),
                metadata={
                    "champion_version": version,
                    "breaches": dg.MetadataValue.md(
                        markdown_table(
                            over.select("flight_date", "model_version", "metric", "value", "threshold"), 20
                        )
                    ),
                    "auc_floor": config.auc_floor,
                    "max_calibration_error": config.max_calibration_error,
                    "days_scored": scored.height,
                },
            )
        ],
    )
