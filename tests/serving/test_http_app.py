"""The API's HTTP contract in-process: JSON for every error, request ids, model versions, the OpenAPI document."""

from __future__ import annotations

import copy
import logging
from typing import Any

import jsonschema
import polars as pl
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from ml.lake.tables import PREDICTIONS_TABLE
from serving.app import create_app, create_metrics_app, endpoint
from serving.config import ConfigError, ServingConfig
from serving.openapi import openapi_document
from tests.conftest import ADMIN_TOKEN, MAX_BATCH, Served, bearer
from tests.serving.test_api import flight


def fields(answer: Any) -> list[str]:
    return [e["field"] for e in answer.json()["errors"]]


def test_unknown_routes_and_methods_answer_json_naming_what_is_wrong(client: TestClient) -> None:
    answer = client.get("/v2/predict")
    assert (answer.status_code, fields(answer)) == (404, ["path"])
    assert answer.headers["content-type"] == "application/json"
    answer = client.get("/v1/predict", headers=bearer())
    assert (answer.status_code, fields(answer)) == (405, ["method"])
    assert answer.headers["allow"] == "POST"
    assert client.delete("/healthz").json()["errors"][0]["type"] == "method_not_allowed"
    with TestClient(create_metrics_app(client.app)) as metrics:  # type: ignore[arg-type]
        assert fields(metrics.get("/v1/predict")) == ["path"]
        assert fields(metrics.post("/metrics")) == ["method"]


def test_every_answer_carries_the_clients_request_id_or_a_new_one(client: TestClient) -> None:
    for answer in (
        client.get("/healthz", headers={"X-Request-Id": "trace-42"}),
        client.get("/nowhere", headers={"X-Request-Id": "trace-42"}),
        client.post("/v1/predict", json={"flights": [flight()]}, headers={"X-Request-Id": "trace-42"}),
        client.post("/v1/predict", json={"flights": []}, headers={**bearer(), "X-Request-Id": "trace-42"}),
    ):
        assert answer.headers["x-request-id"] == "trace-42", answer.status_code
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(len(m) == 32 for m in made)
    # An id that is too long or has spaces or non-ASCII characters is replaced, not echoed.
    for unusable in (b"x" * 129, b"two words", "caf\u00e9".encode("latin-1")):
        echoed = client.get("/healthz", headers={"X-Request-Id": unusable}).headers["x-request-id"]
        assert echoed != unusable.decode("latin-1") and len(echoed) == 32


def test_an_answer_a_model_gave_names_its_version(client: TestClient, served: Served) -> None:
    version = str(served.champion.version)
    ok = client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer())
    invalid = client.post("/v1/predict", json={"flights": [flight(distance=0)]}, headers=bearer())
    info = client.get("/v1/model", headers=bearer())
    assert [a.headers.get("x-model-version") for a in (ok, invalid, info)] == [version] * 3
    refused = client.post("/v1/predict", json={"flights": [flight()]})
    assert refused.status_code == 401 and "x-model-version" not in refused.headers
    assert "x-model-version" not in client.get("/healthz").headers


def test_the_request_id_answered_is_the_one_the_prediction_log_records(served: Served) -> None:
    with TestClient(create_app(served.config())) as client:
        answer = client.post(
            "/v1/predict", json={"flights": [flight(), flight(carrier="B6")]}, headers=bearer()
        )
        assert answer.status_code == 200
        request_id = answer.headers["x-request-id"]
    rows = served.platform.store.read(PREDICTIONS_TABLE).filter(pl.col("request_id") == request_id)
    assert rows.height == 2


