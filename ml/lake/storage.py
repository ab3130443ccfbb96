"""URIs that name either a local folder or an object store, opened through pyarrow.fs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

import polars as pl
import pyarrow.fs as pafs


def has_scheme(uri: str) -> bool:
    return "://" in uri


def absolute_uri(uri: str) -> str:
    """Local paths become absolute so relative settings work from any working folder."""
    return uri.rstrip("/") if has_scheme(uri) else str(Path(uri).expanduser().resolve())


def join_uri(root: str, *parts: str) -> str:
    return "/".join([absolute_uri(root), *(p.strip("/") for p in parts)])


def delta_file_path(uri: str) -> str:
    """A data file URI of `DeltaTable.file_uris()` as a path: delta-rs percent-encodes local ones."""
    return uri if has_scheme(uri) else unquote(uri)


def scan_delta(
    uri: str, version: int | None = None, storage_options: dict[str, str] | None = None
) -> pl.LazyFrame:
    """`pl.scan_delta`, through deltalake's pyarrow dataset where polars cannot open the files itself.

    Polars' native scan opens the paths of `DeltaTable.file_uris()` as they are, and delta-rs
    percent-encodes a local table's (a space becomes %20; pola-rs/polars#20944), so a local
    table whose path percent-encoding changes is read through pyarrow instead.
    """
    path = unquote(uri.removeprefix("file://")) if uri.startswith("file://") else uri
    encoded = not has_scheme(path) and quote(path, safe="/") != path
    return pl.scan_delta(uri, version=version, storage_options=storage_options, use_pyarrow=encoded)


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


def exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    """Whether a file or folder (for object stores: any object under the prefix) is there."""
    fs, path = filesystem(uri, storage_options)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def make_dirs(fs: pafs.FileSystem, path: str) -> None:
    """Create a folder on a local disk; object stores have no folders, only keys (no marker objects)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path, recursive=True)


def copy_tree(
    source: str,
    destination: str,
    storage_options: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Copy every file under `source` to the same relative path under `destination`.

    Either side may be a folder or an object-store URI. Top-level entries named in `skip`
    are left out. Returns the relative paths copied, in order.
    """
    sfs, spath = filesystem(source, storage_options)
    dfs, dpath = filesystem(destination, storage_options)
    infos = sfs.get_file_info(pafs.FileSelector(spath, recursive=True))
    copied = []
    for info in sorted(infos, key=lambda i: i.path):
        relative = info.path[len(spath) :].lstrip("/")
        if info.type != pafs.FileType.File or relative.split("/", 1)[0] in skip:
            continue
        target = f"{dpath}/{relative}"
        make_dirs(dfs, target.rsplit("/", 1)[0])
        with sfs.open_input_stream(info.path) as reader, dfs.open_output_stream(target) as writer:
            writer.write(reader.read())
        copied.append(relative)
    return copied
