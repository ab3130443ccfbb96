"""Metadata every Delta-backed materialization reports, built in one place."""

from __future__ import annotations

import dagster as dg
import polars as pl

from ml.lake.delta import WriteResult
from ml.text_tables import markdown_table


def commit_metadata(context: dg.AssetExecutionContext, label: str) -> dict[str, str]:
    """Stored in the Delta commit, so `history()` answers which run wrote a version."""
    return {
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "dagster_partition": label,
    }


def table_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])


def delta_metadata(result: WriteResult, frame: pl.DataFrame, **extra: object) -> dict[str, object]:
    return {
        "delta_version": result.version,
        "dagster/uri": result.uri,
        "dagster/row_count": result.rows,
        "dagster/column_schema": table_schema(frame),
        "preview": dg.MetadataValue.md(markdown_table(frame)),
        **extra,
    }
