"""`make simulate`, short: days land, sensors and automation take them to features and a champion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.simulate import main

pytestmark = pytest.mark.slow


def test_a_short_simulation_goes_from_landing_files_to_a_trained_model_by_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--root",
            str(tmp_path / "sim"),
            "--days",
            "5",
            "--interval",
            "3",
            "--retrain-days",
            "5",
            # The simulation ends by itself once done (about 150 s on an idle 2-core machine);
            # its deadline leaves the services time to start and stop within pytest's 600 s.
            "--timeout",
            "480",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    for day in range(1, 6):
        assert re.search(rf"features of 2013-01-0{day} built, [\d.]+s after it landed", out), out
    assert re.search(r"success\s+bronze/flights 2013-01-\d\d\.\.2013-01-\d\d \(landing\)", out), out
    assert re.search(r"success\s+features/flight_features .* \(automation\)", out), out
    # Trained on four days, the candidate may or may not pass the gate; either way it ran and is registered.
    assert re.search(r"(success|failure)\s+train_evaluate_promote \(new-days\)", out), out
    assert "- days landed: 5, features built: 5" in out
    assert re.search(r"- model v1: (champion|rejected)", out), out
    assert re.search(r"freshness \(landing -> features\): p50 [\d.]+s, max [\d.]+s", out), out
