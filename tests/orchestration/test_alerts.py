"""The alert sensors on a real instance, real landing folders and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import range_tags
from devtools.alert_receiver import AlertReceiver
from devtools.processes import free_port
from devtools.services import instance_yaml
from ml.ingest.landing_zone import LandingZone
from orchestration.alerts import (
    check_failure_alerts,
    quarantine_alerts,
    quarantining_run,
    run_failure_alerts,
)
from orchestration.definitions import build_definitions
from orchestration.sensors import landing_sensor
from resources import AlertsResource, LandingWatch
from tests.conftest import ASSETS, Platform, day, landing_file

UI = "http://127.0.0.1:3000"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """The local profile's instance (one SQLite event log for all runs) in a folder of its own."""
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


def webhook(receiver: AlertReceiver | None, **fields: object) -> AlertsResource:
    return AlertsResource(webhook_url=receiver.url if receiver else "", ui_url=UI, **fields)  # type: ignore[arg-type]


def tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    cursor: str | None,
    alerts: AlertsResource,
    platform: Platform | None = None,
) -> dg.SensorResult:
    resources: dict[str, object] = {"alerts": alerts}
    if platform is not None:
        resources["landing"] = platform.resources["landing"]
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    return result


# --- failed runs ------------------------------------------------------------------------------


