"""`make simulate`: the platform as it lives in production, on the embedded default.

    python -m devtools.simulate [--days 14] [--interval 8] [--retrain-days 7] [--faults]
                                [--no-serve] [--root .data/simulation]

The webserver and daemon run as processes on 127.0.0.1 over an instance of their own,
with a model server (`python -m serving`) and a webhook receiver for the alerts. One day
of flights and weather lands every `--interval` seconds; from there nothing is called by
hand: the landing sensor requests bronze runs, declarative automation builds the
features, the retraining sensor asks for train -> evaluate -> promote once
`--retrain-days` new feature days are in, the model server picks up each new champion
and answers the next day's flights, and monitoring runs once at the end. `--faults`
follows `devtools.faults.plan`: bad files beside good ones, a corrected day, a duplicate
name, a SIGKILL of the daemon, late good re-deliveries. A timeline is printed as it
happens; the simulation ends by itself once every day that got a good file has its
features and the runs are done (or at `--timeout`), with a summary of runs, failures,
trainings, promotions, alerts and freshness. It exits 1 when a day is missing, a failure
has no explanation (a quarantined file, the promotion gate, or a failed start that was
retried), two trainings overlapped, a candidate was left unevaluated, or a failed run
or a quarantined file has no alert at the receiver.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from devtools import faults
from devtools.alert_receiver import AlertReceiver
from devtools.services import (
    FINAL_BACKFILL_STATUSES,
    FINAL_RUN_STATUSES,
    PROJECT,
    RUN_TIMEOUT,
    DagsterServices,
    dagster_services,
)
from devtools.simulation_report import FEATURES, TRAINING_JOB, Timeline, describe, report, unalerted
from devtools.traffic import ModelServer, model_server, scheduled_flights
from ml.ingest.replay import replay
from ml.lake.delta import DeltaStore
from ml.lake.tables import REGISTRY_MODELS
from ml.registry.dvc_repo import init_pipeline_repo
from ml.registry.model_registry import ModelRegistry
from orchestration.definitions import build_definitions

SENSORS = ("landing_sensor", "features_automation", "retrain_sensor")
FLIGHTS_PER_DAY = 50
"""Flights of the next day the simulated clients ask the model server about, per landed day."""
REPLAYED_DAYS, REPLAYED_FLIGHTS = 7, 150
"""At the end, the clients' requests of the last days again, enough flights a day to be scored."""
SNAPSHOT_TIMEOUT = 180.0
"""How long the end waits for the online snapshot automation publishes once the features rest."""
QUIET_SECONDS = 35.0
"""No run in flight or started for this long (longer than the automation sensor's 30 s tick) ends the watch."""
SETTLE_TIMEOUT = 300.0
ALERT_TIMEOUT = 120.0
"""How long the end waits for the alerts of the last failures (the alert sensors tick every 15 s)."""


def follow(services: DagsterServices, instance: dg.DagsterInstance, timeline: Timeline) -> bool:
    """Print what changed; True while a run or a backfill is queued or in flight."""
    busy = any(b["status"] not in FINAL_BACKFILL_STATUSES for b in services.backfills())
    for run in reversed(services.runs()):
        status = run["status"]
        busy |= status not in FINAL_RUN_STATUSES
        known = timeline.runs.get(run["runId"])
        timeline.runs[run["runId"]] = run
        if known is None or known["status"] != status:
            at = run.get("endTime") if status in FINAL_RUN_STATUSES else run.get("startTime")
            timeline.say(f"run {run['runId'][:8]} {status.lower():9} {describe(run)}", at)
    for record in instance.fetch_materializations(FEATURES, limit=5000).records:
        partition = record.asset_materialization.partition if record.asset_materialization else None
        if not partition:
            continue
        day = dt.date.fromisoformat(partition)
        if day in timeline.landed and day not in timeline.built and record.timestamp >= timeline.landed[day]:
            timeline.built[day] = record.timestamp
            timeline.say(
                f"features of {day} built, {record.timestamp - timeline.landed[day]:.1f}s after it landed"
            )
    return busy


def restart_daemon(services: DagsterServices, timeline: Timeline) -> None:
    timeline.say("SIGKILL to the daemon (its code server and runs live on); starting a new one")
    services.stop("daemon", signal.SIGKILL, group=False)
    restarted = time.time()
    services.start("daemon")
    services.wait_for_daemon(since=restarted)
    timeline.say("the new daemon is heartbeating")


def ask_model_server(server: ModelServer, day: dt.date, timeline: Timeline) -> None:
    """The next day's flights, asked the evening before, once the server has a champion."""
    if not server.ready():
        return
    version = server.predict(scheduled_flights(day + dt.timedelta(days=1), FLIGHTS_PER_DAY))
    if version is None:
        timeline.say(
            f"model server refused the flights of {day + dt.timedelta(days=1)}: {server.last_refusal}"
        )
    else:
        timeline.say(
            f"model server v{version} answered {FLIGHTS_PER_DAY} flights of {day + dt.timedelta(days=1)}"
        )


