"""The landing zone: one file per dataset and day, and a quarantine beside it.

A file that cannot be ingested is moved to quarantine with a reason file next to it;
it is never deleted, and a second bad delivery of the same day keeps the first one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from ml.lake.storage import filesystem, join_uri, make_dirs

DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.csv$")


class LandingZoneMissingError(FileNotFoundError):
    pass


class LandingFileMissingError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class QuarantinedFile:
    source: str
    destination: str
    reason: str


@dataclass(frozen=True)
class QuarantineEntry:
    """A file in quarantine as listed, by its reason file, without reading it."""

    dataset: str
    destination: str
    """The quarantined file's URI."""
    note_uri: str
    modified: float | None
    """When the reason file was written (epoch seconds), None where the store gives no time."""

    @property
    def day(self) -> dt.date | None:
        """The day the file's name starts with, if it names one."""
        name = self.destination.rsplit("/", 1)[-1]
        try:
            return dt.date.fromisoformat(name[:10])
        except ValueError:
            return None


@dataclass(frozen=True)
class LandedFile:
    """A day file as listed, without reading it: its signature changes when its bytes do."""

    dataset: str
    day: dt.date
    uri: str
    signature: str
    modified: dt.datetime | None
    """None where the store gives no modification time: such a file is not waited on to settle."""


@dataclass(frozen=True)
class LandingInventory:
    """What a scan of one dataset folder found."""

    days: dict[dt.date, str] = field(default_factory=dict)
    quarantined: list[QuarantinedFile] = field(default_factory=list)
    files: list[LandedFile] = field(default_factory=list)


