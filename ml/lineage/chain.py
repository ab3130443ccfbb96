"""Walk a model (or a logged prediction) down to its landing files, checking each link against stored bytes.

The links, in order: the prediction log row (model version, online snapshot and the
snapshot's source versions); the registry row (run, source tree); the training set and
the model, restored from DVC by their md5s (DVC verifies the bytes) and compared with the
published artifacts; the feature table at its registered version (rows of the window
against the snapshot's manifest); then, per day of the training window and per bronze
table, the features commit that wrote the day, the bronze version it read, the bronze
commit that wrote the day there, and the landing file it recorded: its bytes are read
again and their md5 and rows compared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ml.ingest.landing_zone import LandingFileMissingError, LandingZone
from ml.lake.delta import DeltaStore
from ml.lake.storage import join_uri
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_WEATHER, FEATURES_TABLE, PREDICTIONS_TABLE
from ml.lineage.ledger import Commit, lineage_commits, training_window, writer_of
from ml.online.snapshot import SnapshotError, load
from ml.registry.artifacts import UNPINNED
from ml.registry.dvc_repo import DvcError, DvcRepo
from ml.registry.model_registry import ModelRegistry, ModelVersion, RegistryError, is_location, read_artifact
from ml.training.training_set import read_manifest

DAY_COLUMNS = {BRONZE_FLIGHTS: "flight_date", BRONZE_WEATHER: "obs_date"}
"""The daily bronze tables a feature day reads, with their day column."""


@dataclass(frozen=True)
class Link:
    name: str
    detail: str
    problem: str = ""
    """Empty when the link was checked and holds."""

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class LandingFile:
    table: str
    day: dt.date
    file: str
    md5: str
    rows: int
    problem: str = ""


@dataclass
class Chain:
    links: list[Link] = field(default_factory=list)
    landing: list[LandingFile] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{link.name}: {link.problem}" for link in self.links if not link.ok] + [
            f"{f.table} {f.day} landing file {f.file}: {f.problem}" for f in self.landing if f.problem
        ]

    @property
    def ok(self) -> bool:
        return not self.problems

    def landing_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(f.table, f.day, f.file, f.md5, f.rows, f.problem or "ok") for f in self.landing],
            schema={
                "table": pl.String,
                "day": pl.Date,
                "file": pl.String,
                "md5": pl.String,
                "rows": pl.Int64,
                "check": pl.String,
            },
            orient="row",
        )

    def links_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(link.name, link.detail, link.problem or "ok") for link in self.links],
            schema={"link": pl.String, "detail": pl.String, "check": pl.String},
            orient="row",
        )


@dataclass(frozen=True)
class Sources:
    """Where the chain's stored bytes are: the lake (with its registry), the landing zone, DVC."""

    registry: ModelRegistry
    zone: LandingZone
    dvc: DvcRepo | None = None
    """None skips the DVC and git links (at registration, where both were just written)."""


def request_chain(sources: Sources, request_id: str) -> tuple[Chain, int]:
    """The links of a logged prediction; returns them and the model version that answered."""
    store = sources.registry.store
    if not store.exists(PREDICTIONS_TABLE):
        raise RegistryError(f"no prediction log at {store.uri(PREDICTIONS_TABLE)}")
    answered = store.scan(PREDICTIONS_TABLE).filter(pl.col("request_id") == request_id)
    if "role" in answered.collect_schema():  # a shadow's answers were scored beside it, never sent
        answered = answered.filter(pl.col("role").is_null() | (pl.col("role") != "shadow"))
    rows = answered.collect()
    if rows.is_empty():
        raise RegistryError(
            f"request {request_id} is not in the prediction log {store.uri(PREDICTIONS_TABLE)}"
        )
    chain = Chain()
    versions, snapshots = sorted(set(rows["model_version"])), sorted(set(rows["snapshot_id"]))
    chain.links.append(
        Link(
            "prediction",
            f"request {request_id}: {rows.height} flight(s) answered by model v{versions[0]} "
            f"with online snapshot {snapshots[0]}",
            "" if len(versions) == 1 and len(snapshots) == 1 else f"several versions {versions} or snapshots",
        )
    )
    try:
        snapshot = load(store.root, snapshots[0], dict(store.storage_options or {}) or None)
        chain.links.append(
            Link(
                "online snapshot",
                f"{snapshots[0]}: days {snapshot.first_day}..{snapshot.last_day}, built from "
                + ", ".join(f"{t} v{v}" for t, v in sorted(snapshot.sources.items())),
            )
        )
    except SnapshotError as exc:
        chain.links.append(Link("online snapshot", snapshots[0], str(exc)))
    return chain, int(versions[0])


