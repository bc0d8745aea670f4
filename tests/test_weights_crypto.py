"""Encrypted weights round-trip exactly, and any change to the file is refused in one line."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct

import pytest

from dsdeploy.errors import WeightsCryptoError, WeightsKeyError, WeightsTampered
from dsdeploy.security.weights_crypto import (
    FIXED,
    TAG,
    WRAPPED_BYTES,
    Kek,
    decrypt_stream,
    encrypt_stream,
)

CHUNK = 4096
HEADER = FIXED.size + WRAPPED_BYTES
KEK = Kek(bytes(range(32)), "test key")


def seal(plain: bytes, kek: Kek = KEK) -> bytes:
    sink = io.BytesIO()
    header = encrypt_stream(io.BytesIO(plain), sink, kek, len(plain), CHUNK)
    assert header.sealed_size == len(sink.getvalue())
    return sink.getvalue()


def unseal(sealed: bytes, kek: Kek = KEK) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(sealed), kek, "model.gguf"))


def chunks_of(sealed: bytes) -> list[bytes]:
    body = sealed[HEADER:]
    return [body[i : i + CHUNK + TAG] for i in range(0, len(body), CHUNK + TAG)]


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK, 5 * CHUNK + 123], ids=lambda n: f"{n}B"
)
def test_round_trip_gives_back_the_same_bytes(size: int) -> None:
    plain = random.Random(size).randbytes(size)
    sealed = seal(plain)
    assert hashlib.sha256(unseal(sealed)).digest() == hashlib.sha256(plain).digest()
    assert plain[:64] not in sealed or size < 16  # a byte or two may occur by chance


def test_same_file_encrypts_differently_each_time() -> None:
    plain = b"weights" * 1000
    assert seal(plain)[HEADER:] != seal(plain)[HEADER:]


def test_one_hundred_random_bit_flips_are_each_refused() -> None:
    plain = random.Random(7).randbytes(5 * CHUNK + 321)
    sealed = seal(plain)
    rng = random.Random(2026)
    positions = [rng.randrange(HEADER) for _ in range(25)]
    positions += [rng.randrange(HEADER, len(sealed)) for _ in range(75)]
    refused = 0
    for position in positions:
        damaged = bytearray(sealed)
        damaged[position] ^= 1 << rng.randrange(8)
        with pytest.raises(WeightsCryptoError) as refusal:
            unseal(bytes(damaged))
        assert "\n" not in str(refusal.value)
        refused += 1
    assert refused == 100


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda s: s[:-1], "cut short: chunk 6 of 6"),
        (lambda s: s[: HEADER + 5 * (CHUNK + TAG)], "cut short: chunk 6 of 6"),
        (lambda s: s[: HEADER + 2 * (CHUNK + TAG) + 100], "cut short: chunk 3 of 6"),
        (lambda s: s[:HEADER], "cut short: chunk 1 of 6"),
        (lambda s: s[:10], "not a dsdeploy encrypted weights file"),
    ],
    ids=["last-byte", "last-chunk-dropped", "mid-chunk", "header-only", "in-header"],
)
def test_a_truncated_file_is_refused(cut: object, message: str) -> None:
    sealed = seal(random.Random(1).randbytes(5 * CHUNK + 99))
    with pytest.raises(WeightsTampered, match=message):
        unseal(cut(sealed))  # type: ignore[operator]


def test_reordered_chunks_are_refused() -> None:
    sealed = seal(random.Random(2).randbytes(4 * CHUNK))
    parts = chunks_of(sealed)
    parts[1], parts[2] = parts[2], parts[1]
    with pytest.raises(WeightsTampered, match="chunk 2 of 4 failed authentication"):
        unseal(sealed[:HEADER] + b"".join(parts))


def test_a_duplicated_chunk_is_refused() -> None:
    sealed = seal(random.Random(3).randbytes(4 * CHUNK))
    parts = chunks_of(sealed)
    parts[2] = parts[1]
    with pytest.raises(WeightsTampered, match="chunk 3 of 4 failed authentication"):
        unseal(sealed[:HEADER] + b"".join(parts))


def test_a_full_chunk_cannot_pass_for_the_last_one() -> None:
    """Dropping the last chunk and fixing the size in the header still fails: the header
    is authenticated by every chunk, and the new last chunk lacks the last-chunk flag."""
    sealed = seal(random.Random(4).randbytes(4 * CHUNK))
    fixed = bytearray(sealed[:HEADER])
    size_at = FIXED.size - 10  # the u64 plaintext size sits before the u16 key length
    fixed[size_at : size_at + 8] = struct.pack("!Q", 3 * CHUNK)
    with pytest.raises(WeightsTampered, match="chunk 1 of 3 failed authentication"):
        unseal(bytes(fixed) + sealed[HEADER : HEADER + 3 * (CHUNK + TAG)])


def test_a_chunk_from_another_file_under_the_same_key_is_refused() -> None:
    first, second = (seal(random.Random(n).randbytes(3 * CHUNK)) for n in (5, 6))
    mixed = first[: HEADER + CHUNK + TAG] + chunks_of(second)[1] + chunks_of(first)[2]
    with pytest.raises(WeightsTampered, match="chunk 2 of 3 failed authentication"):
        unseal(mixed)


def test_extra_bytes_after_the_last_chunk_are_refused() -> None:
    with pytest.raises(WeightsTampered, match="bytes after its last chunk"):
        unseal(seal(b"weights") + b"x")


def test_the_wrong_key_is_named_as_such() -> None:
    other = Kek(os.urandom(32), "/etc/other.key")
    with pytest.raises(WeightsKeyError, match=r"encrypted with key [0-9a-f]{16}, but the key from"):
        unseal(seal(b"weights"), other)
