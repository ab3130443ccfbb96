"""How the served model does on real outcomes: the prediction log joined to the flights that happened.

A served prediction names its flight by schedule (carrier, origin, dest, scheduled
departure; the flight number and tail number when the client sent them). Once the
day's bronze flights land, each prediction is matched to at most one flight:

- the schedule fields must agree, and the flight number too when the prediction has one;
- 188 pairs of 2013 flights share carrier, route and minute, so when several flights
  match, the tail number picks one; a prediction still left with several (or none
  after that) is `ambiguous` and not scored;
- a prediction whose day has landed but whose flight is not there is `unmatched`;
- a cancelled flight (it never departed) or a diverted one (departed, no arrival
  delay) has no label and is counted, as training excludes them too.

A flight predicted several times by one model version counts once, with the latest
prediction, so a client polling one flight does not outweigh a day of traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ml.evaluation.metrics import binary_metrics, expected_calibration_error
from ml.features.flight_features import DELAY_MINUTES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCHEDULE_KEY = ("carrier", "origin", "dest", "sched_dep_utc")
PREDICTION_KEY = ("model_version", *SCHEDULE_KEY, "flight", "tailnum")
DEFAULT_MIN_OUTCOMES = 100
DEFAULT_BINS = 10

PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "flight_date": pl.Date(),
    "model_version": pl.Int64(),
    "status": pl.String(),
    "predictions": pl.Int64(),
    "pending": pl.Int64(),
    "unmatched": pl.Int64(),
    "ambiguous": pl.Int64(),
    "cancelled": pl.Int64(),
    "diverted": pl.Int64(),
    "outcomes": pl.Int64(),
    "observed_rate": pl.Float64(),
    "mean_predicted": pl.Float64(),
    "roc_auc": pl.Float64(),
    "calibration_error": pl.Float64(),
}
"""Per day and model version. `status`: scored, too_few_outcomes, one_class, or pending (no outcomes yet)."""

_ID = "__prediction"


def latest_predictions(predictions: pl.DataFrame) -> pl.DataFrame:
    """One row per model version and flight: the latest answer given for it."""
    return (
        predictions.sort("requested_at", "request_id", "position")
        .unique(subset=list(PREDICTION_KEY), keep="last", maintain_order=True)
        .sort("flight_date", "model_version", *SCHEDULE_KEY)
    )


def match_outcomes(predictions: pl.DataFrame, flights: pl.DataFrame) -> pl.DataFrame:
    """Each (deduplicated) prediction with `match` and, when matched, `outcome` and `is_delayed`.

    `flights` are bronze rows of the days read; a prediction of a day with no flights
    in it is `pending` (that day has not landed). `match` is one of matched, unmatched,
    ambiguous, pending; `outcome` one of delayed, on_time, cancelled, diverted.
    """
    latest = latest_predictions(predictions).with_row_index(_ID)
    landed = flights.get_column("flight_date").unique()
    outcomes = flights.select(
        *SCHEDULE_KEY,
        pl.col("flight").alias("__flight"),
        pl.col("tailnum").alias("__tailnum"),
        pl.when(pl.col("dep_time").is_null())
        .then(pl.lit("cancelled"))
        .when(pl.col("arr_delay").is_null())
        .then(pl.lit("diverted"))
        .when(pl.col("arr_delay") >= DELAY_MINUTES)
        .then(pl.lit("delayed"))
        .otherwise(pl.lit("on_time"))
        .alias("outcome"),
    )
    candidates = (
        latest.select(_ID, *SCHEDULE_KEY, "flight", "tailnum")
        .join(outcomes, on=list(SCHEDULE_KEY), how="inner")
        .filter(pl.col("flight").is_null() | (pl.col("flight") == pl.col("__flight")))
        .with_columns(pl.len().over(_ID).alias("__candidates"))
    )
    chosen = (
        candidates.filter(
            (pl.col("__candidates") == 1)
            | (pl.col("tailnum").is_not_null() & (pl.col("tailnum") == pl.col("__tailnum")))
        )
        .filter(pl.len().over(_ID) == 1)
        .select(_ID, "outcome")
    )
    joined = latest.join(
        candidates.group_by(_ID).agg(pl.col("__candidates").first()), on=_ID, how="left"
    ).join(chosen, on=_ID, how="left")
    match = (
        pl.when(~pl.col("flight_date").is_in(landed.implode()))
        .then(pl.lit("pending"))
        .when(pl.col("outcome").is_not_null())
        .then(pl.lit("matched"))
        .when(pl.col("__candidates").is_null())
        .then(pl.lit("unmatched"))
        .otherwise(pl.lit("ambiguous"))
    )
    return (
        joined.with_columns(match.alias("match"))
        .with_columns(pl.when(pl.col("match") == "matched").then(pl.col("outcome")).alias("outcome"))
        .with_columns(
            pl.when(pl.col("outcome").is_in(["delayed", "on_time"]))
            .then(pl.col("outcome") == "delayed")
            .alias("is_delayed")
        )
        .drop(_ID, "__candidates")
    )


def daily_performance(
    matched: pl.DataFrame, min_outcomes: int = DEFAULT_MIN_OUTCOMES, bins: int = DEFAULT_BINS
) -> pl.DataFrame:
    """Realized quality per day and model version (`PERFORMANCE_SCHEMA`) from `match_outcomes` rows.

    A day with fewer than `min_outcomes` labelled flights is reported with its counts
    but not scored: an AUC on a handful of flights is noise that would raise alarms.
    """
    if min_outcomes < 1:
        raise ValueError(f"min_outcomes must be at least 1, got {min_outcomes}")
    rows = []
    for (day, version), group in matched.group_by("flight_date", "model_version", maintain_order=True):
        counts = {name: int((group["match"] == name).sum()) for name in ("pending", "unmatched", "ambiguous")}
        counts |= {name: int((group["outcome"] == name).sum()) for name in ("cancelled", "diverted")}
        labelled = group.filter(pl.col("is_delayed").is_not_null())
        y = labelled["is_delayed"].cast(pl.Int8).to_numpy()
        p = labelled["delay_probability"].to_numpy()
        metrics: dict[str, float | None] = dict.fromkeys(
            ("observed_rate", "mean_predicted", "roc_auc", "calibration_error")
        )
        if labelled.height:
            metrics["observed_rate"], metrics["mean_predicted"] = float(y.mean()), float(p.mean())
        if counts["pending"] == group.height:
            status = "pending"
        elif labelled.height < min_outcomes:
            status = "too_few_outcomes"
        elif y.min() == y.max():
            status = "one_class"
        else:
            status = "scored"
            metrics["roc_auc"] = binary_metrics(y, p)["roc_auc"]
            metrics["calibration_error"] = expected_calibration_error(y, p, bins)
        rows.append(
            {
                "flight_date": day,
                "model_version": version,
                "status": status,
                "predictions": group.height,
                **counts,
                "outcomes": labelled.height,
                **metrics,
            }
        )
    return pl.DataFrame(rows, schema=PERFORMANCE_SCHEMA, orient="row").sort("flight_date", "model_version")


@dataclass(frozen=True)
class PerformanceLimits:
    """A scored day breaches under `auc_floor` ROC AUC or over `max_calibration_error`."""

    auc_floor: float
    max_calibration_error: float


def performance_breaches(
    table: pl.DataFrame, auc_floor: float, max_calibration_error: float, model_version: int | None = None
) -> pl.DataFrame:
    """Scored rows under the AUC floor or over the calibration limit (of one version, if given); worst first."""
    scored = table.filter(pl.col("status") == "scored")
    if model_version is not None:
        scored = scored.filter(pl.col("model_version") == model_version)
    low_auc = pl.col("roc_auc") < auc_floor
    miscalibrated = pl.col("calibration_error") > max_calibration_error
    return (
        scored.filter(low_auc | miscalibrated)
        .with_columns(
            pl.when(low_auc).then(pl.lit("roc_auc")).otherwise(pl.lit("calibration_error")).alias("metric"),
            pl.when(low_auc).then(pl.col("roc_auc")).otherwise(pl.col("calibration_error")).alias("value"),
            pl.when(low_auc)
            .then(pl.lit(auc_floor))
            .otherwise(pl.lit(max_calibration_error))
            .alias("threshold"),
        )
        .sort(["metric", "value", "flight_date"], descending=[True, False, True])
    )


def performance_plot(table: pl.DataFrame, auc_floor: float) -> bytes:
    """Per day: realized ROC AUC against the floor, and mean prediction against the observed rate."""
    # matplotlib is imported when a plot is drawn, not when the code location loads.
    from ml.evaluation.plots import png

    def draw(figure: Figure) -> None:
        auc_axis, rate_axis = figure.subplots(2, 1, sharex=True)
        for version, rows in table.sort("flight_date").group_by("model_version", maintain_order=True):
            scored = rows.filter(pl.col("status") == "scored")
            auc_axis.plot(scored["flight_date"], scored["roc_auc"], marker="o", label=f"v{version[0]}")
            labelled = rows.filter(pl.col("outcomes") > 0)
            rate_axis.plot(
                labelled["flight_date"],
                labelled["observed_rate"],
                marker="o",
                label=f"v{version[0]} observed",
            )
            rate_axis.plot(
                labelled["flight_date"],
                labelled["mean_predicted"],
                marker="x",
                linestyle="--",
                label=f"v{version[0]} predicted",
            )
        auc_axis.axhline(auc_floor, color="tab:red", linestyle=":", label=f"floor {auc_floor}")
        auc_axis.set(ylabel="ROC AUC", title="Realized quality per day")
        auc_axis.legend(loc="lower left", fontsize=7)
        rate_axis.set(ylabel="delay rate")
        rate_axis.legend(loc="upper left", fontsize=7)
        rate_axis.tick_params(axis="x", labelrotation=45, labelsize=7)

    return png(draw)
