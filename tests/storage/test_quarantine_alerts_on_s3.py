"""Quarantine alerts when the landing zone and its quarantine are buckets of an S3-compatible server."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from devtools.alert_receiver import AlertReceiver
from devtools.services import instance_yaml
from orchestration.alerts import quarantine_alerts
from orchestration.profiles import build_resources
from orchestration.sensors import landing_sensor
from resources import AlertsResource, LandingWatch
from tests.storage.conftest import S3Platform


def test_a_file_quarantined_in_a_bucket_is_alerted_once(s3_buckets: S3Platform, tmp_path: Path) -> None:
    p = s3_buckets
    landing = build_resources(p.env)["landing"]
    p.put_object("landing", "landing/flights/notes.csv", b"not a day\n")
    landing_sensor(
        dg.build_sensor_context(
            resources={"landing": landing, "landing_watch": LandingWatch(settle_seconds=0)}
        )
    )
    assert p.keys("quarantine") == [
        "quarantine/flights/notes.csv",
        "quarantine/flights/notes.csv.reason.json",
    ]
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    with AlertReceiver() as receiver, dg.DagsterInstance.from_config(str(home)) as instance:
        resources = {"landing": landing, "alerts": AlertsResource(webhook_url=receiver.url)}
        cursor = None
        for _ in range(2):
            result = quarantine_alerts(
                dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            )
            assert isinstance(result, dg.SensorResult)
            cursor = result.cursor
        [alert] = receiver.alerts
    quarantine = p.env["PLATFORM_QUARANTINE_URI"]
    facts = alert["platform"]
    assert facts["destination"] == f"{quarantine}/flights/notes.csv"
    assert facts["source"] == f"{p.env['PLATFORM_LANDING_URI']}/flights/notes.csv"
    assert (facts["dataset"], facts["reason"]) == ("flights", "file name is not YYYY-MM-DD.csv")
