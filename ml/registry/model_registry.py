"""The model registry: a Delta table of model versions and their lineage.

Every state change rewrites the (small) table in one commit, so a promotion moves the
old champion to `archived` and the new one to `champion` atomically; each change is
also appended to `registry/events` with its reason. A new candidate supersedes older
ones in the same commit, so only the newest can be evaluated and promoted.

Artifact URIs are kept relative to the artifacts root (the model's content key, `<key>` and
`<key>/model.onnx`), so a copied data directory, or one moved to a bucket by configuration,
reads its own models: a registry opened with `artifacts_root` resolves them. Rows written
with an absolute location keep it.

Only a version that passed its promotion gate, or served as champion before, can become
champion through the platform (`promote_passed`, `rollback`). An operator's freeze
(`registry/flags`) stops promotions, never rollbacks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ml.lake.delta import DeltaStore
from ml.lake.schemas import TIMESTAMP_UTC
from ml.lake.storage import exists, filesystem, has_scheme, join_uri
from ml.lake.tables import REGISTRY_EVENTS, REGISTRY_FLAGS, REGISTRY_MODELS

STATUSES = ("candidate", "shadow", "champion", "archived", "rejected", "superseded")
FILES = "files"
"""Key in `ModelVersion.lineage` of the md5 of every pinned model file, by file name (rows written
before md5s were recorded have none)."""
FREEZE_FLAG = "promotions_frozen"
UNFREEZE_HINT = "python -m ml.registry.cli unfreeze"

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
    "lineage": pl.String(),
}
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "at": TIMESTAMP_UTC,
    "version": pl.Int64(),
    "from_status": pl.String(),
    "to_status": pl.String(),
    "reason": pl.String(),
}
FLAGS_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "at": TIMESTAMP_UTC,
    "flag": pl.String(),
    "value": pl.Boolean(),
    "by": pl.String(),
    "reason": pl.String(),
}


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Freeze:
    """An operator's stop on promotions: who set it, why, and since when."""

    by: str
    reason: str
    since: dt.datetime

    def describe(self) -> str:
        return f"promotions are frozen since {self.since:%Y-%m-%d %H:%M} UTC by {self.by}: {self.reason}"


@dataclass(frozen=True)
class ModelVersion:
    version: int
    status: str
    artifact_uri: str
    onnx_uri: str
    model_md5: str
    training_set_md5: str
    feature_table_uri: str
    """The feature table by its name under the lake root (rows written before held its absolute URI)."""
    feature_table_version: int
    lake_versions: dict[str, int]
    git_commit: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
    lineage: dict[str, Any]
    """What made the version beyond its training set: the bronze versions its features read, the
    source tree (commit, dirty or not, what changed) and the Dagster run; `{}` for older rows."""

    @property
    def located(self) -> bool:
        """Whether the artifact URIs are locations (resolved, or written absolute) rather than bare keys."""
        return is_location(self.artifact_uri)

    @classmethod
    def from_row(cls, row: dict[str, Any], artifacts_root: str = "") -> ModelVersion:
        return cls(
            version=row["version"],
            status=row["status"],
            artifact_uri=resolve_artifact(row["artifact_uri"], artifacts_root),
            onnx_uri=resolve_artifact(row["onnx_uri"], artifacts_root),
            model_md5=row["model_md5"],
            training_set_md5=row["training_set_md5"],
            feature_table_uri=row["feature_table_uri"],
            feature_table_version=row["feature_table_version"],
            lake_versions=json.loads(row["lake_versions"]),
            git_commit=row["git_commit"],
            params=json.loads(row["params"]),
            metrics=json.loads(row["metrics"]),
            created_at=row["created_at"],
            lineage=json.loads(row.get("lineage") or "{}"),
        )


def gate_of(model: ModelVersion) -> dict[str, Any] | None:
    """The promotion gate's verdict kept in the registry row, or None if the version was never evaluated."""
    gate = model.metrics.get("gate")
    if gate is not None and not (isinstance(gate, dict) and isinstance(gate.get("passed"), bool)):
        raise RegistryError(
            f"model version {model.version}: metrics.gate is {gate!r}, not an object with a boolean 'passed'"
        )
    return gate


