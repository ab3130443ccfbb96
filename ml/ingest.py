"""Ingest landing files of a set of days: parse, validate, and quarantine what cannot be read.

All days of a batch are parsed before anything is written; if any file is bad, every
bad file is quarantined and one error names them all, so a table is never left with
half a batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from ml.landing_parse import LandingFileError, count_data_rows, parse_landing_csv
from ml.landing_zone import LandingFileMissingError, LandingZone
from ml.schemas import REJECTS_SCHEMA, LandingContract
from ml.validation import Validated

Validator = Callable[[pl.DataFrame, dt.date, str], Validated]


class IngestionError(RuntimeError):
    """One or more landing files of a batch could not be ingested; none of the batch was written."""


@dataclass(frozen=True)
class DayBatch:
    day: dt.date
    source: str
    md5: str
    landing_rows: int
    validated: Validated


@dataclass(frozen=True)
class Batch:
    days: list[DayBatch]

    @property
    def valid(self) -> pl.DataFrame:
        return pl.concat([d.validated.valid for d in self.days])

    @property
    def rejects(self) -> pl.DataFrame:
        frames = [d.validated.rejects for d in self.days]
        return pl.concat(frames) if frames else pl.DataFrame(schema=REJECTS_SCHEMA)

    @property
    def landing_rows(self) -> int:
        return sum(d.landing_rows for d in self.days)


def ingest_days(
    zone: LandingZone, contract: LandingContract, days: Sequence[dt.date], validate: Validator
) -> Batch:
    zone.ensure_exists()
    batches: list[DayBatch] = []
    problems: list[str] = []
    for day in sorted(days):
        uri = zone.day_uri(contract.dataset, day)
        try:
            data = zone.read(uri)
        except LandingFileMissingError as exc:
            problems.append(str(exc))
            continue
        try:
            typed = parse_landing_csv(data, contract, uri)
            validated = validate(typed, day, uri)
        except LandingFileError as exc:
            moved = zone.quarantine(uri, exc.cause)
            problems.append(f"{exc} (quarantined to {moved.destination})")
            continue
        batches.append(DayBatch(day, uri, hashlib.md5(data).hexdigest(), count_data_rows(data), validated))
    if problems:
        raise IngestionError(
            f"{len(problems)} of {len(days)} {contract.dataset} landing file(s) could not be "
            "ingested; nothing was written:\n" + "\n".join(f"- {p}" for p in problems)
        )
    return Batch(batches)


def read_reference(zone: LandingZone, contract: LandingContract) -> pl.DataFrame:
    """A dimension file, parsed and de-duplicated on its first column; bad files are quarantined."""
    uri = zone.reference_uri(contract.dataset)
    data = zone.read(uri)
    try:
        typed = parse_landing_csv(data, contract, uri)
    except LandingFileError as exc:
        moved = zone.quarantine(uri, exc.cause)
        raise IngestionError(f"{exc} (quarantined to {moved.destination})") from exc
    key = contract.names[0]
    return (
        typed.drop("__line").filter(pl.col(key).is_not_null()).unique(key, keep="first", maintain_order=True)
    )
