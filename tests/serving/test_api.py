"""The server's contract: tokens, validation answers that name the field, limits, probes, metrics, reload."""

from __future__ import annotations

import datetime as dt

import pytest
from starlette.testclient import TestClient

from serving.app import create_app, create_metrics_app
from serving.config import ConfigError, ServingConfig
from tests.conftest import ADMIN_TOKEN, LAST_DAY, MAX_BATCH, TOKEN, Served, bearer


def flight(**changes: object) -> dict:
    departure = dt.datetime.combine(LAST_DAY, dt.time(8, 30), tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    return {
        "carrier": "UA",
        "origin": "EWR",
        "dest": "ORD",
        "scheduled_departure": departure.isoformat(),
        "tailnum": "N14228",
        "distance": 719,
        **changes,
    }


def fields(answer) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["field"] for e in answer.json()["errors"]]


def test_predict_answers_a_probability_and_the_version_per_flight(client: TestClient, served: Served) -> None:
    answer = client.post("/v1/predict", json={"flights": [flight(), flight(carrier="B6")]}, headers=bearer())
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["model_version"] for p in predictions] == [served.champion.version] * 2
    assert all(0.0 < p["delay_probability"] < 1.0 for p in predictions)
    assert predictions[0]["delay_probability"] != predictions[1]["delay_probability"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer("wrong"), 401), ({"Authorization": TOKEN}, 401), (bearer(ADMIN_TOKEN), 403)],
)
def test_predict_and_model_need_the_client_token(client: TestClient, headers: dict, status: int) -> None:
    for answer in (
        client.post("/v1/predict", json={"flights": [flight()]}, headers=headers),
        client.get("/v1/model", headers=headers),
    ):
        assert answer.status_code == status
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
        assert fields(answer) == ["Authorization"]


def test_reload_needs_the_admin_token_and_the_client_token_is_refused(client: TestClient) -> None:
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers=bearer(TOKEN)).status_code == 403
    answer = client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "unchanged"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"distance": "719"}, "flights[0].distance"),
        ({"distance": 719.5}, "flights[0].distance"),
        ({"distance": 0}, "flights[0].distance"),
        ({"distance": 20_000}, "flights[0].distance"),
        ({"carrier": "united"}, "flights[0].carrier"),
        ({"origin": 7}, "flights[0].origin"),
        ({"dest": None}, "flights[0].dest"),
        ({"scheduled_departure": "2013-01-14T08:30:00"}, "flights[0].scheduled_departure"),
        ({"scheduled_departure": 1358170200}, "flights[0].scheduled_departure"),
        ({"scheduled_departure": "yesterday"}, "flights[0].scheduled_departure"),
        ({"tailnum": "N 1"}, "flights[0].tailnum"),
        ({"seats": 200}, "flights[0].seats"),
        ({"dest": "EWR"}, "flights[0].dest"),
    ],
)
def test_an_invalid_flight_is_refused_with_422_naming_the_field(
    client: TestClient, changes: dict, field: str
) -> None:
    answer = client.post("/v1/predict", json={"flights": [flight(), flight(**changes)]}, headers=bearer())
    assert answer.status_code == 422, answer.text
    assert fields(answer) == [field.replace("[0]", "[1]")]


def test_a_missing_field_and_an_empty_batch_are_named(client: TestClient) -> None:
    incomplete = flight()
    del incomplete["distance"]
    answer = client.post("/v1/predict", json={"flights": [incomplete]}, headers=bearer())
    assert (answer.status_code, fields(answer)) == (422, ["flights[0].distance"])
    answer = client.post("/v1/predict", json={"flights": []}, headers=bearer())
    assert (answer.status_code, fields(answer)) == (422, ["flights"])
    answer = client.post(
        "/v1/predict", content=b"{not json", headers={**bearer(), "Content-Type": "application/json"}
    )
    assert (answer.status_code, fields(answer)) == (422, ["body"])


