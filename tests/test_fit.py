"""Whether a model fits is said before downloading, from sizes, free disk and free RAM."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsdeploy.catalog import find
from dsdeploy.errors import StoreError
from dsdeploy.fit import GIB, Fit, assess, ensure_free_space, memory_needed


def test_a_model_larger_than_free_memory_is_reported_as_not_fitting() -> None:
    fit = Fit(
        download_bytes=8 * GIB, disk_free=100 * GIB, memory_needed=8 * GIB, ram_available=4 * GIB
    )
    assert (fit.disk_ok, fit.ram_ok) == (True, False)
    assert "needs about 8.00 GiB of memory, 4.00 GiB available: does NOT fit" in fit.summary()


def test_free_space_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    fit = assess(GIB, GIB, tmp_path / "not" / "yet" / "made", ram_available=2 * GIB)
    assert fit.disk_free > 0
    assert fit.ram_ok


def test_a_download_bigger_than_the_disk_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="dsdeploy models gc"):
        ensure_free_space(tmp_path, 1 << 60)


def test_a_catalog_model_needs_its_weights_plus_what_one_request_allocates() -> None:
    entry = find("smollm2")
    assert entry is not None and entry.architecture is not None
    weights = 96_576_768  # SmolLM2's Q4_1 tensors
    needed = memory_needed(weights, entry.architecture)
    # llama-server with one slot of 2048 tokens: peak RSS 170.1 MiB + 15.5 MiB compute buffer
    assert needed == pytest.approx((170.11 + 15.51) * 2**20, rel=0.05)
    assert memory_needed(weights, None) == weights  # a file not yet read: weights alone
