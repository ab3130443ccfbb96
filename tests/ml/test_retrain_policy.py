"""The retraining policy: new feature days since the last cutoff, or monitoring signals, one training at a time."""

from __future__ import annotations

import datetime as dt

from ml.training.retrain_policy import DriftSignal, TrainingData, decide
from ml.training.training_set import settled_cutoff

DAYS = [dt.date(2013, 1, d) for d in range(1, 21)]
DATA = TrainingData(dt.date(2013, 1, 20), 12)
PSI = DriftSignal("monitoring/drift@v1:2013-01-18", "psi 0.31 on dep_hour")
AUC = DriftSignal("monitoring/live_performance@v1:2013-01-19", "roc_auc 0.55")


def test_retrains_once_enough_days_follow_the_cutoff() -> None:
    assert not decide(DAYS, dt.date(2013, 1, 15), 7, [], DATA).retrain
    due = decide(DAYS, dt.date(2013, 1, 13), 7, [], DATA)
    assert due.retrain and due.run_key == "train:cutoff-2013-01-20:features-v12"
    assert due.trigger == "new-days" and due.signals == ()
    assert "7 new feature day(s)" in due.reason


def test_first_training_needs_only_the_threshold_and_zero_turns_the_rule_off() -> None:
    assert decide(DAYS, None, 7, [], DATA).retrain
    assert not decide(DAYS, None, 0, [], DATA).retrain
    assert not decide([], None, 7, [], None).retrain
    assert not decide([], None, 7, [PSI], None).retrain  # nothing to train on yet


def test_every_unhandled_signal_is_answered_by_one_run_keyed_by_its_data() -> None:
    decision = decide(DAYS, dt.date(2013, 1, 20), 7, [PSI, AUC], DATA)
    assert decision.retrain and decision.trigger == "drift"
    assert decision.signals == (PSI, AUC)
    assert decision.run_key == "train:cutoff-2013-01-20:features-v12"
    assert "2 monitoring signal(s)" in decision.reason
    assert "psi 0.31" in decision.reason and "roc_auc 0.55" in decision.reason
    many = [DriftSignal(f"k{i}", f"detail {i}") for i in range(5)]
    reason = decide(DAYS, None, 7, many, DATA).reason
    assert "detail 2" in reason and "detail 3" not in reason and "and 2 more" in reason


def test_the_run_key_is_the_same_for_the_same_data_and_new_for_new_data() -> None:
    first = decide(DAYS, None, 7, [PSI], DATA).run_key
    assert decide(DAYS, None, 7, [AUC], TrainingData(dt.date(2013, 1, 20), 12)).run_key == first
    assert decide(DAYS, None, 7, [PSI], TrainingData(dt.date(2013, 1, 20), 13)).run_key != first
    assert decide(DAYS, None, 7, [PSI], TrainingData(dt.date(2013, 1, 21), 12)).run_key != first
    assert decide(DAYS, None, 7, [], DATA).run_key == first, "another trigger, the same data: one run"


def test_nothing_is_asked_while_a_training_run_is_unfinished() -> None:
    waiting = decide(DAYS, None, 7, [PSI], DATA, ["abc (QUEUED)"])
    assert not waiting.retrain and waiting.run_key == "" and waiting.signals == ()
    assert "queued or running: abc (QUEUED)" in waiting.reason and "1 signal(s) wait" in waiting.reason
    assert not decide(DAYS, None, 7, [], DATA, ["abc (STARTED)"]).retrain


def test_the_cutoff_waits_for_the_validation_and_test_days_to_be_built() -> None:
    # Days 15..18 are still being built (late deliveries in flight): a cutoff on day 20 would
    # leave the validation days 17..18 empty, so the cutoff is the last day whose four split
    # days are all there, and only days up to it count as new.
    building = [d for d in DAYS if not 15 <= d.day <= 18]
    assert settled_cutoff(building, 4) == dt.date(2013, 1, 14)
    assert settled_cutoff(DAYS, 4) == dt.date(2013, 1, 20)
    assert settled_cutoff(DAYS[:3], 4) is None
    early = decide(building, dt.date(2013, 1, 10), 7, [], TrainingData(dt.date(2013, 1, 14), 12))
    assert not early.retrain and "4 new feature day(s)" in early.reason
    late = decide(DAYS, dt.date(2013, 1, 10), 7, [], TrainingData(dt.date(2013, 1, 20), 13))
    assert late.retrain and "10 new feature day(s)" in late.reason
    # A day missing for good holds the cutoff back only until the split days lie past it.
    assert settled_cutoff([d for d in DAYS if d.day != 12], 4) == dt.date(2013, 1, 20)
    assert not decide(DAYS[:3], None, 1, [], None).retrain
