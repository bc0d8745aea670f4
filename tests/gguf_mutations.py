"""Malformed copies of a real GGUF file, made by editing its header where gguf-py's own
reader says each field sits.

Only the header (keys and tensor infos) is kept in memory; a copy is written as that header,
edited, then the data section as a sparse hole of the original size, so hundreds of copies
of a 90 MB model cost a few megabytes of disk each and no copying of weights.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFReader

U32, I64, U64 = struct.Struct("<I"), struct.Struct("<q"), struct.Struct("<Q")
ALIGNMENT = 32


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    parts: tuple[int, ...]
    """Byte sizes of its parts as gguf-py splits them (key length, key, type, …)."""
    types: tuple[int, ...]

    def part(self, index: int) -> int:
        """Where part ``index`` starts."""
        return self.offset + sum(self.parts[:index])

    @property
    def end(self) -> int:
        return self.offset + sum(self.parts)


@dataclass(frozen=True)
class Anatomy:
    """Where everything sits in the original file."""

    header: bytes
    """Everything before the padding that precedes the data section."""
    data_bytes: int
    n_kv: int
    n_tensors: int
    keys: dict[str, Field]
    tensors: list[Field]
    tensor_offsets: list[int]


def dissect(path: Path) -> Anatomy:
    reader = GGUFReader(path)
    keys = {
        name: Field(
            name, f.offset, tuple(int(p.nbytes) for p in f.parts), tuple(int(t) for t in f.types)
        )
        for name, f in reader.fields.items()
        if not name.startswith("GGUF.")
    }
    tensors = [
        Field(t.name, t.field.offset, tuple(int(p.nbytes) for p in t.field.parts), ())
        for t in reader.tensors
    ]
    raw = path.read_bytes()
    end = tensors[-1].end
    return Anatomy(
        header=raw[:end],
        data_bytes=len(raw) - reader.data_offset,
        n_kv=len(keys),
        n_tensors=len(tensors),
        keys=keys,
        tensors=tensors,
        tensor_offsets=[int(t.data_offset) - reader.data_offset for t in reader.tensors],
    )


def write_copy(path: Path, header: bytes, data_bytes: int, cut: int | None = None) -> None:
    """``header``, zero padding to the alignment, then a hole of ``data_bytes``; cut short
    at ``cut`` bytes when given."""
    padded = -(-len(header) // ALIGNMENT) * ALIGNMENT
    with path.open("wb") as out:
        out.write(header)
        out.truncate(padded + data_bytes if cut is None else cut)


@dataclass(frozen=True)
class Mutation:
    name: str
    edit: Callable[[Anatomy], bytes]
    """The edited header."""
    expect: str
    """A fragment the refusal must contain ('' for any message)."""
    cut: Callable[[Anatomy], int] | None = None


def put(header: bytes, offset: int, packed: bytes) -> bytes:
    return header[:offset] + packed + header[offset + len(packed) :]


def splice(header: bytes, start: int, end: int, new: bytes) -> bytes:
    return header[:start] + new + header[end:]


def with_counts(header: bytes, n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    if n_tensors is not None:
        header = put(header, 8, I64.pack(n_tensors))
    if n_kv is not None:
        header = put(header, 16, I64.pack(n_kv))
    return header


def kv_pair(key: str, kind: int, value: bytes) -> bytes:
    raw = key.encode()
    return U64.pack(len(raw)) + raw + U32.pack(kind) + value


def insert_kv(a: Anatomy, pair: bytes) -> bytes:
    """One more key-value pair, after the last one."""
    last = max(a.keys.values(), key=lambda f: f.offset)
    return with_counts(splice(a.header, last.end, last.end, pair), n_kv=a.n_kv + 1)


def header_mutations() -> list[Mutation]:
    same = Mutation
    return [
        same("magic-GGUG", lambda a: put(a.header, 0, b"GGUG"), "not a GGUF file"),
        same("magic-zero", lambda a: put(a.header, 0, b"\0\0\0\0"), "not a GGUF file"),
        same("magic-reversed", lambda a: put(a.header, 0, b"FUGG"), "not a GGUF file"),
        *(
            same(f"version-{v}", lambda a, v=v: put(a.header, 4, U32.pack(v)), "version")
            for v in (0, 1, 4, 0x03000000, 0xFFFFFFFF)
        ),
        *(
            same(
                f"tensor-count-{n}", lambda a, n=n: with_counts(a.header, n_tensors=n), "cannot fit"
            )
            for n in (-1, 1 << 40, (1 << 63) - 1)
        ),
        *(
            same(f"kv-count-{n}", lambda a, n=n: with_counts(a.header, n_kv=n), "cannot fit")
            for n in (-1, 1 << 40, (1 << 63) - 1)
        ),
        same("one-tensor-more", lambda a: with_counts(a.header, n_tensors=a.n_tensors + 1), ""),
        same("one-tensor-fewer", lambda a: with_counts(a.header, n_tensors=a.n_tensors - 1), ""),
        same("one-key-fewer", lambda a: with_counts(a.header, n_kv=a.n_kv - 1), ""),
        same(
            "alignment-48",
            lambda a: insert_kv(a, kv_pair("general.alignment", 4, U32.pack(48))),
            "power of two",
        ),
        same(
            "alignment-0",
            lambda a: insert_kv(a, kv_pair("general.alignment", 4, U32.pack(0))),
            "power of two",
        ),
        same(
            "alignment-as-u64",
            lambda a: insert_kv(a, kv_pair("general.alignment", 10, U64.pack(32))),
            "not a uint32",
        ),
        same(
            "bad-utf8-key",
            lambda a: insert_kv(a, kv_pair("general.x", 4, U32.pack(1)).replace(b"x", b"\xff")),
            "UTF-8",
        ),
        same(
            "empty-key",
            lambda a: insert_kv(a, U64.pack(0) + U32.pack(4) + U32.pack(1)),
            "empty",
        ),
        same(
            "control-character-key",
            lambda a: insert_kv(a, kv_pair("general.\x1b[2J", 4, U32.pack(1))),
            "unprintable",
        ),
        same(
            "nested-array",
            lambda a: insert_kv(a, kv_pair("general.x", 9, U32.pack(9) + U64.pack(0))),
            "array of arrays",
        ),
        same(
            "array-of-unknown-type",
            lambda a: insert_kv(a, kv_pair("general.x", 9, U32.pack(13) + U64.pack(0))),
            "unknown element type",
        ),
    ]


def key_mutations(a: Anatomy, rng: random.Random) -> list[Mutation]:
    """Edits of a seeded sample of the file's own keys, plus the vocabulary's."""
    vocab = ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"]
    names = sorted(set(rng.sample(sorted(a.keys), 12)) | set(vocab))
    found: list[Mutation] = []
    for name in names:
        f = a.keys[name]
        tag = name.replace(".", "_")
        found += [
            Mutation(
                f"{tag}-key-length-huge",
                lambda a, f=f: put(a.header, f.offset, U64.pack(1 << 62)),
                "claims",
            ),
            Mutation(
                f"{tag}-key-bad-utf8",
                lambda a, f=f: put(a.header, f.part(1), b"\xc3\x28"),
                "UTF-8",
            ),
            Mutation(
                f"{tag}-type-unknown",
                lambda a, f=f: put(a.header, f.part(2), U32.pack(13)),
                "unknown value type",
            ),
            Mutation(
                f"{tag}-type-huge",
                lambda a, f=f: put(a.header, f.part(2), U32.pack(0xFFFFFFFF)),
                "unknown value type",
            ),
            Mutation(f"{tag}-duplicated", lambda a, f=f: duplicate(a, f), "duplicate key"),
        ]
        if f.types[0] == 8:  # a string value: its length
            found.append(
                Mutation(
                    f"{tag}-string-length-huge",
                    lambda a, f=f: put(a.header, f.part(3), U64.pack(1 << 40)),
                    "claims",
                )
            )
        if f.types[0] == 9:  # an array: its element type and length
            found += [
                Mutation(
                    f"{tag}-element-type-unknown",
                    lambda a, f=f: put(a.header, f.part(3), U32.pack(99)),
                    "unknown element type",
                ),
                Mutation(
                    f"{tag}-nested",
                    lambda a, f=f: put(a.header, f.part(3), U32.pack(9)),
                    "array of arrays",
                ),
                Mutation(
                    f"{tag}-length-huge",
                    lambda a, f=f: put(a.header, f.part(4), U64.pack(1 << 61)),
                    "overruns",
                ),
            ]
    return found


def duplicate(a: Anatomy, f: Field) -> bytes:
    pair = a.header[f.offset : f.end]
    return with_counts(splice(a.header, f.end, f.end, pair), n_kv=a.n_kv + 1)


def vocab_mutations() -> list[Mutation]:
    def shorter_token_types(a: Anatomy) -> bytes:
        f = a.keys["tokenizer.ggml.token_type"]
        count = U64.unpack_from(a.header, f.part(4))[0]
        header = put(a.header, f.part(4), U64.pack(count - 1))
        return splice(header, f.end - 4, f.end, b"")

    def shorter_tokens(a: Anatomy) -> bytes:
        f = a.keys["tokenizer.ggml.tokens"]
        count = U64.unpack_from(a.header, f.part(4))[0]
        last = f.part(len(f.parts) - 2)  # the last token's length, then its bytes
        return splice(put(a.header, f.part(4), U64.pack(count - 1)), last, f.end, b"")

    def token_id(key: str, value: int) -> Callable[[Anatomy], bytes]:
        return lambda a: put(a.header, a.keys[key].part(3), U32.pack(value))

    def bool_two(a: Anatomy) -> bytes:
        return put(a.header, a.keys["tokenizer.ggml.add_bos_token"].part(3), b"\x02")

    return [
        Mutation("token-types-one-short", shorter_token_types, "tokenizer.ggml.token_type has"),
        Mutation("tokens-one-short", shorter_tokens, "tokenizer.ggml.token_type has"),
        *(
            Mutation(
                f"{key.split('.')[-1]}-{value}",
                token_id(key, value),
                "not a token id below the vocabulary size",
            )
            for key in (
                "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id",
                "tokenizer.ggml.padding_token_id",
            )
            for value in (49152, 0xFFFFFFFF)
        ),
        Mutation("bool-two", bool_two, "not 0 or 1"),
    ]


def tensor_mutations(a: Anatomy, rng: random.Random) -> list[Mutation]:
    """Edits of a seeded sample of tensor infos: [name length, name, n_dims, dims, type, offset]."""
    indices = sorted(set(rng.sample(range(1, a.n_tensors), 14)) | {0, a.n_tensors - 1})
    found: list[Mutation] = []
    for index in indices:
        t = a.tensors[index]
        tag = f"tensor{index}"

        def at(part: int, packed: bytes, t: Field = t) -> Callable[[Anatomy], bytes]:
            return lambda a: put(a.header, t.part(part), packed)

        found += [
            Mutation(f"{tag}-name-length-huge", at(0, U64.pack(1 << 40)), "claims"),
            Mutation(f"{tag}-name-length-64", at(0, U64.pack(64)), ""),
            Mutation(f"{tag}-name-bad-utf8", at(1, b"\xff"), "UTF-8"),
            Mutation(f"{tag}-dims-0", at(2, U32.pack(0)), "dimensions"),
            Mutation(f"{tag}-dims-5", at(2, U32.pack(5)), "dimensions"),
            Mutation(f"{tag}-dims-huge", at(2, U32.pack(0xFFFFFFFF)), "dimensions"),
            Mutation(f"{tag}-dim-0", at(3, I64.pack(0)), "dimension of 0"),
            Mutation(f"{tag}-dim-negative", at(3, I64.pack(-1)), "dimension of -1"),
            Mutation(f"{tag}-dim-huge", at(3, I64.pack(1 << 62)), ""),
            Mutation(f"{tag}-type-removed-q4_2", at(4, U32.pack(4)), "unknown ggml type"),
            Mutation(f"{tag}-type-removed-q4_0_4_4", at(4, U32.pack(31)), "unknown ggml type"),
            Mutation(f"{tag}-type-past-count", at(4, U32.pack(43)), "unknown ggml type"),
            Mutation(f"{tag}-type-huge", at(4, U32.pack(0x80000000)), "unknown ggml type"),
            Mutation(
                f"{tag}-offset-misaligned",
                shifted(t, index, 1),
                "not aligned",
            ),
            Mutation(
                f"{tag}-offset-past-end",
                lambda a, t=t: put(a.header, t.part(5), U64.pack(1 << 40)),
                "past the end",
            ),
            Mutation(
                f"{tag}-offset-wraps",
                lambda a, t=t: put(a.header, t.part(5), U64.pack((1 << 64) - ALIGNMENT)),
                "past the end",
            ),
        ]
        if index > 0:
            found += [
                Mutation(
                    f"{tag}-overlaps-previous",
                    lambda a, i=index, t=t: put(
                        a.header, t.part(5), U64.pack(a.tensor_offsets[i - 1])
                    ),
                    "overlaps",
                ),
                Mutation(f"{tag}-gap-before", shifted(t, index, ALIGNMENT), ""),
            ]
        twin = next((o for o in a.tensors if o is not t and len(o.name) == len(t.name)), None)
        if twin is not None:
            found.append(
                Mutation(
                    f"{tag}-duplicate-name",
                    lambda a, t=t, twin=twin: put(a.header, t.part(1), twin.name.encode()),
                    "duplicate tensor name",
                )
            )
    return found


def shifted(t: Field, index: int, shift: int) -> Callable[[Anatomy], bytes]:
    """Tensor ``index`` moved by ``shift`` bytes."""

    def edit(a: Anatomy) -> bytes:
        return put(a.header, t.part(5), U64.pack(a.tensor_offsets[index] + shift))

    return edit


def truncations(a: Anatomy, rng: random.Random) -> list[Mutation]:
    """The file cut short: at 60 seeded points in the header, 20 in the data section."""
    total = -(-len(a.header) // ALIGNMENT) * ALIGNMENT + a.data_bytes
    points = sorted(rng.sample(range(len(a.header)), 60)) + sorted(
        rng.sample(range(len(a.header) + 1, total), 20)
    )
    return [
        Mutation(f"cut-at-{point}", lambda a: a.header, "", cut=lambda a, p=point: p)
        for point in points
    ]


def all_mutations(a: Anatomy, seed: int = 20261201) -> list[Mutation]:
    rng = random.Random(seed)
    return [
        *header_mutations(),
        *key_mutations(a, rng),
        *vocab_mutations(),
        *tensor_mutations(a, rng),
        *truncations(a, rng),
    ]
