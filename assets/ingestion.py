"""Bronze: landing files become Delta tables, validated, with rejects kept and counted.

Each table has two companions written in the same run: `<table>_rejects` (rows that
cannot be true, with the reason) and `<table>_landing_log` (per day: the file, its md5,
rows delivered and rejected). Per-day detail lives in those tables rather than in the
run's metadata, which Dagster copies into the event of every partition of a range run.
"""

import datetime as dt

import dagster as dg
import polars as pl

from assets.metadata import commit_metadata, delta_metadata
from ml.ingest.batch import Batch, ingest_days, read_reference
from ml.ingest.validation import validate_flights, validate_weather
from ml.lake.delta import DeltaStore
from ml.lake.quality import duplicate_keys, schema_problems
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
from orchestration.partitions import daily_partitions, days_label, partition_days
from orchestration.step_resources import INGESTION, k8s_step_tags
from resources import LakeResource, LandingResource

GROUP = "ingestion"


def _dimension(contract: LandingContract) -> dg.AssetsDefinition:
    @dg.asset(
        name=contract.dataset,
        key_prefix="bronze",
        group_name=GROUP,
        description=f"Reference table {contract.dataset}, replaced whole from its landing file.",
        kinds={"delta", "polars"},
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
        frame = read_reference(landing.zone(), contract)
        table = f"bronze/{contract.dataset}"
        result = lake.store().overwrite(table, frame, commit_metadata(context, "unpartitioned"))
        return dg.MaterializeResult(metadata=delta_metadata(result, frame))

    return _asset


planes = _dimension(PLANES_LANDING)
airports = _dimension(AIRPORTS_LANDING)
airlines = _dimension(AIRLINES_LANDING)


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


def _write_daily(
    context: dg.AssetExecutionContext,
    store: DeltaStore,
    table: str,
    batch: Batch,
    day_column: str,
    days: list[dt.date],
    schema: dict[str, pl.DataType],
    key: tuple[str, ...],
) -> dg.MaterializeResult:
    label = days_label(days)
    meta = commit_metadata(context, label)
    rejects = batch.rejects
    result = store.replace_days(table, batch.valid, day_column, days, meta)
    rejects_result = store.replace_days(f"{table}_rejects", rejects, "day", days, meta)
    ledger_result = store.replace_days(f"{table}_landing_log", batch.ledger(), "day", days, meta)
    stored = store.read_days(table, day_column, days[0], days[-1], version=result.version).filter(
        pl.col(day_column).is_in(days)
    )
    problems = schema_problems(dict(stored.schema), schema)
    duplicates = duplicate_keys(stored, key)
    expected = batch.landing_rows - rejects.height
    reasons = rejects.group_by("reason").len().sort("len", descending=True)
    asset = context.asset_key
    return dg.MaterializeResult(
        metadata=delta_metadata(
            result,
            batch.valid,
            days=label,
            rejected=rejects.height,
            landing_rows=batch.landing_rows,
            rejects_table=rejects_result.uri,
            rejects_delta_version=rejects_result.version,
            reject_reasons=dg.MetadataValue.json(dict(reasons.iter_rows())),
            landing_log_table=ledger_result.uri,
            landing_log_delta_version=ledger_result.version,
            empty_days=[d.day.isoformat() for d in batch.days if d.landing_rows == 0],
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name="schema",
                asset_key=asset,
                passed=not problems,
                metadata={"problems": dg.MetadataValue.json(problems)},
            ),
            dg.AssetCheckResult(
                check_name="key_unique",
                asset_key=asset,
                passed=duplicates == 0,
                metadata={"duplicates": duplicates},
            ),
            dg.AssetCheckResult(
                check_name="reconciles_with_landing",
                asset_key=asset,
                passed=stored.height == expected,
                metadata={"table_rows": stored.height, "landing_minus_rejects": expected},
            ),
        ],
    )


def _known(store: DeltaStore, table: str, column: str) -> list[str]:
    return store.read(table).get_column(column).to_list()


@dg.asset(
    key=["bronze", "flights"],
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[airports, airlines],
    check_specs=_checks("bronze/flights"),
    kinds={"delta", "polars"},
    op_tags=k8s_step_tags(INGESTION),
)
def flights(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """Flights of each day, from its landing file; invalid rows go to bronze/flights_rejects."""
    days = partition_days(context)
    store = lake.store()
    known_airports = _known(store, "bronze/airports", "faa")
    known_carriers = _known(store, "bronze/airlines", "carrier")
    batch = ingest_days(
        landing.zone(),
        FLIGHTS_LANDING,
        days,
        lambda frame: validate_flights(frame, known_airports, known_carriers),
    )
    return _write_daily(
        context,
        store,
        "bronze/flights",
        batch,
        "flight_date",
        days,
        BRONZE_FLIGHTS_SCHEMA,
        FLIGHT_KEY,
    )


@dg.asset(
    key=["bronze", "weather"],
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[airports],
    check_specs=_checks("bronze/weather"),
    kinds={"delta", "polars"},
    op_tags=k8s_step_tags(INGESTION),
)
def weather(context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingResource):
    """Hourly weather at the New York airports, by local day; invalid rows go to bronze/weather_rejects."""
    days = partition_days(context)
    store = lake.store()
    known_airports = _known(store, "bronze/airports", "faa")
    batch = ingest_days(
        landing.zone(),
        WEATHER_LANDING,
        days,
        lambda frame: validate_weather(frame, known_airports),
    )
    return _write_daily(
        context,
        store,
        "bronze/weather",
        batch,
        "obs_date",
        days,
        BRONZE_WEATHER_SCHEMA,
        WEATHER_KEY,
    )