def test_a_failed_bronze_run_is_one_alert_with_its_run_partitions_asset_and_link(
    platform: Platform, instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    alerts = webhook(receiver)
    start = tick(run_failure_alerts, instance, None, alerts)  # the first tick only places the cursor
    missing = landing_file(platform, 2)
    missing.unlink()
    run = dg.materialize(
        ASSETS,
        selection=["bronze/flights"],
        tags=range_tags(day(1), day(3)),
        resources=platform.resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not run.success
    after = tick(run_failure_alerts, instance, start.cursor, alerts)
    [alert] = receiver.alerts
    facts = alert["platform"]
    assert facts["kind"] == "run_failure"
    assert facts["run_id"] == run.run_id
    assert facts["url"] == f"{UI}/runs/{run.run_id}"
    assert facts["asset"] == "bronze/flights"
    assert facts["partitions"] == {"first": "2013-01-01", "last": "2013-01-03"}
    assert (facts["failed_steps"], facts["failed_assets"]) == (["bronze__flights"], ["bronze/flights"])
    assert f"landing file {missing} does not exist" in facts["errors"][0]
    assert run.run_id in alert["text"] and "2013-01-01..2013-01-03" in alert["text"]
    tick(run_failure_alerts, instance, after.cursor, alerts)
    assert len(receiver.alerts) == 1


@dg.asset(
    check_specs=[
        dg.AssetCheckSpec("positive", asset="gauge", blocking=True),
        dg.AssetCheckSpec("advisory", asset="gauge"),
    ]
)
def gauge() -> Iterator[object]:
    """A tiny asset whose blocking ERROR check and WARN check both fail."""
    yield dg.Output(-1)
    yield dg.AssetCheckResult(check_name="positive", passed=False, metadata={"value": -1, "minimum": 0})
    yield dg.AssetCheckResult(check_name="advisory", passed=False, severity=dg.AssetCheckSeverity.WARN)


def test_a_failed_error_check_is_one_alert_a_warn_one_none_and_the_run_names_it(
    instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    alerts = webhook(receiver)
    checks = tick(check_failure_alerts, instance, None, alerts)
    runs = tick(run_failure_alerts, instance, None, alerts)
    run = dg.materialize([gauge], instance=instance, raise_on_error=False)
    assert not run.success
    checks = tick(check_failure_alerts, instance, checks.cursor, alerts)
    [check] = receiver.of_kind("check_failure")
    facts = check["platform"]
    assert (facts["asset"], facts["check"], facts["severity"]) == ("gauge", "positive", "ERROR")
    assert (facts["run_id"], facts["url"]) == (run.run_id, f"{UI}/runs/{run.run_id}")
    assert facts["metadata"] == {"value": "-1", "minimum": "0"}
    tick(run_failure_alerts, instance, runs.cursor, alerts)
    [failed] = receiver.of_kind("run_failure")
    assert failed["platform"]["failed_checks"] == ["gauge:positive"]
    assert "blocking asset check failed" in failed["platform"]["errors"][0]
    tick(check_failure_alerts, instance, checks.cursor, alerts)
    assert len(receiver.of_kind("check_failure")) == 1


def test_a_freshness_check_reported_without_a_run_is_alerted_with_its_partition(
    instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    alerts = webhook(receiver)
    start = tick(check_failure_alerts, instance, None, alerts)
    key = dg.AssetKey(["features", "flight_features"])
    # Dagster stores one runless evaluation per check and partition, hence two partitions.
    for severity, partition in (
        (dg.AssetCheckSeverity.ERROR, "2013-01-05"),
        (dg.AssetCheckSeverity.WARN, "2013-01-06"),
    ):
        evaluation = dg.AssetCheckEvaluation(
            asset_key=key,
            check_name="freshness",
            passed=False,
            severity=severity,
            partition=partition,
            metadata={"lag_hours": 30},
        )
        instance.report_runless_asset_event(evaluation)
    tick(check_failure_alerts, instance, start.cursor, alerts)
    [alert] = receiver.alerts
    facts = alert["platform"]
    assert (facts["check"], facts["run_id"]) == ("freshness", None)
    assert facts["partitions"] == {"first": "2013-01-05", "last": "2013-01-05"}
    assert facts["url"] == f"{UI}/assets/features/flight_features?view=checks"


def test_history_before_the_first_tick_is_not_alerted(
    instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    dg.materialize([gauge], instance=instance, raise_on_error=False)
    alerts = webhook(receiver)
    for sensor in (run_failure_alerts, check_failure_alerts):
        first = tick(sensor, instance, None, alerts)
        tick(sensor, instance, first.cursor, alerts)
    assert receiver.alerts == []


# --- quarantined files ------------------------------------------------------------------------


def scan(platform: Platform) -> None:
    """One landing-sensor tick, which quarantines badly named files."""
    context = dg.build_sensor_context(
        resources={"landing": platform.resources["landing"], "landing_watch": LandingWatch(settle_seconds=0)}
    )
    landing_sensor(context)


def test_a_file_quarantined_by_the_landing_scan_is_alerted_once(
    platform: Platform, instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    copy = platform.landing_dir / "flights" / "2013-01-05.copy.csv"
    copy.write_bytes(landing_file(platform, 5).read_bytes())
    scan(platform)
    alerts = webhook(receiver)
    first = tick(quarantine_alerts, instance, None, alerts, platform)
    [alert] = receiver.alerts
    facts = alert["platform"]
    assert facts["kind"] == "quarantine"
    assert (facts["asset"], facts["dataset"], facts["day"]) == ("bronze/flights", "flights", "2013-01-05")
    assert facts["source"] == str(copy)
    assert facts["destination"] == str(platform.quarantine_dir / "flights" / copy.name)
    assert "duplicate delivery of 2013-01-05" in facts["reason"]
    assert facts["run_id"] is None and facts["url"] == f"{UI}/assets/bronze/flights"
    tick(quarantine_alerts, instance, first.cursor, alerts, platform)
    assert len(receiver.alerts) == 1


def test_a_file_quarantined_by_a_bronze_run_names_the_run(
    platform: Platform, instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    alerts = webhook(receiver)
    start = tick(quarantine_alerts, instance, None, alerts, platform)
    bad = landing_file(platform, 4)
    lines = bad.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    keep = [i for i, name in enumerate(header) if name != "dest"]
    bad.write_text("".join(",".join(line.rstrip("\n").split(",")[i] for i in keep) + "\n" for line in lines))
    run = dg.materialize(
        ASSETS,
        selection=["bronze/flights"],
        tags=range_tags(day(4), day(4)),
        resources=platform.resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not run.success
    tick(quarantine_alerts, instance, start.cursor, alerts, platform)
    [alert] = receiver.alerts
    facts = alert["platform"]
    assert (facts["run_id"], facts["url"]) == (run.run_id, f"{UI}/runs/{run.run_id}")
    assert facts["partitions"] == {"first": "2013-01-04", "last": "2013-01-04"}
    assert "dest" in facts["reason"]
    # While that run ingested 2013-01-04, only that day's file can have been moved by it.
    [entry] = platform.zone.quarantined()
    flights = str(platform.landing_dir / "flights")
    assert (
        quarantining_run(instance, "bronze/flights", f"{flights}/2013-01-04.csv", entry.modified or 0)
        == run.run_id
    )
    for other in ("2013-01-05.csv", "2013-01-04.copy.csv", "notes.csv"):
        assert quarantining_run(instance, "bronze/flights", f"{flights}/{other}", entry.modified or 0) is None


def test_quarantine_listing_covers_every_dataset_oldest_first(tmp_path: Path) -> None:
    zone = LandingZone(str(tmp_path / "landing"), str(tmp_path / "quarantine"))
    assert zone.quarantined() == []  # no quarantine folder yet
    now = dt.datetime.now(dt.UTC)
    for dataset, name in (("weather", "2013-01-09.csv"), ("reference", "planes.csv")):
        path = tmp_path / "landing" / dataset / name
        path.parent.mkdir(parents=True)
        path.write_text("x\n")
        zone.quarantine(str(path), "bad", now=now)
    entries = zone.quarantined()
    assert sorted((e.dataset, e.day) for e in entries) == [
        ("reference", None),
        ("weather", dt.date(2013, 1, 9)),
    ]
    assert {zone.quarantine_note(e)["reason"] for e in entries} == {"bad"}


# --- delivery ---------------------------------------------------------------------------------


def test_an_alert_the_receiver_missed_is_delivered_once_it_is_back(
    platform: Platform, instance: dg.DagsterInstance
) -> None:
    port = free_port()
    alerts = AlertsResource(webhook_url=f"http://127.0.0.1:{port}/alerts", ui_url=UI, attempts=1)
    start = tick(quarantine_alerts, instance, None, alerts, platform)
    (platform.landing_dir / "weather" / "notes.csv").write_text("not a day\n")
    scan(platform)
    down = tick(quarantine_alerts, instance, start.cursor, alerts, platform)
    assert down.cursor == start.cursor
    with AlertReceiver(port=port) as receiver:
        up = tick(quarantine_alerts, instance, down.cursor, alerts, platform)
        tick(quarantine_alerts, instance, up.cursor, alerts, platform)
        [alert] = receiver.alerts
    assert alert["platform"]["dataset"] == "weather" and alert["platform"]["day"] is None


def test_a_failed_delivery_is_logged_as_an_error_naming_the_url(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/alerts"
    alerts = AlertsResource(webhook_url=url, ui_url=UI, attempts=1)
    from ml.alerts import quarantine_alert

    alert = quarantine_alert(
        UI,
        asset="bronze/flights",
        dataset="flights",
        day=None,
        source="a",
        destination="b",
        reason="c",
        run_id=None,
    )
    with caplog.at_level(logging.ERROR, logger="alerts-test"):
        assert alerts.deliver(alert, logging.getLogger("alerts-test")) is False
    assert url in caplog.text and "sent again on the next tick" in caplog.text


def test_without_a_webhook_nothing_is_posted_and_the_sensors_still_advance(
    platform: Platform, instance: dg.DagsterInstance, receiver: AlertReceiver
) -> None:
    off = webhook(None)
    cursors = {
        s.name: tick(s, instance, None, off, platform).cursor
        for s in (run_failure_alerts, check_failure_alerts)
    }
    dg.materialize([gauge], instance=instance, raise_on_error=False)
    (platform.landing_dir / "flights" / "notes.csv").write_text("not a day\n")
    scan(platform)
    for sensor in (run_failure_alerts, check_failure_alerts, quarantine_alerts):
        cursor = cursors.get(sensor.name)
        result = tick(sensor, instance, cursor, off, platform)
        assert result.cursor != cursor
    assert receiver.alerts == []


# --- wiring -----------------------------------------------------------------------------------


def test_the_alert_sensors_are_on_by_default_in_the_code_location() -> None:
    defs = build_definitions({})
    for name in ("run_failure_alerts", "check_failure_alerts", "quarantine_alerts"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds == 15
    assert isinstance(defs.resources["alerts"], AlertsResource)