def gate_passed(model: ModelVersion) -> bool:
    gate = gate_of(model)
    return gate is not None and gate["passed"]


def is_location(uri: str) -> bool:
    return has_scheme(uri) or Path(uri).is_absolute()


def resolve_artifact(uri: str, artifacts_root: str) -> str:
    """A stored artifact URI as a location: a key joined to the artifacts root, a location as it is.

    Rows written before keys held the root-prefixed path (`.data/models/<key>`): kept as they are.
    """
    if is_location(uri) or not artifacts_root or uri.startswith(artifacts_root.rstrip("/") + "/"):
        return uri
    return join_uri(artifacts_root, uri)


@dataclass(frozen=True)
class ModelRegistry:
    """The registry in `store`; `artifacts_root` resolves artifact keys, `run_id` goes into every commit."""

    store: DeltaStore
    artifacts_root: str = ""
    run_id: str = ""

    def frame(self) -> pl.DataFrame:
        if not self.store.exists(REGISTRY_MODELS):
            return pl.DataFrame(schema=MODELS_SCHEMA)
        frame = self.store.read(REGISTRY_MODELS)
        missing = [
            pl.lit(None, dtype).alias(c) for c, dtype in MODELS_SCHEMA.items() if c not in frame.columns
        ]
        return frame.with_columns(missing).select(list(MODELS_SCHEMA)).sort("version")

    def versions(self) -> list[ModelVersion]:
        return [ModelVersion.from_row(r, self.artifacts_root) for r in self.frame().iter_rows(named=True)]

    def get(self, version: int) -> ModelVersion:
        for model in self.versions():
            if model.version == version:
                return model
        raise RegistryError(f"model version {version} is not registered in {self.store.uri(REGISTRY_MODELS)}")

    def champion(self) -> ModelVersion | None:
        champions = [m for m in self.versions() if m.status == "champion"]
        return champions[0] if champions else None

    def shadow(self) -> ModelVersion | None:
        """The challenger served in shadow beside the champion, if any."""
        return self.latest("shadow")

    def start_shadow(self, version: int, reason: str, *, now: dt.datetime) -> ModelVersion | None:
        """Serve a version that passed its gate in shadow; returns the shadow it replaces (superseded).

        Not a promotion: the champion stays, so a freeze does not stop it. The shadow becomes
        champion only through `promote_passed` once the live comparison allows it.
        """
        model = self._servable(version)
        if not gate_passed(model):
            raise RegistryError(
                f"model version {version} {_why_not_passed(model)}; only a passed one can shadow"
            )
        if model.status == "champion":
            raise RegistryError(f"version {version} is the champion; it cannot also be its own shadow")
        check_artifacts(model, self.store.storage_options)
        previous = self.shadow()
        if previous is not None and previous.version == version:
            return None
        changes, reasons = {version: "shadow"}, {}
        if previous is not None:
            changes[previous.version] = "superseded"
            reasons[previous.version] = f"replaced in shadow by v{version}"
        self._transition(changes, reason, now, reasons)
        return previous

    def latest(self, status: str) -> ModelVersion | None:
        matching = [m for m in self.versions() if m.status == status]
        return matching[-1] if matching else None

    def latest_evaluated(self) -> ModelVersion | None:
        """The newest version the gate has judged (its row keeps a verdict), whatever its status."""
        evaluated = [m for m in self.versions() if gate_of(m) is not None]
        return evaluated[-1] if evaluated else None

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
        lineage: dict[str, Any] | None = None,
    ) -> int:
        current = self.frame()
        version = int(current["version"].max() or 0) + 1
        candidates = current.filter(pl.col("status") == "candidate")
        waiting = [ModelVersion.from_row(r, self.artifacts_root) for r in candidates.iter_rows(named=True)]
        supersede = pl.col("version").is_in([m.version for m in waiting])
        current = current.with_columns(
            pl.when(supersede).then(pl.lit("superseded")).otherwise(pl.col("status")).alias("status")
        )
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
            "lineage": json.dumps({**(lineage or {}), "run_id": self.run_id}, sort_keys=True),
        }
        updated = pl.concat([current, pl.DataFrame([row], schema=MODELS_SCHEMA)])
        events = [
            (m.version, "candidate", "superseded", f"superseded by v{version} before {_next_step(m)}")
            for m in waiting
        ]
        self._write(updated, [*events, (version, "", "candidate", "registered")], now)
        return version

    def update_metrics(self, version: int, metrics: dict[str, Any]) -> None:
        self.get(version)
        frame = self.frame().with_columns(
            pl.when(pl.col("version") == version)
            .then(pl.lit(json.dumps(metrics, sort_keys=True)))
            .otherwise(pl.col("metrics"))
            .alias("metrics")
        )
        self._overwrite_models(frame, f"metrics of v{version}")

    def reject(self, version: int, reason: str, *, now: dt.datetime) -> None:
        model = self.get(version)
        if model.status == "champion":
            raise RegistryError(f"version {version} is the champion; roll back to another version instead")
        self._transition({version: "rejected"}, reason, now)

    def promote(self, version: int, reason: str, *, now: dt.datetime) -> ModelVersion | None:
        """Make `version` the champion and archive the previous one; returns the previous champion.

        Refused while promotions are frozen, and for rejected or superseded versions. It does
        not read the gate: the platform promotes through `promote_passed` (the gate's asset,
        the CLI) or `rollback`; tests and benchmarks call this to install a champion.
        """
        model = self._servable(version)
        freeze = self.frozen()
        if freeze is not None:
            raise RegistryError(
                f"{freeze.describe()}; v{version} stays {model.status}. Unfreeze with `{UNFREEZE_HINT}`, "
                f"then promote it with `python -m ml.registry.cli promote {version}`"
            )
        return self._make_champion(model, reason, now)

    def promote_passed(self, version: int, reason: str, *, now: dt.datetime) -> ModelVersion | None:
        """Promote a version whose promotion gate passed (see `promote` for what else refuses it)."""
        model = self._servable(version)
        if not gate_passed(model):
            raise RegistryError(
                f"model version {version} {_why_not_passed(model)}; only a version that passed its gate "
                "(training/evaluation) can be promoted"
            )
        return self.promote(version, reason, now=now)

    def rollback(self, to_version: int, reason: str = "rollback", *, now: dt.datetime) -> ModelVersion | None:
        """Make an earlier version the champion again: one that passed its gate or was champion before.

        Rollback is the operator's emergency lever, so it stays allowed while promotions are frozen.
        """
        model = self._servable(to_version)
        if not gate_passed(model) and not self.served_before(to_version):
            raise RegistryError(
                f"model version {to_version} {_why_not_passed(model)} and was never champion; "
                "roll back only to a version that passed its gate or served before"
            )
        return self._make_champion(model, reason, now)

    def served_before(self, version: int) -> bool:
        """Whether registry/events show `version` becoming champion at some point."""
        events = self.events()
        return events.filter((pl.col("version") == version) & (pl.col("to_status") == "champion")).height > 0

    def last_reason(self, version: int) -> str:
        """The reason of the latest status change of `version` ("" if it has none)."""
        reasons = self.events().filter(pl.col("version") == version)["reason"]
        return str(reasons[-1]) if len(reasons) else ""

    def freeze(self, reason: str, *, now: dt.datetime, by: str = "operator") -> Freeze:
        """Stop promotions (the gate's and the CLI's) until `unfreeze`; rollbacks stay allowed."""
        if not reason.strip():
            raise RegistryError(
                "a freeze needs a reason (--reason): it is what the blocked promotions report"
            )
        self._write_flag(True, by, reason, now)
        return Freeze(by=by, reason=reason, since=now)

    def unfreeze(self, *, now: dt.datetime, by: str = "operator") -> Freeze | None:
        """Allow promotions again; returns the freeze that was lifted (None if there was none)."""
        lifted = self.frozen()
        if lifted is not None:
            self._write_flag(False, by, "unfrozen", now)
        return lifted

    def frozen(self) -> Freeze | None:
        if not self.store.exists(REGISTRY_FLAGS):
            return None
        flags = self.store.read(REGISTRY_FLAGS).filter(pl.col("flag") == FREEZE_FLAG)
        if flags.is_empty():
            return None
        last = flags.sort("seq").row(-1, named=True)
        return Freeze(by=last["by"], reason=last["reason"], since=last["at"]) if last["value"] else None

    def needed_versions(self) -> dict[str, set[int]]:
        """Per lake table, the Delta versions that registered models were built from (features and bronze)."""
        needed: dict[str, set[int]] = {}
        for model in self.versions():
            for table, version in model.lake_versions.items():
                needed.setdefault(table, set()).add(int(version))
            for table, versions in model.lineage.get("bronze_versions", {}).items():
                needed.setdefault(table, set()).update(int(v) for v in versions)
        return needed

    def events(self) -> pl.DataFrame:
        if not self.store.exists(REGISTRY_EVENTS):
            return pl.DataFrame(schema=EVENTS_SCHEMA)
        return self.store.read(REGISTRY_EVENTS).sort("at")

    def _servable(self, version: int) -> ModelVersion:
        model = self.get(version)
        if model.status == "rejected":
            raise RegistryError(
                f"version {version} was rejected by the promotion gate; it cannot be champion"
            )
        if model.status == "superseded":
            raise RegistryError(
                f"version {version} was {self.last_reason(version) or 'superseded'}; it cannot be champion"
            )
        return model

    def _make_champion(self, model: ModelVersion, reason: str, now: dt.datetime) -> ModelVersion | None:
        check_artifacts(model, self.store.storage_options)
        previous = self.champion()
        if previous is not None and previous.version == model.version:
            return previous
        changes = {model.version: "champion"}
        if previous is not None:
            changes[previous.version] = "archived"
        self._transition(changes, reason, now)
        return previous

    def _overwrite_models(self, frame: pl.DataFrame, label: str) -> None:
        """Rewrite registry/models; a table from before a column was added gains it in the same commit."""
        stored = (
            self.store.table(REGISTRY_MODELS).schema().fields if self.store.exists(REGISTRY_MODELS) else []
        )
        migrate = bool(stored) and {f.name for f in stored} != set(MODELS_SCHEMA)
        self.store.overwrite(
            REGISTRY_MODELS, frame.select(list(MODELS_SCHEMA)), self._commit(label), replace_schema=migrate
        )

    def _commit(self, label: str) -> dict[str, str]:
        """Commit metadata of a registry change: what changed, and the run (or operator) that changed it."""
        return {"registry_change": label, **({"run_id": self.run_id} if self.run_id else {})}

    def _write_flag(self, value: bool, by: str, reason: str, now: dt.datetime) -> None:
        before = self.store.read(REGISTRY_FLAGS) if self.store.exists(REGISTRY_FLAGS) else None
        seq = 0 if before is None else int(before["seq"].max() or 0) + 1
        row = {"seq": seq, "at": now, "flag": FREEZE_FLAG, "value": value, "by": by, "reason": reason}
        rows = pl.DataFrame([row], schema=FLAGS_SCHEMA)
        frame = rows if before is None else pl.concat([before.select(list(FLAGS_SCHEMA)), rows])
        label = f"{FREEZE_FLAG}={str(value).lower()} by {by}"
        self.store.overwrite(REGISTRY_FLAGS, frame, self._commit(label))

    def _transition(
        self, changes: dict[int, str], reason: str, now: dt.datetime, reasons: dict[int, str] | None = None
    ) -> None:
        """Apply status changes in one commit; `reasons` overrides `reason` per version."""
        frame = self.frame()
        before = dict(zip(frame["version"], frame["status"], strict=True))
        status = pl.col("status")
        for version, new in changes.items():
            status = pl.when(pl.col("version") == version).then(pl.lit(new)).otherwise(status)
        self._write(
            frame.with_columns(status.alias("status")),
            [(v, before[v], new, (reasons or {}).get(v, reason)) for v, new in changes.items()],
            now,
        )

    def _write(self, frame: pl.DataFrame, events: list[tuple[int, str, str, str]], now: dt.datetime) -> None:
        if frame.filter(pl.col("status") == "champion").height > 1:
            raise RegistryError("a registry change would leave two champions")
        if frame["version"].is_duplicated().any():
            raise RegistryError("a registry change would duplicate a version")
        label = "; ".join(f"v{v}: {a or 'new'} -> {b}" for v, a, b, _ in events)
        self._overwrite_models(frame, label)
        rows = pl.DataFrame(
            [
                {"at": now, "version": v, "from_status": a, "to_status": b, "reason": r}
                for v, a, b, r in events
            ],
            schema=EVENTS_SCHEMA,
        )
        self.store.overwrite(REGISTRY_EVENTS, pl.concat([self.events(), rows]), self._commit(label))


