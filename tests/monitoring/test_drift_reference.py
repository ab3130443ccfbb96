"""The drift reference is the champion's training set, found by md5, restored from DVC once and cached."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from assets import monitoring
from ml.lake.tables import DRIFT_TABLE
from ml.monitoring.reference import find_reference
from ml.monitoring.reports import check_drift_table
from ml.registry.dvc_repo import TRAINING_SET_PATH
from ml.training.training_set import folder_md5
from tests.conftest import failures
from tests.monitoring.conftest import CALM_LAST, YearPlatform, days_of, write_days

NEXT_WEEK = (CALM_LAST + dt.timedelta(days=1), CALM_LAST + dt.timedelta(days=7))


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_a_newer_training_set_on_disk_does_not_replace_the_champions_as_the_reference(
    year_platform: YearPlatform, year_features: pl.DataFrame
) -> None:
    p = year_platform
    champion_md5 = p.repo.locked_output("training_set", TRAINING_SET_PATH).md5
    champion_bytes = folder_md5(p.training_set)
    version = p.install_champion(champion_md5)
    # A week later the training set is cut again (a retraining whose model is not champion yet).
    write_days(p.store, days_of(year_features, *NEXT_WEEK))
    assert p.materialize("training/training_set").success
    newer_md5 = p.repo.locked_output("training_set", TRAINING_SET_PATH).md5
    assert newer_md5 != champion_md5

    first = metadata(p.materialize("monitoring/drift"))
    cache = p.root / "repo" / ".data" / "drift_references" / champion_md5
    assert first["reference_md5"].value == champion_md5
    assert first["reference"].value == (
        f"champion v{version}'s training set, restored from DVC into {cache} (the one on disk is {newer_md5})"
    )
    assert (
        first["reference_cutoff"].value == CALM_LAST.isoformat()
    )  # the champion's cutoff, not the newer one's
    assert folder_md5(cache) == champion_bytes
    written = p.store.read(DRIFT_TABLE)
    assert set(written["reference_md5"]) == {champion_md5} and set(written["reference_cutoff"]) == {CALM_LAST}

    inode = cache.stat().st_ino
    second = metadata(p.materialize("monitoring/drift"))
    assert second["reference"].value == f"champion v{version}'s training set, restored earlier into {cache}"
    assert cache.stat().st_ino == inode  # not restored again


def test_without_a_champion_the_training_set_on_disk_is_the_reference_and_the_run_says_so(
    year_platform: YearPlatform,
) -> None:
    p = year_platform
    assert p.registry.champion() is None
    meta = metadata(p.materialize("monitoring/drift"))
    assert meta["reference"].value == "no champion yet: the training set on disk"
    assert meta["reference_md5"].value == p.repo.locked_output("training_set", TRAINING_SET_PATH).md5


def test_a_champion_whose_training_set_dvc_cannot_restore_fails_the_run_naming_it(
    year_platform: YearPlatform,
) -> None:
    p = year_platform
    missing = "0123456789abcdef0123456789abcdef.dir"
    p.install_champion(missing)
    outcome = dg.materialize(
        [monitoring.drift], resources={"lake": p.lake, "dvc": p.dvc}, raise_on_error=False
    )
    assert not outcome.success
    (text,) = failures(outcome).values()
    assert f"could not restore {missing} from the DVC remote" in text
    assert not (p.root / "repo" / ".data" / "drift_references" / missing).exists()


def test_a_restore_replaces_a_half_written_copy_and_drops_the_previous_champions(
    year_platform: YearPlatform,
) -> None:
    p = year_platform
    md5 = p.repo.locked_output("training_set", TRAINING_SET_PATH).md5
    p.install_champion(md5)
    cache = p.root / "cache"
    (cache / md5).mkdir(parents=True)  # left by a run that was killed mid-copy: no manifest
    previous = cache / "previous.dir"
    previous.mkdir()
    (previous / "manifest.json").write_text("{}")
    # Pointed at a folder without a training set, the champion's must come from DVC.
    reference = find_reference(p.registry.champion(), p.repo, p.root / "elsewhere", cache)
    assert reference is not None and reference.folder == cache / md5
    assert folder_md5(cache / md5) == folder_md5(p.training_set)
    assert sorted(c.name for c in cache.iterdir()) == [md5]


def test_a_drift_table_written_by_the_old_monitor_is_named_with_what_to_do(
    year_platform: YearPlatform,
) -> None:
    p = year_platform
    old = pl.DataFrame({"feature": ["temp"], "psi": [0.3], "as_of": [CALM_LAST], "breach": [True]})
    p.store.replace_days(DRIFT_TABLE, old, "as_of", [CALM_LAST], {})
    new = old.drop("psi").with_columns(pl.lit(0.3).alias("value"))
    with pytest.raises(ValueError, match=r"older drift monitor \(missing: value; no longer written: psi\)"):
        check_drift_table(p.store, new)
