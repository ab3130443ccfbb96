"""An append-only spool of Arrow record batches on local disk: answers logged but not yet in Delta.

A spool folder holds:

    .lock                          flock'ed by the one process writing here (a second one is refused)
    <writer>-<seq>.arrows          a segment: an Arrow IPC stream, its schema then record batches

A writer is one process start, with a fresh id (`new_writer_id`), numbering its segments
1, 2, 3, ... The prediction log commits a writer's segments to Delta in that order, each
commit carrying the Delta transaction (app id = writer, version = last seq committed), so
the table itself says which segments it holds: whatever happened after a commit (a crash
before the file was deleted, a retry of a commit that had landed), a segment whose seq is
at most the table's `transaction_version(writer)` is in the table and is deleted, not
written again. A fresh id per process means no counter has to survive on disk.

Every batch is one `os.write` of its serialized IPC message, so it is in the OS's page
cache (surviving a SIGKILL of the process) as soon as `append` returns; `sync` fsyncs it
(surviving a power loss). A process killed in the middle of a write leaves a segment
whose last message is torn; `read_segment` returns the complete batches before it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

SEGMENT_NAME = re.compile(r"^(?P<writer>serving-spool-[0-9a-f]{32})-(?P<seq>\d{9,})\.arrows$")
log = logging.getLogger("serving.spool")
TABLE_KEY = b"platform.table_uri"
"""Schema metadata of a segment: the Delta table its rows are for (a spool belongs to one lake)."""


class SpoolInUseError(RuntimeError):
    """Another process holds the spool folder's lock: two writers would commit each other's segments."""


def new_writer_id() -> str:
    return f"serving-spool-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Segment:
    """One segment file; `rows` is None for one left by an earlier process (known once read)."""

    path: Path
    writer: str
    seq: int
    rows: int | None
    size: int


@dataclass(frozen=True)
class SegmentContents:
    table: pa.Table
    table_uri: str
    torn_bytes: int
    """Bytes after the last complete batch (a write cut short by a kill or a power loss), ignored."""


def segment_of(path: Path, rows: int | None = None) -> Segment | None:
    found = SEGMENT_NAME.match(path.name)
    if found is None:
        return None
    return Segment(path, found["writer"], int(found["seq"]), rows, path.stat().st_size)


def read_segment(path: Path) -> SegmentContents | None:
    """The complete batches of a segment; None when not even its schema was written whole."""
    data = path.read_bytes()
    stream = pa.BufferReader(data)
    try:
        schema = pa.ipc.read_schema(pa.ipc.read_message(stream))
    except (pa.ArrowInvalid, OSError, EOFError):
        return None
    batches, end = [], stream.tell()
    while True:
        try:
            batches.append(pa.ipc.read_record_batch(pa.ipc.read_message(stream), schema))
        except (pa.ArrowInvalid, OSError, EOFError):
            break
        end = stream.tell()
    table_uri = (schema.metadata or {}).get(TABLE_KEY, b"").decode()
    return SegmentContents(pa.Table.from_batches(batches, schema=schema), table_uri, len(data) - end)


def table_uri_of(path: Path) -> str | None:
    """The table a segment's rows are for, from its schema alone; None when its schema is torn."""
    try:
        with pa.OSFile(str(path)) as stream:
            schema = pa.ipc.read_schema(pa.ipc.read_message(stream))
    except (pa.ArrowInvalid, OSError, EOFError):
        return None
    return (schema.metadata or {}).get(TABLE_KEY, b"").decode()


class Spool:
    """The folder, its lock and the one open segment of this process's writer.

    Not thread-safe: one thread (the prediction log's spool thread) appends, seals and
    syncs; a sealed segment is the committer's, which deletes its file once committed.
    """

    def __init__(self, folder: Path, schema: pa.Schema, table_uri: str):
        self.folder = folder
        self.schema = schema.with_metadata({TABLE_KEY: table_uri.encode()})
        self.table_uri = table_uri
        self.writer = new_writer_id()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._seq = 0
        self._rows = 0
        self._size = 0
        self.opened_at = 0.0
        """`time.monotonic()` when the open segment got its first batch."""

    def open(self) -> list[Segment]:
        """Create and lock the folder; the segments earlier processes left, by writer and seq."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolInUseError(
                f"the prediction spool {self.folder} is in use by another process; "
                "give each server its own folder (PLATFORM_SERVING_SPOOL_DIR)"
            ) from None
        self._lock_fd = fd
        found = (segment_of(path) for path in self.folder.iterdir())
        return sorted((s for s in found if s is not None), key=lambda s: (s.writer, s.seq))

    @property
    def open_rows(self) -> int:
        return self._rows

    def append(self, batch: pa.RecordBatch) -> int:
        """Write one batch to the open segment (opening one first if none is); returns the bytes written,
        the new segment's schema included, so the bytes returned add up to the segments' sizes."""
        before = self._size if self._fd is not None else 0
        if self._fd is None:
            self._start_segment()
        self._write(memoryview(batch.serialize()))
        self._rows += batch.num_rows
        return self._size - before

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def seal(self) -> Segment | None:
        """Fsync and close the open segment; None when there is none (nothing appended since the last).

        Also the way out after a failed write: the segment keeps its complete batches. A failed
        fsync is logged, not raised: the bytes are still in the page cache, only a power loss
        could take them now, and the segment must be handed on either way.
        """
        if self._fd is None or self._path is None:
            return None
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError:
            log.exception(
                "fsync of %s failed; its rows survive a crash of the process, not of the machine", self._path
            )
        finally:
            os.close(fd)
        segment = Segment(self._path, self.writer, self._seq, self._rows, self._size)
        self._path, self._rows, self._size = None, 0, 0
        return segment

    def close(self) -> Segment | None:
        """Seal the open segment and release the folder."""
        try:
            return self.seal()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _start_segment(self) -> None:
        self._seq += 1
        path = self.folder / f"{self.writer}-{self._seq:09d}.arrows"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._fd, self._path, self._rows, self._size = fd, path, 0, 0
        self.opened_at = time.monotonic()
        self._write(memoryview(self.schema.serialize()))
        _sync_folder(self.folder)

    def _write(self, data: memoryview) -> int:
        assert self._fd is not None
        total = 0
        while total < len(data):
            total += os.write(self._fd, data[total:])
        self._size += total
        return total


def _sync_folder(folder: Path) -> None:
    """Fsync the folder, so a new segment's name survives a power loss with its first batch."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
