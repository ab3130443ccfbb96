"""Where the platform's data lives, read from the environment once, for every process.

The Dagster profiles (`orchestration/profiles.py`), the model server (`serving/config.py`)
and the command-line tools all call `lake_settings`, so a location variable means the
same everywhere and credentials are refused in one place.

Everything lives under PLATFORM_DATA_DIR (default `.data`) unless a location is pointed
elsewhere alone: PLATFORM_LANDING_URI, PLATFORM_QUARANTINE_URI, PLATFORM_LAKE_URI,
PLATFORM_ARTIFACTS_URI, PLATFORM_DVC_REMOTE (a DVC remote URL). Non-secret storage
options (endpoint, AWS_ALLOW_HTTP, ...) are JSON in PLATFORM_STORAGE_OPTIONS; credentials
come from the usual AWS_* variables, which deltalake, pyarrow and DVC read themselves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

NEW_YORK = "America/New_York"
"""The time zone of the partitions, the schedules and every local day of the data."""

DEFAULT_DATA_DIR = ".data"
SECRET_OPTION_WORDS = ("secret", "token", "password", "access_key", "account_key")


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use; the message names it."""


@dataclass(frozen=True)
class LakeSettings:
    data_dir: str
    lake_uri: str
    landing_uri: str
    quarantine_uri: str
    artifacts_uri: str
    dvc_remote: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint_url(self) -> str:
        """The S3-compatible endpoint, if any: also the endpoint of an s3:// DVC remote."""
        return self.storage_options.get("AWS_ENDPOINT_URL", "")

    @property
    def staging_dir(self) -> str:
        """Local working folder of training when the artifacts live in an object store."""
        return f"{self.data_dir}/models-staging"


def json_variable(env: Mapping[str, str], name: str, default: object) -> object:
    """The JSON value of variable `name`, or `default` when it is unset or empty."""
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from exc


def number_variable(
    env: Mapping[str, str], name: str, default: float, *, positive: bool = False, whole: bool = False
) -> float:
    """The number in variable `name`, or `default` when it is unset or blank.

    `positive` refuses zero and below, `whole` a fraction; a value that is not a finite
    number is always refused. The `SettingsError` names the variable and its value.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} is not a number")
    if positive and value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    if whole and not value.is_integer():
        raise SettingsError(f"{name}={raw!r} is not a whole number")
    return value


def storage_options(env: Mapping[str, str]) -> dict[str, str]:
    """PLATFORM_STORAGE_OPTIONS, checked: a JSON object of strings holding no credential."""
    options = json_variable(env, "PLATFORM_STORAGE_OPTIONS", {})
    if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
        raise SettingsError("PLATFORM_STORAGE_OPTIONS must be a JSON object of strings")
    secrets = sorted(k for k in options if any(word in k.lower() for word in SECRET_OPTION_WORDS))
    if secrets:
        raise SettingsError(
            f"PLATFORM_STORAGE_OPTIONS holds credentials ({', '.join(secrets)}): configuration is shown "
            "in the UI and run logs; set them as environment variables (AWS_ACCESS_KEY_ID, ...) instead"
        )
    return options


def lake_settings(env: Mapping[str, str]) -> LakeSettings:
    data_dir = env.get("PLATFORM_DATA_DIR", DEFAULT_DATA_DIR).rstrip("/") or DEFAULT_DATA_DIR
    return LakeSettings(
        data_dir=data_dir,
        lake_uri=env.get("PLATFORM_LAKE_URI", f"{data_dir}/lake"),
        landing_uri=env.get("PLATFORM_LANDING_URI", f"{data_dir}/landing"),
        quarantine_uri=env.get("PLATFORM_QUARANTINE_URI", f"{data_dir}/quarantine"),
        artifacts_uri=env.get("PLATFORM_ARTIFACTS_URI", f"{data_dir}/models"),
        dvc_remote=env.get("PLATFORM_DVC_REMOTE", ""),
        storage_options=storage_options(env),
    )


def present(env: Mapping[str, str], fields: Mapping[str, str]) -> dict[str, str]:
    """The fields (`{field: variable}`) whose variables are set, so unset ones keep their defaults."""
    return {name: env[variable] for name, variable in fields.items() if env.get(variable, "") != ""}