def _next_step(model: ModelVersion) -> str:
    return "promotion" if "gate" in model.metrics else "evaluation"


def _why_not_passed(model: ModelVersion) -> str:
    gate = gate_of(model)
    if gate is None:
        return "was never evaluated"
    explained = "; ".join(f"{k}: {v}" for k, v in gate.items() if k != "passed")
    return f"failed its promotion gate ({explained or 'no explanation kept'})"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5s(folder: Path) -> dict[str, str]:
    """The md5 of every file directly in `folder`, by name: what registration records under `FILES`."""
    return {p.name: md5_hex(p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}


def recorded_md5s(model: ModelVersion) -> dict[str, str]:
    """The file md5s registration recorded for `model` ({} for a row written before they were)."""
    files = model.lineage.get(FILES) or {}
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise RegistryError(f"model version {model.version}: lineage.{FILES} is {files!r}, not name -> md5")
    return dict(files)


def md5_mismatch(model: ModelVersion, name: str, data: bytes) -> str | None:
    """Why `data`, read as `name` of `model`, is not the registered file; None when it is (or none was recorded)."""
    expected = recorded_md5s(model).get(name)
    actual = md5_hex(data)
    if expected is None or actual == expected:
        return None
    return (
        f"model version {model.version}: {name} has md5 {actual}, but {expected} was registered; "
        "the file changed after registration (restore it with python -m ml.reproduce, or choose another version)"
    )


def read_artifact(uri: str, storage_options: Mapping[str, str] | None = None) -> bytes:
    fs, path = filesystem(uri, dict(storage_options) if storage_options else None)
    with fs.open_input_stream(path) as source:
        return bytes(source.read())


def check_artifacts(model: ModelVersion, storage_options: Mapping[str, str] | None = None) -> None:
    """Refuse a model whose files are gone or changed (in a folder or a bucket), before anything points at it.

    Each file whose md5 registration recorded is read and hashed: a promotion or rollback to a
    model whose weights were overwritten after they were judged would serve something nobody
    evaluated. A row from before md5s were recorded is checked for presence only.
    """
    if not model.located:
        raise RegistryError(
            f"model version {model.version} names its artifacts by key ({model.artifact_uri}) relative to "
            "the artifacts root, and this registry was opened without one (PLATFORM_ARTIFACTS_URI)"
        )
    for uri in (model.artifact_uri, model.onnx_uri):
        if not exists(uri, dict(storage_options) if storage_options else None):
            raise RegistryError(
                f"model version {model.version} points at {uri}, which does not exist; "
                "restore it (python -m ml.reproduce) or choose another version"
            )
    for name in sorted(recorded_md5s(model)):
        uri = join_uri(model.artifact_uri, name)
        if not exists(uri, dict(storage_options) if storage_options else None):
            raise RegistryError(
                f"model version {model.version} lacks {name} ({uri}), which was registered with it; "
                "restore it (python -m ml.reproduce) or choose another version"
            )
        problem = md5_mismatch(model, name, read_artifact(uri, storage_options))
        if problem is not None:
            raise RegistryError(problem)
