"""A model in a bucket: the bytes checked are the bytes downloaded, and a damaged cache is fetched again."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

from starlette.testclient import TestClient

from ml.lake.delta import DeltaStore
from ml.lake.storage import copy_tree
from ml.registry.model_registry import FILES, ModelRegistry
from ml.training.onnx_model import MODEL_FILE
from serving.app import create_app
from tests.conftest import Served, bearer
from tests.serving.conftest import Lab
from tests.storage import conftest as storage
from tests.storage.conftest import S3Platform

# The S3 server's fixtures, by the names the test asks for (the lab's is in tests/serving/conftest.py).
s3_server = storage.s3_server
s3_buckets = storage.s3_buckets


def test_a_model_in_a_bucket_is_verified_and_a_damaged_cache_is_downloaded_again(
    lab: Lab, s3_buckets: S3Platform, served: Served
) -> None:
    options = s3_buckets.server.storage_options()
    uri = f"{s3_buckets.env['PLATFORM_ARTIFACTS_URI']}/champion"
    copy_tree(str(lab.champion_folder), uri, options)
    registry = ModelRegistry(DeltaStore(str(lab.root / "lake"), options), str(lab.root / "models"))
    champion = served.champion
    version = registry.register(
        artifact_uri=uri,
        onnx_uri=f"{uri}/{MODEL_FILE}",
        model_md5=f"bucket-{champion.model_md5}",
        training_set_md5=champion.training_set_md5,
        feature_table_uri=champion.feature_table_uri,
        feature_table_version=champion.feature_table_version,
        lake_versions=champion.lake_versions,
        git_commit=champion.git_commit,
        params=champion.params,
        metrics=champion.metrics,
        now=dt.datetime.now(dt.UTC),
        lineage={FILES: champion.lineage[FILES]},
    )
    registry.promote(version, "served from a bucket", now=dt.datetime.now(dt.UTC))
    config = dataclasses.replace(lab.config(), storage_options=options)
    with TestClient(create_app(config)) as client:
        info = client.get("/v1/model", headers=bearer()).json()
        assert (info["model_version"], info["files_verified"]) == (version, True)
    cached = next(Path(config.cache_dir).glob(f"v{version}-*")) / MODEL_FILE
    assert cached.read_bytes() == (lab.champion_folder / MODEL_FILE).read_bytes()

    cached.write_bytes(b"damaged on the serving node's disk")
    with TestClient(create_app(config)) as client:
        assert client.get("/readyz").json() == {"status": "ready", "model_version": version}
    assert cached.read_bytes() == (lab.champion_folder / MODEL_FILE).read_bytes()

    s3_buckets.put_object("models", "models/champion/model.onnx", b"changed in the bucket")
    shutil.rmtree(cached.parent)
    with TestClient(create_app(config)) as client:
        body = client.get("/readyz").json()
    assert (body["model_version"], body["fallback"]["champion_version"]) == (1, version)
    assert f"model version {version}: model.onnx has md5" in body["fallback"]["reason"]