def test_a_failing_endpoint_answers_a_json_500_and_logs_the_request_id(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    @endpoint("broken")
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = create_app(served.config())
    app.router.routes.append(Route("/broken", broken, methods=["GET"]))
    with caplog.at_level(logging.ERROR, logger="serving"), TestClient(app) as client:
        answer = client.get("/broken", headers={"X-Request-Id": "bug-1"})
    assert answer.status_code == 500 and answer.json()["detail"].startswith("the server failed")
    assert answer.headers["x-request-id"] == "bug-1"
    [record] = [r for r in caplog.records if r.name == "serving"]
    assert "bug-1" in record.getMessage() and "a bug" in (record.exc_text or "")


# --- the OpenAPI document ------------------------------------------------------------------------


def test_the_openapi_document_validates_and_lists_every_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    validate(document)
    served = {
        (route.path, method.lower())
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    listed = {(path, method) for path, item in document["paths"].items() for method in item}
    assert listed == served
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert {"404", "405", "500"} <= set(operation["responses"]), (path, method)
    assert (
        document["components"]["schemas"]["PredictRequest"]["properties"]["flights"]["maxItems"] == MAX_BATCH
    )


def test_the_validator_refuses_a_broken_document(served: Served) -> None:
    document = openapi_document(served.config())
    no_description = copy.deepcopy(document)
    del no_description["paths"]["/v1/predict"]["post"]["responses"]["200"]["description"]
    wrong_place = copy.deepcopy(document)
    wrong_place["paths"]["/v1/predict"]["post"]["parameters"][0]["in"] = "body"  # OpenAPI 2, not 3
    for broken in (no_description, wrong_place):
        with pytest.raises(OpenAPIValidationError):
            validate(broken)


def schema_of(document: dict, path: str, method: str, status: int) -> dict:
    """The documented schema of an answer, resolvable on its own (its `$ref`s point into `components`)."""
    content = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    return {**content["schema"], "components": document["components"]}


def conforms(document: dict, path: str, method: str, answer: Any) -> None:
    jsonschema.validate(
        answer.json(),
        schema_of(document, path, method, answer.status_code),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    for name, header in (
        document["paths"][path][method]["responses"][str(answer.status_code)].get("headers", {}).items()
    ):
        if name in ("X-Request-Id", "X-Model-Version"):
            assert name.lower() in answer.headers, (path, answer.status_code, name)
        assert header["$ref"].startswith("#/components/headers/")


def test_real_answers_conform_to_the_documented_schemas(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    too_many = {"flights": [flight()] * (MAX_BATCH + 1)}
    cases = [
        ("/v1/predict", "post", client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer())),
        (
            "/v1/predict",
            "post",
            client.post("/v1/predict", json={"flights": [flight(distance=0)]}, headers=bearer()),
        ),
        ("/v1/predict", "post", client.post("/v1/predict", json=too_many, headers=bearer())),
        (
            "/v1/predict",
            "post",
            client.post("/v1/predict", content=b"x", headers={**bearer(), "Content-Type": "text/plain"}),
        ),
        ("/v1/predict", "post", client.post("/v1/predict", json={"flights": [flight()]})),
        (
            "/v1/predict",
            "post",
            client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer(ADMIN_TOKEN)),
        ),
        ("/v1/predict", "post", client.get("/v1/predict", headers=bearer())),
        ("/v1/model", "get", client.get("/v1/model", headers=bearer())),
        ("/v1/admin/reload", "post", client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN))),
        ("/healthz", "get", client.get("/healthz")),
        ("/readyz", "get", client.get("/readyz")),
    ]
    statuses = [answer.status_code for _, _, answer in cases]
    assert statuses == [200, 422, 413, 415, 401, 403, 405, 200, 200, 200, 200]
    for path, method, answer in cases:
        conforms(document, path, method, answer)


def test_the_documented_request_is_the_one_the_server_validates(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/PredictRequest", "components": document["components"]}
    jsonschema.validate({"flights": [flight(), flight(flight=1545, tailnum=None)]}, schema)
    for wrong in ({"distance": "719"}, {"carrier": "united"}, {"seats": 200}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"flights": [flight(**wrong)]}, schema)
        assert (
            client.post("/v1/predict", json={"flights": [flight(**wrong)]}, headers=bearer()).status_code
            == 422
        )


def test_the_http_limits_are_settings_with_sane_defaults() -> None:
    tokens = {"PLATFORM_SERVING_TOKEN": "c", "PLATFORM_SERVING_ADMIN_TOKEN": "a"}
    config = ServingConfig.from_env(tokens)
    assert (config.metrics_host, config.metrics_port, config.port) == ("127.0.0.1", 9464, 8080)
    assert config.max_header_bytes == 16 * 1024
    assert (config.header_timeout_seconds, config.body_timeout_seconds, config.keep_alive_seconds) == (
        10,
        30,
        5,
    )
    assert (config.max_concurrency, config.graceful_shutdown_seconds) == (64, 30)
    settings = {
        "METRICS_HOST": "0.0.0.0",
        "METRICS_PORT": "9100",
        "MAX_HEADER_BYTES": "8192",
        "HEADER_TIMEOUT_SECONDS": "2.5",
        "BODY_TIMEOUT_SECONDS": "7",
        "KEEP_ALIVE_SECONDS": "75",
        "MAX_CONCURRENCY": "8",
        "GRACEFUL_SHUTDOWN_SECONDS": "20",
    }
    config = ServingConfig.from_env({**tokens, **{f"PLATFORM_SERVING_{k}": v for k, v in settings.items()}})
    assert (config.metrics_host, config.metrics_port, config.max_header_bytes) == ("0.0.0.0", 9100, 8192)
    assert (config.header_timeout_seconds, config.body_timeout_seconds, config.keep_alive_seconds) == (
        2.5,
        7,
        75,
    )
    assert (config.max_concurrency, config.graceful_shutdown_seconds) == (8, 20)
    for name, value, complaint in (
        ("METRICS_PORT", "8080", "port and metrics_port must differ"),
        ("METRICS_PORT", "70000", "metrics_port must be a TCP port"),
        ("HEADER_TIMEOUT_SECONDS", "0", "header_timeout_seconds must be positive"),
        ("MAX_CONCURRENCY", "0", "max_concurrency must be at least 1"),
        ("MAX_HEADER_BYTES", "16k", "PLATFORM_SERVING_MAX_HEADER_BYTES='16k' is not a number"),
        ("MAX_CONCURRENCY", "2.5", "PLATFORM_SERVING_MAX_CONCURRENCY='2.5' is not a whole number"),
        ("KEEP_ALIVE_SECONDS", "inf", "PLATFORM_SERVING_KEEP_ALIVE_SECONDS='inf' is not a number"),
    ):
        with pytest.raises(ConfigError, match=complaint):
            ServingConfig.from_env({**tokens, f"PLATFORM_SERVING_{name}": value})
