"""A value the model never saw is named in its answer, counted and logged, or refused by configuration."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from starlette.testclient import TestClient

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from serving.app import app_state, create_app
from tests.conftest import Served, bearer
from tests.serving.test_api import flight


def _unknown_count(client: TestClient, field: str) -> float:
    registry = app_state(client.app).metrics.registry  # type: ignore[arg-type]
    return registry.get_sample_value("serving_unknown_values_total", {"field": field}) or 0.0


def test_unknown_carrier_origin_and_plane_are_flagged_counted_and_logged(
    served: Served, tmp_path: Path
) -> None:
    config = served.config(cache_dir=tmp_path / "cache")
    flights = [flight(), flight(carrier="ZZ"), flight(origin="LAX"), flight(tailnum="N0NE")]
    with TestClient(create_app(config)) as client:
        answer = client.post(
            "/v1/predict", json={"flights": flights}, headers={**bearer(), "X-Request-Id": "unknown-values"}
        )
        assert answer.status_code == 200, answer.text
        assert [p["unknown_fields"] for p in answer.json()["predictions"]] == [
            [],
            ["carrier"],
            ["origin"],
            ["tailnum"],
        ]
        assert all(0 <= p["delay_probability"] <= 1 for p in answer.json()["predictions"])
        assert [_unknown_count(client, f) for f in ("carrier", "origin", "dest", "tailnum")] == [1, 1, 0, 1]
    logged = DeltaStore(str(served.platform.root / "lake")).read(PREDICTIONS_TABLE)
    rows = logged.filter(pl.col("request_id") == "unknown-values").sort("position")
    assert rows["unknown_fields"].to_list() == ["", "carrier", "origin", "tailnum"]
    assert set(rows["client"]) == {"default"} and set(rows["role"]) == {"champion"}


def test_refuse_answers_422_naming_each_unknown_field(served: Served, tmp_path: Path) -> None:
    config = served.config(cache_dir=tmp_path / "cache", unknown_values="refuse")
    with TestClient(create_app(config)) as client:
        answer = client.post(
            "/v1/predict", json={"flights": [flight(), flight(carrier="ZZ", dest="XXX")]}, headers=bearer()
        )
        assert answer.status_code == 422, answer.text
        errors = answer.json()["errors"]
        assert [e["field"] for e in errors] == ["flights[1].carrier", "flights[1].dest"]
        assert all(e["type"] == "unknown_value" for e in errors) and "'ZZ'" in errors[0]["message"]
        assert client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer()).status_code == 200
