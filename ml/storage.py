"""URIs that name either a local folder or an object store, opened through pyarrow.fs."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs


def has_scheme(uri: str) -> bool:
    return "://" in uri


def absolute_uri(uri: str) -> str:
    """Local paths become absolute so relative settings work from any working folder."""
    return uri.rstrip("/") if has_scheme(uri) else str(Path(uri).expanduser().resolve())


def join_uri(root: str, *parts: str) -> str:
    return "/".join([absolute_uri(root), *(p.strip("/") for p in parts)])


_S3_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "access_key",
    "AWS_SECRET_ACCESS_KEY": "secret_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_REGION": "region",
    "AWS_ENDPOINT_URL": "endpoint_override",
}


def filesystem(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and in-filesystem path of a URI, with deltalake-style storage options."""
    options = storage_options or {}
    if uri.startswith("s3://"):
        kwargs = {_S3_OPTIONS[k]: v for k, v in options.items() if k in _S3_OPTIONS}
        if options.get("AWS_ALLOW_HTTP", "").lower() == "true":
            kwargs["scheme"] = "http"
        endpoint = kwargs.get("endpoint_override", "")
        if "://" in endpoint:
            kwargs["scheme"], kwargs["endpoint_override"] = endpoint.split("://", 1)
        return pafs.S3FileSystem(**kwargs), uri.removeprefix("s3://")
    return pafs.FileSystem.from_uri(absolute_uri(uri))
