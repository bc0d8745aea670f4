"""Whether a GGUF model, one file or every part of a split one, may be given to an engine.

Each part's structure is checked on its own (``gguf_layout``), then what spans the parts or
ties keys to tensors: the split keys, and the vocabulary. llama.cpp indexes its token
arrays by id and reads the scores and token types as raw ``float``/``int32`` arrays, so a
vocabulary whose arrays disagree in length or element type, a special token id past its
end, or an embedding with another number of rows is refused here rather than trusted there.
"""

from __future__ import annotations

import re
from pathlib import Path

from dsdeploy.errors import ModelFileRejected
from dsdeploy.gguf_parts import part_name, split_part
from dsdeploy.model.bounded import Malformed
from dsdeploy.model.gguf_layout import STRING, GgufLayout, read_layout

INT32, FLOAT32 = 5, 6
TOKENS = "tokenizer.ggml.tokens"
VOCAB_ARRAYS = {
    "tokenizer.ggml.token_type": INT32,
    "tokenizer.ggml.scores": FLOAT32,
}
"""Arrays of one entry per token, and the element type llama.cpp reads them as."""
STRING_ARRAYS = (TOKENS, "tokenizer.ggml.merges")
SPECIAL_ID = re.compile(r"^tokenizer\.ggml\.[a-z_]+_token_id$")
EMBEDDING = "token_embd.weight"


def check_gguf_model(first: Path, label: str | None = None) -> None:
    """Check the file an engine is given and, for a split model, the parts llama.cpp will
    open next to it (found by name, as llama.cpp finds them)."""
    label = label or first.name
    layout = checked_part(first, label)
    count = int(layout.scalars.get("split.count", 1))
    if count <= 1:
        check_model([layout], label)
        return
    part = split_part(first.name)
    if part is None or (part.number, part.count) != (1, count):
        raise ModelFileRejected(
            label, f"split.count says {count} parts but the name is not part 1 of {count}"
        )
    others = [first.with_name(part_name(part.prefix, n, count)) for n in range(2, count + 1)]
    layouts = [layout, *(checked_part(path, path.name) for path in others)]
    check_parts(layouts, [label, *(path.name for path in others)])


def check_gguf_files(paths: list[Path], labels: list[str]) -> None:
    """Check a model given as files in part order (at pull time: blobs, named by ``labels``)."""
    layouts = [checked_part(path, label) for path, label in zip(paths, labels, strict=True)]
    check_parts(layouts, labels)


def checked_part(path: Path, label: str) -> GgufLayout:
    try:
        return read_layout(path)
    except Malformed as exc:
        raise ModelFileRejected(label, exc.problem, exc.offset) from None
    except (OSError, ValueError) as exc:  # unreadable, or mmap of an empty file
        raise ModelFileRejected(label, f"cannot be read ({exc})") from None


def check_parts(layouts: list[GgufLayout], labels: list[str]) -> None:
    count = len(layouts)
    total = sum(len(layout.tensors) for layout in layouts)
    seen: set[str] = set()
    for index, (layout, label) in enumerate(zip(layouts, labels, strict=True)):
        if count > 1 or layout.scalars.get("split.count", 1) != 1:
            check_split_keys(layout, label, index, count)
        for tensor in layout.tensors:
            if tensor.name in seen:
                raise ModelFileRejected(label, f"tensor {tensor.name!r} is in two parts", tensor.at)
            seen.add(tensor.name)
    declared = layouts[0].scalars.get("split.tensors.count")
    if count > 1 and declared is not None and declared != total:
        raise ModelFileRejected(
            labels[0], f"split.tensors.count is {declared} but the parts hold {total} tensors"
        )
    check_model(layouts, labels[0])


def check_split_keys(layout: GgufLayout, label: str, index: int, count: int) -> None:
    number = layout.scalars.get("split.no")
    declared = layout.scalars.get("split.count")
    if declared != count or number != index:
        raise ModelFileRejected(
            label,
            f"is part {index + 1} of {count} but says split.no={number}, "
            f"split.count={declared} (split.no counts from 0)",
        )


def check_model(layouts: list[GgufLayout], label: str) -> None:
    """The vocabulary (kept in the first part) against itself and the embedding."""
    first = layouts[0]
    for key in STRING_ARRAYS:
        if key in first.types and first.arrays.get(key, (None,))[0] != STRING:
            raise ModelFileRejected(label, f"{key} is not an array of strings", first.at[key])
    vocab = first.arrays[TOKENS][1] if TOKENS in first.arrays else None
    for key, element in VOCAB_ARRAYS.items():
        if key not in first.types:
            continue
        kind, length = first.arrays.get(key, (None, None))
        if kind != element or length != vocab:
            raise ModelFileRejected(
                label,
                f"{key} has {length} entries of type {kind} for a vocabulary of {vocab} "
                f"tokens (expected {vocab} of type {element})",
                first.at[key],
            )
    if vocab is None:
        return
    check_special_ids(first, label, vocab)
    for layout in layouts:
        for tensor in layout.tensors:
            if tensor.name == EMBEDDING and tensor.dims[-1] != vocab:
                raise ModelFileRejected(
                    label,
                    f"{EMBEDDING} has {tensor.dims[-1]} rows for a vocabulary of {vocab} tokens",
                    tensor.at,
                )


def check_special_ids(layout: GgufLayout, label: str, vocab: int) -> None:
    for key in layout.types:
        if not SPECIAL_ID.match(key):
            continue
        value = layout.scalars.get(key)
        if not isinstance(value, int) or not 0 <= value < vocab:
            raise ModelFileRejected(
                label, f"{key} is {value}, not a token id below the vocabulary size {vocab}",
                layout.at[key],
            )  # fmt: skip
