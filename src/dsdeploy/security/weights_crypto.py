"""Weights encrypted at rest: chunked AES-256-GCM in the STREAM construction.

One AES-GCM call cannot take a multi-GB file (the library refuses inputs past 2 GiB, and
holding the file would need its size in memory), so a file is cut into chunks of 1 MiB by
default, each sealed on its own, read and written in constant memory. STREAM (Hoang, Reyhanitabar,
Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance",
CRYPTO 2015) makes the chunk sequence itself authentic: chunk ``i`` is sealed under the
nonce ``prefix ‖ i (32 bits) ‖ last (1 byte)``, so a chunk moved, repeated, dropped from the
end or taken from another file fails its tag.

Layout (big-endian)::

    magic "DSDWENC\\n" | version u16 | chunk size u32 | nonce prefix 7 B | key id 8 B
    | plaintext size u64 | wrapped key length u16 | wrapped data key
    chunk 0 ciphertext + tag | chunk 1 … | last chunk (shorter, maybe empty) + tag

Every file gets a fresh random 256-bit data key, stored wrapped (RFC 3394 AES key wrap)
under the key-encryption key (KEK); the whole header is the associated data of every chunk,
so no header field can change without every chunk failing. The key id (8 bytes of a hash of
the KEK) lets a wrong key be named as such instead of as damage.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dsdeploy.errors import WeightsCryptoError, WeightsKeyError, WeightsTampered

MAGIC = b"DSDWENC\n"
VERSION = 1
FIXED = struct.Struct("!8sHI7s8sQH")
DEFAULT_CHUNK = 1 << 20
MIN_CHUNK, MAX_CHUNK = 1 << 12, 1 << 26
"""Bounds a header must respect, so a forged one cannot make a reader allocate gigabytes."""
TAG = 16
KEY_BYTES = 32
WRAPPED_BYTES = KEY_BYTES + 8  # RFC 3394 adds one 64-bit block
MAX_CHUNKS = 1 << 32


class Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Kek:
    """A key-encryption key and where it came from (named in messages, never the key)."""

    key: bytes = field(repr=False)
    origin: str

    @property
    def id(self) -> str:
        return key_id(self.key).hex()


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"dsdeploy weights key id\x00" + key).digest()[:8]


@dataclass(frozen=True)
class Header:
    chunk_size: int
    nonce_prefix: bytes
    kek_id: bytes
    plain_size: int
    wrapped_key: bytes

    def encode(self) -> bytes:
        fixed = FIXED.pack(
            MAGIC,
            VERSION,
            self.chunk_size,
            self.nonce_prefix,
            self.kek_id,
            self.plain_size,
            len(self.wrapped_key),
        )
        return fixed + self.wrapped_key

    @property
    def chunks(self) -> int:
        """Always at least one: an empty file is one empty, authenticated last chunk."""
        return max(1, -(-self.plain_size // self.chunk_size))

    @property
    def sealed_size(self) -> int:
        return len(self.encode()) + self.plain_size + self.chunks * TAG


def nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def read_exactly(source: Reader, size: int) -> bytes:
    """``size`` bytes, or fewer only at the end of the file."""
    parts = []
    while size > 0:
        part = source.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def encrypt_stream(
    source: Reader,
    sink: Writer,
    kek: Kek,
    plain_size: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> Header:
    """Encrypt ``plain_size`` bytes of ``source`` into ``sink`` under a fresh data key."""
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise WeightsCryptoError(f"chunk size must be {MIN_CHUNK} to {MAX_CHUNK} bytes")
    data_key = AESGCM.generate_key(bit_length=256)
    header = Header(
        chunk_size,
        os.urandom(7),
        key_id(kek.key),
        plain_size,
        aes_key_wrap(kek.key, data_key),
    )
    if header.chunks > MAX_CHUNKS:
        raise WeightsCryptoError("file too large for this chunk size: use larger chunks")
    associated = header.encode()
    sink.write(associated)
    aead = AESGCM(data_key)
    for index in range(header.chunks):
        last = index == header.chunks - 1
        want = plain_size - index * chunk_size if last else chunk_size
        plain = read_exactly(source, want)
        if len(plain) != want:
            raise WeightsCryptoError("the file shrank while it was being encrypted; try again")
        sink.write(aead.encrypt(nonce(header.nonce_prefix, index, last), plain, associated))
    if source.read(1):
        raise WeightsCryptoError("the file grew while it was being encrypted; try again")
    return header


def read_header(source: Reader, what: str) -> tuple[Header, bytes]:
    """The header and its exact bytes (the associated data), checked for sane values."""
    fixed = read_exactly(source, FIXED.size)
    if len(fixed) != FIXED.size or not fixed.startswith(MAGIC):
        raise WeightsTampered(
            f"{what} is not a dsdeploy encrypted weights file (its header is damaged or "
            "missing): restore it from a backup, or pull the model again"
        )
    _, version, chunk_size, prefix, kid, plain_size, wrapped_len = FIXED.unpack(fixed)
    if version != VERSION:
        raise WeightsTampered(
            f"{what} says it is format version {version}; this dsdeploy reads version "
            f"{VERSION}: the header is damaged, or a newer dsdeploy wrote it"
        )
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK or wrapped_len != WRAPPED_BYTES:
        raise WeightsTampered(f"{what} has a damaged header: restore it from a backup")
    wrapped = read_exactly(source, wrapped_len)
    header = Header(chunk_size, prefix, kid, plain_size, wrapped)
    if len(wrapped) != wrapped_len or header.chunks > MAX_CHUNKS:
        raise WeightsTampered(f"{what} has a damaged header: restore it from a backup")
    return header, fixed + wrapped


def unwrap(header: Header, kek: Kek, what: str) -> bytes:
    if header.kek_id != key_id(kek.key):
        raise WeightsKeyError(
            f"{what} was encrypted with key {header.kek_id.hex()}, but the key from "
            f"{kek.origin} is {kek.id}: give the key it was encrypted with "
            "(--weights-key-file or DSDEPLOY_WEIGHTS_KEY_FILE)"
        )
    try:
        return aes_key_unwrap(kek.key, header.wrapped_key)
    except InvalidUnwrap:
        raise WeightsTampered(
            f"{what}: its wrapped data key does not unwrap with key {kek.id}; the header was "
            "changed or damaged: restore it from a backup"
        ) from None


def decrypt_stream(source: Reader, kek: Kek, what: str) -> Iterator[bytes]:
    """The plaintext, chunk by chunk; every chunk is authentic before it is yielded, and
    a file cut short, extended, reordered or keyed otherwise is refused with one line."""
    header, associated = read_header(source, what)
    aead = AESGCM(unwrap(header, kek, what))
    for index in range(header.chunks):
        last = index == header.chunks - 1
        plain_len = header.plain_size - index * header.chunk_size if last else header.chunk_size
        sealed = read_exactly(source, plain_len + TAG)
        if len(sealed) != plain_len + TAG:
            raise WeightsTampered(
                f"{what} is cut short: chunk {index + 1} of {header.chunks} is incomplete; "
                "restore it from a backup"
            )
        try:
            yield aead.decrypt(nonce(header.nonce_prefix, index, last), sealed, associated)
        except InvalidTag:
            raise WeightsTampered(
                f"{what}: chunk {index + 1} of {header.chunks} failed authentication (changed, "
                "moved or from another file); restore it from a backup"
            ) from None
    if source.read(1):
        raise WeightsTampered(f"{what} has bytes after its last chunk; restore it from a backup")
