"""`dagster-webserver` and `dagster-daemon` as processes on 127.0.0.1, and the GraphQL calls the UI makes.

Used by `make simulate` and the end-to-end tests: the instance is a DAGSTER_HOME of its
own (SQLite storage unless another storage is given, queued run coordinator), the code
location is the project's `workspace.yaml`, and the platform's data lives under the given
folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import requests
import yaml

from devtools.graphql_queries import (
    BACKFILL_STATUS,
    BACKFILLS,
    DAEMON_HEALTH,
    LAUNCH_BACKFILL,
    LAUNCH_RUN,
    LOCATION_STATUS,
    RUN_STATS,
    RUNS,
    SENSOR_TICKS,
    START_SCHEDULE,
    START_SENSOR,
)
from devtools.processes import POLL_INTERVAL, START_TIMEOUT, free_port, wait_until

PROJECT = Path(__file__).resolve().parents[1]
LOCATION = "flightdelay"
BIN = Path(sys.executable).parent
INSTANCE_TEMPLATE = PROJECT / "orchestration" / "instance" / "local.yaml"
QUICK = {
    # Shorter intervals than a deployment wants, so that simulations and tests move along.
    "run_coordinator": {"config": {"dequeue_interval_seconds": 1}},
    # A run counts as started once its worker process has loaded the code location: seconds
    # on an idle machine, far more on a busy 2-core CI machine, where a 30 s start timeout
    # failed runs that were merely slow. The local profile's 120 s, then: a launch really cut
    # short (its daemon killed mid-launch) is failed after that and retried.
    "run_monitoring": {"start_timeout_seconds": 120, "poll_interval_seconds": 5},
    # Dagster's default (180 s) for a code server to load the definitions, with room for load.
    "code_servers": {"local_startup_timeout": 300},
}
# Deadline of a run or a backfill reaching a final status on a busy 2-core machine; the
# other deadlines and the polling live in devtools.processes.
RUN_TIMEOUT = 480.0  # a run or a backfill reaching a final status
FINAL_RUN_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
FINAL_BACKFILL_STATUSES = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


class GraphQLError(RuntimeError):
    """The webserver answered a GraphQL request with errors."""


T = TypeVar("T")


def selector(**names: Any) -> dict[str, Any]:
    """A GraphQL selector of a job, sensor or schedule (`jobName=...`) in this code location."""
    return {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", **names}


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


@dataclass
class DagsterServices:
    home: Path
    data: Path
    port: int
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    left_running: list[int] = field(default_factory=list)
    """Process groups of services stopped alone (`group=False`): their code servers and runs,
    stopped when the services are."""

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
            self.left_running.append(process.pid)
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def wait_until_up(self, timeout: float = START_TIMEOUT) -> None:
        """Until the webserver answers and its code location has loaded (a load error raises at once)."""
        log = self.logs / "webserver.log"

        def locations() -> list[dict[str, Any]]:
            process = self.processes["webserver"]
            if process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {process.returncode}: see {log}")
            requests.get(f"{self.url}/server_info", timeout=10).raise_for_status()
            entries = self.graphql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
            for entry in entries:
                error = entry.get("locationOrLoadError") or {}
                if entry["loadStatus"] == "LOADED" and error.get("__typename") == "PythonError":
                    raise RuntimeError(f"code location {entry['name']} failed to load: {error['message']}")
            return entries

        self.poll(
            locations,
            lambda entries: entries and all(e["loadStatus"] == "LOADED" for e in entries),
            what=f"dagster-webserver on {self.url} with its code location loaded",
            timeout=timeout,
        )

    def wait_for_daemon(self, since: float, timeout: float = START_TIMEOUT) -> None:
        """Until every daemon the instance requires has sent a heartbeat after `since` (a time.time())."""

        def behind() -> list[str]:
            process = self.processes["daemon"]
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited with {process.returncode}: see {self.logs}")
            statuses = self.graphql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return [
                f"{s['daemonType']} (last heartbeat {s['lastHeartbeatTime']})"
                for s in statuses
                if s["required"] and (s["lastHeartbeatTime"] or 0) < since
            ]

        self.poll(
            behind,
            lambda waiting: not waiting,
            what=f"a heartbeat of every required daemon after {since:.0f}",
            timeout=timeout,
            show=lambda waiting: "no heartbeat yet from " + ", ".join(waiting),
        )

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        answer.raise_for_status()
        body = answer.json()
        if body.get("errors"):
            raise GraphQLError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def poll(
        self,
        observe: Callable[[], T],
        done: Callable[[T], object] = bool,
        *,
        what: str,
        timeout: float = RUN_TIMEOUT,
        interval: float = POLL_INTERVAL,
        show: Callable[[T], str] = repr,
    ) -> T:
        """`wait_until` over GraphQL calls: a late or failed answer of the busy webserver is "not yet"."""
        return wait_until(
            observe,
            done,
            what=f"{what} (logs in {self.logs})",
            timeout=timeout,
            interval=interval,
            retry_on=(requests.RequestException, GraphQLError),
            show=show,
        )

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

    def wait_for_backfill(self, backfill_id: str, timeout: float = RUN_TIMEOUT) -> str:
        """The backfill's final status, once it has one."""
        return self.poll(
            lambda: self.backfill_status(backfill_id),
            lambda status: status in FINAL_BACKFILL_STATUSES,
            what=f"backfill {backfill_id} to end",
            timeout=timeout,
            interval=1,
        )

    def backfills(self) -> list[dict[str, Any]]:
        """The newest backfills (automation emits ranges as backfills too), each with its status."""
        return list(self.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"])

    def backfill_ids(self) -> list[str]:
        data = self.graphql(BACKFILLS)["partitionBackfillsOrError"]
        return [str(b["id"]) for b in data["results"]]

    def launch_run(self, job: str, tags: dict[str, str]) -> str:
        params = {
            "selector": selector(jobName=job),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            "runConfigData": {},
        }
        data = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"run of {job} was not launched: {data}")
        return str(data["run"]["runId"])

    def run_stats(self, run_id: str) -> dict[str, Any]:
        return self.graphql(RUN_STATS, {"id": run_id})["runOrError"]

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The run's statistics, once it has a final status."""
        return self.poll(
            lambda: self.run_stats(run_id),
            lambda stats: stats.get("status") in FINAL_RUN_STATUSES,
            what=f"run {run_id} to end",
            timeout=timeout,
        )

    def start_sensor(self, name: str) -> None:
        self._start(START_SENSOR, "startSensor", {"sensorName": name}, "Sensor")

    def start_schedule(self, name: str) -> None:
        self._start(START_SCHEDULE, "startSchedule", {"scheduleName": name}, "ScheduleStateResult")

    def _start(self, mutation: str, field: str, name: dict[str, str], started: str) -> None:
        """Turn a sensor or schedule on, as the UI's toggle does."""
        data = self.graphql(mutation, {"selector": selector(**name)})[field]
        if data["__typename"] != started:
            raise RuntimeError(f"{field} {next(iter(name.values()))} did not start: {data}")

    def runs(self) -> list[dict[str, Any]]:
        return self.graphql(RUNS)["runsOrError"]["results"]

    def sensor_ticks(self, name: str, after: float | None = None) -> list[dict[str, Any]]:
        """The sensor's ticks (id, status, timestamp) that began after `after`, newest first."""
        data = self.graphql(SENSOR_TICKS, {"selector": selector(sensorName=name), "after": after})[
            "sensorOrError"
        ]
        if data["__typename"] != "Sensor":
            raise RuntimeError(f"sensor {name} not found: {data}")
        return data["sensorState"]["ticks"]


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
    port = free_port()
    env = {
        **os.environ,
        "PLATFORM_UI_URL": f"http://127.0.0.1:{port}",  # the links of alerts point at this webserver
        "DAGSTER_HOME": str(home),
        "PLATFORM_DATA_DIR": str(data),
        "PLATFORM_REPO_ROOT": str(PROJECT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    services = DagsterServices(home, data, port, env, logs)
    # Create the instance's storage once, here: two processes initializing a new SQLite
    # instance at the same moment can stamp its schema version twice.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    try:
        services.start("webserver")
        services.wait_until_up()
        started = time.time()
        services.start("daemon")
        services.wait_for_daemon(since=started)
        yield services
    finally:
        for name in list(services.processes):
            services.stop(name)
        for group in services.left_running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
