"""The structure of one GGUF file, read defensively before any engine parses it.

llama.cpp's own parser (``ggml/src/gguf.cpp``) has had memory-safety bugs where a malformed
header made it read past its buffers, so a file is walked here first, in Python, with every
count and length compared with the bytes that remain before it is used. The checks mirror
``gguf_init_from_file_impl`` and go further: dimensions must be positive, tensor names valid
UTF-8, every tensor inside the file and apart from the others. Only the header, the
key-value pairs and the tensor infos are read (through ``mmap``, so a 700 GB file costs what
its header costs); the weights are not.

Layout (little-endian; the GGUF spec in ggml's ``docs/gguf.md``)::

    "GGUF" | u32 version | i64 n_tensors | i64 n_kv
    n_kv × (string key | u32 type | value)        string = u64 length + bytes
    n_tensors × (string name | u32 n_dims | n_dims × i64 | u32 ggml type | u64 offset)
    padding to general.alignment | tensor data (offsets relative to its start)
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gguf import GGML_QUANT_SIZES

from dsdeploy.model.bounded import Cursor, Malformed

VERSIONS = (2, 3)
MAX_DIMS = 4
"""GGML_MAX_DIMS."""
MAX_TENSOR_NAME = 63
"""GGML_MAX_NAME is 64 bytes with the terminating NUL."""
MAX_KEY = 65535
"""The spec: keys are at most 2^16 - 1 bytes."""
MAX_STRING = 1 << 30
"""GGUF_MAX_STRING_LENGTH."""
DEFAULT_ALIGNMENT = 32
UINT32, BOOL, STRING, ARRAY = 4, 7, 8, 9
SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q",
    12: "<d",
}  # fmt: skip
"""GGUF value type -> struct format (7 is bool: one byte, 0 or 1)."""
GGML_TYPES = {int(kind): sizes for kind, sizes in GGML_QUANT_SIZES.items()}
"""ggml type id -> (elements per block, bytes per block), from llama.cpp's gguf-py."""
MIN_KV_BYTES = 8 + 1 + 4 + 1
MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8
INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    """Relative to the data section, as the file says."""
    nbytes: int
    at: int
    """Where its info starts in the file, for messages."""


@dataclass
class GgufLayout:
    """What one file's header says, once it has been found consistent."""

    version: int = 0
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0
    types: dict[str, int] = field(default_factory=dict)
    """Every key -> its value type."""
    scalars: dict[str, int | float] = field(default_factory=dict)
    arrays: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Array key -> (element type, length)."""
    tensors: list[TensorInfo] = field(default_factory=list)
    at: dict[str, int] = field(default_factory=dict)
    """Key -> where its pair starts, for messages."""


def read_layout(path: Path) -> GgufLayout:
    """The checked header of one GGUF file; ``Malformed`` at the first problem."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size < 4 + 4 + 8 + 8:
            raise Malformed(0, f"{size} bytes is too short for a GGUF header")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            cursor = Cursor(view, size)
            try:
                return walk(cursor)
            finally:
                cursor.data.release()  # else an error's traceback keeps the map open


