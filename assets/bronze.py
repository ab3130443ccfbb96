"""Bronze: landing files become Delta tables, validated, with rejects kept and counted.

Each table has two companions written in the same run: `<table>_rejects` (rows that
cannot be true, with the reason) and `<table>_landing_log` (per day: the file, its md5,
rows delivered and rejected). Per-day detail lives in those tables rather than in the
run's metadata, which Dagster copies into the event of every partition of a range run.
"""

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass

import dagster as dg
import polars as pl

from assets.metadata import commit_metadata, delta_metadata, schema_definition
from assets.partitions import (
    backfill_policy,
    daily_partitions,
    days_label,
    partition_days,
    run_slices,
    traffic_warning,
)
from assets.step_resources import INGESTION, k8s_step_tags
from ml.ingest.batch import Validator, ingest_days, ingestion_failure, read_reference
from ml.ingest.reconcile import Reconciliation, reconcile, write_days
from ml.ingest.validation import validate_flights, validate_weather
from ml.lake.delta import DeltaStore, WriteResult
from ml.lake.schemas import (
    AIRLINES_LANDING,
    AIRPORTS_LANDING,
    BRONZE_FLIGHTS_SCHEMA,
    BRONZE_WEATHER_SCHEMA,
    FLIGHT_KEY,
    FLIGHTS_LANDING,
    PLANES_LANDING,
    WEATHER_KEY,
    WEATHER_LANDING,
    LandingContract,
)
from ml.lake.tables import (
    BRONZE_AIRLINES,
    BRONZE_AIRPORTS,
    BRONZE_FLIGHTS,
    BRONZE_PLANES,
    BRONZE_WEATHER,
)
from resources import LakeResource, LandingResource

GROUP = "bronze"


def _dimension(contract: LandingContract, table: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey.from_user_string(table),
        group_name=GROUP,
        description=f"Reference table {contract.dataset}, replaced whole from its landing file.",
        kinds={"delta", "polars"},
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
        frame = read_reference(landing.zone(), contract, now=dt.datetime.now(dt.UTC))
        result = lake.store().overwrite(table, frame, commit_metadata(context, "unpartitioned"))
        return dg.MaterializeResult(metadata=delta_metadata(result, frame))

    return _asset


planes = _dimension(PLANES_LANDING, BRONZE_PLANES)
airports = _dimension(AIRPORTS_LANDING, BRONZE_AIRPORTS)
airlines = _dimension(AIRLINES_LANDING, BRONZE_AIRLINES)


def _checks(table: str) -> list[dg.AssetCheckSpec]:
    asset = dg.AssetKey.from_user_string(table)
    return [
        dg.AssetCheckSpec(
            "schema", asset=asset, blocking=True, description="Columns and types of the contract."
        ),
        dg.AssetCheckSpec("key_unique", asset=asset, blocking=True, description="One row per key."),
        dg.AssetCheckSpec(
            "reconciles_with_landing",
            asset=asset,
            blocking=True,
            description="Rows in the table for the run's days equal landing rows minus rejects.",
        ),
    ]


@dataclass(frozen=True)
class _SliceWrite:
    """What one slice of a run's days wrote: small, so a run holds one slice's rows at a time."""

    days: list[dt.date]
    table: WriteResult
    rejects: WriteResult
    landing_log: WriteResult
    summary: Reconciliation
    preview: pl.DataFrame
    """The slice's rows when the run is one day (the materialization's preview), else none."""


@dataclass(frozen=True)
class _DailyTable:
    """How one daily bronze table is ingested: its landing contract, rules, stored schema and key."""

    contract: LandingContract
    validate: Validator
    schema: dict[str, pl.DataType]
    key: tuple[str, ...]


def _ingest_slice(
    context: dg.AssetExecutionContext,
    store: DeltaStore,
    landing: LandingResource,
    daily: _DailyTable,
    days: list[dt.date],
    failed: dict[dt.date, str],
) -> _SliceWrite | None:
    """Ingest and write one slice of the run's days; its failed days go to `failed`."""
    contract, schema, key = daily.contract, daily.schema, daily.key
    batch = ingest_days(landing.zone(), contract, days, daily.validate, now=dt.datetime.now(dt.UTC))
    failed.update(batch.failed)
    if not batch.landed:
        return None
    table = context.asset_key.to_user_string()
    meta = commit_metadata(context, days_label(batch.landed))
    written = write_days(store, table, batch, contract.day_column, batch.landed, meta, landing.root, key)
    summary = reconcile(batch, written.stored, schema, key, written.stored_schema)
    preview = batch.valid if len(context.partition_keys) == 1 else batch.valid.head(0)
    return _SliceWrite(batch.landed, written.table, written.rejects, written.landing_log, summary, preview)


def _ingest_daily(
    context: dg.AssetExecutionContext, store: DeltaStore, landing: LandingResource, daily: _DailyTable
) -> dg.MaterializeResult:
    """The run's days of one daily table: ingested from their landing files, written with their companions.

    The days are worked through in slices under the run's memory budget (`run_slices`),
    each written in its own commits before the next is read. A day whose file cannot be
    ingested fails alone: the good days of the run are written and reported as
    materialized partitions, then the step fails naming the bad files, so the run's
    failure says which days did not land and those days stay unmaterialized.
    """
    failed: dict[dt.date, str] = {}
    parts = [
        written
        for days in run_slices(partition_days(context))
        if (written := _ingest_slice(context, store, landing, daily, days, failed))
    ]
    if not parts:
        raise ingestion_failure(daily.contract.dataset, 0, failed)
    landed = [day for part in parts for day in part.days]
    rows = sum(part.table.rows for part in parts)
    if daily.contract.dataset == "flights":
        overloaded = traffic_warning(rows, len(landed))
        if overloaded:
            context.log.warning(overloaded)
    summary = Reconciliation.combine([part.summary for part in parts])
    last = parts[-1]
    label = days_label(landed)
    metadata = delta_metadata(
        dataclasses.replace(last.table, rows=rows),
        last.preview,
        partitions=len(landed),
        days=label,
        rejected=summary.rejected,
        landing_rows=summary.landing_rows,
        rejects_table=last.rejects.uri,
        rejects_delta_version=last.rejects.version,
        reject_reasons=dg.MetadataValue.json(summary.reject_reasons),
        landing_log_table=last.landing_log.uri,
        landing_log_delta_version=last.landing_log.version,
        empty_days=summary.empty_days,
        **({"slices": len(parts)} if len(parts) > 1 else {}),
    )
    checks = _check_results(context.asset_key, summary)
    if not failed:
        return dg.MaterializeResult(metadata=metadata, check_results=checks)
    failed_days = [day.isoformat() for day in sorted(failed)]
    for day in landed:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=day.isoformat(),
                metadata={**metadata, "failed_days_of_the_run": failed_days},
            )
        )
    for check in checks:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=context.asset_key,
                check_name=check.check_name or "",
                passed=check.passed,
                metadata=check.metadata,
            )
        )
    raise ingestion_failure(daily.contract.dataset, len(landed), failed)


