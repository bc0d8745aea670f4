import pytest

from dsdeploy.memory_bandwidth import measure_read_bandwidth


def test_bandwidth_is_a_plausible_number_of_bytes_per_second() -> None:
    measured = measure_read_bandwidth(threads=2, size=64 * 1024 * 1024, passes=2)
    assert 1e8 < measured < 1e13  # between a floppy-era bus and any machine that exists


def test_bandwidth_refuses_zero_threads() -> None:
    with pytest.raises(ValueError, match="thread"):
        measure_read_bandwidth(threads=0)
