"""What a model file says about itself, read once at pull time and kept in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from dsdeploy.errors import StoreError


class ModelInfo(BaseModel):
    architecture: str
    context_length: int = Field(ge=1, description="Context the model was trained for, tokens.")
    embedding_model: bool = Field(description="True when the model pools to embeddings.")


def read_gguf_info(path: Path) -> ModelInfo:
    """Header metadata through llama.cpp's own ``gguf`` reader (a few seconds: it walks
    the whole vocabulary, which is why the result is stored, not re-read at serve time)."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(path).fields
        architecture = str(fields["general.architecture"].contents())
        context = int(fields[f"{architecture}.context_length"].contents())
    except (KeyError, ValueError) as exc:
        raise StoreError(f"{path.name} is not a usable GGUF model file: {exc}") from None
    return ModelInfo(
        architecture=architecture,
        context_length=context,
        embedding_model=f"{architecture}.pooling_type" in fields,
    )


def read_config_info(path: Path) -> ModelInfo:
    """The same facts from a Hugging Face checkpoint's ``config.json``."""
    try:
        config = json.loads(path.read_bytes())
        architecture = str(config.get("model_type") or config["architectures"][0])
        context = int(config.get("max_position_embeddings") or config["n_positions"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise StoreError(f"config.json does not describe a usable model: {exc}") from None
    return ModelInfo(
        architecture=architecture,
        context_length=context,
        embedding_model=not any(a.endswith("LM") for a in config.get("architectures", [])),
    )
