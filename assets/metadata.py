"""Metadata every Delta-backed materialization reports, built in one place."""

from __future__ import annotations

import dagster as dg
import polars as pl

from ml.lake.delta import WriteResult
from ml.lineage.chain import Chain
from ml.registry.model_registry import ModelVersion
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


LANDING_ROWS_SHOWN = 800
"""Two bronze tables over a year of days fit; a longer window is cut (`python -m ml.lineage` prints all)."""


def lineage_metadata(model: ModelVersion, chain: Chain) -> dict[str, object]:
    """A model's chain down to its landing files, as the UI shows it on the model's materialization."""
    source = model.lineage.get("source", {})
    return {
        "git_commit": source.get("commit", model.git_commit),
        "source_dirty": bool(source.get("dirty", False)),
        "source_changes": dg.MetadataValue.json(source.get("changed", [])),
        "registered_by_run": model.lineage.get("run_id", ""),
        "feature_table_version": model.feature_table_version,
        "bronze_versions": dg.MetadataValue.json(model.lineage.get("bronze_versions", {})),
        "lineage_complete": chain.ok,
        "lineage": dg.MetadataValue.md(markdown_table(chain.links_frame(), max_rows=50)),
        "landing_files": dg.MetadataValue.md(markdown_table(chain.landing_frame(), LANDING_ROWS_SHOWN)),
    }
