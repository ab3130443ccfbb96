"""Landing zone, quarantine, lake, artifacts and DVC remote on an S3-compatible server,
chosen by configuration alone (PLATFORM_* variables read by `build_resources`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import dagster as dg
import polars as pl
from dagster_shared.serdes import serialize_value

from ml.registry.dvc_repo import DvcRepo, init_pipeline_repo
from ml.registry.model_registry import ModelRegistry
from ml.training.training_set import folder_md5
from tests.conftest import PROJECT, day, failures, set_training
from tests.storage.conftest import S3Platform

CHAIN = [
    "training/training_set",
    "training/candidate_model",
    "training/evaluation",
    "deployment/champion_model",
]
DAYS = (day(1), day(10))
GATE = {"ops": {"training__evaluation": {"config": {"baseline_margin": 1.0, "max_calibration_error": 1.0}}}}


def _landing_rows(p: S3Platform, dataset: str) -> int:
    keys = [f"landing/{dataset}/{day(n).isoformat()}.csv" for n in range(1, 11)]
    return sum(pl.read_csv(p.read_object("landing", k), infer_schema=False).height for k in keys)


def test_landing_to_champion_on_s3(s3_platform: S3Platform) -> None:
    p = s3_platform
    set_training(p, {"max_epochs": 2, "patience": 1})

    instance = dg.DagsterInstance.ephemeral()
    p.materialize(["bronze/flights", "bronze/weather"], *DAYS, instance=instance)
    p.materialize(["features/flight_features"], *DAYS, instance=instance)
    chain = p.materialize(CHAIN, instance=instance, run_config=GATE)

    # Delta tables live in the lake bucket, nowhere on the local disk.
    flights = p.store.read("bronze/flights")
    rejected = p.store.read("bronze/flights_rejects").height
    assert flights.height == _landing_rows(p, "flights") - rejected
    assert flights["flight_date"].n_unique() == 10
    assert p.store.version("bronze/flights") == 1
    assert p.store.version("features/flight_features") == 1
    lake = p.keys("lake")
    assert "lake/bronze/flights/_delta_log/00000000000000000001.json" in lake
    assert any(k.startswith("lake/features/flight_features/") and k.endswith(".parquet") for k in lake)
    assert not (p.root / "data" / "lake").exists()

    # The training set is pinned by DVC and pushed to the remote bucket; a fresh checkout
    # restores it from the remote's URL alone (no endpointurl in its config: DVC takes AWS_ENDPOINT_URL).
    locked = DvcRepo(p.repo).locked_output("training_set", "data/training_set")
    md5 = locked.md5.removesuffix(".dir")
    remote = p.keys("dvc")
    assert f"remote/files/md5/{md5[:2]}/{md5[2:]}.dir" in remote
    assert len(remote) >= 5  # the listing, three splits, the manifest
    fresh = init_pipeline_repo(p.root / "fresh", PROJECT, p.root / "unused-remote")
    restored = DvcRepo(fresh.root, remote=p.env["PLATFORM_DVC_REMOTE"]).restore(
        locked.md5, p.root / "restored"
    )
    assert folder_md5(restored) == folder_md5(p.repo / "data" / "training_set")
    assert "endpointurl" in (p.repo / ".dvc" / "config.local").read_text()

    # The model's artifacts are in the artifacts bucket (checkpoints stay local), and the
    # registry points there; evaluation read them back and published its report beside them.
    assert chain.success
    champion = ModelRegistry(p.store, artifacts_root=p.env["PLATFORM_ARTIFACTS_URI"]).champion()
    assert champion is not None and champion.artifact_uri.startswith(f"s3://{p.buckets['models']}/models/")
    prefix = champion.artifact_uri.removeprefix(f"s3://{p.buckets['models']}/") + "/"
    models = [k.removeprefix(prefix) for k in p.keys("models")]
    assert {"model.onnx", "metrics.json", "evaluation/evaluation.json"} <= set(models)
    assert not any(k.startswith("checkpoints/") for k in models)
    report = json.loads(p.read_object("models", prefix + "evaluation/evaluation.json"))
    assert report["gate"]["passed"] is True

    # v1 reproduces from the buckets alone: with the local DVC cache and the training set
    # gone, `python -m ml.reproduce` (lake and DVC remote from the PLATFORM_* variables, no
    # --lake) restores both from the S3 remote, re-snapshots the S3 lake and retrains.
    shutil.rmtree(p.repo / ".dvc" / "cache")
    shutil.rmtree(p.repo / "data" / "training_set")
    assert not any((p.root / "dvc-remote").iterdir())  # the repository's own remote holds nothing
    out = p.root / "reproduced"
    command = [
        sys.executable,
        "-m",
        "ml.reproduce",
        "--version",
        "1",
        "--repo",
        str(p.repo),
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=PROJECT, env={**os.environ, **p.env}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reproduces the snapshot" in done.stdout
    assert "byte-identical to the registered model md5" in done.stdout
    assert "v1 reproduced: same training bytes, same metrics, same model files" in done.stdout

    # Its lineage walks the buckets too: landing files in the landing bucket, md5 by md5.
    walk = [sys.executable, "-m", "ml.lineage", "--version", "1", "--repo", str(p.repo)]
    traced = subprocess.run(walk, cwd=PROJECT, env={**os.environ, **p.env}, capture_output=True, text=True)
    assert traced.returncode == 0, traced.stdout + traced.stderr
    assert "every link checked" in traced.stdout and "ok   bronze/flights " in traced.stdout

    # Credentials came from the environment only: no run's events, logs, tags or config
    # carry them, and DVC's configuration does not either.
    secrets = [p.server.environment()[name] for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")]
    runs = instance.get_runs()
    assert len(runs) == 3
    recorded = [serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id)]
    recorded += [serialize_value(run.run_config) + serialize_value(run.tags) for run in runs]
    assert any(p.env["PLATFORM_LAKE_URI"] in text for text in recorded)
    dvc_config = [(p.repo / ".dvc" / name).read_text() for name in ("config", "config.local")]
    for secret in secrets:
        assert not [text for text in recorded + dvc_config if secret in text]


def test_a_bad_landing_file_is_quarantined_in_the_quarantine_bucket(s3_platform: S3Platform) -> None:
    p = s3_platform
    key = f"landing/weather/{day(3).isoformat()}.csv"
    good = p.read_object("landing", key)
    bad = good[: len(good) // 2]  # cut mid-row: a truncated delivery
    p.put_object("landing", key, bad)

    result = p.materialize(["bronze/weather"], day(3), raise_on_error=False)

    assert not result.success
    message = failures(result)["bronze__weather"]
    assert f"{p.env['PLATFORM_LANDING_URI']}/weather/{day(3).isoformat()}.csv" in message
    assert key not in p.keys("landing")
    quarantined = f"quarantine/weather/{day(3).isoformat()}.csv"
    assert p.keys("quarantine") == [quarantined, f"{quarantined}.reason.json"]
    assert p.read_object("quarantine", quarantined) == bad
    note = json.loads(p.read_object("quarantine", f"{quarantined}.reason.json"))
    assert note["source"] == f"{p.env['PLATFORM_LANDING_URI']}/weather/{day(3).isoformat()}.csv"
    assert not p.store.exists("bronze/weather")
