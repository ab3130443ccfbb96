"""The model a run trained, read from its own `training/candidate_model` materialization.

Evaluation and promotion act on that version, carried through the run's event log, so a
concurrent run's newer candidate is never mistaken for this run's. A re-execution looks in
the runs it re-executes, since its training step may have run in an earlier attempt.
"""

from __future__ import annotations

import dagster as dg

CANDIDATE_KEY = dg.AssetKey(["training", "candidate_model"])
VERSION_FIELD = "registry_version"


def run_candidate_version(context: dg.AssetExecutionContext) -> int | None:
    """`registry_version` of the run's candidate_model materialization; None when the run trained none."""
    instance = context.instance
    run: dg.DagsterRun | None = context.run
    while run is not None:
        version = _candidate_version_in(instance, run.run_id)
        if version is not None:
            return version
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    return None


def _candidate_version_in(instance: dg.DagsterInstance, run_id: str) -> int | None:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in reversed(records):
        materialization = record.event_log_entry.asset_materialization
        if materialization is None or materialization.asset_key != CANDIDATE_KEY:
            continue
        value = materialization.metadata.get(VERSION_FIELD)
        if not isinstance(value, dg.IntMetadataValue) or value.value is None:
            raise dg.Failure(
                f"run {run_id} materialized {CANDIDATE_KEY.to_user_string()} without an integer "
                f"{VERSION_FIELD} in its metadata (found {value!r}); rematerialize it"
            )
        return value.value
    return None
