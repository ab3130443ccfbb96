"""Delta tables on a local folder or any URI deltalake accepts.

Daily tables are not physically partitioned: days are replaced in one commit that removes
every file holding a row of them and adds files of the new rows, after checking every row
belongs to one of the days (a write that could touch other days is refused before anything
is written). The files are Parquet of whole days written by polars (`ml.lake.day_files`);
a table those cannot serve exactly goes through delta-rs's predicate overwrite. Both
writes and maintenance keep files in day ranges (`ml.lake.layout`), so that the cost of
replacing a day does not grow with the table.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from ml.lake import day_files, layout, relayout
from ml.lake.storage import delta_file_path, filesystem, join_uri, scan_delta
from ml.lake.tables import day_column

LOG_RESCANS = 5
LOG_RESCAN_SECONDS = 0.5
"""How often, and how long apart, `_version_of` looks again for a log file it did not find."""
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE_CONFIGURATION = {
    "delta.checkpointInterval": "10",
    "delta.logRetentionDuration": "interval 30 days",
}
COMMIT_ATTEMPTS = 8
VACUUM_RETENTION_HOURS = 168
"""Files no longer referenced for this long are deleted by the maintenance vacuum."""
REPLACED_KEY = "platform_replaced"
"""Commit metadata of a daily write: the predicate of the days it replaced."""
OPERATION_KEY = "platform_operation"
MAINTENANCE = "maintenance"
"""Commit metadata of maintenance commits (`OPERATION_KEY: MAINTENANCE`): they move rows
between files and change none, so lineage skips them."""


class LineageError(RuntimeError):
    """Maintenance would make data that a registered model was trained from unrecoverable."""


class PartitionWriteRefusedError(ValueError):
    """A write whose predicate would not match the rows it carries; nothing was written."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    uri: str
    version: int
    rows: int


def day_predicate(column: str, days: Sequence[dt.date]) -> str:
    """A SQL predicate selecting exactly `days`; a contiguous run becomes a range."""
    if not IDENTIFIER.match(column):
        raise PartitionWriteRefusedError(f"day column {column!r} is not a plain identifier")
    if not days:
        raise PartitionWriteRefusedError("no days to replace")
    if not all(type(d) is dt.date for d in days):
        raise PartitionWriteRefusedError("days must be datetime.date values")
    ordered = sorted(set(days))
    if (ordered[-1] - ordered[0]).days == len(ordered) - 1:
        return f"{column} >= '{ordered[0].isoformat()}' AND {column} <= '{ordered[-1].isoformat()}'"
    listed = ", ".join(f"'{d.isoformat()}'" for d in ordered)
    return f"{column} IN ({listed})"


def check_rows_within(frame: pl.DataFrame, column: str, days: Sequence[dt.date]) -> None:
    if column not in frame.columns:
        raise PartitionWriteRefusedError(f"frame has no day column {column!r}")
    if frame.schema[column] != pl.Date:
        raise PartitionWriteRefusedError(f"day column {column!r} is {frame.schema[column]}, not Date")
    values = frame[column]
    if values.null_count():
        raise PartitionWriteRefusedError(f"{values.null_count()} row(s) have no {column}")
    ordered = sorted(set(days))
    if not values.is_empty() and (ordered[-1] - ordered[0]).days == len(ordered) - 1:
        low, high = values.min(), values.max()
        if ordered[0] <= low and high <= ordered[-1]:  # type: ignore[operator]
            return  # contiguous days and every row within them: no row-by-row check needed
    outside = frame.filter(~values.is_in(pl.Series(ordered, dtype=pl.Date).implode()))
    if outside.height:
        example = outside[column][0]
        raise PartitionWriteRefusedError(
            f"{outside.height} row(s) fall outside the days being replaced (e.g. {column}={example}); "
            "refusing a write that could touch other days"
        )


