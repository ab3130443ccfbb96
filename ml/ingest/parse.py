"""Parse landing CSVs against their contract, or say exactly why a file cannot be.

File-level problems (unreadable bytes, wrong header, a value of the wrong type) are
`LandingFileError`s naming the file: the caller quarantines the whole file. Row-level
problems are the business of `ml.ingest.validation`.

Each file's bytes, header and field counts are checked on their own, but the files of a
batch are parsed as one frame: per-file polars calls would cost more than the parsing itself
on a year of daily files. The parse reads the contract types straight from the bytes; only
when a value does not parse are the files read again file by file, and a file that still
fails is read as text and cast (`_cast`), which names its column, line and value. Reading
every file as text first cost about 3.5 s per 2 million rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ml.lake.schemas import NULL_VALUES, LandingContract

LINE_COLUMN = "__line"
SOURCE_COLUMN = "__source"
BOM = b"\xef\xbb\xbf"
_PADDING = (b" ", b"\t", b"\x0b", b"\x0c", b"\r", b'"')
"""Bytes whose presence means a text value may need stripping (a quoted value may hold a
newline; the other whitespace `str.strip_chars` removes is not ASCII)."""


class LandingFileError(ValueError):
    """A landing file that cannot be ingested; names the file and the cause."""

    def __init__(self, source: str, cause: str) -> None:
        super().__init__(f"landing file {source}: {cause}")
        self.source = source
        self.cause = cause


@dataclass(frozen=True)
class ParsedFiles:
    """Typed rows of the files that parsed (with source and line), and why the others did not."""

    frame: pl.DataFrame
    errors: dict[str, LandingFileError] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    """Data rows delivered by each file that parsed."""


@dataclass(frozen=True)
class _Checked:
    source: str
    header: tuple[str, ...]
    body: bytes
    rows: int
    lines_counted: bool = True
    """False for an unquoted file whose commas add up to every line's share: its lines are
    then counted only if the typed read refuses it (see `_check_file`)."""
    plain: bool = False
    """ASCII without a padding byte: no text value needs stripping (`_read_typed`)."""


def decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LandingFileError(
            source,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})",
        ) from exc


def _check_header(header: list[str], contract: LandingContract, source: str) -> None:
    missing = [c for c in contract.required if c not in header]
    if missing:
        raise LandingFileError(source, f"missing required column(s): {', '.join(missing)}")
    unexpected = [c for c in header if c not in contract.columns]
    if unexpected:
        raise LandingFileError(source, f"unexpected column(s): {', '.join(unexpected)}")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise LandingFileError(source, f"duplicated column(s): {', '.join(duplicated)}")


def _field_count_error(line_no: int, fields: int, expected: int) -> str:
    return f"line {line_no} has {fields} fields, the header has {expected}"


def _check_field_counts(body: bytes, expected: int, source: str) -> int:
    """Data rows of an unquoted file's body whose every line has `expected` fields, or the first line that has not.

    Counted with numpy over the bytes (commas between consecutive newlines, by searching the
    newlines among the commas' positions): a Python loop over the lines cost 1.5 s per million
    rows, and a running count over every byte (`cumsum`) 1.3 s per 2 million rows.
    """
    raw = np.frombuffer(body, dtype=np.uint8)
    ends = np.concatenate(([-1], np.flatnonzero(raw == ord("\n"))))
    per_line = np.diff(np.searchsorted(np.flatnonzero(raw == ord(",")), ends))  # commas of each line
    bad = np.flatnonzero(per_line != expected - 1)
    if bad.size:
        index = int(bad[0])
        line = body[int(ends[index]) + 1 : int(ends[index + 1])]
        fields = 0 if not line.rstrip(b"\r") else line.count(b",") + 1
        raise LandingFileError(source, _field_count_error(index + 2, fields, expected))
    return len(ends) - 1


def _count(raw: np.ndarray, byte: bytes) -> int:
    """Occurrences of one byte: a quarter of `bytes.count`'s time on a landing file."""
    return int(np.count_nonzero(raw == ord(byte)))


def _check_file(data: bytes, contract: LandingContract, source: str) -> _Checked:
    """Encoding, completeness, header and field counts of one file; its data rows counted."""
    data = data.removeprefix(BOM)
    if not data:
        raise LandingFileError(source, "file is empty (0 bytes)")
    ascii_only = data.isascii()
    if not ascii_only:  # ASCII is UTF-8; checking it is a tenth of decoding
        decode_utf8(data, source)
    if not data.endswith(b"\n"):
        last = data.count(b"\n") + 1
        raise LandingFileError(
            source, f"truncated: line {last} is incomplete (the file does not end with a newline)"
        )
    body = data[data.index(b"\n") + 1 :]
    if b'"' not in data:
        # No quoting: a record is a line and a field separator is a comma.
        header = [h.strip() for h in data[: data.index(b"\n")].rstrip(b"\r").decode().split(",")]
        _check_header(header, contract, source)
        raw = np.frombuffer(body, dtype=np.uint8)
        rows = _count(raw, b"\n")
        if _count(raw, b",") == rows * (len(header) - 1):
            # Every line has its fields, or one has more than the header and the typed read
            # refuses the file: only then are its lines counted (0.4 s per million rows).
            plain = ascii_only and not any(b in body for b in _PADDING)
            return _Checked(source, tuple(header), body, rows, lines_counted=False, plain=plain)
        _check_field_counts(body, len(header), source)
    else:
        records = csv.reader(io.StringIO(decode_utf8(data, source)))
        header = [h.strip() for h in next(records, [])]
        _check_header(header, contract, source)
        rows = 0
        for line_no, row in enumerate(records, start=2):
            if len(row) != len(header):
                raise LandingFileError(source, _field_count_error(line_no, len(row), len(header)))
            rows += 1
    return _Checked(source, tuple(header), body, rows)


def _read_strings(header: tuple[str, ...], body: bytes) -> pl.DataFrame:
    if not body:
        return pl.DataFrame(schema=dict.fromkeys(header, pl.String()))
    return pl.read_csv(
        io.BytesIO(body),
        has_header=False,
        infer_schema=False,
        null_values=NULL_VALUES,
        new_columns=list(header),
    )


def _read_typed(
    header: tuple[str, ...], members: list[_Checked], contract: LandingContract
) -> pl.DataFrame | None:
    """The members' rows in the contract's types read straight from the bytes, or None if a value does not parse.

    Gives what `_cast` gives for the same bytes (text values stripped, numbers parsed by
    the same rules), so which path reads a file does not change its rows: None sends
    the files to `_cast`, which names the bad value. The bodies are read as one source
    each (joining them first cost a copy of them all).
    """
    schema = {name: contract.columns[name] for name in header}
    bodies = [m.body for m in members if m.body]
    if not bodies:
        return pl.DataFrame(schema=schema)
    try:
        sources = [io.BytesIO(body) for body in bodies]
        typed = pl.read_csv(sources, has_header=False, schema=schema, null_values=NULL_VALUES)
    except pl.exceptions.PolarsError:
        return None
    if typed.height != sum(m.rows for m in members):
        return None
    texts = [name for name, dtype in schema.items() if dtype == pl.String()]
    padded = (not m.plain and (not m.body.isascii() or any(b in m.body for b in _PADDING)) for m in members)
    if texts and any(padded):
        typed = typed.with_columns(pl.col(texts).str.strip_chars())
    return typed


def _source_tags(members: list[_Checked]) -> pl.Series:
    """The source of every row of `members`' joint parse, in order (a gather: a third of
    `repeat_by` and `explode`'s time)."""
    sources = pl.Series(SOURCE_COLUMN, [m.source for m in members], dtype=pl.String())
    return sources.gather(np.repeat(np.arange(len(members)), [m.rows for m in members]))


def _empty(contract: LandingContract) -> pl.DataFrame:
    return pl.DataFrame(schema={**contract.columns, LINE_COLUMN: pl.Int64(), SOURCE_COLUMN: pl.String()})


def _in_contract(typed: pl.DataFrame, members: list[_Checked], contract: LandingContract) -> pl.DataFrame:
    """A typed parse of `members` in contract column order, tagged with line and source."""
    lines = np.concatenate([np.arange(2, m.rows + 2, dtype=np.int64) for m in members])
    return typed.select(
        *[
            pl.col(name) if name in typed.columns else pl.lit(None, dtype).alias(name)
            for name, dtype in contract.columns.items()
        ],
        pl.Series(LINE_COLUMN, lines, dtype=pl.Int64()),
        _source_tags(members).alias(SOURCE_COLUMN),
    )


def _raw_frame(checked: list[_Checked]) -> pl.DataFrame:
    """All files' rows as strings, one parse per distinct header, tagged with source and line."""
    by_header: dict[tuple[str, ...], list[_Checked]] = {}
    for item in checked:
        by_header.setdefault(item.header, []).append(item)
    frames = [pl.DataFrame(schema={SOURCE_COLUMN: pl.String()})]
    for header, members in by_header.items():
        raw = _read_strings(header, b"".join(m.body for m in members))
        if raw.height != sum(m.rows for m in members):
            # The joint parse disagrees with the record counts: parse file by file.
            raw = pl.concat([_read_strings(header, m.body) for m in members])
        frames.append(raw.with_columns(_source_tags(members)))
    raw = pl.concat(frames, how="diagonal")
    line = pl.int_range(pl.len()).over(SOURCE_COLUMN) + 2
    return raw.with_columns(line.cast(pl.Int64).alias(LINE_COLUMN))


def _cast(raw: pl.DataFrame, contract: LandingContract) -> ParsedFiles:
    """Contract types for every column; a file with a value that does not cast is an error."""
    typed = raw.select(
        *[
            pl.col(name).str.strip_chars().cast(dtype, strict=False).alias(name)
            if name in raw.columns
            else pl.lit(None, dtype).alias(name)
            for name, dtype in contract.columns.items()
        ],
        LINE_COLUMN,
        SOURCE_COLUMN,
    )
    checked = [n for n, t in contract.columns.items() if n in raw.columns and t != pl.String()]
    flags = pl.DataFrame([(raw[n].is_not_null() & typed[n].is_null()).alias(n) for n in checked])
    if flags.width == 0 or not flags.select(pl.any_horizontal(pl.all()).any()).item():
        return ParsedFiles(typed)
    errors: dict[str, LandingFileError] = {}
    bad_rows = raw.select(SOURCE_COLUMN, LINE_COLUMN, *checked).hstack(flags.rename(lambda c: f"__bad_{c}"))
    for name in checked:
        bad = bad_rows.filter(pl.col(f"__bad_{name}"))
        for source, rows in bad.group_by(SOURCE_COLUMN, maintain_order=True):
            source = str(source[0])
            if source in errors:
                continue
            first = rows.row(0, named=True)
            errors[source] = LandingFileError(
                source,
                f"column '{name}' line {first[LINE_COLUMN]}: {first[name]!r} is not a valid "
                f"{contract.columns[name]} ({rows.height} bad value(s) in the column)",
            )
    return ParsedFiles(typed.filter(~pl.col(SOURCE_COLUMN).is_in(list(errors))), errors)


def _parse_group(header: tuple[str, ...], members: list[_Checked], contract: LandingContract) -> ParsedFiles:
    """The files of one header: typed in one read; if a value does not parse, file by file,
    and the files that still fail as text (`_cast`), in the files' order."""
    joint = _read_typed(header, members, contract)
    if joint is not None:
        return ParsedFiles(_in_contract(joint, members, contract))
    alone = [(m, _read_typed(header, [m], contract)) for m in members]
    ragged: dict[str, LandingFileError] = {}
    for m, typed in alone:
        if typed is None and not m.lines_counted:
            try:
                _check_field_counts(m.body, len(header), m.source)
            except LandingFileError as exc:
                ragged[m.source] = exc
    failed = [m for m, typed in alone if typed is None and m.source not in ragged]
    cast = _cast(_raw_frame(failed), contract) if failed else ParsedFiles(_empty(contract))
    by_source = {str(k[0]): f for k, f in cast.frame.partition_by(SOURCE_COLUMN, as_dict=True).items()}
    pieces = [
        _in_contract(typed, [m], contract) if typed is not None else by_source[m.source]
        for m, typed in alone
        if typed is not None or m.source in by_source
    ]
    errors = {**ragged, **cast.errors}
    in_order = {m.source: errors[m.source] for m in members if m.source in errors}
    return ParsedFiles(pl.concat([_empty(contract), *pieces]), in_order)


def parse_landing_files(files: Sequence[tuple[str, bytes]], contract: LandingContract) -> ParsedFiles:
    """Typed rows of many landing files (source and line on each row), and per-file errors.

    A header without rows is a valid delivery of a day with nothing in it (0 rows);
    a file of 0 bytes is not.
    """
    checked: list[_Checked] = []
    errors: dict[str, LandingFileError] = {}
    for source, data in files:
        try:
            checked.append(_check_file(data, contract, source))
        except LandingFileError as exc:
            errors[source] = exc
    by_header: dict[tuple[str, ...], list[_Checked]] = {}
    for item in checked:
        by_header.setdefault(item.header, []).append(item)
    frames = [_empty(contract)]
    for header, members in by_header.items():
        group = _parse_group(header, members, contract)
        frames.append(group.frame)
        errors.update(group.errors)
    rows = {c.source: c.rows for c in checked if c.source not in errors}
    return ParsedFiles(pl.concat(frames), errors, rows)


def parse_landing_csv(data: bytes, contract: LandingContract, source: str) -> pl.DataFrame:
    """Typed frame of one landing file in contract column order, plus its CSV line numbers."""
    parsed = parse_landing_files([(source, data)], contract)
    if source in parsed.errors:
        raise parsed.errors[source]
    return parsed.frame.drop(SOURCE_COLUMN)


def count_data_rows(data: bytes) -> int:
    """CSV records a landing file delivered after its header (a quoted value may span lines)."""
    records = sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8", errors="replace"))))
    return max(records - 1, 0)
