"""The ledger in the Delta commits: bronze records each day's landing file, features the bronze versions read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ml.ingest.landing_zone import LandingZone
from ml.lake.tables import BRONZE_FLIGHTS, BRONZE_PLANES, BRONZE_WEATHER, FEATURES_TABLE
from ml.lineage.ledger import landing_name, lineage_commits, read_versions, writer_of
from tests.conftest import Platform, day


def test_each_day_names_the_commit_that_wrote_it_and_what_that_commit_read(platform: Platform) -> None:
    store = platform.store
    platform.bronze(day(1), day(3))
    platform.features(day(1), day(3))
    first_flights = store.version(BRONZE_FLIGHTS)
    platform.bronze(day(2))  # day 2 is ingested again: a new bronze version
    platform.features(day(2))  # and its features rebuilt from it
    second_flights = store.version(BRONZE_FLIGHTS)
    assert second_flights is not None and first_flights is not None and second_flights > first_flights

    commits = lineage_commits(store, FEATURES_TABLE, int(store.version(FEATURES_TABLE) or 0))
    assert writer_of(commits, day(1)).sources[BRONZE_FLIGHTS] == first_flights
    assert writer_of(commits, day(2)).sources[BRONZE_FLIGHTS] == second_flights
    assert set(writer_of(commits, day(2)).sources) == {BRONZE_FLIGHTS, BRONZE_WEATHER, BRONZE_PLANES}
    versions = read_versions(store, int(store.version(FEATURES_TABLE) or 0), [day(1), day(2), day(3)])
    assert versions[BRONZE_FLIGHTS] == [first_flights, second_flights]

    landing = lineage_commits(store, BRONZE_FLIGHTS, second_flights)
    entry = writer_of(landing, day(2)).landing[day(2)]
    data = (platform.landing_dir / "flights" / f"{day(2).isoformat()}.csv").read_bytes()
    assert entry.name == f"flights/{day(2).isoformat()}.csv" and entry.md5 == hashlib.md5(data).hexdigest()
    stored = store.read_days(BRONZE_FLIGHTS, "flight_date", day(2), day(2), second_flights).height
    assert entry.stored_rows == stored > 0
    # An earlier features version still names the earlier bronze version for day 2.
    earlier = lineage_commits(store, FEATURES_TABLE, int(store.version(FEATURES_TABLE) or 0) - 1)
    assert writer_of(earlier, day(2)).sources[BRONZE_FLIGHTS] == first_flights


def test_a_landing_file_is_named_under_its_root_whether_the_root_is_relative_or_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    zone = LandingZone(".data/landing", ".data/quarantine")
    uri = zone.day_uri("flights", day(1))
    assert Path(uri).is_absolute()  # the zone resolves a relative root
    assert landing_name(uri, ".data/landing") == f"flights/{day(1).isoformat()}.csv"
    assert landing_name(uri, str(tmp_path / ".data" / "landing")) == f"flights/{day(1).isoformat()}.csv"
    assert landing_name("s3://bucket/landing/flights/x.csv", "s3://bucket/landing") == "flights/x.csv"
