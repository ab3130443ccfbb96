"""The serving tests' client of the app over the shared trained champion (`tests.conftest.served`), and a
lab: a copy of its lake and champion with a registry of its own, where versions can be added and broken."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ml.lake.delta import DeltaStore
from ml.registry.model_registry import FILES, ModelRegistry
from ml.training.onnx_model import MODEL_FILE
from serving.app import create_app
from serving.config import ServingConfig
from tests.conftest import Served


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.config())) as test_client:
        yield test_client


@dataclass
class Lab:
    root: Path
    served: Served

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(DeltaStore(str(self.root / "lake")), str(self.root / "models"))

    @property
    def champion_folder(self) -> Path:
        return self.root / "models" / "champion"

    def config(self) -> ServingConfig:
        return self.served.config(
            lake_uri=str(self.root / "lake"),
            artifacts_uri=str(self.root / "models"),
            cache_dir=self.root / "serving-cache",
        )

    def copy_model(self, name: str, edit: Callable[[Path], None] | None = None) -> Path:
        folder = self.root / "variants" / name
        shutil.copytree(self.champion_folder, folder)
        if edit is not None:
            edit(folder)
        return folder

    def register(self, folder: Path, files: dict[str, str] | None) -> int:
        """`folder` as a new version; `files` are the md5s recorded (None: a row from before md5s)."""
        champion = self.served.champion
        lineage = {k: v for k, v in champion.lineage.items() if k != FILES}
        return self.registry.register(
            artifact_uri=str(folder),
            onnx_uri=str(folder / MODEL_FILE),
            model_md5=champion.model_md5
            if folder == self.champion_folder
            else f"{folder.name}-{champion.model_md5}",
            training_set_md5=champion.training_set_md5,
            feature_table_uri=champion.feature_table_uri,
            feature_table_version=champion.feature_table_version,
            lake_versions=champion.lake_versions,
            git_commit=champion.git_commit,
            params=champion.params,
            metrics=champion.metrics,
            now=dt.datetime.now(dt.UTC),
            lineage=lineage if files is None else {**lineage, FILES: files},
        )

    def promote(self, version: int) -> None:
        self.registry.promote(version, "model checks test", now=dt.datetime.now(dt.UTC))


@pytest.fixture
def lab(served: Served, tmp_path: Path) -> Lab:
    source = served.platform.root / "lake"
    shutil.copytree(source, tmp_path / "lake", ignore=lambda d, _: ["registry"] if Path(d) == source else [])
    shutil.copytree(
        served.champion.artifact_uri,
        tmp_path / "models" / "champion",
        ignore=shutil.ignore_patterns("checkpoints"),
    )
    made = Lab(tmp_path, served)
    made.register(made.champion_folder, served.champion.lineage[FILES])
    made.promote(1)
    return made
