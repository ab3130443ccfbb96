"""The model registry: a Delta table of model versions and their lineage.

Every state change rewrites the (small) table in one commit, so a promotion moves the
old champion to `archived` and the new one to `champion` atomically; each change is
also appended to `registry/events` with its reason.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.schemas import TIMESTAMP_UTC
from ml.lake.storage import exists
from ml.lake.tables import REGISTRY_EVENTS, REGISTRY_MODELS

STATUSES = ("candidate", "champion", "archived", "rejected")

MODELS_SCHEMA: dict[str, pl.DataType] = {
    "version": pl.Int64(),
    "created_at": TIMESTAMP_UTC,
    "status": pl.String(),
    "artifact_uri": pl.String(),
    "onnx_uri": pl.String(),
    "model_md5": pl.String(),
    "training_set_md5": pl.String(),
    "feature_table_uri": pl.String(),
    "feature_table_version": pl.Int64(),
    "lake_versions": pl.String(),
    "git_commit": pl.String(),
    "params": pl.String(),
    "metrics": pl.String(),
}
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "at": TIMESTAMP_UTC,
    "version": pl.Int64(),
    "from_status": pl.String(),
    "to_status": pl.String(),
    "reason": pl.String(),
}


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    version: int
    status: str
    artifact_uri: str
    onnx_uri: str
    model_md5: str
    training_set_md5: str
    feature_table_uri: str
    feature_table_version: int
    lake_versions: dict[str, int]
    git_commit: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelVersion:
        return cls(
            version=row["version"],
            status=row["status"],
            artifact_uri=row["artifact_uri"],
            onnx_uri=row["onnx_uri"],
            model_md5=row["model_md5"],
            training_set_md5=row["training_set_md5"],
            feature_table_uri=row["feature_table_uri"],
            feature_table_version=row["feature_table_version"],
            lake_versions=json.loads(row["lake_versions"]),
            git_commit=row["git_commit"],
            params=json.loads(row["params"]),
            metrics=json.loads(row["metrics"]),
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class ModelRegistry:
    store: DeltaStore

    def frame(self) -> pl.DataFrame:
        if not self.store.exists(REGISTRY_MODELS):
            return pl.DataFrame(schema=MODELS_SCHEMA)
        return self.store.read(REGISTRY_MODELS).sort("version")

    def versions(self) -> list[ModelVersion]:
        return [ModelVersion.from_row(r) for r in self.frame().iter_rows(named=True)]

    def get(self, version: int) -> ModelVersion:
        for model in self.versions():
            if model.version == version:
                return model
        raise RegistryError(f"model version {version} is not registered in {self.store.uri(REGISTRY_MODELS)}")

    def champion(self) -> ModelVersion | None:
        champions = [m for m in self.versions() if m.status == "champion"]
        return champions[0] if champions else None

    def latest(self, status: str) -> ModelVersion | None:
        matching = [m for m in self.versions() if m.status == status]
        return matching[-1] if matching else None

    def register(
        self,
        *,
        artifact_uri: str,
        onnx_uri: str,
        model_md5: str,
        training_set_md5: str,
        feature_table_uri: str,
        feature_table_version: int,
        lake_versions: dict[str, int],
        git_commit: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        now: dt.datetime,
    ) -> int:
        current = self.frame()
        version = int(current["version"].max() or 0) + 1
        row = {
            "version": version,
            "created_at": now,
            "status": "candidate",
            "artifact_uri": artifact_uri,
            "onnx_uri": onnx_uri,
            "model_md5": model_md5,
            "training_set_md5": training_set_md5,
            "feature_table_uri": feature_table_uri,
            "feature_table_version": feature_table_version,
            "lake_versions": json.dumps(lake_versions, sort_keys=True),
            "git_commit": git_commit,
            "params": json.dumps(params, sort_keys=True),
            "metrics": json.dumps(metrics, sort_keys=True),
        }
        updated = pl.concat([current, pl.DataFrame([row], schema=MODELS_SCHEMA)])
        self._write(updated, [(version, "", "candidate", "registered")], now)
        return version

    def update_metrics(self, version: int, metrics: dict[str, Any]) -> None:
        self.get(version)
        frame = self.frame().with_columns(
            pl.when(pl.col("version") == version)
            .then(pl.lit(json.dumps(metrics, sort_keys=True)))
            .otherwise(pl.col("metrics"))
            .alias("metrics")
        )
        self.store.overwrite(REGISTRY_MODELS, frame, {"registry_change": f"metrics of v{version}"})

    def reject(self, version: int, reason: str, *, now: dt.datetime) -> None:
        model = self.get(version)
        if model.status == "champion":
            raise RegistryError(f"version {version} is the champion; roll back to another version instead")
        self._transition({version: "rejected"}, reason, now)

    def promote(self, version: int, reason: str, *, now: dt.datetime) -> ModelVersion | None:
        """Make `version` the champion and archive the previous one; returns the previous champion."""
        model = self.get(version)
        check_artifacts(model, self.store.storage_options)
        previous = self.champion()
        if previous is not None and previous.version == version:
            return previous
        changes = {version: "champion"}
        if previous is not None:
            changes[previous.version] = "archived"
        self._transition(changes, reason, now)
        return previous

    def rollback(self, to_version: int, reason: str = "rollback", *, now: dt.datetime) -> ModelVersion | None:
        model = self.get(to_version)
        if model.status == "rejected":
            raise RegistryError(
                f"version {to_version} was rejected by the promotion gate; it cannot be champion"
            )
        return self.promote(to_version, reason, now=now)

    def needed_versions(self) -> dict[str, set[int]]:
        """Per lake table, the Delta versions that registered models were built from."""
        needed: dict[str, set[int]] = {}
        for model in self.versions():
            for table, version in model.lake_versions.items():
                needed.setdefault(table, set()).add(int(version))
        return needed

    def events(self) -> pl.DataFrame:
        if not self.store.exists(REGISTRY_EVENTS):
            return pl.DataFrame(schema=EVENTS_SCHEMA)
        return self.store.read(REGISTRY_EVENTS).sort("at")

    def _transition(self, changes: dict[int, str], reason: str, now: dt.datetime) -> None:
        frame = self.frame()
        before = dict(zip(frame["version"], frame["status"], strict=True))
        status = pl.col("status")
        for version, new in changes.items():
            status = pl.when(pl.col("version") == version).then(pl.lit(new)).otherwise(status)
        self._write(
            frame.with_columns(status.alias("status")),
            [(v, before[v], new, reason) for v, new in changes.items()],
            now,
        )

    def _write(self, frame: pl.DataFrame, events: list[tuple[int, str, str, str]], now: dt.datetime) -> None:
        if frame.filter(pl.col("status") == "champion").height > 1:
            raise RegistryError("a registry change would leave two champions")
        if frame["version"].is_duplicated().any():
            raise RegistryError("a registry change would duplicate a version")
        label = "; ".join(f"v{v}: {a or 'new'} -> {b}" for v, a, b, _ in events)
        self.store.overwrite(REGISTRY_MODELS, frame.select(list(MODELS_SCHEMA)), {"registry_change": label})
        rows = pl.DataFrame(
            [
                {"at": now, "version": v, "from_status": a, "to_status": b, "reason": r}
                for v, a, b, r in events
            ],
            schema=EVENTS_SCHEMA,
        )
        self.store.overwrite(REGISTRY_EVENTS, pl.concat([self.events(), rows]), {"registry_change": label})


def check_artifacts(model: ModelVersion, storage_options: Mapping[str, str] | None = None) -> None:
    """Refuse a model whose files are gone (in a folder or a bucket), before anything points at it."""
    for uri in (model.artifact_uri, model.onnx_uri):
        if not exists(uri, dict(storage_options) if storage_options else None):
            raise RegistryError(
                f"model version {model.version} points at {uri}, which does not exist; "
                "restore it (python -m ml.registry.reproduce) or choose another version"
            )
