"""`parse_landing_csv` against the flights and weather contracts, on small files built by hand.

Every file-level problem must raise `LandingFileError` whose message names the file and the cause.
"""

from __future__ import annotations

import polars as pl
import pytest

from ml.ingest.parse import (
    LINE_COLUMN,
    SOURCE_COLUMN,
    LandingFileError,
    count_data_rows,
    parse_landing_csv,
    parse_landing_files,
)
from ml.lake.schemas import FLIGHTS_LANDING, WEATHER_LANDING, LandingContract

FLIGHTS_SOURCE = "landing/flights/2013-01-01.csv"
WEATHER_SOURCE = "landing/weather/2013-01-01.csv"

FLIGHTS_HEADER = (
    "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,"
    "carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour"
)
FLIGHTS_ROWS = [
    "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",
    "2013,1,1,533,529,4,850,830,20,UA,1714,N24211,LGA,IAH,227,1416,5,29,2013-01-01T10:00:00Z",
    "2013,1,1,NA,1630,NA,NA,1815,NA,EV,4308,N18120,EWR,RDU,NA,416,16,30,2013-01-01T21:00:00Z",
]
WEATHER_HEADER = (
    "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour"
)
WEATHER_ROWS = [
    "EWR,2013,1,1,1,39.02,26.06,59.37,270,10.35702,NA,0,1012,10,2013-01-01T06:00:00Z",
    "EWR,2013,1,1,2,39.02,26.96,61.63,250,8.05546,NA,0,1012.3,10,2013-01-01T07:00:00Z",
]


