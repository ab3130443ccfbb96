"""The online snapshot: what a model server needs, besides the request, to build a flight's features.

A request carries only the schedule (carrier, airports, departure, tail number,
distance). Trailing delay rates, plane data and weather come from here. The snapshot
holds the inputs of the feature code, not finished feature values: the per-key running
totals that `ml.features.flight_features.trailing_features` looks windows up in, the weather
reports that `weather_features` joins by their availability, and the planes table.
The server runs the same functions on them, so an online row equals the offline row of
the same flight for every day the snapshot covers.

Snapshots are written to `online/snapshots/<md5 of their bytes>/` under the lake root
(a folder or an object store) and never changed; `online/current.json` names the
current one and is replaced in one write, so a reader sees a whole old or a whole new
snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow.fs as pafs

from ml.features.flight_features import (
    TRAILING_KEYS,
    WEATHER_LOOKBACK_DAYS,
    lookback_days,
    trailing_totals,
    weather_input_columns,
)
from ml.lake.storage import filesystem, join_uri

FORMAT_VERSION = 1
SNAPSHOTS = "online/snapshots"
POINTER = "online/current.json"
KEEP = 3
"""Snapshots kept besides the current one, so a server still loading the previous one finds it."""
PLANE_COLUMNS = ("tailnum", "year", "seats")
MANIFEST = "manifest.json"


class SnapshotError(RuntimeError):
    pass


@dataclass(frozen=True)
class OnlineSnapshot:
    """Feature inputs for flights from `first_day` on, known up to the end of `last_day`.

    Flights after `last_day + 1` get the trailing windows of `last_day + 1`: the latest
    complete ones.
    """

    first_day: dt.date
    last_day: dt.date
    totals: dict[str, pl.DataFrame]
    weather: pl.DataFrame
    planes: pl.DataFrame
    sources: dict[str, Any]

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "sources": self.sources,
            "rows": {name: frame.height for name, frame in self._frames().items()},
        }

    def _frames(self) -> dict[str, pl.DataFrame]:
        return {
            **{f"totals_{name}": frame for name, frame in self.totals.items()},
            "weather": self.weather,
            "planes": self.planes,
        }


def history_days(first_day: dt.date, last_day: dt.date) -> tuple[dt.date, dt.date]:
    """Days of bronze flights a snapshot reads: the trailing window before `first_day`, through `last_day`."""
    return first_day - dt.timedelta(days=lookback_days()), last_day


def weather_days(first_day: dt.date, last_day: dt.date) -> tuple[dt.date, dt.date]:
    return first_day - dt.timedelta(days=WEATHER_LOOKBACK_DAYS), last_day


def build_snapshot(
    flights: pl.DataFrame,
    weather: pl.DataFrame,
    planes: pl.DataFrame,
    first_day: dt.date,
    last_day: dt.date,
    sources: dict[str, Any] | None = None,
) -> OnlineSnapshot:
    """The snapshot for flights from `first_day`, from bronze flights, weather and planes.

    `flights` must cover `history_days(...)` and `weather` `weather_days(...)`; rows
    outside them are left out, so the bytes depend only on those days.
    """
    if first_day > last_day + dt.timedelta(days=1):
        raise SnapshotError(f"first day {first_day} is after the day following the last day {last_day}")
    start, end = history_days(first_day, last_day)
    history = flights.filter(pl.col("flight_date").is_between(start, end)).select(
        "flight_date", "carrier", "origin", "dest", "arr_delay"
    )
    start, end = weather_days(first_day, last_day)
    observed = (
        weather.filter(pl.col("obs_date").is_between(start, end))
        .select(weather_input_columns(weather.columns))
        .sort("origin", "time_hour")
    )
    return OnlineSnapshot(
        first_day=first_day,
        last_day=last_day,
        totals=trailing_totals(history),
        weather=observed,
        planes=planes.select(PLANE_COLUMNS).sort("tailnum"),
        sources=dict(sources or {}),
    )


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, statistics=False, compression="zstd")
    return buffer.getvalue()


def publish(snapshot: OnlineSnapshot, root: str, storage_options: dict[str, str] | None = None) -> str:
    """Write the snapshot under its content id, point `online/current.json` at it; returns the id."""
    files = {f"{name}.parquet": _parquet(frame) for name, frame in snapshot._frames().items()}
    files[MANIFEST] = (json.dumps(snapshot.manifest(), indent=2, sort_keys=True) + "\n").encode()
    digest = hashlib.md5()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(hashlib.md5(files[name]).digest())
    snapshot_id = digest.hexdigest()
    fs, folder = filesystem(join_uri(root, SNAPSHOTS, snapshot_id), storage_options)
    fs.create_dir(folder, recursive=True)
    for name, data in files.items():
        with fs.open_output_stream(f"{folder}/{name}") as out:
            out.write(data)
    previous = _read_pointer(root, storage_options)
    kept = [snapshot_id, *(i for i in (previous or {}).get("kept", []) if i != snapshot_id)][: KEEP + 1]
    pointer = {
        "id": snapshot_id,
        "first_day": snapshot.first_day.isoformat(),
        "last_day": snapshot.last_day.isoformat(),
        "kept": kept,
    }
    _write_atomically(root, POINTER, json.dumps(pointer, indent=2).encode(), storage_options)
    _prune(root, set(kept), storage_options)
    return snapshot_id


def current_id(root: str, storage_options: dict[str, str] | None = None) -> str | None:
    """The id of the current snapshot, or None when none was published."""
    pointer = _read_pointer(root, storage_options)
    return None if pointer is None else str(pointer["id"])


def load(root: str, snapshot_id: str, storage_options: dict[str, str] | None = None) -> OnlineSnapshot:
    fs, folder = filesystem(join_uri(root, SNAPSHOTS, snapshot_id), storage_options)

    def read(name: str) -> bytes:
        try:
            with fs.open_input_stream(f"{folder}/{name}") as source:
                return source.read()
        except FileNotFoundError as exc:
            raise SnapshotError(f"online snapshot {snapshot_id} under {root} lacks {name}") from exc

    manifest = json.loads(read(MANIFEST))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"online snapshot {snapshot_id} has format {manifest.get('format_version')!r}, not {FORMAT_VERSION}"
        )
    frames = {name: pl.read_parquet(io.BytesIO(read(f"{name}.parquet"))) for name in manifest["rows"]}
    return OnlineSnapshot(
        first_day=dt.date.fromisoformat(manifest["first_day"]),
        last_day=dt.date.fromisoformat(manifest["last_day"]),
        totals={name: frames[f"totals_{name}"] for name in TRAILING_KEYS},
        weather=frames["weather"],
        planes=frames["planes"],
        sources=manifest["sources"],
    )


def _read_pointer(root: str, storage_options: dict[str, str] | None) -> dict[str, Any] | None:
    fs, path = filesystem(join_uri(root, POINTER), storage_options)
    try:
        with fs.open_input_stream(path) as source:
            return json.loads(source.read())
    except FileNotFoundError:
        return None


def _write_atomically(root: str, name: str, data: bytes, storage_options: dict[str, str] | None) -> None:
    """A temporary file renamed over the target: a rename on a disk, one PUT on an object store."""
    fs, path = filesystem(join_uri(root, name), storage_options)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        temporary = f"{path}.tmp"
        with fs.open_output_stream(temporary) as out:
            out.write(data)
        fs.move(temporary, path)
        return
    with fs.open_output_stream(path) as out:
        out.write(data)


def _prune(root: str, kept: set[str], storage_options: dict[str, str] | None) -> None:
    fs, folder = filesystem(join_uri(root, SNAPSHOTS), storage_options)
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.base_name not in kept:
            fs.delete_dir(info.path)
