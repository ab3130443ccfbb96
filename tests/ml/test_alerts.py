"""Alert messages and their delivery to a real HTTP receiver on 127.0.0.1: retries, and a clear error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devtools.alert_receiver import AlertReceiver, read_alerts
from devtools.processes import free_port
from ml.alerts import (
    MAX_ERROR,
    AlertDeliveryError,
    PartitionSpan,
    SeenFiles,
    StepFailure,
    check_failure_alert,
    describe_url,
    post_alert,
    run_failure_alert,
)

UI = "http://127.0.0.1:3000"
NO_WAIT = {"backoff": 0.0}


def failed_run(**overrides: object) -> dict:
    facts: dict = {
        "job": "daily_ingestion",
        "run_id": "0f3c2a1b-aaaa-bbbb-cccc-000000000000",
        "assets": ["bronze/flights", "bronze/weather"],
        "failed_assets": ["bronze/flights"],
        "partitions": PartitionSpan("2013-01-01", "2013-01-03"),
        "steps": [StepFailure("bronze__flights", "landing file /l/flights/2013-01-02.csv does not exist")],
        "run_error": "Execution of run for daily_ingestion failed.",
    }
    return run_failure_alert(UI, **{**facts, **overrides}).payload()


def test_a_run_failure_reads_like_dagster_slack_and_carries_its_facts_as_fields() -> None:
    payload = failed_run()
    assert payload["text"].startswith(
        'Job "daily_ingestion" failed! `0f3c2a1b`\nError: bronze__flights: landing'
    )
    platform = payload["platform"]
    assert platform["kind"] == "run_failure"
    assert platform["asset"] == "bronze/flights"
    assert platform["assets"] == ["bronze/flights", "bronze/weather"]
    assert platform["partitions"] == {"first": "2013-01-01", "last": "2013-01-03"}
    assert platform["url"] == f"{UI}/runs/0f3c2a1b-aaaa-bbbb-cccc-000000000000"
    assert "Partition: 2013-01-01..2013-01-03" in payload["text"]
    button = payload["blocks"][-1]["elements"][0]
    assert (button["text"]["text"], button["url"]) == ("View in Dagster UI", platform["url"])
    json.dumps(payload)  # the body is JSON as it is


def test_long_errors_are_shortened_and_a_failed_blocking_check_is_named() -> None:
    payload = failed_run(
        steps=[StepFailure("bronze__flights", "x" * 5000)], failed_checks=["bronze/flights:key_unique"]
    )
    assert len(payload["platform"]["errors"][0]) < MAX_ERROR + 50
    assert payload["platform"]["failed_checks"] == ["bronze/flights:key_unique"]
    assert "Blocking check(s) failed: bronze/flights:key_unique" in payload["text"]


def test_a_runless_check_failure_links_to_the_asset_checks() -> None:
    payload = check_failure_alert(
        UI,
        asset="features/flight_features",
        check="freshness",
        run_id=None,
        partitions=None,
        severity="ERROR",
        description="last update 30 hours ago",
        metadata={"lag_hours": "30"},
    ).payload()
    assert payload["platform"]["url"] == f"{UI}/assets/features/flight_features?view=checks"
    assert payload["platform"]["metadata"] == {"lag_hours": "30"}
    assert payload["platform"]["run_id"] is None


def test_webhook_urls_are_named_without_their_secret_path() -> None:
    assert (
        describe_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/services/…"
    )
    assert describe_url("http://127.0.0.1:8765/alerts") == "http://127.0.0.1:8765/alerts"


def test_an_alert_is_posted_as_json_and_recorded(tmp_path: Path) -> None:
    jsonl = tmp_path / "alerts.jsonl"
    with AlertReceiver(jsonl=jsonl) as receiver:
        post_alert(receiver.url, failed_run())
        assert receiver.wait_for(1, kind="run_failure")[0]["platform"]["job"] == "daily_ingestion"
    assert [a["platform"]["kind"] for a in read_alerts(jsonl)] == ["run_failure"]


def test_a_webhook_in_trouble_is_retried_and_a_refusal_is_not() -> None:
    with AlertReceiver() as receiver:
        receiver.refuse(2, status=503)
        post_alert(receiver.url, failed_run(), attempts=3, **NO_WAIT)
        assert len(receiver.alerts) == 1
        receiver.refuse(1, status=400)
        with pytest.raises(AlertDeliveryError, match=r"after 1 attempt.*HTTP 400"):
            post_alert(receiver.url, failed_run(), attempts=3, **NO_WAIT)
        assert len(receiver.alerts) == 1


def test_the_last_failure_raises_an_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/alerts"
    waits: list[float] = []
    with pytest.raises(
        AlertDeliveryError, match=re.escape(f"{url} did not accept the alert after 3 attempt")
    ):
        post_alert(url, failed_run(), attempts=3, timeout=1, backoff=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0]


def test_seen_files_alert_each_file_once_and_forget_history() -> None:
    now = 1_000_000.0
    first = SeenFiles.parse(None, now)
    assert not first.is_new("old", now - 2 * SeenFiles.LATE)  # before the first tick: history
    assert first.is_new("recent", now - 10)
    seen = first.with_alerted("recent", now - 10).with_alerted("new", now + 5)
    again = SeenFiles.parse(seen.dump(), now + 60)
    assert not again.is_new("recent", now - 10) and not again.is_new("new", now + 5)
    assert again.is_new("late", now + 1)  # written after another but listed later
    later = again.with_alerted("x", now + 3 * SeenFiles.LATE)
    assert set(later.names) == {"x"}  # the cursor stays bounded
