"""The model and snapshot being served, and their replacement when the registry or snapshot changes.

What answers a request is one immutable `Served` object: a request takes it once and
uses it to the end, and a reload builds a whole new one (loaded and tried on a row
first) before swapping the reference, so no request ever sees half of a change and a
model that fails to load leaves the previous one serving.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.storage import filesystem, has_scheme, join_uri
from ml.online.features import OnlineLookup, Schedule, online_features
from ml.online.snapshot import OnlineSnapshot, current_id, load
from ml.registry.model_registry import ModelRegistry, ModelVersion
from ml.training.onnx_model import MODEL_FILE, PREPROCESS_FILE, OnnxModel
from serving.config import ServingConfig

SCORING_THREADS = 1
"""onnxruntime threads per model: requests are small, and the server's cores serve many at once."""


class NotReadyError(RuntimeError):
    """Nothing to serve yet: no champion in the registry, or no published snapshot."""


@dataclass(frozen=True)
class Served:
    model: OnnxModel
    version: ModelVersion
    snapshot: OnlineSnapshot
    snapshot_id: str
    lookup: OnlineLookup

    def predict(self, requests: pl.DataFrame) -> np.ndarray:
        """Delay probabilities of request rows (the `ml.online.features.REQUEST_SCHEMA` columns)."""
        return self.model.predict(online_features(requests, self.snapshot))

    def predict_schedules(self, schedules: list[Schedule]) -> np.ndarray:
        """`predict` of a few flights through the snapshot's lookups, without a DataFrame."""
        return self.model.predict_columns(self.lookup.columns(schedules))

    def describe(self) -> dict[str, Any]:
        return {
            "model_version": self.version.version,
            "status": self.version.status,
            "created_at": self.version.created_at.isoformat(),
            "model_md5": self.version.model_md5,
            "training_set_md5": self.version.training_set_md5,
            "test_metrics": self.version.metrics.get("test"),
            "snapshot": {
                "id": self.snapshot_id,
                "first_day": self.snapshot.first_day.isoformat(),
                "last_day": self.snapshot.last_day.isoformat(),
            },
        }


class ModelStore:
    """Holds the current `Served`; `refresh` loads what the registry and snapshot pointer name now."""

    def __init__(self, config: ServingConfig) -> None:
        self._config = config
        self._current: Served | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Served | None:
        return self._current

    def refresh(self) -> bool:
        """Load the champion and the current snapshot if either changed; True when something was swapped.

        Raises NotReadyError while there is nothing to serve, and any load error as it is;
        in both cases what was served before stays.
        """
        with self._lock:
            options = self._config.storage_options or None
            registry = ModelRegistry(DeltaStore(self._config.lake_uri, options), self._config.artifacts_uri)
            champion = registry.champion()
            if champion is None:
                raise NotReadyError(f"the registry under {self._config.lake_uri} has no champion")
            snapshot_id = current_id(self._config.lake_uri, options)
            if snapshot_id is None:
                raise NotReadyError(
                    f"no online snapshot under {self._config.lake_uri}: materialize features/online_snapshot"
                )
            before = self._current
            if (
                before is not None
                and before.version.version == champion.version
                and before.snapshot_id == snapshot_id
            ):
                return False
            same_model = before is not None and before.version.version == champion.version
            model = (
                before.model  # type: ignore[union-attr]
                if same_model
                else OnnxModel(self._local_folder(champion), threads=SCORING_THREADS)
            )
            if before is not None and before.snapshot_id == snapshot_id:
                snapshot, lookup = before.snapshot, before.lookup
            else:
                snapshot = load(self._config.lake_uri, snapshot_id, options)
                lookup = OnlineLookup(snapshot)
            served = Served(
                model=model, version=champion, snapshot=snapshot, snapshot_id=snapshot_id, lookup=lookup
            )
            _try_once(served)
            self._current = served
            return True

    def _local_folder(self, model: ModelVersion) -> Path:
        """The model's folder; files in an object store are copied to the cache under the version's md5."""
        if not has_scheme(model.artifact_uri):
            return Path(model.artifact_uri)
        folder = self._config.cache_dir / f"v{model.version}-{model.model_md5.removesuffix('.dir')}"
        if all((folder / name).exists() for name in (MODEL_FILE, PREPROCESS_FILE)):
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in (PREPROCESS_FILE, MODEL_FILE):
            fs, path = filesystem(join_uri(model.artifact_uri, name), self._config.storage_options or None)
            with fs.open_input_stream(path) as source:
                data = source.read()
            temporary = folder / f".{name}.tmp"
            temporary.write_bytes(data)
            temporary.replace(folder / name)
        return folder


PROBE_TOLERANCE = 1e-6


def _try_once(served: Served) -> None:
    """One prediction before a model goes live: a broken graph or snapshot fails the reload, not a request."""
    departure = dt.datetime.combine(served.snapshot.last_day, dt.time(17), tzinfo=dt.UTC)
    probe = pl.DataFrame(
        {
            "carrier": ["UA"],
            "origin": ["EWR"],
            "dest": ["ORD"],
            "sched_dep_utc": [departure],
            "tailnum": [None],
            "distance": [719],
        }
    )
    probability = served.predict(probe)
    if probability.shape != (1,) or not np.isfinite(probability).all():
        raise RuntimeError(f"model v{served.version.version} answered {probability!r} to a probe")
    fast = served.predict_schedules([Schedule(*probe.row(0))])
    if abs(float(fast[0]) - float(probability[0])) > PROBE_TOLERANCE:
        raise RuntimeError(
            f"model v{served.version.version}: the lookup path answered {fast!r}, the frame path {probability!r}"
        )
