"""A Hugging Face checkpoint folder has everything a conversion reads, checked before any
tool starts: a conversion that fails on a missing shard does so after minutes of work.

What a converter reads: ``config.json`` (the architecture), a tokenizer (``tokenizer.json``
or SentencePiece's ``tokenizer.model``), and safetensors weights, either one file or the
shards that ``model.safetensors.index.json`` names. Pickled weights (``.bin``, ``.pt``) are
refused: loading them runs code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsdeploy.errors import ModelFileRejected

INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def read_json(folder: Path, name: str) -> dict[str, Any]:
    """A JSON object file of the checkpoint, or ModelFileRejected saying what is wrong."""
    path = folder / name
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelFileRejected(
            name, f"is missing from {folder}", advice="copy the whole checkpoint folder"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise ModelFileRejected(name, "is not valid JSON") from None
    if not isinstance(data, dict):
        raise ModelFileRejected(name, "is not a JSON object")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files the checkpoint's weights are in; every shard its index names
    must be present."""
    if (folder / INDEX).exists():
        weight_map = read_json(folder, INDEX).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFileRejected(INDEX, "has no weight_map naming the shards")
        shards = sorted({str(shard) for shard in weight_map.values()})
        missing = [shard for shard in shards if not (folder / shard).is_file()]
        if missing:
            raise ModelFileRejected(
                INDEX,
                f"names {len(missing)} shard(s) not in {folder}: {', '.join(missing[:3])}",
                advice="fetch the missing shards (`dsdeploy pull` resumes) and convert again",
            )
        return [folder / shard for shard in shards]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    problem = (
        f"has only pickled weights ({', '.join(pickled[:3])}), which run code when loaded"
        if pickled
        else "has no .safetensors weights"
    )
    raise ModelFileRejected(
        folder.name, problem, advice="use the model's safetensors release instead"
    )


def check_checkpoint_files(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json, once config, tokenizer and weights are all there."""
    if not folder.is_dir():
        raise ModelFileRejected(
            str(folder), "is not a folder", advice="give a Hugging Face checkpoint folder"
        )
    config = read_json(folder, "config.json")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFileRejected(
            folder.name,
            f"has no tokenizer ({' or '.join(TOKENIZER_FILES)})",
            advice="copy the tokenizer files from the model's release into the folder",
        )
    weight_files(folder)
    return config
