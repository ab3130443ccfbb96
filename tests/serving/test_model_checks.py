"""A model is swapped in only if its bytes are the registered ones and it answers its probe as trained.

Every test works on a lab: a copy of the served platform's lake (without its registry) and of the
champion's model folder, with a registry of its own whose v1 is the trained champion. Broken
versions are copies of that folder, edited with the `onnx` package, registered through the
registry API; the shared fixture is never touched.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import helper, numpy_helper
from starlette.testclient import TestClient

from ml.lake.delta import DeltaStore
from ml.lake.tables import PREDICTIONS_TABLE
from ml.registry.model_registry import FILES, RegistryError, file_md5s
from ml.training.onnx_model import MODEL_FILE, PREPROCESS_FILE
from ml.training.probe import PROBE_FILE
from serving.app import app_state, create_app
from tests.conftest import ADMIN_TOKEN, Served, bearer
from tests.serving.conftest import Lab
from tests.serving.test_api import flight

CARRIER, UNPROBED_DEST = "UA", "BZN"


# --- ways to break a model ---------------------------------------------------------------------


def edit_weight(name: str, change: Callable[[np.ndarray], None]) -> Callable[[Path], None]:
    """An edit of one initializer of model.onnx in place (the graph stays loadable)."""

    def edit(folder: Path) -> None:
        model = onnx.load(folder / MODEL_FILE)
        (tensor,) = [t for t in model.graph.initializer if t.name == name]
        values = numpy_helper.to_array(tensor).copy()
        change(values)
        tensor.CopyFrom(numpy_helper.from_array(values, name))
        onnx.save(model, folder / MODEL_FILE)

    return edit


def code_of(folder: Path, column: str, value: str) -> tuple[int, int]:
    """Index of `column` among the categorical inputs, and the embedding row (code) of `value`."""
    preprocess = json.loads((folder / PREPROCESS_FILE).read_text())
    return preprocess["categorical"].index(column), preprocess["vocabularies"][column].index(value) + 1


def garble(values: np.ndarray) -> None:
    """Weights shuffled: the graph loads and answers numbers, just not the trained ones."""
    flat = values.reshape(-1)
    flat[:] = np.random.default_rng(7).permutation(flat)


def garble_bias(values: np.ndarray) -> None:
    values += 0.5


def embedding_row(column: str, value: str, number: float) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        index, code = code_of(folder, column, value)

        def change(values: np.ndarray) -> None:
            values[code] = number

        edit_weight(f"net.embeddings.{index}.weight", change)(folder)

    return edit


def nan_for_dest_at_request_time(dest: str) -> Callable[[Path], None]:
    """A graph that adds sqrt(-1) to the answer for one destination and sqrt(0) for every other.

    Every weight is finite and no probe row has that destination, so it passes every load
    check; only the request path can catch it.
    """

    def edit(folder: Path) -> None:
        index, code = code_of(folder, "dest", dest)
        sizes = json.loads((folder / PREPROCESS_FILE).read_text())["vocabularies"]["dest"]
        model = onnx.load(folder / MODEL_FILE)
        graph = model.graph
        poison = np.zeros(len(sizes) + 1, dtype=np.float32)
        poison[code] = -1.0
        graph.initializer.extend(
            [
                numpy_helper.from_array(poison, "poison"),
                numpy_helper.from_array(np.array(index), "dest_column"),
            ]
        )
        (last,) = [n for n in graph.node if "probability" in n.output]
        last.output[0] = "clean_probability"
        graph.node.extend(
            [
                helper.make_node("Gather", ["categorical", "dest_column"], ["dest_code"], axis=1),
                helper.make_node("Gather", ["poison", "dest_code"], ["poisoned"]),
                helper.make_node("Sqrt", ["poisoned"], ["root"]),
                helper.make_node("Add", ["clean_probability", "root"], ["probability"]),
            ]
        )
        onnx.checker.check_model(model)
        onnx.save(model, folder / MODEL_FILE)

    return edit


def refusals(client: TestClient, version: int, check: str) -> float:
    value = app_state(client.app).metrics.registry.get_sample_value(  # type: ignore[arg-type]
        "serving_model_refusals_total", {"model_version": str(version), "check": check}
    )
    return value or 0.0


def gauge(client: TestClient, name: str) -> float | None:
    return app_state(client.app).metrics.registry.get_sample_value(name)  # type: ignore[arg-type]


def served_version(client: TestClient) -> int:
    answer = client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer())
    assert answer.status_code == 200, answer.text
    return int(answer.json()["model_version"])


def reload(client: TestClient) -> dict:
    return client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN)).json()


# --- the tests ----------------------------------------------------------------------------------


def test_registration_records_the_md5_of_every_pinned_file_and_the_probe_scores(served: Served) -> None:
    recorded = served.champion.lineage[FILES]
    folder = Path(served.champion.artifact_uri)
    assert {MODEL_FILE, PREPROCESS_FILE, PROBE_FILE, "metrics.json", "model.pt"} <= set(recorded)
    assert "timings.json" not in recorded  # the clock's record is not pinned
    assert recorded == {name: md5 for name, md5 in file_md5s(folder).items() if name in recorded}
    probe = pl.read_parquet(folder / PROBE_FILE)
    assert 200 <= probe.height <= 600
    assert set(probe["carrier"]) == set(
        pl.read_parquet(served.test_split.with_name("validation.parquet"))["carrier"]
    )
    scores = served.champion.metrics["training"]["probe"]
    assert scores["rows"] == probe.height and 0.5 < scores["roc_auc"] < 1


def test_model_info_shows_versions_and_md5s_of_what_was_loaded_and_no_paths(lab: Lab) -> None:
    with TestClient(create_app(lab.config())) as client:
        info = client.get("/v1/model", headers=bearer()).json()
        ready = client.get("/readyz").json()
    recorded = lab.served.champion.lineage[FILES]
    assert info["files"] == {name: recorded[name] for name in (MODEL_FILE, PREPROCESS_FILE, PROBE_FILE)}
    assert info["files_verified"] is True
    assert info["model_md5"] == lab.served.champion.model_md5
    assert info["training_set_md5"] == lab.served.champion.training_set_md5
    assert info["snapshot"]["id"]
    assert info["probe"]["max_abs_difference"] <= 1e-4
    assert "fallback" not in info and ready == {"status": "ready", "model_version": 1}
    assert str(lab.root) not in json.dumps(info)


def test_garbled_but_loadable_weights_are_refused_and_the_old_model_keeps_serving(lab: Lab) -> None:
    with TestClient(create_app(lab.config())) as client:
        folder = lab.copy_model("garbled", edit_weight("net.mlp.4.weight", garble))
        garbled = lab.register(folder, file_md5s(folder))  # its own md5s: only the probe can tell
        lab.promote(garbled)
        answer = client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN))
        assert answer.status_code == 500
        body = answer.json()
        assert (body["outcome"], body["model_version"]) == ("failed", 1)
        assert f"model version {garbled} answers" in body["reason"]
        assert "differently from what training recorded" in body["reason"]
        assert "still serving model version 1" in body["reason"]
        assert served_version(client) == 1
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["fallback"]["champion_version"] == garbled
        assert refusals(client, garbled, "probe") == 1
        assert gauge(client, "serving_model_fallback") == 1


def test_a_nan_for_one_carrier_is_refused_by_the_probe(lab: Lab) -> None:
    folder = lab.copy_model("nan-carrier", embedding_row("carrier", CARRIER, float("nan")))
    with TestClient(create_app(lab.config())) as client:
        nan = lab.register(folder, file_md5s(folder))
        lab.promote(nan)
        reason = reload(client)["reason"]
        assert f"model version {nan} answers a non-finite probability to" in reason
        assert f"all with carrier={CARRIER}" in reason
        assert served_version(client) == 1


def test_a_nan_in_an_embedding_row_no_probe_row_reaches_is_refused_by_the_weight_scan(lab: Lab) -> None:
    probe = pl.read_parquet(lab.champion_folder / PROBE_FILE)
    assert UNPROBED_DEST not in set(probe["dest"])
    folder = lab.copy_model("nan-dest", embedding_row("dest", UNPROBED_DEST, float("nan")))
    with TestClient(create_app(lab.config())) as client:
        nan = lab.register(folder, file_md5s(folder))
        lab.promote(nan)
        reason = reload(client)["reason"]
        assert re.search(rf"model version {nan}: weight net.embeddings.2.weight holds \d+ non-finite", reason)
        assert f"the embedding rows of dest {UNPROBED_DEST}" in reason
        assert refusals(client, nan, "weights") == 1


def test_a_non_finite_answer_at_request_time_is_a_500_never_sent_nor_logged(lab: Lab) -> None:
    folder = lab.copy_model("nan-at-request", nan_for_dest_at_request_time(UNPROBED_DEST))
    poisoned = lab.register(folder, file_md5s(folder))
    lab.promote(poisoned)
    with TestClient(create_app(lab.config())) as client:
        assert served_version(client) == poisoned  # it passed every load check
        good = client.post(
            "/v1/predict", json={"flights": [flight()]}, headers={**bearer(), "X-Request-Id": "good"}
        )
        assert good.status_code == 200
        bad = client.post(
            "/v1/predict",
            json={"flights": [flight(), flight(dest=UNPROBED_DEST, distance=1882)]},
            headers={**bearer(), "X-Request-Id": "nan"},
        )
        assert bad.status_code == 500
        assert bad.json() == {
            "detail": f"model version {poisoned} answered a non-finite probability for 1 flight(s)"
        }
        nonfinite = app_state(client.app).metrics.registry.get_sample_value(  # type: ignore[arg-type]
            "serving_nonfinite_predictions_total", {"model_version": str(poisoned)}
        )
        assert nonfinite == 1
    logged = DeltaStore(str(lab.root / "lake")).read(PREDICTIONS_TABLE)
    assert "good" in set(logged["request_id"]) and "nan" not in set(logged["request_id"])


def test_md5_mismatch_is_refused_at_promotion_and_at_load(lab: Lab) -> None:
    folder = lab.copy_model("changed-after-registration")
    version = lab.register(folder, file_md5s(folder))
    edit_weight("net.mlp.8.bias", garble_bias)(folder)
    with pytest.raises(
        RegistryError, match=rf"model version {version}: model.onnx has md5 \w+, but \w+ was registered"
    ):
        lab.promote(version)
    assert lab.registry.champion().version == 1  # type: ignore[union-attr]

    clean = lab.copy_model("changed-after-promotion")
    promoted = lab.register(clean, file_md5s(clean))
    with TestClient(create_app(lab.config())) as client:
        lab.promote(promoted)
        (clean / PROBE_FILE).write_bytes((folder / PROBE_FILE).read_bytes()[:-1] + b"\0")
        body = reload(client)
        assert body["outcome"] == "failed" and body["model_version"] == 1
        assert f"model version {promoted}: probe.parquet has md5" in body["reason"]
        assert refusals(client, promoted, "md5") == 1


def test_a_server_started_with_a_corrupt_champion_serves_the_last_good_version_until_it_is_restored(
    lab: Lab,
) -> None:
    folder = lab.copy_model("corrupted")
    corrupted = lab.register(folder, file_md5s(folder))
    lab.promote(corrupted)
    good_bytes = (folder / MODEL_FILE).read_bytes()
    (folder / MODEL_FILE).write_bytes(good_bytes[: len(good_bytes) // 2])
    with TestClient(create_app(lab.config())) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert (body["status"], body["model_version"]) == ("ready", 1)
        assert body["fallback"]["champion_version"] == corrupted
        assert f"model version {corrupted}: model.onnx has md5" in body["fallback"]["reason"]
        info = client.get("/v1/model", headers=bearer()).json()
        assert (info["model_version"], info["fallback"]["champion_version"]) == (1, corrupted)
        assert served_version(client) == 1
        assert gauge(client, "serving_model_fallback") == 1 and gauge(client, "serving_model_version") == 1

        (folder / MODEL_FILE).write_bytes(good_bytes)  # restored: the next reload serves the champion
        assert reload(client) == {"outcome": "swapped", "model_version": corrupted}
        assert client.get("/readyz").json() == {"status": "ready", "model_version": corrupted}
        assert gauge(client, "serving_model_fallback") == 0


def test_when_no_version_loads_the_server_is_not_ready_and_says_why(lab: Lab) -> None:
    folder = lab.copy_model("second")
    second = lab.register(folder, file_md5s(folder))
    lab.promote(second)
    (folder / PREPROCESS_FILE).unlink()
    edit_weight("net.mlp.0.bias", garble)(lab.champion_folder)
    with TestClient(create_app(lab.config())) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert f"model version {second} lacks preprocess.json" in reason
        assert "model version 1: model.onnx has md5" in reason
        assert client.post("/v1/predict", json={"flights": [flight()]}, headers=bearer()).status_code == 503
        answer = client.post("/v1/admin/reload", headers=bearer(ADMIN_TOKEN))
        assert answer.status_code == 503 and answer.json()["outcome"] == "not_ready"


def test_a_version_registered_before_md5s_loads_with_a_warning(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    folder = lab.copy_model("older")
    older = lab.register(folder, None)
    lab.promote(older)
    with caplog.at_level(logging.WARNING, logger="serving"), TestClient(create_app(lab.config())) as client:
        info = client.get("/v1/model", headers=bearer()).json()
    assert (info["model_version"], info["files_verified"]) == (older, False)
    assert info["files"][MODEL_FILE] == lab.served.champion.lineage[FILES][MODEL_FILE]
    assert f"model version {older} was registered without file md5s" in caplog.text


def test_a_broken_champion_never_brings_back_a_newer_version_it_was_rolled_back_from(lab: Lab) -> None:
    folder = lab.copy_model("rolled-back-from")
    newer = lab.register(folder, file_md5s(folder))
    lab.promote(newer)
    lab.registry.rollback(1, "v2 drifts", now=dt.datetime.now(dt.UTC))
    edit_weight("net.mlp.0.bias", garble)(lab.champion_folder)
    with TestClient(create_app(lab.config())) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "model version 1: model.onnx has md5" in ready.json()["reason"]
    assert f"model version {newer}" not in ready.json()["reason"]