def walk(cursor: Cursor) -> GgufLayout:
    if cursor.take(4, "magic") != b"GGUF":
        raise Malformed(0, "not a GGUF file (its first bytes are not 'GGUF')")
    layout = GgufLayout(version=cursor.unpack("<I", "version"))
    if layout.version not in VERSIONS:
        raise Malformed(4, f"GGUF version {layout.version} is not supported (2 or 3)")
    n_tensors = cursor.unpack("<q", "tensor count")
    n_kv = cursor.unpack("<q", "key-value count")
    needed = max(n_tensors, 0) * MIN_TENSOR_INFO_BYTES + max(n_kv, 0) * MIN_KV_BYTES
    if n_tensors < 0 or n_kv < 0 or needed > cursor.remaining:
        raise Malformed(
            8, f"{n_tensors} tensors and {n_kv} keys cannot fit in a {cursor.size} byte file"
        )
    for _ in range(n_kv):
        read_kv(cursor, layout)
    layout.alignment = alignment(layout)
    names: set[str] = set()
    for _ in range(n_tensors):
        tensor = read_tensor_info(cursor, layout.alignment)
        if tensor.name in names:
            raise Malformed(tensor.at, f"duplicate tensor name {tensor.name!r}")
        names.add(tensor.name)
        layout.tensors.append(tensor)
    layout.data_offset = -(-cursor.pos // layout.alignment) * layout.alignment
    place_tensors(layout, cursor.size)
    return layout


def read_kv(cursor: Cursor, layout: GgufLayout) -> None:
    at = cursor.pos
    key = cursor.text("key", MAX_KEY)
    if not key or not key.isprintable():
        raise Malformed(at, f"key {key!r} is empty or has unprintable characters")
    if key in layout.types:
        raise Malformed(at, f"duplicate key {key!r}")
    kind = layout.types[key] = cursor.unpack("<I", f"type of {key!r}")
    layout.at[key] = at
    if kind == ARRAY:
        layout.arrays[key] = read_array(cursor, key, at)
    elif kind == STRING:
        cursor.skip_string(f"value of {key!r}", MAX_STRING)
    elif kind in SCALARS:
        value = cursor.unpack(SCALARS[kind], f"value of {key!r}")
        if kind == BOOL and value not in (0, 1):
            raise Malformed(at, f"boolean {key!r} is {value}, not 0 or 1")
        layout.scalars[key] = value
    else:
        raise Malformed(at, f"key {key!r} has unknown value type {kind}")


def read_array(cursor: Cursor, key: str, at: int) -> tuple[int, int]:
    item = cursor.unpack("<I", f"element type of {key!r}")
    if item == ARRAY:
        raise Malformed(at, f"key {key!r} is an array of arrays, which llama.cpp refuses")
    if item not in SCALARS and item != STRING:
        raise Malformed(at, f"array {key!r} has unknown element type {item}")
    length = cursor.unpack("<Q", f"length of {key!r}")
    smallest = 8 if item == STRING else struct.calcsize(SCALARS[item])
    if length > cursor.remaining // smallest:
        raise Malformed(at, f"array {key!r} of {length} elements overruns the file")
    if item == STRING:
        cursor.skip_strings(length, key, MAX_STRING)
    else:
        cursor.advance(length * smallest, f"array {key!r}")
    return item, length


def alignment(layout: GgufLayout) -> int:
    if "general.alignment" not in layout.types:
        return DEFAULT_ALIGNMENT
    at = layout.at["general.alignment"]
    if layout.types["general.alignment"] != UINT32:
        raise Malformed(at, "general.alignment is not a uint32")
    value = int(layout.scalars["general.alignment"])
    if value == 0 or value & (value - 1):
        raise Malformed(at, f"general.alignment {value} is not a power of two")
    return value


def read_tensor_info(cursor: Cursor, align: int) -> TensorInfo:
    at = cursor.pos
    name = cursor.text("tensor name", MAX_TENSOR_NAME)
    if not name or not name.isprintable():
        raise Malformed(at, f"tensor name {name!r} is empty or has unprintable characters")
    n_dims = cursor.unpack("<I", f"dimension count of {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise Malformed(at, f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS})")
    dims = tuple(cursor.unpack("<q", f"shape of {name!r}") for _ in range(n_dims))
    elements = 1
    for dim in dims:
        if dim <= 0:
            raise Malformed(at, f"tensor {name!r} has a dimension of {dim}: shape {dims}")
        elements *= dim
    if elements > INT64_MAX:
        raise Malformed(at, f"tensor {name!r} of shape {dims} has more than 2^63 elements")
    kind = cursor.unpack("<I", f"type of {name!r}")
    if kind not in GGML_TYPES:
        raise Malformed(at, f"tensor {name!r} has unknown ggml type {kind}")
    block, block_bytes = GGML_TYPES[kind]
    if dims[0] % block:
        raise Malformed(at, f"tensor {name!r}: row of {dims[0]} is not a multiple of {block}")
    offset = cursor.unpack("<Q", f"offset of {name!r}")
    if offset % align:
        raise Malformed(at, f"tensor {name!r} offset {offset} is not aligned to {align}")
    return TensorInfo(name, dims, kind, offset, elements // block * block_bytes, at)


def place_tensors(layout: GgufLayout, size: int) -> None:
    """Each tensor inside the file, none overlapping another, laid out as llama.cpp expects
    (in order, each at the previous one's end rounded up to the alignment), and nothing
    after the last one (a header that lost tensors still describes a consistent prefix)."""
    if layout.tensors and layout.data_offset > size:
        raise Malformed(size, f"the data section starts at {layout.data_offset}, past the end")
    previous_end = expected = 0
    for tensor in layout.tensors:
        end = layout.data_offset + tensor.offset + tensor.nbytes
        if end > size:
            raise Malformed(
                tensor.at,
                f"tensor {tensor.name!r} ({tensor.nbytes} bytes at data offset {tensor.offset}) "
                f"ends at byte {end}, past the end of the {size} byte file",
            )
        if tensor.offset < previous_end:
            raise Malformed(
                tensor.at,
                f"tensor {tensor.name!r} at data offset {tensor.offset} overlaps the tensor "
                f"before it, which ends at {previous_end}",
            )
        if tensor.offset != expected:
            raise Malformed(
                tensor.at,
                f"tensor {tensor.name!r} is at data offset {tensor.offset}, not at {expected} "
                "right after the tensor before it",
            )
        previous_end = tensor.offset + tensor.nbytes
        expected = -(-(tensor.offset + tensor.nbytes) // layout.alignment) * layout.alignment
    if layout.tensors and size > layout.data_offset + expected:
        raise Malformed(
            layout.data_offset + expected,
            f"{size - layout.data_offset - expected} bytes follow the last tensor: the header "
            "does not describe the whole file",
        )
