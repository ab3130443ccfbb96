"""Reproduce a registered model: restore its exact training set from DVC and retrain it.

    python -m ml.reproduce --version 3 [--lake URI] [--repo .] [--dvc-remote URL] [--out .data/reproduce/v3]

The lake, its storage options and the DVC remote default to the platform's settings
(`ml.settings.lake_settings`: PLATFORM_LAKE_URI, else PLATFORM_DATA_DIR/lake;
PLATFORM_STORAGE_OPTIONS; PLATFORM_DVC_REMOTE, else the repository's default remote, with
the endpoint of an s3:// remote from the storage options); `--lake` and `--dvc-remote`
win. Credentials come from the AWS_* variables only.

Checks, in order: the training set restored from the DVC remote (DVC verifies its
md5); the feature table at the registered Delta version snapshots to the same bytes
(the lineage survived maintenance); retraining with the registered parameters gives
the registered metrics (exactly, on the CPU); and every file of the registered model,
restored from DVC by its md5, is byte-identical to the retraining's. The retraining runs the
training code of the model's registered commit (`ml.registry.training_code`), not the
checkout's, so a model still reproduces after the training loop has changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from ml.lake.delta import DeltaStore
from ml.lake.tables import FEATURES_TABLE
from ml.registry.artifacts import UNPINNED
from ml.registry.dvc_repo import DvcError, DvcRepo
from ml.registry.model_registry import ModelRegistry, RegistryError
from ml.registry.training_code import training_code
from ml.settings import SettingsError, lake_settings
from ml.training.training_set import folder_md5, read_manifest, sizes_of, snapshot_from_lake

TOLERANCE = 1e-9


class ReproductionError(RuntimeError):
    """Retraining a registered version could not run to the end."""


def compare(registered: dict, reproduced: dict, path: str = "") -> list[str]:
    """Differences between two metric trees (numbers within TOLERANCE count as equal)."""
    differences = []
    for key in sorted(set(registered) | set(reproduced)):
        a, b, where = registered.get(key), reproduced.get(key), f"{path}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            differences += compare(a, b, f"{where}.")
        elif isinstance(a, int | float) and isinstance(b, int | float):
            if not math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE):
                differences.append(f"{where}: registered {a}, reproduced {b}")
        elif key in ("seconds", "samples_per_second", "device"):
            continue
        elif a != b:
            differences.append(f"{where}: registered {a!r}, reproduced {b!r}")
    return differences


def model_differences(registered: Path, reproduced: Path) -> list[str]:
    """Files of the registered model (restored by its md5) whose bytes the retraining did not give again.

    The pinned files are content only (the clock's record, `TIMINGS`, and checkpoints are not
    pinned), so on the CPU a faithful retraining gives every one of them byte for byte.
    """
    names = sorted(p.name for p in registered.iterdir() if p.is_file())
    differences = [
        f"model file {name}: {'missing from' if not (reproduced / name).is_file() else 'differs in'} the retraining"
        for name in names
        if not (reproduced / name).is_file()
        or (reproduced / name).read_bytes() != (registered / name).read_bytes()
    ]
    extra = sorted(p.name for p in reproduced.iterdir() if p.is_file() and p.name not in (*names, *UNPINNED))
    differences += [
        f"model file {name}: written by the retraining, not in the registered model" for name in extra
    ]
    if not differences:
        print(f"model files {', '.join(names)}: byte-identical to the registered model md5")
    return differences


def reproduce(
    version: int,
    lake: str,
    repo: Path,
    out: Path,
    dvc_remote: str = "",
    storage_options: Mapping[str, str] | None = None,
    endpoint_url: str = "",
) -> list[str]:
    """Restore, re-snapshot, retrain and compare.

    `storage_options` are the lake's (non-secret) deltalake options; `endpoint_url` is the
    S3-compatible endpoint written beside an s3:// `dvc_remote`. Credentials are not passed:
    deltalake and DVC read the AWS_* variables from the environment themselves.
    """
    out = out.resolve()  # the retraining runs from another folder
    store = DeltaStore(lake, dict(storage_options) if storage_options else None)
    model = ModelRegistry(store).get(version)
    dvc = DvcRepo(repo, remote=dvc_remote, endpoint_url=endpoint_url)
    training_set = dvc.restore(model.training_set_md5, out / "training_set")
    manifest = read_manifest(training_set)
    print(f"restored training set {model.training_set_md5} into {training_set}")

    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "snapshot"
        version_read = model.lake_versions.get(FEATURES_TABLE, model.feature_table_version)
        snapshot_from_lake(
            store, again, dt.date.fromisoformat(manifest["cutoff"]), sizes_of(manifest), int(version_read)
        )
        same = folder_md5(again) == folder_md5(training_set)
    print(
        f"feature table version {version_read} {'reproduces' if same else 'does NOT reproduce'} the snapshot"
    )

    params = out / "params.yaml"
    params.write_text(yaml.safe_dump({"train": model.params}))
    command = [
        sys.executable,
        "-m",
        "ml.training.train",
        "--training-set",
        str(training_set),
        "--out",
        str(out / "model"),
        "--params",
        str(params),
        # Bit-for-bit agreement is only promised on the CPU (CUDA kernels and mixed
        # precision are not deterministic across machines).
        "--device",
        "cpu",
    ]
    code = training_code(repo, model.git_commit, out / "code")
    print(code.note)
    done = subprocess.run(command, cwd=code.folder, check=False)
    if done.returncode != 0:
        raise ReproductionError(
            f"retraining v{version} failed (exit {done.returncode}) on the restored training set "
            f"{training_set}: see the training output above"
        )
    reproduced = json.loads((out / "model" / "metrics.json").read_text())
    differences = compare(model.metrics.get("training", {}), reproduced)
    registered_model = dvc.restore(model.model_md5, out / "registered_model")
    print(f"restored the registered model {model.model_md5} into {registered_model}")
    differences += model_differences(registered_model, out / "model")
    if not same:
        differences.append(
            f"the feature table at version {version_read} no longer snapshots to the same bytes"
        )
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", type=int, required=True, help="registered model version")
    parser.add_argument(
        "--lake",
        default="",
        help="lake root holding the registry and features (default: PLATFORM_LAKE_URI, else PLATFORM_DATA_DIR/lake)",
    )
    parser.add_argument("--repo", type=Path, default=Path(), help="git + DVC repository")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default .data/reproduce/vN)")
    parser.add_argument(
        "--dvc-remote",
        default="",
        help="DVC remote URL, e.g. s3://bucket/dvc (default: PLATFORM_DVC_REMOTE, else the repository's)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(".data") / "reproduce" / f"v{args.version}"
    try:
        settings = lake_settings(os.environ)
        differences = reproduce(
            args.version,
            args.lake or settings.lake_uri,
            args.repo.resolve(),
            out,
            args.dvc_remote or settings.dvc_remote,
            settings.storage_options,
            settings.endpoint_url,
        )
    except (SettingsError, RegistryError, DvcError, ReproductionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if differences:
        print("reproduction differs:\n" + "\n".join(f"- {d}" for d in differences), file=sys.stderr)
        return 1
    print(f"v{args.version} reproduced: same training bytes, same metrics, same model files")
    return 0
