"""The local profile's instance: one SQLite event log for all runs, in the instance's own folder."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage

from devtools.services import instance_yaml


@dg.asset
def tiny() -> int:
    return 1


def test_every_run_writes_to_one_event_log_database_in_the_instance_folder(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, ConsolidatedSqliteEventLogStorage)
        runs = [dg.materialize([tiny], instance=instance).run_id for _ in range(2)]
        assert all(instance.get_run_by_id(r) for r in runs)
        successes = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=10).records
        assert len(successes) == 2
    databases = sorted(p.name for p in tmp_path.rglob("*.db"))
    assert databases == ["event_log.db", "runs.db", "schedules.db"], databases


def test_another_storage_replaces_the_sqlite_sections() -> None:
    postgres = {"postgres": {"postgres_db": {"hostname": "db", "username": "u", "db_name": "d"}}}
    settings = yaml.safe_load(instance_yaml(Path("/instance"), postgres))
    assert settings["storage"] == postgres
    assert not {"run_storage", "event_log_storage", "schedule_storage"} & set(settings)
