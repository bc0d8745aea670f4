import pytest

from dsdeploy.memory_bandwidth import measure_read_bandwidth, planning_bandwidth


def test_bandwidth_is_a_plausible_number_of_bytes_per_second() -> None:
    measured = measure_read_bandwidth(threads=2, size=64 * 1024 * 1024, passes=2)
    assert 1e8 < measured < 1e13  # between a floppy-era bus and any machine that exists


def test_bandwidth_refuses_zero_threads() -> None:
    with pytest.raises(ValueError, match="thread"):
        measure_read_bandwidth(threads=0)


def test_planning_measures_bandwidth_once_per_process() -> None:
    planning_bandwidth.cache_clear()
    first = planning_bandwidth(1)
    assert planning_bandwidth(1) == first  # a second measurement would differ in the digits
    assert planning_bandwidth.cache_info().hits == 1
