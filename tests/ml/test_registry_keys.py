"""Registry rows name artifacts by key under the artifacts root and carry their lineage; old tables migrate."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from ml.lake.delta import DeltaStore
from ml.lake.tables import REGISTRY_MODELS
from ml.registry.model_registry import MODELS_SCHEMA, ModelRegistry, RegistryError, check_artifacts

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def _register(registry: ModelRegistry, artifact_uri: str, lineage: dict | None = None) -> int:
    return registry.register(
        artifact_uri=artifact_uri,
        onnx_uri=f"{artifact_uri}/model.onnx",
        model_md5="m",
        training_set_md5="t",
        feature_table_uri="features/flight_features",
        feature_table_version=3,
        lake_versions={"features/flight_features": 3},
        git_commit="abc",
        params={},
        metrics={},
        now=NOW,
        lineage=lineage,
    )


def _model_folder(root: Path, key: str) -> None:
    (root / key).mkdir(parents=True)
    (root / key / "model.onnx").write_bytes(b"onnx")


def test_a_key_resolves_under_whichever_artifacts_root_the_registry_is_opened_with(tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    _register(ModelRegistry(store), "abc-123")
    for root in (tmp_path / "models", tmp_path / "copy" / "models"):
        _model_folder(root, "abc-123")
        model = ModelRegistry(store, str(root)).get(1)
        assert (model.artifact_uri, model.onnx_uri) == (
            str(root / "abc-123"),
            str(root / "abc-123" / "model.onnx"),
        )
        check_artifacts(model)
    assert store.read(REGISTRY_MODELS)["artifact_uri"].to_list() == ["abc-123"]
    assert ModelRegistry(store, "s3://bucket/models").get(1).artifact_uri == "s3://bucket/models/abc-123"


def test_without_an_artifacts_root_a_key_is_refused_by_name_and_old_locations_keep_working(
    tmp_path: Path,
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    _register(ModelRegistry(store), "abc-123")
    with pytest.raises(
        RegistryError, match=r"names its artifacts by key \(abc-123\).*PLATFORM_ARTIFACTS_URI"
    ):
        check_artifacts(ModelRegistry(store).get(1))
    _model_folder(tmp_path / "old", "m")
    _register(ModelRegistry(store), str(tmp_path / "old" / "m"))  # absolute, as rows were written before
    _register(ModelRegistry(store), ".data/models/k")  # root-prefixed, as the local default wrote them
    registry = ModelRegistry(store, ".data/models")
    assert registry.get(2).artifact_uri == str(tmp_path / "old" / "m")
    assert registry.get(3).artifact_uri == ".data/models/k"


def test_a_registry_from_before_the_lineage_column_reads_and_gains_it_on_the_next_change(
    tmp_path: Path,
) -> None:
    store = DeltaStore(str(tmp_path / "lake"))
    _register(ModelRegistry(store), "old-key")
    legacy = store.read(REGISTRY_MODELS).drop("lineage")
    store.overwrite(REGISTRY_MODELS, legacy, {"test": "old schema"}, replace_schema=True)
    assert "lineage" not in store.read(REGISTRY_MODELS).columns
    registry = ModelRegistry(store, str(tmp_path / "models"), run_id="run-42")
    assert registry.get(1).lineage == {}
    bronze = {"bronze/flights": [4, 7], "bronze/weather": [5]}
    _register(registry, "new-key", {"bronze_versions": bronze})
    stored = store.read(REGISTRY_MODELS).sort("version")
    assert list(stored.columns) == list(MODELS_SCHEMA) and stored.height == 2
    assert stored["lineage"][0] is None and json.loads(stored["lineage"][1])["run_id"] == "run-42"
    assert registry.needed_versions() == {
        "features/flight_features": {3},
        "bronze/flights": {4, 7},
        "bronze/weather": {5},
    }
    last = store.history(REGISTRY_MODELS, limit=1)[0]
    assert last["run_id"] == "run-42" and "v2: new -> candidate" in last["registry_change"]
    assert pl.DataFrame(store.history("registry/events", limit=1))["run_id"].to_list() == ["run-42"]