@dataclass(frozen=True)
class LandingZone:
    root: str
    quarantine_root: str
    storage_options: dict[str, str] | None = None

    def _fs(self, uri: str) -> tuple[pafs.FileSystem, str]:
        return filesystem(uri, self.storage_options)

    def uri(self, *parts: str) -> str:
        return join_uri(self.root, *parts)

    def day_uri(self, dataset: str, day: dt.date) -> str:
        return self.uri(dataset, f"{day.isoformat()}.csv")

    def reference_uri(self, dataset: str) -> str:
        return self.uri("reference", f"{dataset}.csv")

    def ensure_exists(self) -> None:
        fs, path = self._fs(self.root)
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            raise LandingZoneMissingError(
                f"landing zone {self.uri()} does not exist: create it, point the landing "
                "setting at the right folder or bucket, or run `python -m ml.ingest.replay`"
            )

    def read(self, uri: str) -> bytes:
        fs, path = self._fs(uri)
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            self.ensure_exists()
            hint = self._quarantine_hint(uri)
            raise LandingFileMissingError(f"landing file {uri} does not exist{hint}")
        with fs.open_input_stream(path) as stream:
            return stream.read()

    def _quarantine_hint(self, uri: str) -> str:
        """The reason of the latest quarantined delivery of this file, if there is one."""
        name = uri.rsplit("/", 1)[-1]
        dataset = uri.rsplit("/", 2)[-2]
        fs, qdir = self._fs(join_uri(self.quarantine_root, dataset))
        if fs.get_file_info(qdir).type != pafs.FileType.Directory:
            return ""
        stem = name.rpartition(".")[0]
        notes = []
        for info in fs.get_file_info(pafs.FileSelector(qdir)):
            if info.base_name.startswith(stem) and info.base_name.endswith(".reason.json"):
                with fs.open_input_stream(info.path) as stream:
                    note = json.loads(stream.read())
                if note.get("source", "").endswith(f"/{dataset}/{name}"):
                    notes.append(note)
        if not notes:
            return ""
        latest = max(notes, key=lambda n: n["quarantined_at"])
        return f" (it was quarantined: {latest['reason']})"

    def quarantine(self, uri: str, reason: str, *, now: dt.datetime) -> QuarantinedFile:
        """Move a file into quarantine with a reason file; named by content if the name is taken."""
        fs, path = self._fs(uri)
        with fs.open_input_stream(path) as stream:
            data = stream.read()
        digest = hashlib.md5(data).hexdigest()
        name = uri.rsplit("/", 1)[-1]
        dataset = uri.rsplit("/", 2)[-2]
        qfs, qdir = self._fs(join_uri(self.quarantine_root, dataset))
        make_dirs(qfs, qdir)
        target = f"{qdir}/{name}"
        if qfs.get_file_info(target).type == pafs.FileType.File:
            stem, _, ext = name.rpartition(".")
            target = f"{qdir}/{stem}.{digest[:12]}.{ext}"
        with qfs.open_output_stream(target) as out:
            out.write(data)
        note = {"source": uri, "reason": reason, "md5": digest, "bytes": len(data)}
        note["quarantined_at"] = now.isoformat()
        with qfs.open_output_stream(f"{target}.reason.json") as out:
            out.write(json.dumps(note, indent=2).encode())
        fs.delete_file(path)
        return QuarantinedFile(source=uri, destination=self._quarantine_uri(target), reason=reason)

    def _quarantine_uri(self, path: str) -> str:
        scheme = self.quarantine_root.partition("://")[0] if "://" in self.quarantine_root else ""
        return f"{scheme}://{path}" if scheme else path

    def quarantined(self) -> list[QuarantineEntry]:
        """Every quarantined file, whoever moved it (a landing scan or an ingestion run), oldest first."""
        fs, base = self._fs(self.quarantine_root)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        entries = []
        for info in fs.get_file_info(selector):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".reason.json"):
                continue
            relative = info.path[len(base) :].lstrip("/")
            dataset = relative.rsplit("/", 1)[0] if "/" in relative else ""
            modified = info.mtime_ns / 1e9 if info.mtime_ns is not None else None
            destination = self._quarantine_uri(info.path.removesuffix(".reason.json"))
            entries.append(QuarantineEntry(dataset, destination, self._quarantine_uri(info.path), modified))
        return sorted(entries, key=lambda e: (e.modified or 0.0, e.note_uri))

    def quarantine_note(self, entry: QuarantineEntry) -> dict[str, object]:
        """The reason file of a quarantined file: source, reason, md5, bytes, quarantined_at."""
        fs, path = self._fs(entry.note_uri)
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read())

    def scan(
        self, dataset: str, first: dt.date, last: dt.date, *, now: dt.datetime, open_ended: bool = False
    ) -> LandingInventory:
        """Day files of a dataset; names that are no day of [first, last] go to quarantine.

        `open_ended`: the partitions have no last day and `last` is today, so a later day is
        quarantined as one in the future rather than outside a configured range.
        """
        inventory = LandingInventory()
        for info in self._listing(dataset):
            uri = self.uri(dataset, info.base_name)
            reason = _name_problem(info.base_name, first, last, open_ended)
            if reason:
                inventory.quarantined.append(self.quarantine(uri, reason, now=now))
                continue
            landed = _landed(dataset, uri, info)
            inventory.days[landed.day] = uri
            inventory.files.append(landed)
        return inventory

    def day_files(self, dataset: str, first: dt.date, last: dt.date) -> list[LandedFile]:
        """The well-named day files of [first, last], listed without moving anything (for checks)."""
        return [
            _landed(dataset, self.uri(dataset, info.base_name), info)
            for info in self._listing(dataset)
            if _name_problem(info.base_name, first, last) is None
        ]

    def _listing(self, dataset: str) -> list[pafs.FileInfo]:
        self.ensure_exists()
        fs, base = self._fs(self.uri(dataset))
        if fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=False))
        return [
            info
            for info in sorted(infos, key=lambda i: i.base_name)
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        ]


def _landed(dataset: str, uri: str, info: pafs.FileInfo) -> LandedFile:
    modified = info.mtime
    if modified is not None and modified.tzinfo is None:
        modified = modified.replace(tzinfo=dt.UTC)
    day = dt.date.fromisoformat(info.base_name[:10])
    return LandedFile(dataset, day, uri, f"{info.size}:{info.mtime_ns}", modified)


def _name_problem(name: str, first: dt.date, last: dt.date, open_ended: bool = False) -> str | None:
    match = DAY_FILE.match(name)
    if not match:
        leading = re.match(r"^(\d{4}-\d{2}-\d{2})\D", name)
        if leading:
            return f"duplicate delivery of {leading.group(1)}: only {leading.group(1)}.csv is ingested"
        return "file name is not YYYY-MM-DD.csv"
    try:
        day = dt.date.fromisoformat(match.group(1))
    except ValueError:
        return f"file name {name} is not a calendar date"
    if open_ended and day > last:
        return f"day {day} is in the future: the partitions are open-ended and today in New York is {last}"
    if not first <= day <= last:
        return f"day {day} is outside the partition range {first}..{last}"
    return None
