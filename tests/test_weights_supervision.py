"""The supervisor decrypts an engine's weights before it starts, keeps them across restarts
and closes them when it stops; damaged weights fail the start with the reason."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from dsdeploy.errors import EngineStartFailed
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.security.weights_crypto import Kek, encrypt_stream
from dsdeploy.security.weights_memory import SealedWeights
from tests.stub_engine import StubEngine

pytestmark = pytest.mark.anyio

PLAIN = os.urandom(2**20 + 5)
KEK = Kek(os.urandom(32), "test")


def sealed_weights(tmp_path: Path, damage: bool = False) -> SealedWeights:
    sink = io.BytesIO()
    encrypt_stream(io.BytesIO(PLAIN), sink, KEK, len(PLAIN))
    data = bytearray(sink.getvalue())
    if damage:
        data[-10] ^= 1  # in the tag of the last, 5-byte chunk
    path = tmp_path / "sealed"
    path.write_bytes(bytes(data))
    return SealedWeights(path, KEK, "m.gguf", hashlib.sha256(PLAIN).hexdigest())


def supervisor(tmp_path: Path, weights: SealedWeights) -> Supervisor:
    return Supervisor(
        StubEngine(),
        "stub",
        tmp_path / "engine.log",
        ready_timeout_s=20.0,
        backoff_max_s=1.0,
        health_interval_s=5.0,
        health_failures=3,
        environ=os.environ,
        weights=weights,
    )


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_weights_are_in_memory_while_the_engine_runs_and_closed_after(
    tmp_path: Path,
) -> None:
    weights = sealed_weights(tmp_path)
    before = open_fds()
    engine = supervisor(tmp_path, weights)
    await engine.start()
    try:
        memfd = weights.fd
        assert os.readlink(f"/proc/self/fd/{memfd}").startswith("/memfd:dsdeploy-m.gguf")
        assert hashlib.sha256(Path(f"/proc/self/fd/{memfd}").read_bytes()).digest() == (
            hashlib.sha256(PLAIN).digest()
        )
    finally:
        await engine.stop()
    assert open_fds() == before


async def test_damaged_weights_fail_the_start_with_the_reason_and_leave_nothing_open(
    tmp_path: Path,
) -> None:
    before = open_fds()
    engine = supervisor(tmp_path, sealed_weights(tmp_path, damage=True))
    with pytest.raises(EngineStartFailed, match="cannot load stub: m.gguf: chunk 2 of 2 failed"):
        await engine.start()
    assert engine.pid is None
    assert open_fds() == before
