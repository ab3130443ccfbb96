"""Configuration alone moves every location to S3; credentials are refused as configuration;
model artifacts in a bucket are published, checked out and checked for existence there."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from ml.lake.delta import DeltaStore
from ml.registry.artifacts import ArtifactsMissingError, ArtifactStore
from ml.registry.model_registry import ModelRegistry, RegistryError
from orchestration.profiles import build_resources
from resources import ArtifactsResource, DvcResource, LakeResource, LandingResource
from serving.config import ConfigError, ServingConfig
from tests.storage.conftest import S3Platform


def test_s3_locations_come_from_environment_variables_alone(s3_buckets: S3Platform) -> None:
    env = s3_buckets.env
    resources = build_resources(env)
    options = s3_buckets.server.storage_options()
    lake, landing, artifacts, dvc = (resources[k] for k in ("lake", "landing", "artifacts", "dvc"))
    assert isinstance(lake, LakeResource) and lake.store().uri("bronze/flights") == (
        f"{env['PLATFORM_LAKE_URI']}/bronze/flights"
    )
    assert isinstance(landing, LandingResource)
    assert landing.zone().day_uri("flights", dt.date(2013, 1, 1)).startswith("s3://")
    assert landing.quarantine_root == env["PLATFORM_QUARANTINE_URI"]
    assert isinstance(artifacts, ArtifactsResource) and artifacts.store().uri("k") == (
        f"{env['PLATFORM_ARTIFACTS_URI']}/k"
    )
    assert isinstance(dvc, DvcResource) and dvc.remote == env["PLATFORM_DVC_REMOTE"]
    assert dvc.endpoint_url == s3_buckets.server.endpoint
    assert lake.storage_options == landing.storage_options == artifacts.storage_options == options


@pytest.mark.parametrize("key", ["AWS_SECRET_ACCESS_KEY", "aws_access_key_id", "AWS_SESSION_TOKEN"])
def test_credentials_in_storage_options_are_refused_without_echoing_them(key: str) -> None:
    secret = "do-not-print-this-value"
    options = json.dumps({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", key: secret})
    with pytest.raises(ValueError, match="environment variables") as raised:
        build_resources({"PLATFORM_STORAGE_OPTIONS": options})
    assert key in str(raised.value)
    assert secret not in str(raised.value)


@pytest.mark.parametrize("key", ["AWS_SECRET_ACCESS_KEY", "aws_access_key_id", "AWS_SESSION_TOKEN"])
def test_the_model_server_refuses_the_same_credentials(key: str) -> None:
    secret = "do-not-print-this-value"
    env = {
        "PLATFORM_STORAGE_OPTIONS": json.dumps({key: secret}),
        "PLATFORM_SERVING_TOKEN": "client-token",
        "PLATFORM_SERVING_ADMIN_TOKEN": "admin-token",
    }
    with pytest.raises(ConfigError, match="environment variables") as raised:
        ServingConfig.from_env(env)
    assert key in str(raised.value)
    assert secret not in str(raised.value)


def test_the_profiles_and_the_model_server_read_the_same_lake() -> None:
    env = {
        "PLATFORM_DATA_DIR": "/srv/platform/",
        "PLATFORM_STORAGE_OPTIONS": json.dumps({"AWS_ALLOW_HTTP": "true"}),
        "PLATFORM_SERVING_TOKEN": "client-token",
        "PLATFORM_SERVING_ADMIN_TOKEN": "admin-token",
    }
    lake = build_resources(env)["lake"]
    served = ServingConfig.from_env(env)
    assert isinstance(lake, LakeResource)
    assert served.lake_uri == lake.root == "/srv/platform/lake"
    assert served.storage_options == lake.storage_options == {"AWS_ALLOW_HTTP": "true"}


def _trained_folder(root: Path) -> Path:
    folder = root / "trained"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "epoch-1.pt").write_bytes(b"state")
    (folder / "model.onnx").write_bytes(b"onnx bytes")
    (folder / "metrics.json").write_text('{"roc_auc": 0.7}')
    return folder


def test_artifacts_in_a_bucket_are_published_without_checkpoints_and_checked_out(
    s3_buckets: S3Platform,
) -> None:
    env = s3_buckets.env
    store = ArtifactStore(
        env["PLATFORM_ARTIFACTS_URI"], s3_buckets.root / "staging", s3_buckets.server.storage_options()
    )
    assert store.work_folder("abc") == (s3_buckets.root / "staging" / "abc").resolve()
    uri = store.publish(_trained_folder(s3_buckets.root), store.uri("abc"))

    assert s3_buckets.keys("models") == ["models/abc/metrics.json", "models/abc/model.onnx"]
    with store.checkout(uri) as local:
        assert (local / "model.onnx").read_bytes() == b"onnx bytes"
        checked_out = local
    assert not checked_out.exists()
    with pytest.raises(ArtifactsMissingError, match="models/nothing"), store.checkout(store.uri("nothing")):
        pass


def test_a_local_artifact_root_is_written_in_place(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "models"), tmp_path / "staging")
    folder = store.work_folder("abc")
    assert folder == tmp_path.resolve() / "models" / "abc"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"x")
    assert store.publish(folder, store.uri("abc")) == str(folder)
    assert not (tmp_path / "staging").exists()
    with store.checkout(store.uri("abc")) as local:
        assert local == folder


def test_promotion_refuses_a_model_whose_artifacts_left_the_bucket(s3_buckets: S3Platform) -> None:
    options = s3_buckets.server.storage_options()
    registry = ModelRegistry(DeltaStore(s3_buckets.env["PLATFORM_LAKE_URI"], options))
    store = ArtifactStore(s3_buckets.env["PLATFORM_ARTIFACTS_URI"], s3_buckets.root / "staging", options)
    versions = []
    for key in ("one", "two"):
        uri = store.publish(_trained_folder(s3_buckets.root / key), store.uri(key))
        versions.append(
            registry.register(
                artifact_uri=uri,
                onnx_uri=f"{uri}/model.onnx",
                model_md5=key,
                training_set_md5="t",
                feature_table_uri="lake/features",
                feature_table_version=1,
                lake_versions={},
                git_commit="abc",
                params={},
                metrics={},
                now=dt.datetime.now(dt.UTC),
            )
        )
        # promoted as soon as registered: a newer registration supersedes a waiting candidate
        registry.promote(versions[-1], key, now=dt.datetime.now(dt.UTC))
    s3_buckets.delete_objects("models", "models/one/")

    with pytest.raises(RegistryError, match="models/one"):
        registry.rollback(versions[0], now=dt.datetime.now(dt.UTC))
    champion = registry.champion()
    assert champion is not None and champion.version == versions[1]


def test_the_lake_lists_its_tables_in_a_bucket_as_maintenance_finds_them(s3_buckets: S3Platform) -> None:
    store = s3_buckets.store
    assert store.tables() == []
    for table in ("bronze/flights", "monitoring/predictions", "registry/models"):
        store.overwrite(table, pl.DataFrame({"n": [1]}), {"writer": "test"})
    s3_buckets.put_object("lake", "lake/bronze/not_a_table/file.txt", b"no delta log here")
    assert store.tables() == ["bronze/flights", "monitoring/predictions", "registry/models"]
