"""The landing sensor's decisions: new, changed, settling and vanished files; contiguous batches."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ml.ingest.landing_zone import LandedFile, LandingZone
from ml.ingest.watch import contiguous, plan, read_cursor, write_cursor

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(minutes=5)


def landed(
    day: int, dataset: str = "flights", signature: str = "100:1", modified: dt.datetime | None = OLD
) -> LandedFile:
    d = dt.date(2013, 1, day)
    return LandedFile(dataset, d, f"landing/{dataset}/{d}.csv", signature, modified)


def test_new_files_become_contiguous_ranges_per_dataset_capped_in_length() -> None:
    files = [landed(d) for d in (1, 2, 3, 5, 6)] + [landed(d, "weather") for d in range(1, 8)]
    ranges = contiguous(files, max_days=4)
    spans = [(r.dataset, r.first.day, r.last.day) for r in ranges]
    assert spans == [("flights", 1, 3), ("flights", 5, 6), ("weather", 1, 4), ("weather", 5, 7)]
    assert sum(len(r.files) for r in ranges) == len(files)


def test_seen_files_are_not_requested_again_and_changed_ones_are_reported() -> None:
    first = plan([landed(1), landed(2)], {}, NOW, 10, 31)
    assert [(r.first.day, r.last.day) for r in first.ranges] == [(1, 2)]
    again = plan([landed(1), landed(2)], first.cursor, NOW, 10, 31)
    assert again.ranges == [] and again.changed == []
    edited = plan([landed(1), landed(2, signature="120:2")], first.cursor, NOW, 10, 31)
    assert [f.day.day for f in edited.changed] == [2]
    assert [(r.first.day, r.last.day) for r in edited.ranges] == [(2, 2)]
    assert edited.ranges[0].run_key != first.ranges[0].run_key


def test_a_file_still_being_written_waits_until_it_settles() -> None:
    copying = landed(3, modified=NOW - dt.timedelta(seconds=2))
    waiting = plan([copying], {}, NOW, settle_seconds=10, max_days_per_run=31)
    assert waiting.ranges == [] and waiting.settling == [copying]
    assert waiting.cursor == {}
    settled = plan([copying], waiting.cursor, NOW + dt.timedelta(seconds=30), 10, 31)
    assert [r.first.day for r in settled.ranges] == [3]


def test_a_file_without_a_modification_time_is_not_taken_for_one_being_written() -> None:
    unknown = landed(4, modified=None)
    for tick in range(3):
        decided = plan(
            [unknown], {}, NOW + dt.timedelta(minutes=tick), settle_seconds=10, max_days_per_run=31
        )
        assert decided.settling == []
        assert [r.first.day for r in decided.ranges] == [4]


def test_quarantine_stamps_the_time_it_is_given(tmp_path: Path) -> None:
    zone = LandingZone(str(tmp_path / "landing"), str(tmp_path / "quarantine"))
    (tmp_path / "landing" / "flights").mkdir(parents=True)
    (tmp_path / "landing" / "flights" / "not-a-day.csv").write_text("year\n2013\n")
    inventory = zone.scan("flights", dt.date(2013, 1, 1), dt.date(2013, 12, 31), now=NOW)
    (moved,) = inventory.quarantined
    note = json.loads(Path(f"{moved.destination}.reason.json").read_text())
    assert note["quarantined_at"] == NOW.isoformat()
    assert note["reason"] == "file name is not YYYY-MM-DD.csv"


def test_a_file_that_disappears_is_reported_as_vanished() -> None:
    seen = plan([landed(1), landed(2)], {}, NOW, 10, 31).cursor
    later = plan([landed(1)], seen, NOW, 10, 31)
    assert later.vanished == ["landing/flights/2013-01-02.csv"]


def test_the_cursor_round_trips_and_a_corrupt_one_is_named() -> None:
    cursor = {"landing/flights/2013-01-01.csv": "100:1"}
    assert read_cursor(write_cursor(cursor)) == cursor
    assert read_cursor(None) == {}
    try:
        read_cursor('["not", "a", "cursor"]')
    except ValueError as exc:
        assert "landing sensor cursor" in str(exc)
    else:
        raise AssertionError("a corrupt cursor was accepted")
