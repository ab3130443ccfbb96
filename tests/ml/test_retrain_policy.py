"""The retraining policy: new feature days since the last cutoff, or a drift signal."""

from __future__ import annotations

import datetime as dt

from ml.training.retrain_policy import DriftSignal, decide

DAYS = [dt.date(2013, 1, d) for d in range(1, 21)]


def test_retrains_once_enough_days_follow_the_cutoff() -> None:
    assert not decide(DAYS, dt.date(2013, 1, 15), 7, []).retrain
    due = decide(DAYS, dt.date(2013, 1, 13), 7, [])
    assert due.retrain and due.run_key == "new-days:2013-01-20"
    assert "7 new feature day(s)" in due.reason


def test_first_training_needs_only_the_threshold_and_zero_turns_the_rule_off() -> None:
    assert decide(DAYS, None, 7, []).retrain
    assert not decide(DAYS, None, 0, []).retrain
    assert not decide([], None, 7, []).retrain


def test_a_drift_signal_retrains_with_its_own_run_key() -> None:
    decision = decide(DAYS, dt.date(2013, 1, 20), 7, [DriftSignal("psi-2013-01-20", "psi 0.31 on dep_hour")])
    assert decision.retrain and decision.run_key == "drift:psi-2013-01-20"
    assert "psi 0.31" in decision.reason