def model_chain(sources: Sources, version: int, chain: Chain | None = None) -> Chain:
    """The links of a registered model down to its landing files (appended to `chain` if given)."""
    chain = chain or Chain()
    model = sources.registry.get(version)
    lineage = model.lineage
    chain.links.append(
        Link(
            "model",
            f"v{model.version} ({model.status}), model md5 {model.model_md5}, training set "
            f"{model.training_set_md5}, registered by run {lineage.get('run_id') or 'unknown'}",
            "" if lineage else "registered before the lineage ledger: no bronze versions, tree or run",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _pinned_links(sources, model, Path(tmp), chain)
    if manifest is None:
        return chain
    days = training_window(manifest)
    _feature_links(sources, model, manifest, days, chain)
    return chain


def _pinned_links(sources: Sources, model: ModelVersion, work: Path, chain: Chain) -> dict | None:
    """Git, training set and model from DVC; returns the training set's manifest (None if unreadable)."""
    source = model.lineage.get("source", {})
    if sources.dvc is None:
        return _manifest_of_registration(sources, model, chain)
    commit = source.get("commit", model.git_commit.removesuffix("-dirty"))
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=sources.dvc.root, capture_output=True
    )
    changed = source.get("changed", [])
    chain.links.append(
        Link(
            "source tree",
            f"git {commit}"
            + (f", dirty: {', '.join(changed)}" if changed else ", clean")
            + (f"; dvc.lock {source['dvc_lock']}" if "dvc_lock" in source else ""),
            "" if known.returncode == 0 else f"commit {commit} is not in the repository {sources.dvc.root}",
        )
    )
    try:
        training_set = sources.dvc.restore(model.training_set_md5, work / "training_set")
        restored_model = sources.dvc.restore(model.model_md5, work / "model")
    except DvcError as exc:
        chain.links.append(
            Link("DVC", f"training set {model.training_set_md5}, model {model.model_md5}", str(exc))
        )
        return None
    manifest = read_manifest(training_set)
    pinned = manifest["source"]["feature_table_version"]
    chain.links.append(
        Link(
            "training set",
            f"{model.training_set_md5} restored from DVC (bytes verified by DVC): "
            + ", ".join(
                f"{s} {v['first']}..{v['last']} {v['rows']} rows" for s, v in manifest["splits"].items()
            ),
            ""
            if pinned == model.feature_table_version
            else f"its manifest names feature version {pinned}, the registry {model.feature_table_version}",
        )
    )
    chain.links.append(_artifact_link(sources, model, restored_model))
    return manifest


def _manifest_of_registration(sources: Sources, model: ModelVersion, chain: Chain) -> dict | None:
    """At registration the manifest is read from the registry's numbers alone (no DVC restore)."""
    window = model.lineage.get("training_window")
    if not window:
        return None
    chain.links.append(Link("training set", f"{model.training_set_md5}, window {window[0]}..{window[1]}"))
    return {"splits": {"train": {"first": window[0]}, "test": {"last": window[1]}}}


def _artifact_link(sources: Sources, model: ModelVersion, restored: Path) -> Link:
    """The published artifacts (what serving loads) must be the bytes DVC pinned."""
    options = dict(sources.registry.store.storage_options or {}) or None
    differ = []
    for path in sorted(p for p in restored.iterdir() if p.is_file() and p.name not in UNPINNED):
        try:
            published = read_artifact(join_uri(model.artifact_uri, path.name), options)
        except OSError:
            differ.append(f"{path.name} missing")
            continue
        if published != path.read_bytes():
            differ.append(f"{path.name} differs")
    return Link(
        "model files",
        f"{model.model_md5} restored from DVC, compared with the published artifacts {model.artifact_uri}",
        "; ".join(differ),
    )


def _feature_links(
    sources: Sources, model: ModelVersion, manifest: dict, days: Sequence[dt.date], chain: Chain
) -> None:
    store = sources.registry.store
    version = model.feature_table_version
    commits = lineage_commits(store, FEATURES_TABLE, version)
    rows = (
        store.scan(FEATURES_TABLE, version)
        .filter(pl.col("flight_date").is_between(days[0], days[-1]))
        .select(pl.len())
        .collect()
        .item()
    )
    expected = sum(int(s["rows"]) for s in manifest["splits"].values() if "rows" in s)
    unrecorded = [d for d in days if writer_of(commits, d) is None]
    problems = [
        f"{rows} rows in the window, the training set holds {expected}"
        if expected and rows != expected
        else ""
    ]
    problems.append(f"no lineage entry for day(s) {_days(unrecorded)}" if unrecorded else "")
    chain.links.append(
        Link(
            "features",
            f"{FEATURES_TABLE} v{version}: {rows} rows over {days[0]}..{days[-1]}, written by "
            f"{len({c.version for d in days if (c := writer_of(commits, d))})} commit(s)",
            "; ".join(p for p in problems if p),
        )
    )
    read: dict[str, dict[dt.date, int]] = {table: {} for table in DAY_COLUMNS}
    for day in days:
        writer = writer_of(commits, day)
        for table in DAY_COLUMNS:
            if writer is not None and table in writer.sources:
                read[table][day] = writer.sources[table]
    for table, by_day in read.items():
        _bronze_links(store, sources.zone, table, by_day, chain)


def _bronze_links(
    store: DeltaStore, zone: LandingZone, table: str, by_day: dict[dt.date, int], chain: Chain
) -> None:
    column = DAY_COLUMNS[table]
    versions = sorted(set(by_day.values()))
    chain.links.append(
        Link(
            table,
            f"versions {versions} read by the features of {len(by_day)} day(s)",
            "" if versions else "none",
        )
    )
    for version in versions:
        commits = lineage_commits(store, table, version)
        counts = dict(store.scan(table, version).group_by(column).agg(pl.len()).collect().iter_rows())
        for day in sorted(d for d, v in by_day.items() if v == version):
            chain.landing.append(_landing_file(zone, table, day, writer_of(commits, day), counts.get(day, 0)))


def _landing_file(
    zone: LandingZone, table: str, day: dt.date, writer: Commit | None, stored: int
) -> LandingFile:
    if writer is None or day not in writer.landing:
        return LandingFile(table, day, "", "", stored, "no bronze commit recorded its landing file")
    entry = writer.landing[day]
    problem = ""
    if stored != entry.stored_rows:
        problem = f"{stored} rows in {table}, the commit recorded {entry.stored_rows}"
    where = entry.name if is_location(entry.name) else zone.uri(entry.name)  # older entries held the URI
    try:
        data = zone.read(where)
        found = hashlib.md5(data).hexdigest()
        if found != entry.md5:
            problem = f"md5 is now {found}, recorded {entry.md5}: the file changed after ingestion"
    except LandingFileMissingError:
        problem = f"{where} no longer exists"
    return LandingFile(table, day, entry.name, entry.md5, entry.landing_rows, problem)


def _days(days: Sequence[dt.date]) -> str:
    return ", ".join(d.isoformat() for d in days[:5]) + (
        f" and {len(days) - 5} more" if len(days) > 5 else ""
    )
