"""Alert sensors: failed runs, failed ERROR checks and quarantined landing files reach the operator.

Each sensor is on by default and, with no webhook configured, only logs what it would
send. A cursor moves past an alert only once the webhook accepted it, so alerts that
could not be delivered are sent on a later tick, in order; history from before a
sensor's first tick is not alerted.

Failed runs are read from the instance's run-failure records by a plain sensor rather
than `dg.run_failure_sensor`: that one moves its own cursor past a run even when its
function raised, which would drop an alert whose delivery failed.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from assets.partitions import RANGE_END, RANGE_START
from ml.alerts import (
    Alert,
    PartitionSpan,
    SeenFiles,
    StepFailure,
    check_failure_alert,
    quarantine_alert,
    run_failure_alert,
)
from ml.ingest.landing_zone import DAY_FILE, LandingZone, QuarantineEntry
from resources import AlertsResource, LandingResource

INTERVAL = 15
TICK_BUDGET = 30.0
"""Seconds a tick spends delivering before it leaves the rest to the next (a sensor times out at 60)."""
RUNS_PER_TICK, CHECKS_PER_TICK = 25, 200
DAGSTER_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")

T = TypeVar("T")


def deliver_in_order(
    items: Iterable[tuple[T, Alert | None]],
    start: T,
    alerts: AlertsResource,
    log: dg.DagsterLogManager,
) -> tuple[T, int]:
    """Deliver each item's alert in order; the position returned is the last one fully handled."""
    position, sent, began = start, 0, time.monotonic()
    for at, alert in items:
        if alert is not None:
            if time.monotonic() - began > TICK_BUDGET or not alerts.deliver(alert, log):
                break
            sent += 1
        position = at
    return position, sent


def run_partitions(run: dg.DagsterRun | None) -> PartitionSpan | None:
    if run is None:
        return None
    key = run.tags.get("dagster/partition")
    if key:
        return PartitionSpan(key, key)
    first, last = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
    return PartitionSpan(first, last) if first and last else None


def error_message(error: SerializableErrorInfo | None) -> str:
    """The first message of an error chain that is not Dagster's wrapper around the user's error."""
    while error is not None and error.cls_name in DAGSTER_WRAPPERS and error.cause is not None:
        error = error.cause
    return error.message if error is not None else ""


# --- failed runs ------------------------------------------------------------------------------


def _same_location(run: dg.DagsterRun, context: dg.SensorEvaluationContext) -> bool:
    run_location = run.remote_job_origin.location_name if run.remote_job_origin else None
    origin = context.code_location_origin
    return run_location == (origin.location_name if origin else None)


