"""A safetensors file's header, checked before any engine maps the file.

The format: a little-endian u64 ``N``, ``N`` bytes of JSON naming each tensor's dtype, shape
and ``[begin, end)`` inside the data section, then the data section. A header that lies
(offsets past the end, a shape that does not match its bytes, tensors over each other)
makes readers index outside the data; the checks follow the ``safetensors`` crate's
``validate`` and add a size cap on the header, since it is parsed as one JSON document.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, BinaryIO

from dsdeploy.errors import ModelFileRejected
from dsdeploy.model.bounded import Malformed

MAX_HEADER = 100 * 2**20
"""The safetensors crate's own cap (MAX_HEADER_SIZE) is 100 MB."""
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16,
    "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
    "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
"""Every dtype the safetensors crate knows, in bits per element."""
ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def check_safetensors(path: Path, label: str | None = None) -> None:
    """Raise ``ModelFileRejected`` at the header's first problem."""
    label = label or path.name
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            length, header = read_header(handle.read(8), size, handle)
        check_entries(header, size - 8 - length)
    except Malformed as exc:
        raise ModelFileRejected(label, exc.problem, exc.offset) from None
    except OSError as exc:
        raise ModelFileRejected(label, f"cannot be read ({exc.strerror})") from None


def read_header(prefix: bytes, size: int, handle: BinaryIO) -> tuple[int, dict[str, Any]]:
    if len(prefix) < 8:
        raise Malformed(0, f"{size} bytes is too short for a safetensors header")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(size - 8, MAX_HEADER):
        raise Malformed(
            0, f"header length {length} exceeds the file ({size} bytes) or the {MAX_HEADER} cap"
        )
    raw = handle.read(length)
    if not raw.startswith(b"{"):
        raise Malformed(8, "the header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(8, f"the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise Malformed(8, "the header is not a JSON object")
    return length, header


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        names = [name for name, _ in pairs]
        twice = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"key {twice!r} appears twice")
    return found


def check_entries(header: dict[str, Any], data_bytes: int) -> None:
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise Malformed(8, "__metadata__ is not a map of strings to strings")
    spans = sorted((tensor_span(name, entry), name) for name, entry in header.items())
    end = 0
    for (begin, stop), name in spans:
        if begin < end:
            raise Malformed(8, f"tensor {name!r} at [{begin}, {stop}) overlaps another tensor")
        if begin > end:
            raise Malformed(8, f"the data section has a gap at [{end}, {begin}) before {name!r}")
        end = stop
    if end != data_bytes:
        raise Malformed(8, f"tensors cover {end} bytes of a {data_bytes} byte data section")


def tensor_span(name: str, entry: Any) -> tuple[int, int]:
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        raise Malformed(8, f"tensor {name!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise Malformed(8, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(is_count(dim) for dim in shape):
        raise Malformed(8, f"tensor {name!r} has shape {shape!r}, not a list of counts")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(is_count, offsets)):
        raise Malformed(8, f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
    begin, end = offsets
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or begin > end or bits // 8 != end - begin:
        raise Malformed(
            8, f"tensor {name!r}: shape {shape} of {dtype} is {bits / 8:g} bytes, "
            f"but data_offsets [{begin}, {end}) hold {end - begin}"
        )  # fmt: skip
    return begin, end


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
