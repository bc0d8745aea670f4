"""The safetensors header check: a file written by the ``safetensors`` library passes, and
copies with a lying header (length, JSON, dtype, shape, offsets, metadata) are refused."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from dsdeploy.errors import ModelFileRejected
from dsdeploy.model.safetensors_check import MAX_HEADER, check_safetensors

Header = dict[str, Any]


@pytest.fixture(scope="module")
def original() -> bytes:
    rng = np.random.default_rng(0)
    return save(
        {
            "embed.weight": rng.standard_normal((32, 8)).astype(np.float16),
            "norm.weight": np.ones(8, dtype=np.float32),
            "head.bias": np.zeros(3, dtype=np.int64),
        },
        metadata={"format": "pt"},
    )


def split(data: bytes) -> tuple[Header, bytes]:
    (length,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join(header: Header | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def edit(change: Callable[[Header], None]) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        header, body = split(data)
        change(header)
        return join(header, body)

    return apply


def entry(name: str, key: str, value: object) -> Callable[[Header], None]:
    def change(header: Header) -> None:
        header[name][key] = value

    return change


def first_tensor(header: Header) -> str:
    return min((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"])


def test_a_file_written_by_the_safetensors_library_passes(original: bytes, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(original)
    check_safetensors(path)


MUTATIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda d: b"", "too short"),
    "length-past-end": (lambda d: struct.pack("<Q", len(d)) + d[8:], "exceeds the file"),
    "length-huge": (lambda d: struct.pack("<Q", 1 << 63) + d[8:], "exceeds the file"),
    "not-json": (lambda d: join(b"{not json", split(d)[1]), "not valid JSON"),
    "json-list": (lambda d: join(b"[1, 2]", split(d)[1]), "not a JSON object"),
    "bad-utf8": (lambda d: join(b'{"\xff": 1}', split(d)[1]), "not valid JSON"),
    "duplicate-tensor": (
        lambda d: join(
            b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
            b'"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}',
            b"\0",
        ),
        "appears twice",
    ),
    "unknown-dtype": (edit(entry("norm.weight", "dtype", "F12")), "unknown dtype"),
    "dtype-not-string": (edit(entry("norm.weight", "dtype", 7)), "unknown dtype"),
    "shape-too-big": (edit(entry("norm.weight", "shape", [9])), "bytes, but data_offsets"),
    "shape-negative": (edit(entry("norm.weight", "shape", [-8])), "not a list of counts"),
    "shape-float": (edit(entry("norm.weight", "shape", [8.0])), "not a list of counts"),
    "shape-bool": (edit(entry("norm.weight", "shape", [True])), "not a list of counts"),
    "dtype-wider": (edit(entry("embed.weight", "dtype", "F32")), "bytes, but data_offsets"),
    "offsets-past-end": (
        edit(entry("head.bias", "data_offsets", [1 << 40, (1 << 40) + 24])),
        "",
    ),
    "offsets-reversed": (edit(entry("head.bias", "data_offsets", [24, 0])), ""),
    "offsets-three": (edit(entry("head.bias", "data_offsets", [0, 24, 48])), "[begin, end]"),
    "extra-field": (edit(entry("head.bias", "extra", 1)), "is not {dtype"),
    "entry-not-object": (edit(lambda h: h.update({"x": [1]})), "is not {dtype"),
    "metadata-number": (edit(lambda h: h["__metadata__"].update({"n": 1})), "__metadata__"),
    "metadata-list": (edit(lambda h: h.update({"__metadata__": ["a"]})), "__metadata__"),
    "trailing-bytes": (lambda d: d + b"\0" * 16, "tensors cover"),
    "truncated": (lambda d: d[:-1], "tensors cover"),
}


def overlap(data: bytes) -> bytes:
    header, body = split(data)
    name = first_tensor(header)
    begin, end = header[name]["data_offsets"]
    header["copy"] = {**header[name], "data_offsets": [begin, end]}
    return join(header, body)


def gap(data: bytes) -> bytes:
    header, body = split(data)
    for name, value in header.items():
        if name != "__metadata__":
            begin, end = value["data_offsets"]
            value["data_offsets"] = [begin + 8, end + 8]
    return join(header, b"\0" * 8 + body)


MUTATIONS["overlap"] = (overlap, "overlaps")
MUTATIONS["gap-at-start"] = (gap, "has a gap")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_lying_header_is_refused_in_one_line(original: bytes, tmp_path: Path, name: str) -> None:
    mutate, expected = MUTATIONS[name]
    path = tmp_path / "model.safetensors"
    path.write_bytes(mutate(original))
    with pytest.raises(ModelFileRejected) as refused:
        check_safetensors(path, "model.safetensors")
    message = str(refused.value)
    assert message.startswith("refused model.safetensors: ")
    assert expected in message
    assert "\n" not in message


def test_a_header_over_the_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as out:
        out.write(struct.pack("<Q", MAX_HEADER + 1) + b"{")
        out.truncate(MAX_HEADER + 64)  # sparse: the file is big enough to hold the claim
    with pytest.raises(ModelFileRejected, match="cap"):
        check_safetensors(path)
