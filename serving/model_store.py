"""The model and snapshot being served, and their replacement when the registry or snapshot changes.

What answers a request is one immutable `Served` object: a request takes it once and
uses it to the end, and a reload builds a whole new one (checked and tried on a row
first) before swapping the reference, so no request ever sees half of a change.

A model is swapped in only after `serving.model_checks` passed it: its bytes match the md5s
registered with it, it answers its probe as training recorded, its weights are finite. A
champion that fails leaves the previous model serving; a server that starts with such a
champion serves the newest earlier version that served before or passed its gate and passes
the same checks, and says so in its readiness. Either way the champion is tried again on the
next reload, so restoring its files heals the server without a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.storage import exists, has_scheme, join_uri
from ml.online.features import OnlineLookup, Schedule, online_features
from ml.online.snapshot import OnlineSnapshot, current_id, load
from ml.registry.model_registry import (
    ModelRegistry,
    ModelVersion,
    RegistryError,
    gate_passed,
    md5_mismatch,
    read_artifact,
)
from ml.training.onnx_model import OnnxModel
from serving.config import ServingConfig
from serving.model_checks import LOADED_FILES, Checks, ModelRefusedError, Refusal, check_model
from serving.unknown_codes import Vocabulary

log = logging.getLogger("serving")

SCORING_THREADS = 1
"""onnxruntime threads per model: requests are small, and the server's cores serve many at once."""
UNSERVABLE = ("rejected", "superseded")
"""Statuses that never serve, as a fallback no more than as champion (`ModelRegistry.rollback`)."""


class NotReadyError(RuntimeError):
    """Nothing to serve yet: no champion in the registry, no published snapshot, or no version loads."""


class NoModelLoadsError(NotReadyError):
    """The champion and every version it could fall back to were refused; the message has each reason."""


class ChampionRefusedError(RuntimeError):
    """The champion was refused, and another version serves (the one before, or a fallback at start)."""


@dataclass(frozen=True)
class Challenger:
    """The version served in shadow: scored beside the champion off the request path, never answered."""

    model: OnnxModel
    version: ModelVersion
    checks: Checks


@dataclass(frozen=True)
class Served:
    model: OnnxModel
    version: ModelVersion
    snapshot: OnlineSnapshot
    snapshot_id: str
    lookup: OnlineLookup
    checks: Checks = field(default_factory=Checks)
    refused: tuple[Refusal, ...] = ()
    """Why a newer version is not serving instead: the champion's refusal first, then those of
    the fallbacks tried before this one; empty while this is the champion."""
    shadow: Challenger | None = None

    @functools.cached_property
    def vocabulary(self) -> Vocabulary:
        """What the model and snapshot know, to name the fields of a request they would guess on."""
        return Vocabulary.of(self.model.preprocessor, self.snapshot)

    def predict_shadow(self, schedules: list[Schedule]) -> np.ndarray:
        """The challenger's probabilities of the flights the champion answered (same snapshot lookups)."""
        if self.shadow is None:
            raise RuntimeError("no challenger in shadow")
        return self.shadow.model.predict_columns(self.lookup.columns(schedules))

    def predict(self, requests: pl.DataFrame) -> np.ndarray:
        """Delay probabilities of request rows (the `ml.online.features.REQUEST_SCHEMA` columns)."""
        return self.model.predict(online_features(requests, self.snapshot))

    def predict_schedules(self, schedules: list[Schedule]) -> np.ndarray:
        """`predict` of a few flights through the snapshot's lookups, without a DataFrame."""
        return self.model.predict_columns(self.lookup.columns(schedules))

    def fallback(self) -> dict[str, Any] | None:
        """The champion this version stands in for and why, or None while the champion serves."""
        if not self.refused:
            return None
        return {
            "champion_version": self.refused[0].version,
            "reason": "; ".join(r.reason for r in self.refused),
        }

    def describe(self) -> dict[str, Any]:
        """Versions and md5s of what answers, never locations: the md5s are of the bytes loaded."""
        info: dict[str, Any] = {
            "model_version": self.version.version,
            "status": self.version.status,
            "created_at": self.version.created_at.isoformat(),
            "model_md5": self.version.model_md5,
            "files": self.checks.files,
            "files_verified": self.checks.verified,
            "probe": self.checks.probe,
            "training_set_md5": self.version.training_set_md5,
            "test_metrics": self.version.metrics.get("test"),
            "snapshot": {
                "id": self.snapshot_id,
                "first_day": self.snapshot.first_day.isoformat(),
                "last_day": self.snapshot.last_day.isoformat(),
            },
        }
        fallback = self.fallback()
        if fallback is not None:
            info["fallback"] = fallback
        if self.shadow is not None:
            info["shadow"] = {
                "model_version": self.shadow.version.version,
                "model_md5": self.shadow.version.model_md5,
                "files": self.shadow.checks.files,
            }
        return info


