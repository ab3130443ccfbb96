"""Settings of the model server, read once from environment variables at start-up.

Tokens come from a mounted file of named tokens (PLATFORM_SERVING_TOKENS_FILE and
PLATFORM_SERVING_ADMIN_TOKENS_FILE, re-read when they change: see `serving.tokens`) or,
when no file is set, from one environment variable per role (a Kubernetes Secret
mounted as env); never command-line arguments or files in the image. The server
refuses to start without a client and an admin token, or with one token in both roles:
a client that may predict must not be able to swap the model.

The HTTP limits and timeouts (header size, header and body read time, keep-alive,
requests in flight, graceful shutdown) default to values that suit a pod behind an
ingress; each is a PLATFORM_SERVING_* variable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ml.settings import SettingsError, lake_settings, number_variable
from serving.unknown_codes import UNKNOWN_POLICIES, UnknownPolicy

TOKEN_VARIABLE = "PLATFORM_SERVING_TOKEN"
ADMIN_TOKEN_VARIABLE = "PLATFORM_SERVING_ADMIN_TOKEN"
TOKENS_FILE_VARIABLE = "PLATFORM_SERVING_TOKENS_FILE"
ADMIN_TOKENS_FILE_VARIABLE = "PLATFORM_SERVING_ADMIN_TOKENS_FILE"
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_DAYS_AHEAD = 7
DEFAULT_POLL_SECONDS = 10.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 9464
"""Not 9090 (Prometheus itself, on many a laptop); 9464 is the OpenTelemetry Prometheus exporter's."""
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
"""Request line and headers together; what nginx and Node accept by default, and far above what a
client of this API sends (a bearer token and a request id)."""
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
DEFAULT_KEEP_ALIVE_SECONDS = 5.0
DEFAULT_MAX_CONCURRENCY = 64
"""Requests in flight (probes not counted): a 2-core pod scores this many in well under a second,
so more would only queue."""
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = 30.0


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServingConfig:
    lake_uri: str
    token: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
    tokens_file: Path | None = None
    """Named client tokens (`serving.tokens`); when set, `token` must be empty."""
    admin_tokens_file: Path | None = None
    storage_options: dict[str, str] = field(default_factory=dict)
    artifacts_uri: str = ""
    """Root the registry's model keys are under (PLATFORM_ARTIFACTS_URI)."""
    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_days_ahead: int = DEFAULT_MAX_DAYS_AHEAD
    poll_seconds: float = DEFAULT_POLL_SECONDS
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    metrics_host: str = DEFAULT_HOST
    """Where /metrics listens: loopback by default; a pod sets 0.0.0.0 for Prometheus to reach it."""
    metrics_port: int = DEFAULT_METRICS_PORT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    """From a connection's start (or a request's first byte) to the end of its headers."""
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    keep_alive_seconds: float = DEFAULT_KEEP_ALIVE_SECONDS
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    unknown_values: UnknownPolicy = "flag"
    """A value the model never saw: `flag` (answered, named in `unknown_fields`) or `refuse` (422)."""
    graceful_shutdown_seconds: float = DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
    """After SIGTERM, how long requests in flight may still take before they are cancelled."""
    cache_dir: Path = field(default_factory=lambda: _default_cache())
    spool_dir: Path | None = None
    """The prediction log's local spool (PLATFORM_SERVING_SPOOL_DIR); None: `prediction-spool` in `cache_dir`."""

    def __post_init__(self) -> None:
        for value, path, variable, file_variable in (
            (self.token, self.tokens_file, TOKEN_VARIABLE, TOKENS_FILE_VARIABLE),
            (self.admin_token, self.admin_tokens_file, ADMIN_TOKEN_VARIABLE, ADMIN_TOKENS_FILE_VARIABLE),
        ):
            if not value and path is None:
                raise ConfigError(f"set {variable} or {file_variable}: the server has no open mode")
            if value and path is not None:
                raise ConfigError(f"set {variable} or {file_variable}, not both")
        if self.token and self.token == self.admin_token:
            raise ConfigError(f"{TOKEN_VARIABLE} and {ADMIN_TOKEN_VARIABLE} must differ")
        for name in ("max_batch", "max_body_bytes", "max_header_bytes", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.max_days_ahead < 0 or self.poll_seconds < 0:
            raise ConfigError("max_days_ahead and poll_seconds must not be negative")
        for name in ("header_timeout_seconds", "body_timeout_seconds", "keep_alive_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.graceful_shutdown_seconds < 0:
            raise ConfigError("graceful_shutdown_seconds must not be negative")
        for name in ("port", "metrics_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a TCP port (1-65535)")
        if self.port == self.metrics_port:
            raise ConfigError("port and metrics_port must differ")
        if self.unknown_values not in UNKNOWN_POLICIES:
            raise ConfigError(
                f"PLATFORM_SERVING_UNKNOWN_VALUES={self.unknown_values!r} is not one of {', '.join(UNKNOWN_POLICIES)}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        """The lake variables of `ml.settings` (as the Dagster profiles read them), plus PLATFORM_SERVING_*."""
        env = os.environ if env is None else env
        try:
            lake = lake_settings(env)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from exc
        cache = env.get("PLATFORM_SERVING_CACHE_DIR", "")
        tokens_file = env.get(TOKENS_FILE_VARIABLE, "")
        admin_tokens_file = env.get(ADMIN_TOKENS_FILE_VARIABLE, "")
        return cls(
            lake_uri=lake.lake_uri,
            token=env.get(TOKEN_VARIABLE, ""),
            admin_token=env.get(ADMIN_TOKEN_VARIABLE, ""),
            tokens_file=Path(tokens_file) if tokens_file else None,
            admin_tokens_file=Path(admin_tokens_file) if admin_tokens_file else None,
            storage_options=lake.storage_options,
            artifacts_uri=lake.artifacts_uri,
            max_batch=int(_number(env, "MAX_BATCH", DEFAULT_MAX_BATCH)),
            max_body_bytes=int(_number(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            max_days_ahead=int(_number(env, "MAX_DAYS_AHEAD", DEFAULT_MAX_DAYS_AHEAD)),
            poll_seconds=_number(env, "POLL_SECONDS", DEFAULT_POLL_SECONDS),
            host=env.get("PLATFORM_SERVING_HOST", DEFAULT_HOST),
            port=int(_number(env, "PORT", DEFAULT_PORT)),
            metrics_host=env.get("PLATFORM_SERVING_METRICS_HOST", DEFAULT_HOST),
            metrics_port=int(_number(env, "METRICS_PORT", DEFAULT_METRICS_PORT)),
            max_header_bytes=int(_number(env, "MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES)),
            header_timeout_seconds=_number(env, "HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT_SECONDS),
            body_timeout_seconds=_number(env, "BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS),
            keep_alive_seconds=_number(env, "KEEP_ALIVE_SECONDS", DEFAULT_KEEP_ALIVE_SECONDS),
            max_concurrency=int(_number(env, "MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)),
            unknown_values=env.get("PLATFORM_SERVING_UNKNOWN_VALUES", "flag"),  # type: ignore[arg-type]
            graceful_shutdown_seconds=_number(
                env, "GRACEFUL_SHUTDOWN_SECONDS", DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
            ),
            cache_dir=Path(cache) if cache else _default_cache(),
            spool_dir=Path(spool) if (spool := env.get("PLATFORM_SERVING_SPOOL_DIR", "")) else None,
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    """PLATFORM_SERVING_`name`: a whole number where the default is an int; a ConfigError if not."""
    try:
        return number_variable(env, f"PLATFORM_SERVING_{name}", default, whole=isinstance(default, int))
    except SettingsError as exc:
        raise ConfigError(str(exc)) from exc


def _default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "platform-serving"
