"""One training at a time, one retrain per trigger: the retraining sensor and schedule against a real instance.

Training runs are made in a test instance in the status under test (queued, started,
finished); the run queue's limit is checked in the local profile's own instance
config, and dequeued by Dagster's queued-run daemon with a launcher that only records.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from devtools.services import INSTANCE_TEMPLATE, PROJECT, instance_yaml
from ml.lake.delta import DeltaStore
from ml.lake.tables import FEATURES_TABLE
from ml.monitoring.signals import raise_signal
from orchestration.definitions import build_definitions
from orchestration.jobs import TRAINING_RUN_TAGS, daily_ingestion_job, training_job
from orchestration.retraining import retrain_sensor, weekly_retraining_schedule
from resources import DvcResource, LakeResource, RetrainPolicy

DAY = dt.date(2013, 1, 10)
NOW = dt.datetime(2013, 1, 11, 7, 30, tzinfo=dt.UTC)
BREACH = {"metric": "psi", "value": 0.3, "threshold": 0.2, "feature": "dep_hour"}
LIMIT = {"key": "platform/concurrency", "value": "training", "limit": 1}
ORIGIN = RemoteRepositoryOrigin(
    code_location_origin=RegisteredCodeLocationOrigin(location_name="flightdelay"),
    repository_name="__repository__",
)


class Lake:
    """Feature days and signals in a local lake, and a training set cut at `DAY` (the new-days rule is not due)."""

    def __init__(self, root: Path) -> None:
        self.store = DeltaStore(str(root / "lake"))
        self.raised = 0
        self.resources = {
            "lake": LakeResource(root=str(root / "lake")),
            "dvc": DvcResource(repo_root=str(root / "repo")),
            "retrain_policy": RetrainPolicy(new_feature_days=7),
        }
        manifest = root / "repo" / "data" / "training_set" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"cutoff": DAY.isoformat()}))
        self.features(DAY)

    def features(self, last: dt.date) -> None:
        days = pl.date_range(dt.date(2013, 1, 1), last, eager=True).alias("flight_date")
        self.store.overwrite(FEATURES_TABLE, days.to_frame(), {})

    def signal(self, key: str, source: str = "monitoring/drift") -> None:
        """Raised a minute after the previous one."""
        self.raised += 1
        now = NOW + dt.timedelta(minutes=self.raised)
        assert raise_signal(self.store, key, source, BREACH, DAY, now, since=DAY)

    def data(self) -> str:
        version = self.store.version(FEATURES_TABLE)
        last = self.store.last_day(FEATURES_TABLE, "flight_date")
        return f"cutoff-{last}:features-v{version}"

    def tick(
        self, instance: dg.DagsterInstance, cursor: str | None = None
    ) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(cursor=cursor, instance=instance, resources=self.resources)
        return retrain_sensor(context)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def run_of(
    instance: dg.DagsterInstance,
    status: dg.DagsterRunStatus,
    job_name: str = training_job.name,
    tags: Mapping[str, str] = TRAINING_RUN_TAGS,
) -> dg.DagsterRun:
    origin = RemoteJobOrigin(repository_origin=ORIGIN, job_name=job_name)
    return create_run_for_test(
        instance, job_name=job_name, status=status, tags=dict(tags), remote_job_origin=origin
    )


def succeed(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    event = dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name)
    instance.report_dagster_event(event, run_id=run.run_id)


def requests(result: dg.SensorResult | dg.SkipReason) -> list[dg.RunRequest]:
    assert isinstance(result, dg.SensorResult), result
    return list(result.run_requests or [])


def test_two_signals_in_one_tick_are_one_request_and_both_handled(
    lake: Lake, instance: dg.DagsterInstance
) -> None:
    assert isinstance(lake.tick(instance), dg.SkipReason)  # no signal, no new day
    lake.signal("monitoring/drift@v1:2013-01-08")
    lake.signal("monitoring/live_performance@v1:2013-01-09", "monitoring/live_performance")
    result = lake.tick(instance)
    (request,) = requests(result)
    assert request.run_key == f"train:{lake.data()}"
    assert request.tags["platform/trigger"] == "drift"
    assert request.tags["platform/training_data"] == lake.data()
    assert request.tags["platform/signals"] == (
        "monitoring/drift@v1:2013-01-08 monitoring/live_performance@v1:2013-01-09"
    )
    assert "2 monitoring signal(s)" in request.tags["platform/reason"]
    assert sorted(json.loads(result.cursor or "[]")) == [
        "monitoring/drift@v1:2013-01-08",
        "monitoring/live_performance@v1:2013-01-09",
    ]
    assert isinstance(lake.tick(instance, result.cursor), dg.SkipReason)  # both handled


def test_the_run_key_is_the_data_it_would_train_on(lake: Lake, instance: dg.DagsterInstance) -> None:
    lake.signal("a")
    first = lake.tick(instance)
    (request,) = requests(first)
    lake.signal("b")  # a later signal over the same data: the same key, so the daemon runs nothing more
    (same,) = requests(lake.tick(instance, first.cursor))  # type: ignore[union-attr]
    assert same.run_key == request.run_key
    lake.features(DAY + dt.timedelta(days=1))
    (new,) = requests(lake.tick(instance, first.cursor))  # type: ignore[union-attr]
    assert new.run_key != request.run_key
    assert new.run_key == f"train:{lake.data()}" and lake.data().startswith("cutoff-2013-01-11:")


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED])
def test_nothing_is_asked_while_a_training_run_is_queued_or_started(
    lake: Lake, instance: dg.DagsterInstance, status: dg.DagsterRunStatus
) -> None:
    lake.signal("monitoring/drift@v1:2013-01-08")
    run_of(instance, dg.DagsterRunStatus.STARTED, daily_ingestion_job.name, {})  # other runs do not count
    training = run_of(instance, status)
    waiting = lake.tick(instance)
    assert isinstance(waiting, dg.SkipReason)
    assert f"a training run is queued or running: {training.run_id} ({status.value})" in (
        waiting.skip_message or ""
    )
    assert "1 signal(s) wait for it" in (waiting.skip_message or "")
    succeed(instance, training)
    (request,) = requests(lake.tick(instance))  # the signal was kept for after it
    assert request.tags["platform/signals"] == "monitoring/drift@v1:2013-01-08"


def test_a_failed_training_about_to_be_retried_is_waited_for(
    lake: Lake, instance: dg.DagsterInstance
) -> None:
    lake.signal("s")
    failed = run_of(
        instance, dg.DagsterRunStatus.FAILURE, tags={**TRAINING_RUN_TAGS, "dagster/will_retry": "true"}
    )
    assert isinstance(lake.tick(instance), dg.SkipReason)
    instance.add_run_tags(failed.run_id, {"dagster/auto_retry_run_id": "retry"})  # the retry is its own run
    assert requests(lake.tick(instance))


def test_the_weekly_schedule_skips_while_a_training_run_is_unfinished(instance: dg.DagsterInstance) -> None:
    schedule = weekly_retraining_schedule()
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW)
    (request,) = schedule.evaluate_tick(context).run_requests or []
    assert request.tags["platform/trigger"] == "schedule"
    training = run_of(instance, dg.DagsterRunStatus.QUEUED)
    skipped = schedule.evaluate_tick(context)
    assert not skipped.run_requests
    assert f"queued or running: {training.run_id} (QUEUED)" in (skipped.skip_message or "")


def test_the_training_job_carries_the_tag_the_instance_limits_to_one_run(tmp_path: Path) -> None:
    job = build_definitions({}).resolve_job_def(training_job.name)
    assert dict(TRAINING_RUN_TAGS).items() <= job.run_tags.items()
    local = yaml.safe_load(INSTANCE_TEMPLATE.read_text())
    k8s = yaml.safe_load((PROJECT / "orchestration" / "instance" / "k8s.yaml").read_text())
    helm = yaml.safe_load((PROJECT / "deploy" / "helm" / "values.yaml").read_text())
    queued = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    # One training at a time everywhere; the backfill pool is 1 run locally, 4 run pods on the cluster.
    pool = {"key": "dagster/backfill"}
    for limits, backfills in (
        (local["run_coordinator"]["config"]["tag_concurrency_limits"], 1),
        (k8s["run_coordinator"]["config"]["tag_concurrency_limits"], 4),
        (queued["tagConcurrencyLimits"], 4),
    ):
        assert limits == [LIMIT, {**pool, "limit": backfills}]
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as loaded:
        assert isinstance(loaded.run_coordinator, dg.QueuedRunCoordinator)
        config = loaded.get_concurrency_config().run_queue_config
        assert config is not None and config.tag_concurrency_limits == [LIMIT, {**pool, "limit": 1}]


def test_the_run_queue_starts_one_training_at_a_time(tmp_path: Path) -> None:
    settings = yaml.safe_load(instance_yaml(tmp_path))
    settings["run_launcher"] = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with (
        dg.DagsterInstance.from_config(str(tmp_path)) as instance,
        create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace,
    ):
        first, second = (
            run_of(instance, dg.DagsterRunStatus.QUEUED),
            run_of(instance, dg.DagsterRunStatus.QUEUED),
        )
        other = run_of(instance, dg.DagsterRunStatus.QUEUED, daily_ingestion_job.name, {})
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

        def dequeue() -> set[str]:
            list(daemon.run_iteration(workspace))
            queued = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
            return {r.run_id for r in queued}

        assert dequeue() == {second.run_id}  # the first training and the other run started
        assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTING  # type: ignore[union-attr]
        assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.STARTING  # type: ignore[union-attr]
        assert dequeue() == {second.run_id}  # still in progress: the second waits
        succeed(instance, instance.get_run_by_id(first.run_id))  # type: ignore[arg-type]
        assert dequeue() == set()
