"""params.yaml: the one file of tunable settings, shared by Dagster, DVC and the CLIs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from ml.training.training_set import SplitSizes

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"params file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"params file {path} must hold a mapping")
    return data


def split_sizes(params: dict[str, Any]) -> SplitSizes:
    section = params.get("training_set", {})
    try:
        sizes = SplitSizes(int(section["validation_days"]), int(section["test_days"]))
    except KeyError as exc:
        raise ValueError(f"params.yaml training_set needs {exc.args[0]}") from exc
    if sizes.validation_days < 1 or sizes.test_days < 1:
        raise ValueError("params.yaml training_set: validation_days and test_days must be at least 1")
    return sizes


def cutoff(params: dict[str, Any]) -> dt.date | None:
    value = params.get("training_set", {}).get("cutoff") or None
    return dt.date.fromisoformat(str(value)) if value else None
