"""The `k8s` profile's Dagster instance on a real PostgreSQL server started by the suite.

`orchestration/instance/k8s.yaml` is checked whole against Dagster's and dagster-k8s's
config schemas; its storage section then runs real materializations (in process, and
through the webserver and daemon), read back through the instance API and straight from
PostgreSQL's tables, so nothing can quietly land in SQLite instead.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData
from dagster_k8s import K8sRunLauncher
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage, PostgresRunStorage

from assets.partitions import range_tags
from devtools.postgres import K8S_INSTANCE, PostgresServer, k8s_storage, local_postgres
from devtools.services import dagster_services
from tests.conftest import ASSETS, Platform, day

BRONZE = ["bronze/flights", "bronze/weather"]
RUN_SUCCEEDED = "SELECT count(*) FROM runs WHERE run_id = %s AND status = 'SUCCESS'"
EVENTS = "SELECT count(*) FROM event_logs WHERE run_id = %s"
EVENTS_OF_TYPE = "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s"
# What the cluster sets for the run launcher; the storage settings come from the server.
LAUNCHER_ENV = {
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": "flightdelay",
    "DAGSTER_K8S_RUN_SERVICE_ACCOUNT": "dagster-run",
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "platform-env",
    "DAGSTER_HOME": "/opt/dagster/dagster_home",
}


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with local_postgres() as running:
        yield running


@pytest.fixture
def pg_env(server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """The server's settings in this process's environment, where `k8s.yaml` reads them."""
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    return server


def k8s_ref(tmp_path: Path) -> InstanceRef:
    shutil.copy(K8S_INSTANCE, tmp_path / "dagster.yaml")
    return InstanceRef.from_dir(str(tmp_path))


def resolved_config(data: ConfigurableClassData) -> tuple[type, Any]:
    """A configurable class of the instance and its config checked against the class's own schema."""
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
    return klass, result


def instance_without_k8s_launcher(home: Path) -> dg.DagsterInstance:
    """The k8s instance with the default run launcher: no Kubernetes API can be reached here."""
    settings = yaml.safe_load(K8S_INSTANCE.read_text())
    del settings["run_launcher"]
    assert settings["storage"] == k8s_storage()
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return dg.DagsterInstance.from_config(str(home))


def count(server: PostgresServer, sql: str, *params: object) -> int:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def test_k8s_yaml_is_a_valid_instance_whose_settings_all_come_from_the_environment(
    tmp_path: Path, pg_env: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = k8s_ref(tmp_path)
    postgres_db = k8s_storage()["postgres"]["postgres_db"]
    assert postgres_db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    settings = {name: value for name, value in postgres_db.items() if name != "scheme"}
    assert all(set(value) == {"env"} for value in settings.values()), postgres_db

    storage_class, storage = resolved_config(ref.storage_data)
    assert storage_class is DagsterPostgresStorage
    assert storage.success, storage.errors
    assert storage.value["postgres_db"]["port"] == pg_env.port
    assert storage.value["postgres_db"]["password"] == pg_env.password

    for name, value in LAUNCHER_ENV.items():
        monkeypatch.setenv(name, value)
    launcher_class, launcher = resolved_config(ref.run_launcher_data)
    assert launcher_class is K8sRunLauncher
    assert launcher.success, launcher.errors
    assert launcher.value["job_namespace"] == "flightdelay"
    assert launcher.value["env_config_maps"] == ["platform-env"]
    assert launcher.value["postgres_password_secret"] == "dagster-postgresql-secret"
    assert "job_image" not in launcher.value  # runs use their code location's image

    coordinator_class, coordinator = resolved_config(ref.run_coordinator_data)
    assert coordinator_class is dg.QueuedRunCoordinator and coordinator.success
    assert ref.settings["run_monitoring"]["enabled"] is True

    monkeypatch.delenv("DAGSTER_K8S_PIPELINE_RUN_NAMESPACE")
    _, missing = resolved_config(ref.run_launcher_data)
    assert not missing.success
    assert "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE" in missing.errors[0].message


def test_a_materialization_on_the_k8s_storage_is_stored_in_postgres(
    tmp_path: Path, replayed_landing: Path, pg_env: PostgresServer
) -> None:
    shutil.copytree(replayed_landing, tmp_path / "data" / "landing")
    platform = Platform(tmp_path / "data")
    platform.reference()
    with instance_without_k8s_launcher(tmp_path / "writer") as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        result = dg.materialize(
            ASSETS,
            selection=BRONZE,
            resources=platform.resources,
            tags=range_tags(day(1), day(2)),
            instance=instance,
        )
    assert result.success

    # A second instance over the same server: what the webserver or another pod would read.
    with instance_without_k8s_launcher(tmp_path / "reader") as reader:
        run = reader.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        events = reader.all_logs(result.run_id)
        for key in BRONZE:
            asset = dg.AssetKey.from_user_string(key)
            assert reader.get_materialized_partitions(asset) == {day(1).isoformat(), day(2).isoformat()}
            latest = reader.get_latest_materialization_event(asset)
            assert latest is not None and latest.run_id == result.run_id
            metadata = latest.asset_materialization.metadata
            assert metadata["delta_version"].value == platform.store.version(key)

    assert count(pg_env, RUN_SUCCEEDED, result.run_id) == 1
    assert count(pg_env, EVENTS, result.run_id) == len(events)
    # two assets, two days each
    assert count(pg_env, EVENTS_OF_TYPE, result.run_id, "ASSET_MATERIALIZATION") == 4
    assert not list(tmp_path.rglob("*.db")), "some instance storage went to SQLite"


@pytest.mark.slow
def test_webserver_and_daemon_run_a_launched_job_on_the_postgres_storage(
    tmp_path: Path, replayed_landing: Path, pg_env: PostgresServer
) -> None:
    data = Platform(tmp_path / "data")
    shutil.copytree(replayed_landing, data.landing_dir)
    data.reference()
    with dagster_services(tmp_path, storage=k8s_storage()) as services:
        run_id = services.launch_run("bronze_ingestion", {"dagster/partition": day(3).isoformat()})
        stats = services.wait_for_run(run_id)
    assert stats["status"] == "SUCCESS", f"run ended {stats['status']}: see {services.logs}"
    assert {s["stepKey"] for s in stats["stepStats"]} == {"bronze__flights", "bronze__weather"}
    assert count(pg_env, RUN_SUCCEEDED, run_id) == 1
    assert count(pg_env, EVENTS_OF_TYPE, run_id, "ASSET_MATERIALIZATION") == 2
    # Queued by the webserver, started by the daemon: both through PostgreSQL.
    assert count(pg_env, EVENTS_OF_TYPE, run_id, "PIPELINE_ENQUEUED") == 1
    assert count(pg_env, EVENTS_OF_TYPE, run_id, "PIPELINE_STARTING") == 1
    assert not list((tmp_path / "dagster_home").rglob("*.db")), "some instance storage went to SQLite"
    flights = data.store.read("bronze/flights")
    assert flights.get_column("flight_date").unique().to_list() == [day(3)]
