from tests.conftest import Platform, day


def test_bronze_and_features_of_a_range_in_one_run(platform: Platform) -> None:
    result = platform.bronze(day(1), day(3))
    assert result.success
    result = platform.features(day(1), day(3))
    assert result.success
    frame = platform.store.read("features/flight_features")
    assert sorted(frame["flight_date"].unique().to_list()) == [day(1), day(2), day(3)]