class ModelStore:
    """Holds the current `Served`; `refresh` loads what the registry and snapshot pointer name now."""

    def __init__(self, config: ServingConfig) -> None:
        self._config = config
        self._current: Served | None = None
        self._problem: str | None = None
        self._refusals: tuple[Refusal, ...] = ()
        self._shadow: Challenger | None = None
        self._shadow_problem: str | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Served | None:
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the last refresh failed (None when it did not)."""
        return self._problem

    @property
    def shadow_problem(self) -> str | None:
        """Why the registry's shadow is not scored (it failed its checks), or None."""
        return self._shadow_problem

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """The versions the last refresh refused, and why."""
        return self._refusals

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """Status code and body of the readiness probe: 200 while anything serves, naming a fallback."""
        served = self._current
        if served is None:
            body: dict[str, Any] = {"detail": "no model is loaded yet"}
            if self._problem:
                body["reason"] = self._problem
            return 503, body
        body = {"status": "ready", "model_version": served.version.version}
        fallback = served.fallback()
        if fallback is not None:
            body["fallback"] = fallback
        return 200, body

    def refresh(self) -> bool:
        """Load the champion and the current snapshot if either changed; True when something was swapped.

        Raises NotReadyError while there is nothing to serve, ChampionRefusedError when the
        champion failed its checks and another version serves, and any other load error as it
        is; what was served before stays unless a fallback replaced nothing at all.
        """
        with self._lock:
            self._refusals = ()
            options = self._config.storage_options or None
            registry = ModelRegistry(DeltaStore(self._config.lake_uri, options), self._config.artifacts_uri)
            try:
                swapped = self._refresh(registry)
            except Exception as exc:
                self._problem = str(exc)
                self._attach_shadow(registry)
                raise
            self._problem = None
            return self._attach_shadow(registry) or swapped

    def _attach_shadow(self, registry: ModelRegistry) -> bool:
        """Put the registry's shadow beside whatever serves; True when the shadow changed.

        A shadow is checked like a champion; one that fails is not scored (logged, and kept in
        `shadow_problem`), and never affects what answers.
        """
        current = self._current
        if current is None:
            return False
        wanted = registry.shadow()
        if wanted is None or wanted.version == current.version.version:
            self._shadow, self._shadow_problem = None, None
        elif self._shadow is None or self._shadow.version.version != wanted.version:
            try:
                loaded, checks = self._check(wanted)
                self._shadow, self._shadow_problem = Challenger(loaded, wanted, checks), None
            except ModelRefusedError as exc:
                log.warning("shadow v%s is not scored: %s", wanted.version, exc.refusal.reason)
                self._shadow, self._shadow_problem = None, exc.refusal.reason
        if current.shadow is self._shadow:
            return False
        self._current = dataclasses.replace(current, shadow=self._shadow)
        return True

    def _refresh(self, registry: ModelRegistry) -> bool:
        options = self._config.storage_options or None
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
            if before.refused:  # the refused champion was replaced by the version serving
                self._current = dataclasses.replace(before, version=champion, refused=())
            return False
        if before is not None and before.snapshot_id == snapshot_id:
            snapshot, lookup = before.snapshot, before.lookup
        else:
            snapshot = load(self._config.lake_uri, snapshot_id, options)
            lookup = OnlineLookup(snapshot)
        scene = (snapshot_id, snapshot, lookup)
        try:
            self._current = self._serve(champion, *scene, before)
            return True
        except ModelRefusedError as exc:
            refused = exc.refusal
            self._refusals = (refused,)
            if before is not None:
                kept = self._serve(before.version, *scene, before)
                self._current = dataclasses.replace(kept, refused=(refused,))
                raise ChampionRefusedError(
                    f"{refused.reason}; still serving model version {before.version.version}"
                ) from exc
        fallback = self._fall_back(registry, champion, scene)
        if fallback is None:
            raise NoModelLoadsError(
                "no model version passes its checks: " + "; ".join(r.reason for r in self._refusals)
            )
        self._current = fallback
        raise ChampionRefusedError(
            f"{refused.reason}; serving model version {fallback.version.version} instead "
            "(the newest earlier version that served before or passed its gate, and passes its checks)"
        )

    def _fall_back(
        self, registry: ModelRegistry, champion: ModelVersion, scene: tuple[str, OnlineSnapshot, OnlineLookup]
    ) -> Served | None:
        """The newest other version that may serve and passes its checks; refusals add to `_refusals`."""
        for candidate in _fallbacks(registry, champion):
            try:
                served = self._serve(candidate, *scene, None)
            except ModelRefusedError as exc:
                self._refusals = (*self._refusals, exc.refusal)
                continue
            log.warning("champion v%s refused; serving v%s instead", champion.version, candidate.version)
            return dataclasses.replace(served, refused=self._refusals)
        return None

    def _serve(
        self,
        model: ModelVersion,
        snapshot_id: str,
        snapshot: OnlineSnapshot,
        lookup: OnlineLookup,
        before: Served | None,
    ) -> Served:
        """`model` with the snapshot, checked and tried once; the model of `before` is reused if it is `model`.

        A reused model already passed its checks, so a failed try is the snapshot's and raises as
        it is; a new model that fails its try is refused like one that fails its checks.
        """
        if before is not None and before.version.version == model.version:
            served = Served(before.model, model, snapshot, snapshot_id, lookup, before.checks)
            _try_once(served)
            return served
        loaded, checks = self._check(model)
        served = Served(loaded, model, snapshot, snapshot_id, lookup, checks)
        try:
            _try_once(served)
        except Exception as exc:
            raise ModelRefusedError(
                model.version, "try", f"model version {model.version} fails its first prediction: {exc}"
            ) from exc
        return served

    def _check(self, model: ModelVersion) -> tuple[OnnxModel, Checks]:
        number = model.version
        if not model.located:
            raise ModelRefusedError(
                number,
                "files",
                f"model version {number} names its files by key, and no artifacts root is set",
            )
        try:
            folder, data = self._read(model)
        except Exception as exc:
            raise ModelRefusedError(
                number, "files", f"model version {number}: its files do not read: {exc}"
            ) from exc
        return check_model(model, folder, data, SCORING_THREADS)

    def _read(self, model: ModelVersion) -> tuple[Path, dict[str, bytes]]:
        """The bytes of the files the server loads (those present); from a bucket through the cache.

        A cached file is used only while it matches the registered md5 (or none was recorded);
        otherwise it is fetched again, so a damaged cache costs a download, not a refusal.
        """
        if not has_scheme(model.artifact_uri):
            folder = Path(model.artifact_uri)
            return folder, {n: (folder / n).read_bytes() for n in LOADED_FILES if (folder / n).is_file()}
        options = self._config.storage_options or None
        folder = self._config.cache_dir / f"v{model.version}-{model.model_md5.removesuffix('.dir')}"
        data: dict[str, bytes] = {}
        for name in LOADED_FILES:
            cached = folder / name
            if cached.is_file():
                data[name] = cached.read_bytes()
                if md5_mismatch(model, name, data[name]) is None:
                    continue
            uri = join_uri(model.artifact_uri, name)
            if not exists(uri, options):
                data.pop(name, None)
                continue
            data[name] = read_artifact(uri, options)
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{name}.tmp"
            temporary.write_bytes(data[name])
            temporary.replace(cached)
        return folder, data


def _fallbacks(registry: ModelRegistry, champion: ModelVersion) -> Iterator[ModelVersion]:
    """Versions that may stand in for the champion, newest first: earlier ones that served or passed their gate.

    Only versions registered before the champion: a newer one that served was replaced by this
    champion (after a rollback, on purpose), so a broken champion never brings it back.
    """
    for model in reversed(registry.versions()):
        if model.version >= champion.version or model.status in UNSERVABLE:
            continue
        try:
            passed = gate_passed(model)
        except RegistryError:
            passed = False
        if passed or registry.served_before(model.version):
            yield model


TRY_TOLERANCE = 1e-6


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
    if abs(float(fast[0]) - float(probability[0])) > TRY_TOLERANCE:
        raise RuntimeError(
            f"model v{served.version.version}: the lookup path answered {fast!r}, the frame path {probability!r}"
        )