def csv_bytes(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def flights_bytes(rows: list[str] | None = None, header: str = FLIGHTS_HEADER) -> bytes:
    return csv_bytes(header, FLIGHTS_ROWS if rows is None else rows)


def without_column(header: str, rows: list[str], column: str) -> bytes:
    index = header.split(",").index(column)

    def drop(line: str) -> str:
        fields = line.split(",")
        return ",".join(fields[:index] + fields[index + 1 :])

    return csv_bytes(drop(header), [drop(r) for r in rows])


def with_field(row: str, header: str, column: str, value: str) -> str:
    fields = row.split(",")
    fields[header.split(",").index(column)] = value
    return ",".join(fields)


def parse_error(data: bytes, contract: LandingContract, source: str) -> LandingFileError:
    with pytest.raises(LandingFileError) as info:
        parse_landing_csv(data, contract, source)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.source == source
    assert str(error) == f"landing file {source}: {error.cause}"
    return error


# --- files that parse ---------------------------------------------------------------------------


def test_a_good_flights_file_parses_to_the_contract_types_with_line_numbers() -> None:
    frame = parse_landing_csv(flights_bytes(), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert frame.columns == [*FLIGHTS_LANDING.names, LINE_COLUMN]
    assert dict(frame.schema) == {**FLIGHTS_LANDING.columns, LINE_COLUMN: pl.Int64()}
    assert frame[LINE_COLUMN].to_list() == [2, 3, 4]
    assert frame["dep_time"].to_list() == [517, 533, None]
    assert frame["carrier"].to_list() == ["UA", "UA", "EV"]
    assert frame["time_hour"][0] == "2013-01-01T10:00:00Z"


def test_a_good_weather_file_parses_to_the_contract_types() -> None:
    frame = parse_landing_csv(csv_bytes(WEATHER_HEADER, WEATHER_ROWS), WEATHER_LANDING, WEATHER_SOURCE)
    assert frame.columns == [*WEATHER_LANDING.names, LINE_COLUMN]
    assert frame.schema["temp"] == pl.Float64
    assert frame.schema["wind_dir"] == pl.Int32
    assert frame["pressure"].to_list() == [1012.0, 1012.3]
    assert frame["wind_gust"].null_count() == 2


def test_an_optional_column_may_be_missing_and_comes_back_null() -> None:
    data = without_column(FLIGHTS_HEADER, FLIGHTS_ROWS, "tailnum")
    frame = parse_landing_csv(data, FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert frame.columns == [*FLIGHTS_LANDING.names, LINE_COLUMN]
    assert frame["tailnum"].null_count() == frame.height == 3
    assert frame.schema["tailnum"] == pl.String


def test_columns_in_another_order_are_put_in_contract_order() -> None:
    header = FLIGHTS_HEADER.split(",")
    order = list(reversed(range(len(header))))
    rows = [",".join(r.split(",")[i] for i in order) for r in FLIGHTS_ROWS]
    data = csv_bytes(",".join(header[i] for i in order), rows)
    assert parse_landing_csv(data, FLIGHTS_LANDING, FLIGHTS_SOURCE).equals(
        parse_landing_csv(flights_bytes(), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    )


def test_windows_line_endings_parse_like_unix_ones() -> None:
    crlf = flights_bytes().replace(b"\n", b"\r\n")
    assert parse_landing_csv(crlf, FLIGHTS_LANDING, FLIGHTS_SOURCE).equals(
        parse_landing_csv(flights_bytes(), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    )


def test_header_names_padded_with_spaces_are_accepted_like_the_shape_check_accepts_them() -> None:
    # The header check strips names (" month" counts as month), so the file must then parse;
    # at the very least it must not fail with anything but a LandingFileError.
    data = flights_bytes(header=FLIGHTS_HEADER.replace(",month,", ", month ,"))
    frame = parse_landing_csv(data, FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert frame["month"].to_list() == [1, 1, 1]


# --- files that cannot be ingested ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "header", "rows", "column", "source"),
    [
        (FLIGHTS_LANDING, FLIGHTS_HEADER, FLIGHTS_ROWS, "dest", FLIGHTS_SOURCE),
        (FLIGHTS_LANDING, FLIGHTS_HEADER, FLIGHTS_ROWS, "sched_dep_time", FLIGHTS_SOURCE),
        (WEATHER_LANDING, WEATHER_HEADER, WEATHER_ROWS, "time_hour", WEATHER_SOURCE),
        (WEATHER_LANDING, WEATHER_HEADER, WEATHER_ROWS, "origin", WEATHER_SOURCE),
    ],
    ids=["flights-dest", "flights-sched_dep_time", "weather-time_hour", "weather-origin"],
)
def test_a_missing_required_column_is_named(
    contract: LandingContract, header: str, rows: list[str], column: str, source: str
) -> None:
    error = parse_error(without_column(header, rows, column), contract, source)
    assert error.cause == f"missing required column(s): {column}"


def test_every_missing_required_column_is_named() -> None:
    data = csv_bytes("year,month,day", ["2013,1,1"])
    error = parse_error(data, FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert error.cause.startswith("missing required column(s): ")
    named = error.cause.removeprefix("missing required column(s): ").split(", ")
    assert named == [c for c in FLIGHTS_LANDING.required if c not in ("year", "month", "day")]


def test_a_value_of_the_wrong_type_names_column_line_and_value() -> None:
    rows = [FLIGHTS_ROWS[0], with_field(FLIGHTS_ROWS[1], FLIGHTS_HEADER, "dep_time", "abc"), FLIGHTS_ROWS[2]]
    error = parse_error(flights_bytes(rows), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert "column 'dep_time' line 3: 'abc' is not a valid Int32" in error.cause
    assert "(1 bad value(s) in the column)" in error.cause
    assert FLIGHTS_SOURCE in str(error)


def test_the_first_bad_value_is_reported_and_all_are_counted() -> None:
    rows = [
        with_field(r, FLIGHTS_HEADER, "distance", v)
        for r, v in zip(FLIGHTS_ROWS, ["9", "1.5", "x"], strict=True)
    ]
    error = parse_error(flights_bytes(rows), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert "column 'distance' line 3: '1.5' is not a valid Int32" in error.cause
    assert "(2 bad value(s) in the column)" in error.cause


def test_a_weather_value_of_the_wrong_type_is_named() -> None:
    rows = [WEATHER_ROWS[0], with_field(WEATHER_ROWS[1], WEATHER_HEADER, "temp", "warm")]
    error = parse_error(csv_bytes(WEATHER_HEADER, rows), WEATHER_LANDING, WEATHER_SOURCE)
    assert "column 'temp' line 3: 'warm' is not a valid Float64" in error.cause


def test_an_empty_file_is_refused() -> None:
    error = parse_error(b"", FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert error.cause == "file is empty (0 bytes)"


def test_a_truncated_file_names_the_incomplete_line() -> None:
    data = flights_bytes()
    cut = data.index(FLIGHTS_ROWS[2].encode()) + 20  # in the middle of line 4
    error = parse_error(data[:cut], FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert error.cause == "truncated: line 4 is incomplete (the file does not end with a newline)"


def test_a_header_cut_short_is_truncated_too() -> None:
    error = parse_error(FLIGHTS_HEADER[:30].encode(), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert error.cause.startswith("truncated: line 1 is incomplete")


@pytest.mark.parametrize(
    ("contract", "data", "source"),
    [
        (FLIGHTS_LANDING, flights_bytes(), FLIGHTS_SOURCE),
        (WEATHER_LANDING, csv_bytes(WEATHER_HEADER, WEATHER_ROWS), WEATHER_SOURCE),
    ],
    ids=["flights", "weather"],
)
def test_bytes_that_are_not_utf8_name_the_offset_and_line(
    contract: LandingContract, data: bytes, source: str
) -> None:
    second_row = data.index(b"\n", data.index(b"\n") + 1) + 1  # first byte of line 3
    offset = second_row + 2
    bad = data[:offset] + b"\xff" + data[offset + 1 :]
    error = parse_error(bad, contract, source)
    assert error.cause == f"not valid UTF-8: byte 0xff at offset {offset} (line 3)"
    assert isinstance(error.__cause__, UnicodeDecodeError)


def test_latin1_text_is_not_taken_for_utf8() -> None:
    rows = [with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "tailnum", "N\u00e9")]
    data = flights_bytes(rows).decode().encode("latin-1")
    offset = data.index(b"\xe9")
    error = parse_error(data, FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert error.cause == f"not valid UTF-8: byte 0xe9 at offset {offset} (line 2)"


@pytest.mark.parametrize(
    ("contract", "header", "source"),
    [(FLIGHTS_LANDING, FLIGHTS_HEADER, FLIGHTS_SOURCE), (WEATHER_LANDING, WEATHER_HEADER, WEATHER_SOURCE)],
    ids=["flights", "weather"],
)
def test_a_header_only_file_is_a_day_with_no_rows(
    contract: LandingContract, header: str, source: str
) -> None:
    frame = parse_landing_csv(f"{header}\n".encode(), contract, source)
    assert frame.height == 0
    assert frame.columns[: len(contract.columns)] == contract.names


def test_a_short_row_names_its_line_and_field_counts() -> None:
    short = FLIGHTS_ROWS[1].rsplit(",", 1)[0]  # time_hour dropped
    error = parse_error(
        flights_bytes([FLIGHTS_ROWS[0], short, FLIGHTS_ROWS[2]]), FLIGHTS_LANDING, FLIGHTS_SOURCE
    )
    assert error.cause == "line 3 has 18 fields, the header has 19"


def test_a_long_row_names_its_line_and_field_counts() -> None:
    rows = [*WEATHER_ROWS, WEATHER_ROWS[1] + ",extra"]
    error = parse_error(csv_bytes(WEATHER_HEADER, rows), WEATHER_LANDING, WEATHER_SOURCE)
    assert error.cause == "line 4 has 16 fields, the header has 15"


def test_an_unexpected_column_is_named() -> None:
    rows = [r + ",x" for r in FLIGHTS_ROWS]
    error = parse_error(flights_bytes(rows, header=FLIGHTS_HEADER + ",gate"), FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert error.cause == "unexpected column(s): gate"


def test_a_duplicated_column_is_named() -> None:
    rows = [r + ",1" for r in WEATHER_ROWS]
    data = csv_bytes(WEATHER_HEADER + ",hour", rows)
    error = parse_error(data, WEATHER_LANDING, WEATHER_SOURCE)
    assert error.cause == "duplicated column(s): hour"


# --- reconciliation counts ------------------------------------------------------------------------


def test_count_data_rows_counts_the_rows_of_a_file() -> None:
    assert count_data_rows(flights_bytes()) == 3
    assert count_data_rows(f"{FLIGHTS_HEADER}\n".encode()) == 0
    assert count_data_rows(b"") == 0


def test_count_data_rows_agrees_with_the_parser_when_a_quoted_value_holds_a_newline() -> None:
    rows = [with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "tailnum", '"N14\n228"'), FLIGHTS_ROWS[1]]
    data = flights_bytes(rows)
    frame = parse_landing_csv(data, FLIGHTS_LANDING, FLIGHTS_SOURCE)
    assert frame.height == 2
    assert count_data_rows(data) == frame.height


# --- many files in one parse ----------------------------------------------------------------------


def test_a_batch_attributes_each_bad_file_and_keeps_the_good_ones_with_their_lines() -> None:
    good = flights_bytes()
    bad_type = flights_bytes([FLIGHTS_ROWS[0], with_field(FLIGHTS_ROWS[1], FLIGHTS_HEADER, "flight", "x1")])
    ragged = flights_bytes([FLIGHTS_ROWS[0], FLIGHTS_ROWS[1] + ",extra"])
    reordered = without_column(FLIGHTS_HEADER, FLIGHTS_ROWS, "air_time")
    files = [
        ("flights/2013-01-01.csv", good),
        ("flights/2013-01-02.csv", bad_type),
        ("flights/2013-01-03.csv", ragged),
        ("flights/2013-01-04.csv", reordered),
        ("flights/2013-01-05.csv", f"{FLIGHTS_HEADER}\n".encode()),
    ]

    parsed = parse_landing_files(files, FLIGHTS_LANDING)

    assert sorted(parsed.errors) == ["flights/2013-01-02.csv", "flights/2013-01-03.csv"]
    assert parsed.errors["flights/2013-01-02.csv"].cause == (
        "column 'flight' line 3: 'x1' is not a valid Int32 (1 bad value(s) in the column)"
    )
    assert parsed.errors["flights/2013-01-03.csv"].cause == "line 3 has 20 fields, the header has 19"
    rows = parsed.frame.group_by(SOURCE_COLUMN).agg(pl.col(LINE_COLUMN)).sort(SOURCE_COLUMN)
    assert rows.rows() == [("flights/2013-01-01.csv", [2, 3, 4]), ("flights/2013-01-04.csv", [2, 3, 4])]
    alone = parse_landing_csv(good, FLIGHTS_LANDING, "flights/2013-01-01.csv")
    from_batch = parsed.frame.filter(pl.col(SOURCE_COLUMN) == "flights/2013-01-01.csv").drop(SOURCE_COLUMN)
    assert from_batch.equals(alone)
    missing_air_time = parsed.frame.filter(pl.col(SOURCE_COLUMN) == "flights/2013-01-04.csv")["air_time"]
    assert missing_air_time.null_count() == 3


def test_a_batch_with_quoted_values_is_parsed_like_its_files_one_by_one() -> None:
    quoted = flights_bytes([with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "tailnum", '"N1,2"')])
    files = [("a.csv", quoted), ("b.csv", flights_bytes())]
    parsed = parse_landing_files(files, FLIGHTS_LANDING)
    assert not parsed.errors
    assert parsed.frame.filter(pl.col(SOURCE_COLUMN) == "a.csv")["tailnum"].to_list() == ["N1,2"]
    assert parsed.frame.height == 1 + len(FLIGHTS_ROWS)


# --- typed reads and the text fallback ------------------------------------------------------------


def _alone(data: bytes, source: str) -> pl.DataFrame:
    return parse_landing_csv(data, FLIGHTS_LANDING, source)


def test_a_bad_value_in_one_file_of_a_typed_batch_names_that_file_and_keeps_the_others_in_order() -> None:
    bad = flights_bytes(
        [FLIGHTS_ROWS[0], FLIGHTS_ROWS[1], with_field(FLIGHTS_ROWS[2], FLIGHTS_HEADER, "arr_time", "8:30")]
    )
    files = [
        ("flights/2013-01-01.csv", flights_bytes()),
        ("flights/2013-01-02.csv", bad),
        ("flights/2013-01-03.csv", flights_bytes(FLIGHTS_ROWS[:2])),
    ]

    parsed = parse_landing_files(files, FLIGHTS_LANDING)

    assert list(parsed.errors) == ["flights/2013-01-02.csv"]
    assert parsed.errors["flights/2013-01-02.csv"].cause == (
        "column 'arr_time' line 4: '8:30' is not a valid Int32 (1 bad value(s) in the column)"
    )
    assert parsed.rows == {"flights/2013-01-01.csv": 3, "flights/2013-01-03.csv": 2}
    expected = pl.concat(
        [
            _alone(files[0][1], files[0][0]).with_columns(pl.lit(files[0][0]).alias(SOURCE_COLUMN)),
            _alone(files[2][1], files[2][0]).with_columns(pl.lit(files[2][0]).alias(SOURCE_COLUMN)),
        ]
    )
    assert parsed.frame.equals(expected)


def test_values_the_typed_read_refuses_but_the_text_cast_accepts_parse_the_same() -> None:
    # " 5 " is a valid Int32 once stripped; the typed read refuses it and the file is cast as text.
    padded = [
        with_field(r, FLIGHTS_HEADER, "distance", f" {d} ")
        for r, d in zip(FLIGHTS_ROWS, [1400, 1416, 416], strict=True)
    ]
    files = [("a.csv", flights_bytes(padded)), ("b.csv", flights_bytes())]
    parsed = parse_landing_files(files, FLIGHTS_LANDING)
    assert not parsed.errors
    a, b = (parsed.frame.filter(pl.col(SOURCE_COLUMN) == s).drop(SOURCE_COLUMN) for s in ("a.csv", "b.csv"))
    assert a.equals(b)
    assert parsed.frame[SOURCE_COLUMN].to_list() == ["a.csv"] * 3 + ["b.csv"] * 3


def test_text_values_are_stripped_on_the_typed_read_as_on_the_text_cast() -> None:
    rows = [with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "carrier", " UA\t"), FLIGHTS_ROWS[1]]
    frame = _alone(flights_bytes(rows), FLIGHTS_SOURCE)
    assert frame["carrier"].to_list() == ["UA", "UA"]
    nbsp = [with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "tailnum", "N14228\u00a0")]
    assert _alone(flights_bytes(nbsp), FLIGHTS_SOURCE)["tailnum"].to_list() == ["N14228"]


@pytest.mark.parametrize("value", ["12", "+12", "012", "-0", "NA", ""])
def test_the_typed_read_agrees_with_the_text_cast_on_numbers(value: str) -> None:
    rows = [with_field(FLIGHTS_ROWS[0], FLIGHTS_HEADER, "dep_delay", value)]
    typed = _alone(flights_bytes(rows), FLIGHTS_SOURCE)
    text = pl.read_csv(flights_bytes(rows), infer_schema=False, null_values=["NA", ""])
    assert (
        typed["dep_delay"].to_list()
        == text["dep_delay"].str.strip_chars().cast(pl.Int32, strict=False).to_list()
    )


@pytest.mark.parametrize("rows", [3, 200_000], ids=["small", "large"])
def test_a_short_row_balanced_by_a_long_one_is_still_named(rows: int) -> None:
    # The commas add up to every line's share, so only the typed read's refusal sends the
    # file to the line count: the first bad line must be named all the same.
    body = [FLIGHTS_ROWS[i % 3] for i in range(rows)]
    short, long = rows // 2, rows - 1
    body[short] = body[short].rsplit(",", 1)[0]
    body[long] = body[long] + ",extra"
    files = [("a.csv", flights_bytes()), ("b.csv", flights_bytes(body)), ("c.csv", flights_bytes())]
    parsed = parse_landing_files(files, FLIGHTS_LANDING)
    assert list(parsed.errors) == ["b.csv"]
    assert parsed.errors["b.csv"].cause == f"line {short + 2} has 18 fields, the header has 19"
    assert parsed.frame[SOURCE_COLUMN].to_list() == ["a.csv"] * 3 + ["c.csv"] * 3