@dataclass(frozen=True)
class DeltaStore:
    root: str
    storage_options: Mapping[str, str] | None = None

    @property
    def _options(self) -> dict[str, str] | None:
        return dict(self.storage_options) if self.storage_options else None

    def uri(self, table: str) -> str:
        return join_uri(self.root, table)

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self._options)

    def table(self, table: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self._options)
        except TableNotFoundError as exc:
            raise TableNotFoundError(f"Delta table {table} does not exist at {self.uri(table)}") from exc

    def version(self, table: str) -> int | None:
        return self.table(table).version() if self.exists(table) else None

    def scan(self, table: str, version: int | None = None) -> pl.LazyFrame:
        if not self.exists(table):
            raise TableNotFoundError(f"Delta table {table} does not exist at {self.uri(table)}")
        return scan_delta(self.uri(table), version=version, storage_options=self._options)

    def read_days(
        self, table: str, column: str, first: dt.date, last: dt.date, version: int | None = None
    ) -> pl.DataFrame:
        return self.scan(table, version).filter(pl.col(column).is_between(first, last)).collect()

    def read(self, table: str, version: int | None = None) -> pl.DataFrame:
        return self.scan(table, version).collect()

    def replace_days(
        self,
        table: str,
        frame: pl.DataFrame,
        column: str,
        days: Sequence[dt.date],
        commit_metadata: Mapping[str, str],
    ) -> WriteResult:
        """Replace exactly `days` of a table with `frame` in one commit.

        Written as files of whole days by `ml.lake.day_files`; a table that cannot take
        those (another schema, a protocol feature, files without day statistics) goes
        through delta-rs's predicate overwrite, which evolves nothing either.
        """
        predicate = day_predicate(column, days)
        check_rows_within(frame, column, days)
        loaded = self.ensure_table(table, frame.head(0).to_arrow().schema, column)
        metadata = {**commit_metadata, REPLACED_KEY: predicate}
        uri = self.uri(table)
        before = day_files.replace(
            lambda: self.table(table), uri, frame, column, days, metadata, self._options, loaded
        )
        if before is not None:  # committed at exactly the next version, with no retry in between
            return WriteResult(table=table, uri=uri, version=before + 1, rows=frame.height)
        if len(set(days)) > 1:  # a range run's files then each hold a run of days
            if not frame[column].is_sorted():  # a range run's frames mostly come in day order
                frame = frame.sort(column, maintain_order=True)
            frame = frame.rechunk()  # delta-rs interleaves chunks
        return self._commit(table, frame, predicate, metadata, day_column=column)

    def overwrite(
        self,
        table: str,
        frame: pl.DataFrame,
        commit_metadata: Mapping[str, str],
        *,
        replace_schema: bool = False,
    ) -> WriteResult:
        """Replace the whole table; `replace_schema` lets the frame's columns replace the table's (a migration)."""
        return self._commit(table, frame, None, commit_metadata, replace_schema)

    def _commit(
        self,
        table: str,
        frame: pl.DataFrame,
        predicate: str | None,
        commit_metadata: Mapping[str, str],
        replace_schema: bool = False,
        day_column: str | None = None,
    ) -> WriteResult:
        uri = self.uri(table)
        data = frame.to_arrow()
        before = int(self.ensure_table(table, data.schema, day_column).version())
        metadata = {**commit_metadata, "write_id": uuid.uuid4().hex}
        properties = CommitProperties(custom_metadata=metadata, max_commit_retries=50)
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                # The URI, not the table ensure_table loaded: with eight concurrent writers on
                # S3 a write given the loaded table committed where _version_of could not find it.
                write_deltalake(
                    uri,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    schema_mode="overwrite" if replace_schema else None,
                    target_file_size=layout.WRITE_TARGET_BYTES if day_column else None,
                    storage_options=self._options,
                    commit_properties=properties,
                )
                break
            except (CommitFailedError, DeltaError) as exc:
                if attempt == COMMIT_ATTEMPTS - 1 or not _is_conflict(exc):
                    raise
                time.sleep(0.05 * 2**attempt)
        return WriteResult(
            table=table,
            uri=uri,
            version=self._version_of(table, metadata["write_id"], before),
            rows=frame.height,
        )

    def ensure_table(self, table: str, schema: pa.Schema, day_column: str | None = None) -> DeltaTable:
        """Create an empty table if there is none, so every write replaces days of an existing table.

        (An append that creates the table could land on a table a concurrent writer just
        created and duplicate a day.) Returns the table as loaded before our write, whose
        version is where `_version_of` starts looking for the commit (the write itself goes
        through the URI: see `_commit`). A writer that
        loses the race to create does not retry its create at the next version (on S3 that
        left a second CREATE TABLE commit): it fails, and finds the winner's table. A table
        replaced by day keeps statistics of its day column only (`layout.stats_configuration`).
        """
        try:
            return self.table(table)
        except TableNotFoundError:
            pass
        try:
            DeltaTable.create(
                self.uri(table),
                schema,
                mode="ignore",  # a table a concurrent writer created in between is kept
                configuration={**TABLE_CONFIGURATION, **layout.stats_configuration(day_column)},
                storage_options=self._options,
                commit_properties=CommitProperties(max_commit_retries=0),
            )
        except (CommitFailedError, DeltaError) as exc:
            if not self.exists(table):
                raise DeltaError(f"could not create Delta table {table}: {exc}") from exc
        return self.table(table)

    def _version_of(self, table: str, write_id: str, before: int) -> int:
        """The version of our own commit, found in the log files written after `before`.

        Concurrent writers may commit before or after ours, and `history()` read right
        after a concurrent commit can misnumber versions, so the log is read directly.
        """
        fs, log = filesystem(f"{self.uri(table)}/_delta_log", self._options)
        version, rescans = before + 1, LOG_RESCANS
        while True:
            path = f"{log}/{version:020d}.json"
            if fs.get_file_info(path).type != pafs.FileType.File:
                if rescans == 0:
                    raise DeltaError(f"commit {write_id} of {table} is not in its log after version {before}")
                # Seen once with eight writers on a loaded S3 server: the log's next file was not
                # visible yet. Look again from the same version before calling the commit lost.
                rescans -= 1
                time.sleep(LOG_RESCAN_SECONDS)
                continue
            with fs.open_input_stream(path) as stream:
                if write_id in stream.read().decode():
                    return version
            version += 1

    def files_at(self, table: str, version: int) -> set[str]:
        """Names of the data files a version reads."""
        return {uri.rsplit("/", 1)[-1] for uri in self.table(table, version).file_uris()}

    def unrecoverable_versions(self, table: str, versions: Sequence[int]) -> dict[int, str]:
        """Versions that can no longer be read whole: their log entry or a data file is gone."""
        broken: dict[int, str] = {}
        for version in sorted(set(versions)):
            try:
                uris = self.table(table, version).file_uris()
            except Exception as exc:  # deltalake raises several types for a missing log entry
                broken[version] = f"log entry unreadable: {exc}"
                continue
            fs, _ = filesystem(self.uri(table), self._options)
            missing = [
                u
                for u in uris
                if fs.get_file_info(filesystem(delta_file_path(u), self._options)[1]).type
                != pafs.FileType.File
            ]
            if missing:
                broken[version] = f"{len(missing)} data file(s) missing, e.g. {missing[0].rsplit('/', 1)[-1]}"
        return broken

    def endangered_versions(
        self, table: str, retention_hours: int, keep_versions: Sequence[int]
    ) -> dict[int, list[str]]:
        """Versions in `keep_versions` that a vacuum with this retention would break, with the files."""
        planned = {
            path.rsplit("/", 1)[-1]
            for path in self.table(table).vacuum(
                retention_hours=retention_hours,
                dry_run=True,
                enforce_retention_duration=False,
                keep_versions=sorted(set(keep_versions)) or None,
            )
        }
        broken = {v: sorted(self.files_at(table, v) & planned) for v in sorted(set(keep_versions))}
        return {v: files for v, files in broken.items() if files}

    def maintain(
        self, table: str, retention_hours: int, keep_versions: Sequence[int] = ()
    ) -> dict[str, object]:
        """Lay out or compact the files, vacuum what is older than the retention, checkpoint the log.

        A daily table (`ml.lake.tables.DAY_COLUMNS`) is kept in day-range files; any other is
        compacted by delta-rs. Files and log entries of `keep_versions` are kept (registered
        models read them); if the vacuum would still delete one, nothing is deleted and
        LineageError is raised.
        """
        gone = self.unrecoverable_versions(table, keep_versions)
        if gone:
            raise LineageError(
                f"{table}: registered version(s) already unrecoverable, maintenance stopped: {gone}"
            )
        files_before = len(self.table(table).file_uris())
        column = day_column(table)
        if column:
            stats = relayout.lay_out(
                lambda: self.table(table), column, {OPERATION_KEY: MAINTENANCE}, self._options
            )
        else:
            stats = self._compact(table)
        broken = self.endangered_versions(table, retention_hours, keep_versions)
        if broken:
            raise LineageError(
                f"vacuum of {table} would delete files of version(s) {sorted(broken)} that registered models "
                f"need ({sum(map(len, broken.values()))} file(s)); nothing was deleted"
            )
        delta = self.table(table)
        removed = delta.vacuum(
            retention_hours=retention_hours,
            dry_run=False,
            enforce_retention_duration=False,
            keep_versions=sorted(set(keep_versions)) or None,
        )
        delta.create_checkpoint()
        if not keep_versions:
            delta.cleanup_metadata()
        delta = self.table(table)
        files = layout.live_files(delta, column) if column else None
        return {
            "layout": f"day ranges of {column}" if column else "compacted by size",
            "files_before": files_before,
            "files_after": len(delta.file_uris()),
            "max_days_per_file": layout.max_days_per_file(files) if files is not None else "-",
            **stats,
            "files_vacuumed": len(removed),
            "kept_versions": sorted(set(keep_versions)),
            "log_cleaned": not keep_versions,
            "version": int(delta.version()),
        }

    def _compact(self, table: str) -> dict[str, object]:
        compaction = self.table(table).optimize.compact(
            commit_properties=CommitProperties(custom_metadata={OPERATION_KEY: MAINTENANCE})
        )
        return {
            "files_added": int(compaction.get("numFilesAdded", 0)),
            "files_removed": int(compaction.get("numFilesRemoved", 0)),
            "skipped": "-",
        }

    def tables(self) -> list[str]:
        """Every Delta table under the root (`prefix/name`, two levels, as table names are), sorted.

        Lists the two folder levels only, not the tables' files, so it costs the same for a
        lake of years as for one of days.
        """
        fs, root = filesystem(self.root, self._options)

        def folders(path: str) -> list[str]:
            infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
            return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

        candidates = (f"{prefix}/{name}" for prefix in folders(root) for name in folders(f"{root}/{prefix}"))
        return [table for table in candidates if self.exists(table)]

    def last_day(self, table: str, column: str) -> dt.date | None:
        """The latest value of a day column, or None when the table has no rows."""
        return self.scan(table).select(pl.col(column).max()).collect().item()

    def history(self, table: str, limit: int | None = None) -> list[dict]:
        return self.table(table).history(limit)


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("conflict", "concurrent", "already exists", "version"))
