"""The replay command line: ranges, datasets and options it refuses, its help, and `python -m ml.replay`."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from ml.ingest.replay import main, replay
from tests.conftest import module_help
from tests.ml.replay_support import FIRST, REPOSITORY, SHIFT_2026, args, day_files, snapshot


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (
            "2014-01-01",
            "2014-01-02",
            "the source replays 2013-01-01..2013-12-31 (--repeat continues past 2013-12-31) "
            "with --shift-days 0; 2014-01-01..2014-01-02 is outside it",
        ),
        (
            "2012-12-31",
            "2013-01-01",
            "the source replays 2013-01-01..2013-12-31 (--repeat continues past 2013-12-31) "
            "with --shift-days 0; 2012-12-31..2013-01-01 is outside it",
        ),
        ("2013-12-31", "2014-01-01", "is outside it"),
        ("2013-01-03", "2013-01-01", "start 2013-01-03 is after end 2013-01-01"),
        ("2013-13-01", "2013-12-31", "invalid fromisoformat value: '2013-13-01'"),
    ],
)
def test_a_range_outside_2013_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: str, last: str, message: str
) -> None:
    landing = tmp_path / "landing"
    with pytest.raises(SystemExit) as info:
        main(["--landing", str(landing), "--start", first, "--end", last])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: python -m ml.ingest.replay")
    assert not landing.exists()


def test_replay_itself_refuses_a_range_outside_the_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"2013-01-01\.\.2013-12-31"):
        replay(tmp_path / "landing", dt.date(2013, 12, 31), dt.date(2014, 1, 1))
    assert not (tmp_path / "landing").exists()


def test_an_unknown_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args(tmp_path / "landing"), "--datasets", "flights,planes"])
    assert info.value.code == 2
    assert "unknown dataset(s): planes" in capsys.readouterr().err
    assert not (tmp_path / "landing").exists()


def test_help_runs_as_a_module_and_exits_zero() -> None:
    shown = module_help("ml.ingest.replay")
    assert shown.startswith("usage: python -m ml.ingest.replay")
    for option in (
        "--landing",
        "--start",
        "--end",
        "--datasets",
        "--force",
        "--shift-days",
        "--repeat",
        "--scale",
    ):
        assert option in shown


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--shift-days", "4746"],
            "the source replays 2025-12-30..2026-12-29 (--repeat continues past 2026-12-29) "
            "with --shift-days 4746; 2013-01-01..2013-01-03 is outside it",
        ),
        (
            ["--shift-days", "4746", "--repeat"],
            "the source replays 2025-12-30 on with --shift-days 4746; 2013-01-01..2013-01-03 is outside it",
        ),
        (["--shift-days", "99999999"], "--shift-days 99999999 moves the source out of the calendar"),
        (["--scale", "0"], "--scale must be 1..1000, not 0"),
        (["--scale", "1001"], "--scale must be 1..1000, not 1001"),
    ],
)
def test_a_shifted_range_or_a_scale_the_source_cannot_give_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args(tmp_path / "landing"), *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "landing").exists()


def test_the_default_start_is_the_first_shifted_day(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert main(["--landing", str(landing), "--shift-days", str(SHIFT_2026), "--datasets", "flights"]) == 0
    assert day_files(landing, "flights") == ["2025-12-30.csv"]


def test_ml_replay_is_the_same_command(tmp_path: Path) -> None:
    assert module_help("ml.replay") == module_help("ml.ingest.replay")
    done = subprocess.run(
        [sys.executable, "-m", "ml.replay", *args(tmp_path / "cli", FIRST, FIRST, "--scale", "2")],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    replay(tmp_path / "api", FIRST, FIRST, scale=2)
    cli, api = snapshot(tmp_path / "cli"), snapshot(tmp_path / "api")
    assert [v[1] for v in cli.values()] == [v[1] for v in api.values()]