def test_departures_outside_the_served_days_are_refused(client: TestClient) -> None:
    early = flight(scheduled_departure="2012-01-02T08:00:00Z")
    late = flight(
        scheduled_departure=(
            dt.datetime.combine(LAST_DAY, dt.time(12), dt.UTC) + dt.timedelta(days=9)
        ).isoformat()
    )
    answer = client.post("/v1/predict", json={"flights": [flight(), early, late]}, headers=bearer())
    assert answer.status_code == 422
    assert fields(answer) == ["flights[1].scheduled_departure", "flights[2].scheduled_departure"]
    assert "outside the served days" in answer.json()["errors"][0]["message"]


def test_batch_and_body_limits_answer_413(served: Served) -> None:
    with TestClient(create_app(served.config(max_body_bytes=4096))) as small:
        answer = small.post("/v1/predict", json={"flights": [flight()] * 40}, headers=bearer())
        assert (answer.status_code, fields(answer)) == (413, ["body"])
    with TestClient(create_app(served.config())) as client:
        answer = client.post("/v1/predict", json={"flights": [flight()] * (MAX_BATCH + 1)}, headers=bearer())
        assert (answer.status_code, fields(answer)) == (413, ["flights"])
        assert f"at most {MAX_BATCH}" in answer.json()["errors"][0]["message"]
        answer = client.post(
            "/v1/predict", content=b"flights", headers={**bearer(), "Content-Type": "text/plain"}
        )
        assert (answer.status_code, fields(answer)) == (415, ["Content-Type"])


def test_model_info_probes_and_metrics(client: TestClient, served: Served) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model_version": served.champion.version}
    info = client.get("/v1/model", headers=bearer()).json()
    assert info["model_version"] == served.champion.version
    assert info["snapshot"]["last_day"] == LAST_DAY.isoformat()
    assert info["served_days"]["last"] == (LAST_DAY + dt.timedelta(days=7)).isoformat()
    client.post("/v1/predict", json={"flights": [flight()] * 3}, headers=bearer())
    client.post("/v1/predict", json={"flights": [flight(distance=-1)]}, headers=bearer())
    assert client.get("/metrics").status_code == 404  # on the metrics port only
    with TestClient(create_metrics_app(client.app)) as scrape:  # type: ignore[arg-type]
        text = scrape.get("/metrics").text
    version = served.champion.version
    assert f'serving_predictions_total{{model_version="{version}"}} 3.0' in text
    assert 'serving_requests_total{endpoint="predict",status="200"} 1.0' in text
    assert 'serving_requests_total{endpoint="predict",status="422"} 1.0' in text
    assert f"serving_model_version {float(version)}" in text
    assert 'serving_reloads_total{outcome="swapped",trigger="start"} 1.0' in text


def test_without_a_champion_the_server_is_alive_but_not_ready(served: Served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(served.config(lake_uri=str(tmp_path / "empty-lake")))) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer()).status_code == 503
        answer = client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN))
        assert (answer.status_code, answer.json()["outcome"]) == (503, "not_ready")


def test_the_server_refuses_to_start_without_two_distinct_tokens(served: Served) -> None:
    with pytest.raises(ConfigError, match="PLATFORM_SERVING_TOKEN"):
        ServingConfig.from_env({"PLATFORM_SERVING_ADMIN_TOKEN": "a"})
    with pytest.raises(ConfigError, match="must differ"):
        ServingConfig.from_env({"PLATFORM_SERVING_TOKEN": "same", "PLATFORM_SERVING_ADMIN_TOKEN": "same"})
    tokens = {"PLATFORM_SERVING_TOKEN": "client-secret", "PLATFORM_SERVING_ADMIN_TOKEN": "admin-secret"}
    config = ServingConfig.from_env({**tokens, "PLATFORM_SERVING_MAX_BATCH": "50"})
    assert (config.max_batch, config.host) == (50, "127.0.0.1")
    assert "secret" not in repr(config)
    with pytest.raises(ConfigError, match="PLATFORM_SERVING_MAX_BATCH"):
        ServingConfig.from_env({**tokens, "PLATFORM_SERVING_MAX_BATCH": "1.5"})
