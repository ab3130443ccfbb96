"""`dagster-webserver` and `dagster-daemon` as processes on 127.0.0.1, and the GraphQL calls the UI makes.

Used by `make simulate` and the end-to-end tests: the instance is a DAGSTER_HOME of its
own (SQLite storage unless another storage is given, queued run coordinator), the code
location is the project's `workspace.yaml`, and the platform's data lives under the given
folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import requests
import yaml

PROJECT = Path(__file__).resolve().parents[1]
LOCATION = "flightdelay"
BIN = Path(sys.executable).parent
INSTANCE_TEMPLATE = PROJECT / "orchestration" / "instance" / "local.yaml"
QUICK = {
    # Shorter waits than a deployment wants, so that simulations and tests move along.
    "run_coordinator": {"config": {"dequeue_interval_seconds": 1}},
    "run_monitoring": {"start_timeout_seconds": 30, "poll_interval_seconds": 5},
}


SQLITE_SECTIONS = ("run_storage", "event_log_storage", "schedule_storage")


def instance_yaml(home: Path, storage: Mapping[str, Any] | None = None) -> str:
    """The local profile's instance settings for the instance in `home`, quick waits merged in.

    `storage` replaces the SQLite default (e.g. the `k8s` profile's PostgreSQL section),
    so the same services can be checked against the storage a cluster uses. The folders of
    the SQLite files and compute logs are written out, so that a process without
    DAGSTER_HOME (a test or a benchmark opening the instance by its folder) finds them too.
    """
    settings = yaml.safe_load(INSTANCE_TEMPLATE.read_text())
    settings["compute_logs"].setdefault("config", {})["base_dir"] = str(home / "storage")
    for section in SQLITE_SECTIONS:
        settings[section]["config"]["base_dir"] = str(home)
    if storage is not None:
        for section in SQLITE_SECTIONS:
            del settings[section]
        settings["storage"] = dict(storage)
    for section, values in QUICK.items():
        merged = settings.setdefault(section, {})
        for key, value in values.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return yaml.safe_dump(settings, sort_keys=False)


def terminate(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DagsterServices:
    home: Path
    data: Path
    port: int
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> None:
        commands = {
            "webserver": [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        }
        out = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            commands[name],
            cwd=PROJECT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, name: str, sig: int = signal.SIGTERM, group: bool = True) -> None:
        """Stop a service; with `group=False` only its own process (its code server and runs live on)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        if not group:
            process.send_signal(sig)
            process.wait(timeout=30)
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes["webserver"]
            if process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited: see {self.logs / 'webserver.log'}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    status = self.graphql(LOCATION_STATUS)
                    entries = status["workspaceOrError"]["locationEntries"]
                    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                        return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"dagster-webserver not up after {timeout}s: see {self.logs / 'webserver.log'}")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        answer.raise_for_status()
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_backfill(self, asset_paths: list[list[str]], first: str, last: str) -> str:
        params = {
            "partitionsByAssets": [
                {"assetKey": {"path": path}, "partitions": {"range": {"start": first, "end": last}}}
                for path in asset_paths
            ],
            "title": f"e2e {first}..{last}",
        }
        data = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if data["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill was not launched: {data}")
        return str(data["backfillId"])

    def backfill_status(self, backfill_id: str) -> str:
        data = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return str(data["status"])

    def wait_for_backfill(self, backfill_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.backfill_status(backfill_id)
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                return status
            time.sleep(1)
        raise TimeoutError(f"backfill {backfill_id} still {status} after {timeout}s: see {self.logs}")

    def backfill_ids(self) -> list[str]:
        data = self.graphql(BACKFILLS)["partitionBackfillsOrError"]
        return [str(b["id"]) for b in data["results"]]

    def launch_run(self, job: str, tags: dict[str, str]) -> str:
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": job,
            },
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            "runConfigData": {},
        }
        data = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"run of {job} was not launched: {data}")
        return str(data["run"]["runId"])

    def run_stats(self, run_id: str) -> dict[str, Any]:
        return self.graphql(RUN_STATS, {"id": run_id})["runOrError"]

    def wait_for_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.run_stats(run_id)
            if stats["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return stats
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} not done after {timeout}s")

    def start_sensor(self, name: str) -> None:
        self._start(START_SENSOR, "startSensor", {"sensorName": name}, "Sensor")

    def start_schedule(self, name: str) -> None:
        self._start(START_SCHEDULE, "startSchedule", {"scheduleName": name}, "ScheduleStateResult")

    def _start(self, mutation: str, field: str, name: dict[str, str], started: str) -> None:
        """Turn a sensor or schedule on, as the UI's toggle does."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", **name}
        data = self.graphql(mutation, {"selector": selector})[field]
        if data["__typename"] != started:
            raise RuntimeError(f"{field} {next(iter(name.values()))} did not start: {data}")

    def runs(self) -> list[dict[str, Any]]:
        return self.graphql(RUNS)["runsOrError"]["results"]


LOCATION_STATUS = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }
"""
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { id status } ... on PythonError { message } }
}
"""
BACKFILLS = """
query { partitionBackfillsOrError(limit: 50) { ... on PartitionBackfills { results { id status } } } }
"""
RUNS = """
query {
  runsOrError(limit: 500) {
    ... on Runs { results { runId jobName status startTime endTime tags { key value } assetSelection { path } } }
  }
}
"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN_STATS = """
query Stats($id: ID!) {
  runOrError(runId: $id) {
    ... on Run { runId status startTime endTime creationTime stepStats { stepKey status startTime endTime } }
  }
}
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


@contextmanager
def dagster_services(
    root: Path, extra_env: dict[str, str] | None = None, storage: Mapping[str, Any] | None = None
) -> Iterator[DagsterServices]:
    """Webserver and daemon over a fresh instance under `root`, stopped on exit.

    Settings that `storage` reads from the environment (`env:` entries) must be set in
    this process's environment: the instance is opened here first, and the services
    inherit it.
    """
    home, data, logs = root / "dagster_home", root / "data", root / "logs"
    for folder in (home, data, logs):
        folder.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(home, storage))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PLATFORM_DATA_DIR": str(data),
        "PLATFORM_REPO_ROOT": str(PROJECT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    services = DagsterServices(home, data, free_port(), env, logs)
    # Create the instance's storage once, here: two processes initializing a new SQLite
    # instance at the same moment can stamp its schema version twice.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    try:
        services.start("webserver")
        services.wait_until_up()
        services.start("daemon")
        yield services
    finally:
        for name in list(services.processes):
            services.stop(name)
