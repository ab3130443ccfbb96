"""Parse a landing CSV against its contract, or say exactly why it cannot be.

File-level problems (unreadable bytes, wrong header, a value of the wrong type) raise
`LandingFileError`: the caller quarantines the whole file. Row-level problems are
the business of `ml.validation`.
"""

from __future__ import annotations

import csv
import io

import polars as pl

from ml.schemas import NULL_VALUES, LandingContract

LINE_COLUMN = "__line"


class LandingFileError(ValueError):
    """A landing file that cannot be ingested; names the file and the cause."""

    def __init__(self, source: str, cause: str) -> None:
        super().__init__(f"landing file {source}: {cause}")
        self.source = source
        self.cause = cause


def decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LandingFileError(
            source,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})",
        ) from exc


def _check_shape(text: str, contract: LandingContract, source: str) -> list[str]:
    if not text.endswith("\n"):
        last = text.count("\n") + 1
        raise LandingFileError(
            source, f"truncated: line {last} is incomplete (the file does not end with a newline)"
        )
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    header = [h.strip() for h in header]
    missing = [c for c in contract.required if c not in header]
    if missing:
        raise LandingFileError(source, f"missing required column(s): {', '.join(missing)}")
    unexpected = [c for c in header if c not in contract.columns]
    if unexpected:
        raise LandingFileError(source, f"unexpected column(s): {', '.join(unexpected)}")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise LandingFileError(source, f"duplicated column(s): {', '.join(duplicated)}")
    for line_no, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise LandingFileError(
                source, f"line {line_no} has {len(row)} fields, the header has {len(header)}"
            )
    return header


def _cast_column(raw: pl.Series, dtype: pl.DataType, source: str) -> pl.Series:
    cast = raw.str.strip_chars().cast(dtype, strict=False)
    bad = raw.is_not_null() & cast.is_null()
    if bad.any():
        index = int(bad.arg_true()[0])
        raise LandingFileError(
            source,
            f"column '{raw.name}' line {index + 2}: {raw[index]!r} is not a valid {dtype}"
            f" ({int(bad.sum())} bad value(s) in the column)",
        )
    return cast


def parse_landing_csv(data: bytes, contract: LandingContract, source: str) -> pl.DataFrame:
    """Typed frame of a landing file in contract column order, plus its CSV line numbers.

    A header without rows is a valid delivery of a day with nothing in it (0 rows);
    a file of 0 bytes is not.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    if not data:
        raise LandingFileError(source, "file is empty (0 bytes)")
    text = decode_utf8(data, source)
    header = _check_shape(text, contract, source)
    raw = pl.read_csv(io.BytesIO(data), infer_schema=False, null_values=NULL_VALUES, has_header=True)
    raw.columns = header
    columns = []
    for name, dtype in contract.columns.items():
        if name in header:
            columns.append(_cast_column(raw[name], dtype, source))
        else:
            columns.append(pl.Series(name, [None] * raw.height, dtype=dtype))
    lines = pl.Series(LINE_COLUMN, range(2, raw.height + 2), dtype=pl.Int64)
    return pl.DataFrame([*columns, lines])


def count_data_rows(data: bytes) -> int:
    """CSV records a landing file delivered after its header (a quoted value may span lines)."""
    records = sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8", errors="replace"))))
    return max(records - 1, 0)