def _check_results(asset: dg.AssetKey, summary: Reconciliation) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name="schema",
            asset_key=asset,
            passed=not summary.schema_problems,
            metadata={"problems": dg.MetadataValue.json(summary.schema_problems)},
        ),
        dg.AssetCheckResult(
            check_name="key_unique",
            asset_key=asset,
            passed=summary.duplicates == 0,
            metadata={"duplicates": summary.duplicates},
        ),
        dg.AssetCheckResult(
            check_name="reconciles_with_landing",
            asset_key=asset,
            passed=summary.reconciles,
            metadata={"table_rows": summary.table_rows, "landing_minus_rejects": summary.expected_rows},
        ),
    ]


DAILY: dict[str, object] = {
    "group_name": GROUP,
    "partitions_def": daily_partitions,
    "backfill_policy": backfill_policy(),
    "kinds": {"delta", "polars"},
    "op_tags": k8s_step_tags(INGESTION),
}
"""What the daily bronze tables share: a range of days is one run (up to the memory budget's days),
in a pod sized for ingestion."""


def _known(store: DeltaStore, table: str, column: str) -> list[str]:
    return store.read(table).get_column(column).to_list()


@dg.asset(
    key=dg.AssetKey.from_user_string(BRONZE_FLIGHTS),
    deps=[airports, airlines],
    check_specs=_checks(BRONZE_FLIGHTS),
    metadata=schema_definition(BRONZE_FLIGHTS_SCHEMA),
    **DAILY,
)
def flights(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """Flights of each day, from its landing file; invalid rows go to bronze/flights_rejects."""
    store = lake.store()
    airports, carriers = _known(store, BRONZE_AIRPORTS, "faa"), _known(store, BRONZE_AIRLINES, "carrier")
    validate = functools.partial(validate_flights, airports=airports, carriers=carriers)
    return _ingest_daily(
        context, store, landing, _DailyTable(FLIGHTS_LANDING, validate, BRONZE_FLIGHTS_SCHEMA, FLIGHT_KEY)
    )


@dg.asset(
    key=dg.AssetKey.from_user_string(BRONZE_WEATHER),
    deps=[airports],
    check_specs=_checks(BRONZE_WEATHER),
    metadata=schema_definition(BRONZE_WEATHER_SCHEMA),
    **DAILY,
)
def weather(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """Hourly weather at the New York airports, by local day; invalid rows go to bronze/weather_rejects."""
    store = lake.store()
    validate = functools.partial(validate_weather, airports=_known(store, BRONZE_AIRPORTS, "faa"))
    return _ingest_daily(
        context, store, landing, _DailyTable(WEATHER_LANDING, validate, BRONZE_WEATHER_SCHEMA, WEATHER_KEY)
    )
