"""An S3-compatible server for the storage tests, and a platform configured onto it.

The server (moto, on 127.0.0.1) is started once per test session; each test gets buckets
of its own and the AWS_* variables in its environment, the only place the platform
takes storage credentials from.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
import dagster as dg
import pytest

from assets.partitions import range_tags
from devtools.s3_server import LocalS3, local_s3
from ml.lake.delta import DeltaStore
from ml.lake.storage import copy_tree
from orchestration.profiles import build_resources
from tests.conftest import ASSETS, REFERENCE_KEYS, SMALL_PLATFORM, make_dvc_repo

LOCATIONS = ("landing", "quarantine", "lake", "models", "dvc")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with local_s3(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@dataclass
class S3Platform:
    """Every location of the platform in a bucket of its own, set only through PLATFORM_* variables."""

    server: LocalS3
    root: Path
    buckets: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        return {
            "PLATFORM_DATA_DIR": str(self.root / "data"),
            "PLATFORM_REPO_ROOT": str(self.repo),
            "PLATFORM_LANDING_URI": f"s3://{self.buckets['landing']}/landing",
            "PLATFORM_QUARANTINE_URI": f"s3://{self.buckets['quarantine']}/quarantine",
            "PLATFORM_LAKE_URI": f"s3://{self.buckets['lake']}/lake",
            "PLATFORM_ARTIFACTS_URI": f"s3://{self.buckets['models']}/models",
            "PLATFORM_DVC_REMOTE": f"s3://{self.buckets['dvc']}/remote",
            "PLATFORM_STORAGE_OPTIONS": self.server.storage_options_json(),
        }

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def store(self) -> DeltaStore:
        return DeltaStore(self.env["PLATFORM_LAKE_URI"], self.server.storage_options())

    def keys(self, location: str) -> list[str]:
        """Every object key in a location's bucket."""
        client = boto3.client("s3", endpoint_url=self.server.endpoint)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.buckets[location])
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read_object(self, location: str, key: str) -> bytes:
        client = boto3.client("s3", endpoint_url=self.server.endpoint)
        return client.get_object(Bucket=self.buckets[location], Key=key)["Body"].read()

    def put_object(self, location: str, key: str, body: bytes) -> None:
        client = boto3.client("s3", endpoint_url=self.server.endpoint)
        client.put_object(Bucket=self.buckets[location], Key=key, Body=body)

    def delete_objects(self, location: str, prefix: str) -> None:
        client = boto3.client("s3", endpoint_url=self.server.endpoint)
        for key in self.keys(location):
            if key.startswith(prefix):
                client.delete_object(Bucket=self.buckets[location], Key=key)

    def materialize(
        self,
        selection: Sequence[str],
        first: dt.date | None = None,
        last: dt.date | None = None,
        instance: dg.DagsterInstance | None = None,
        **kwargs,
    ) -> dg.ExecuteInProcessResult:
        tags = range_tags(first, last or first) if first is not None else {}
        return dg.materialize(
            ASSETS,
            selection=list(selection),
            resources=build_resources(self.env),
            tags=tags,
            instance=instance,
            **kwargs,
        )


@pytest.fixture
def s3_buckets(s3_server: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Platform:
    """Empty buckets of this test's own, and the server's AWS_* variables in the environment."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    suffix = uuid.uuid4().hex[:10]
    buckets = {location: f"{location}-{suffix}" for location in LOCATIONS}
    s3_server.create_buckets(*buckets.values())
    return S3Platform(s3_server, tmp_path, buckets)


@pytest.fixture
def s3_platform(s3_buckets: S3Platform, replayed_landing: Path) -> S3Platform:
    """The replayed landing files in the landing bucket, a DVC repository, reference tables on S3."""
    platform = s3_buckets
    copy_tree(str(replayed_landing), platform.env["PLATFORM_LANDING_URI"], platform.server.storage_options())
    make_dvc_repo(platform.root, SMALL_PLATFORM)
    platform.materialize(REFERENCE_KEYS)
    return platform