def _planned_assets(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Step key -> the assets it was to materialize (a range run plans each asset once per partition)."""
    by_step: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        key = entry.dagster_event.asset_key if entry.dagster_event else None
        assets = by_step.setdefault(entry.step_key or "", [])
        if key is not None and key.to_user_string() not in assets:
            assets.append(key.to_user_string())
    return by_step


def step_failures(instance: dg.DagsterInstance, run_id: str) -> list[StepFailure]:
    """Each failed step of the run with the user's error (Dagster's wrappers unwrapped)."""
    failures = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        failures.append(StepFailure(entry.step_key or "", error_message(data.error if data else None)))
    return failures


def _failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """`asset:check` of each blocking ERROR check that failed in the run (and so failed its step)."""
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if (
            isinstance(evaluation, dg.AssetCheckEvaluation)
            and not evaluation.passed
            and evaluation.blocking
            and evaluation.severity == dg.AssetCheckSeverity.ERROR
        ):
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return failed


def failed_run_alert(
    instance: dg.DagsterInstance, run: dg.DagsterRun, failure: dg.EventLogEntry, ui_url: str
) -> Alert:
    planned = _planned_assets(instance, run.run_id)
    steps = step_failures(instance, run.run_id)
    event = failure.dagster_event
    run_error = event.message if event is not None and event.message else failure.user_message
    job_error = getattr(event.event_specific_data, "error", None) if event is not None else None
    if isinstance(job_error, SerializableErrorInfo):
        run_error = f"{run_error}\n{error_message(job_error)}"
    selected = sorted(key.to_user_string() for key in run.asset_selection or ())
    return run_failure_alert(
        ui_url,
        job=run.job_name,
        run_id=run.run_id,
        assets=[*selected, *(a for assets in planned.values() for a in assets)],
        failed_assets=[a for s in steps for a in planned.get(s.step, [])],
        partitions=run_partitions(run),
        steps=steps,
        run_error=run_error,
        failed_checks=_failed_blocking_checks(instance, run.run_id),
    )


@dg.sensor(
    name="run_failure_alerts",
    minimum_interval_seconds=INTERVAL,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts every failed run of this code location: job, run, partitions, assets, errors.",
)
def run_failure_alerts(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SensorResult:
    instance = context.instance
    failure = dg.DagsterEventType.RUN_FAILURE
    if context.cursor is None:
        latest = instance.fetch_run_status_changes(failure, limit=1).records
        start = latest[0].storage_id if latest else -1
        return dg.SensorResult(cursor=str(start), skip_reason=f"first tick: watching failures after {start}")
    records = instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(failure, after_storage_id=int(context.cursor)),
        limit=RUNS_PER_TICK,
        ascending=True,
    ).records

    def items() -> Iterator[tuple[int, Alert | None]]:
        for record in records:
            run = instance.get_run_by_id(record.event_log_entry.run_id)
            if run is None or not _same_location(run, context):
                yield record.storage_id, None
            else:
                yield (
                    record.storage_id,
                    failed_run_alert(instance, run, record.event_log_entry, alerts.ui_url),
                )

    position, sent = deliver_in_order(items(), int(context.cursor), alerts, context.log)
    return dg.SensorResult(cursor=str(position), skip_reason=None if sent else "no failed run to alert")


# --- failed checks ----------------------------------------------------------------------------


def _metadata_text(value: dg.MetadataValue) -> str:
    raw = value.value
    return json.dumps(raw, default=str) if isinstance(raw, dict | list) else str(raw)


def failed_check_alert(instance: dg.DagsterInstance, entry: dg.EventLogEntry, ui_url: str) -> Alert | None:
    """An alert for a failed ERROR check (freshness included); None for a pass or a WARN failure."""
    evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
    if (
        not isinstance(evaluation, dg.AssetCheckEvaluation)
        or evaluation.passed
        or evaluation.severity != dg.AssetCheckSeverity.ERROR
    ):
        return None
    run = instance.get_run_by_id(entry.run_id) if entry.run_id else None
    partition = evaluation.partition
    return check_failure_alert(
        ui_url,
        asset=evaluation.asset_key.to_user_string(),
        check=evaluation.check_name,
        run_id=entry.run_id or None,
        partitions=PartitionSpan(partition, partition) if partition else run_partitions(run),
        severity=evaluation.severity.value,
        description=evaluation.description or "",
        metadata={name: _metadata_text(value) for name, value in evaluation.metadata.items()},
    )


@dg.sensor(
    name="check_failure_alerts",
    minimum_interval_seconds=INTERVAL,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts every failed asset check of ERROR severity (freshness included); WARN is no alert.",
)
def check_failure_alerts(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SensorResult:
    """Every new failed check evaluation of severity ERROR, whatever the check (a freshness check too).

    A WARN-severity failure is not an alert: it is shown in the UI only. A check that
    raised instead of evaluating fails its step, which the run-failure alert reports.
    """
    storage = context.instance.event_log_storage
    if context.cursor is None:
        start = storage.get_maximum_record_id() or -1
        return dg.SensorResult(cursor=str(start), skip_reason=f"first tick: watching checks after {start}")
    entries = storage.get_logs_for_all_runs_by_log_id(
        after_cursor=int(context.cursor),
        dagster_event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        limit=CHECKS_PER_TICK,
    )
    items = (
        (storage_id, failed_check_alert(context.instance, entry, alerts.ui_url))
        for storage_id, entry in sorted(entries.items())
    )
    position, sent = deliver_in_order(items, int(context.cursor), alerts, context.log)
    return dg.SensorResult(cursor=str(position), skip_reason=None if sent else "no failed ERROR check")


# --- quarantined landing files ----------------------------------------------------------------


def quarantine_asset(entry: QuarantineEntry) -> str:
    """The bronze table a quarantined file was meant for: `bronze/flights`, or `bronze/planes` for reference files."""
    if entry.dataset == "reference":
        return f"bronze/{entry.destination.rsplit('/', 1)[-1].split('.', 1)[0]}"
    return f"bronze/{entry.dataset}"


def quarantining_run(instance: dg.DagsterInstance, asset: str, source: str, at: float) -> str | None:
    """The run that was ingesting the file when it was quarantined; None for a landing scan's.

    A run reads only `reference/<name>.csv` or the day files `<dataset>/<YYYY-MM-DD>.csv`
    of its partitions, so any other name (a duplicate delivery, a stray file) was moved
    by a scan, and a day file only by a run of the asset whose partitions hold that day.
    """
    folder, _, name = source.rpartition("/")
    match = DAY_FILE.match(name)
    day = match.group(1) if match else None
    if day is None and not folder.endswith("/reference"):
        return None
    created_before = dt.datetime.fromtimestamp(at + 1, dt.UTC)
    key = dg.AssetKey.from_user_string(asset)
    for record in instance.get_run_records(dg.RunsFilter(created_before=created_before), limit=25):
        run = record.dagster_run
        if record.start_time is None or record.start_time > at + 1:
            continue
        if record.end_time is not None and record.end_time < at - 1:
            continue
        if run.asset_selection and key not in run.asset_selection:
            continue
        span = run_partitions(run)
        if day is not None and (span is None or not span.first <= day <= span.last):
            continue
        return run.run_id
    return None


def quarantined_file_alert(
    instance: dg.DagsterInstance, zone: LandingZone, entry: QuarantineEntry, at: float, ui_url: str
) -> Alert:
    note = zone.quarantine_note(entry)
    asset, source = quarantine_asset(entry), str(note.get("source", ""))
    return quarantine_alert(
        ui_url,
        asset=asset,
        dataset=entry.dataset,
        day=entry.day.isoformat() if entry.day else None,
        source=source,
        destination=entry.destination,
        reason=str(note.get("reason", "")),
        run_id=quarantining_run(instance, asset, source, at),
    )


@dg.sensor(
    name="quarantine_alerts",
    minimum_interval_seconds=INTERVAL,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts every file moved to the quarantine, by a landing scan or an ingestion run, once.",
)
def quarantine_alerts(
    context: dg.SensorEvaluationContext, landing: LandingResource, alerts: AlertsResource
) -> dg.SensorResult:
    """Each quarantined file once, with its reason; local folders and object stores alike."""
    zone = landing.zone()
    now = time.time()
    seen = SeenFiles.parse(context.cursor, now)

    def items() -> Iterator[tuple[SeenFiles, Alert | None]]:
        state = seen
        for entry in zone.quarantined():
            modified = entry.modified
            if modified is None:
                stamp = str(zone.quarantine_note(entry).get("quarantined_at", ""))
                modified = dt.datetime.fromisoformat(stamp).timestamp() if stamp else now
            if state.is_new(entry.note_uri, modified):
                alert = quarantined_file_alert(context.instance, zone, entry, modified, alerts.ui_url)
                state = state.with_alerted(entry.note_uri, modified)
                yield state, alert

    position, sent = deliver_in_order(items(), seen, alerts, context.log)
    return dg.SensorResult(cursor=position.dump(), skip_reason=None if sent else "no newly quarantined file")


ALERT_SENSORS = [run_failure_alerts, check_failure_alerts, quarantine_alerts]