def simulate(
    root: Path,
    first: dt.date,
    days: int,
    interval: float,
    retrain_days: int,
    timeout: float,
    with_faults: bool = False,
    serve: bool = True,
) -> int:
    shutil.rmtree(root, ignore_errors=True)
    data, repo = root / "data", root / "repo"
    span = max(1, days // 7)
    init_pipeline_repo(
        repo,
        PROJECT,
        root / "dvc-remote",
        {
            "training_set": {"validation_days": span, "test_days": span, "cutoff": ""},
            "train": {"max_epochs": 3},
        },
    )
    steps = faults.plan(first, days, with_faults)
    receiver = AlertReceiver(jsonl=root / "alerts.jsonl").start()
    env = {
        "PLATFORM_DATA_DIR": str(data),
        "PLATFORM_REPO_ROOT": str(repo),
        "PLATFORM_LANDING_SETTLE_SECONDS": "1",
        "PLATFORM_RETRAIN_NEW_DAYS": str(retrain_days),
        "PLATFORM_ALERT_WEBHOOK_URL": receiver.url,
        "PLATFORM_FRESHNESS_INTERVAL_SECONDS": "30",
        "PLATFORM_FRESHNESS_LAG_SECONDS": "600",
    }
    landing, staging = data / "landing", root / "staging"
    replay(landing, first, first, datasets=())  # reference files only
    timeline = Timeline()
    try:
        with dagster_services(root, env) as services:
            timeline.say(f"webserver on {services.url}, daemon running; instance in {services.home}")
            timeline.say(f"alerts go to {receiver.url}")
            instance = dg.DagsterInstance.from_config(str(services.home))
            defs = build_definitions(services.env)
            if not defs.resolve_job_def("reference_data").execute_in_process(instance=instance).success:
                raise SystemExit("reference data could not be materialized")
            for sensor in SENSORS:
                services.start_sensor(sensor)
            timeline.say(
                f"sensors on: {', '.join(SENSORS)} (alerts, freshness and champion sync are on by default)"
            )
            server_env = {**services.env}
            with model_server(root, server_env) if serve else contextlib.nullcontext() as server:
                if server is not None:
                    timeline.say(f"model server on 127.0.0.1:{server.port} (ready once a champion exists)")
                _loop(
                    services,
                    instance,
                    timeline,
                    steps,
                    landing,
                    staging,
                    interval,
                    retrain_days,
                    days,
                    timeout,
                    server,
                )
                if server is not None:
                    _replay_requests(services, instance, timeline, server, sorted(steps.final_days()))
                    _monitor(services, instance, timeline)
                _settle(services, instance, timeline)
                _wait_for_alerts(timeline, receiver, data / "quarantine")
                served = (
                    (server.answered, server.refused, server.last_refusal) if server is not None else None
                )
            return report(timeline, data, instance, receiver, steps, served)
    finally:
        receiver.stop()


def _settle(services: DagsterServices, instance: dg.DagsterInstance, timeline: Timeline) -> None:
    """Wait until no run is in flight and none has started for `QUIET_SECONDS`, before stopping anything.

    Automation may still react to the last runs (the snapshot follows the features); a run it
    starts while the services stop would be killed by the stop and fail without an alert.
    """
    deadline, quiet_since, known = time.time() + SETTLE_TIMEOUT, time.time(), len(timeline.runs)
    while time.time() < deadline:
        busy = follow(services, instance, timeline)
        if busy or len(timeline.runs) != known:
            quiet_since, known = time.time(), len(timeline.runs)
        elif time.time() - quiet_since >= QUIET_SECONDS:
            return
        time.sleep(1)
    timeline.say(f"runs still starting after {SETTLE_TIMEOUT:.0f}s; stopping anyway")


def _loop(
    services: DagsterServices,
    instance: dg.DagsterInstance,
    timeline: Timeline,
    steps: faults.Plan,
    landing: Path,
    staging: Path,
    interval: float,
    retrain_days: int,
    days: int,
    timeout: float,
    server: ModelServer | None,
) -> None:
    """Land the plan's steps on schedule and watch, once a second, until everything is done or the deadline."""
    deadline = time.time() + timeout
    next_drop, done = time.time(), 0
    wanted = steps.final_days()
    pending = ["the first day to land"]
    while time.time() < deadline:
        if done < len(steps.steps) and time.time() >= next_drop and steps.steps[done].ready(landing):
            step, started = steps.steps[done], time.time()
            for item in step.landings:
                faults.land(landing, item, staging)
                if item.good and not item.name and item.change is None and item.dataset == "flights":
                    timeline.landed[item.day] = time.time()
                    timeline.built.pop(item.day, None)
            timeline.say("landed " + "; ".join(item.describe() for item in step.landings))
            if step.kill_daemon:
                restart_daemon(services, timeline)
            if server is not None:
                ask_model_server(server, max(item.day for item in step.landings), timeline)
            done, next_drop = done + 1, max(next_drop, started) + interval
        busy = follow(services, instance, timeline)
        unbuilt = sorted(str(d) for d in wanted & set(timeline.landed) if d not in timeline.built)
        trained = retrain_days == 0 or days < retrain_days or timeline.finished(TRAINING_JOB)
        pending = [
            *([f"{len(steps.steps) - done} step(s) to land"] if done < len(steps.steps) else []),
            *([f"the features of {', '.join(unbuilt)}"] if unbuilt else []),
            *([] if trained else [f"a finished {TRAINING_JOB} run"]),
            *(["the runs in flight to end"] if busy else []),
        ]
        if not pending:
            return
        time.sleep(1)
    timeline.say(f"timed out after {timeout:.0f}s waiting for {'; '.join(pending)}")


def _replay_requests(
    services: DagsterServices,
    instance: dg.DagsterInstance,
    timeline: Timeline,
    server: ModelServer,
    landed: list[dt.date],
) -> None:
    """The last days' requests again, once the server is ready, so monitoring has answers to score.

    Days land every few seconds here, so features runs follow one another and the online
    snapshot (which waits for them to end) is published late; the answers of the run
    itself may be few. Replayed requests are answered by the final champion and snapshot.
    """
    store = DeltaStore(str(services.data / "lake"))
    if not store.exists(REGISTRY_MODELS) or ModelRegistry(store).champion() is None:
        timeline.say("no champion (the gate stopped every candidate): the model server has nothing to serve")
        return
    deadline = time.time() + SNAPSHOT_TIMEOUT
    while not server.ready() and time.time() < deadline:
        follow(services, instance, timeline)
        time.sleep(1)
    if not server.ready():
        timeline.say(f"the model server was not ready within {SNAPSHOT_TIMEOUT:.0f}s: see {server.log}")
        return
    for day in landed[-REPLAYED_DAYS:]:
        version = server.predict(scheduled_flights(day, REPLAYED_FLIGHTS))
        answer = f"answered by v{version}" if version is not None else f"refused: {server.last_refusal}"
        timeline.say(f"replayed {REPLAYED_FLIGHTS} requests of {day}: {answer}")


def _monitor(services: DagsterServices, instance: dg.DagsterInstance, timeline: Timeline) -> None:
    """Monitoring once at the end: drift against the champion's data, live quality from the prediction log."""
    store = DeltaStore(str(services.data / "lake"))
    if not store.exists(REGISTRY_MODELS) or ModelRegistry(store).champion() is None:
        timeline.say("no champion: monitoring skipped")
        return
    run_id = services.launch_run("monitoring", {"platform/trigger": "simulation"})
    run = services.wait_for_run(run_id, timeout=RUN_TIMEOUT)
    timeline.say(f"monitoring run {run_id[:8]} {run['status'].lower()}")
    # A drift breach asks for a retraining: wait for what the sensor starts, one training at most.
    follow(services, instance, timeline)
    deadline = time.time() + RUN_TIMEOUT
    while follow(services, instance, timeline) and time.time() < deadline:
        time.sleep(1)


def _wait_for_alerts(timeline: Timeline, receiver: AlertReceiver, quarantine: Path) -> None:
    """The alert sensors tick every 15 s: give the last failures time to reach the receiver."""
    deadline = time.time() + ALERT_TIMEOUT
    while unalerted(timeline, receiver, quarantine) and time.time() < deadline:
        time.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(".data/simulation"), help="replaced at the start")
    parser.add_argument("--first", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--days", type=int, default=14, help="days to land (bounded: the run ends by itself)")
    parser.add_argument("--interval", type=float, default=8.0, help="seconds between two landing steps")
    parser.add_argument(
        "--retrain-days", type=int, default=7, help="new feature days that trigger retraining (0: off)"
    )
    parser.add_argument("--faults", action="store_true", help="land the fault plan (at least 17 days)")
    parser.add_argument("--no-serve", action="store_true", help="no model server and no monitoring")
    parser.add_argument("--timeout", type=float, default=900.0, help="end here whatever is still running")
    args = parser.parse_args(argv)
    return simulate(
        args.root.resolve(),
        args.first,
        args.days,
        args.interval,
        args.retrain_days,
        args.timeout,
        with_faults=args.faults,
        serve=not args.no_serve,
    )


if __name__ == "__main__":
    sys.exit(main())
