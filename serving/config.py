"""Settings of the model server, read once from environment variables at start-up.

Tokens are values of environment variables (a Kubernetes Secret mounted as env),
never command-line arguments or files in the image. The server refuses to start
without both, or with the same value for both: a client that may predict must not be
able to swap the model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ml.settings import SettingsError, lake_settings

TOKEN_VARIABLE = "PLATFORM_SERVING_TOKEN"
ADMIN_TOKEN_VARIABLE = "PLATFORM_SERVING_ADMIN_TOKEN"
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_DAYS_AHEAD = 7
DEFAULT_POLL_SECONDS = 10.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServingConfig:
    lake_uri: str
    token: str = field(repr=False)
    admin_token: str = field(repr=False)
    storage_options: dict[str, str] = field(default_factory=dict)
    artifacts_uri: str = ""
    """Root the registry's model keys are under (PLATFORM_ARTIFACTS_URI)."""
    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_days_ahead: int = DEFAULT_MAX_DAYS_AHEAD
    poll_seconds: float = DEFAULT_POLL_SECONDS
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    cache_dir: Path = field(default_factory=lambda: _default_cache())

    def __post_init__(self) -> None:
        if not self.token or not self.admin_token:
            raise ConfigError(f"set {TOKEN_VARIABLE} and {ADMIN_TOKEN_VARIABLE}: the server has no open mode")
        if self.token == self.admin_token:
            raise ConfigError(f"{TOKEN_VARIABLE} and {ADMIN_TOKEN_VARIABLE} must differ")
        for name in ("max_batch", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.max_days_ahead < 0 or self.poll_seconds < 0:
            raise ConfigError("max_days_ahead and poll_seconds must not be negative")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        """The lake variables of `ml.settings` (as the Dagster profiles read them), plus PLATFORM_SERVING_*."""
        env = os.environ if env is None else env
        try:
            lake = lake_settings(env)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from exc
        cache = env.get("PLATFORM_SERVING_CACHE_DIR", "")
        return cls(
            lake_uri=lake.lake_uri,
            token=env.get(TOKEN_VARIABLE, ""),
            admin_token=env.get(ADMIN_TOKEN_VARIABLE, ""),
            storage_options=lake.storage_options,
            artifacts_uri=lake.artifacts_uri,
            max_batch=int(_number(env, "MAX_BATCH", DEFAULT_MAX_BATCH)),
            max_body_bytes=int(_number(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            max_days_ahead=int(_number(env, "MAX_DAYS_AHEAD", DEFAULT_MAX_DAYS_AHEAD)),
            poll_seconds=_number(env, "POLL_SECONDS", DEFAULT_POLL_SECONDS),
            host=env.get("PLATFORM_SERVING_HOST", DEFAULT_HOST),
            port=int(_number(env, "PORT", DEFAULT_PORT)),
            cache_dir=Path(cache) if cache else _default_cache(),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(f"PLATFORM_SERVING_{name}", "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"PLATFORM_SERVING_{name}={raw!r} is not a number") from exc
    if isinstance(default, int) and not value.is_integer():
        raise ConfigError(f"PLATFORM_SERVING_{name}={raw!r} is not a whole number")
    return value


def _default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "platform-serving"
