"""What a plan is for: a catalog name, a GGUF file, or a Hugging Face checkpoint folder.
Files are read for their real shape and bytes; a name needs nothing downloaded."""

from __future__ import annotations

from pathlib import Path

from dsdeploy import catalog
from dsdeploy.catalog import CatalogEntry
from dsdeploy.modelfile import ModelLayout, read_gguf_layout
from dsdeploy.modelfile_hf import read_hf_layout
from dsdeploy.planner.quants import Quant


def entry_for_layout(name: str, description: str, layout: ModelLayout) -> CatalogEntry:
    arch = layout.architecture
    return CatalogEntry(
        name=name,
        source="",
        format="gguf",
        description=description,
        provenance="",
        architecture=arch,
        total_params=arch.checkpoint_params,  # as a catalog states it: MTP layers included
        active_params=arch.active_params,
    )


def file_quant(layout: ModelLayout, label: str, quality: str = "the file as it is") -> Quant:
    """The one weight format a file on disk offers, at its exact bits per weight."""
    bits = layout.weight_bytes * 8 / layout.architecture.total_params
    return Quant(label, bits, int(bits), quality)


def plan_subject(model: str) -> tuple[CatalogEntry, tuple[Quant, ...]]:
    """A catalog entry (its quants are the choice) or a file's entry and its one quant."""
    path = Path(model)
    if path.is_dir():
        layout = read_hf_layout(path)
        label = "+".join(sorted(layout.tensor_types)) or "safetensors"
        quality = "the checkpoint as it is, once llama.cpp's convert_hf_to_gguf.py made a GGUF"
    elif path.is_file():
        layout = read_gguf_layout(path)
        label, quality = path.name, "the file as it is"
    else:
        return catalog.get(model), ()
    entry = entry_for_layout(path.name, str(path), layout)
    return entry, (file_quant(layout, label, quality),)


def stored_entry(
    name: str, weights: Path, weight_file: str, weight_bytes: int
) -> tuple[CatalogEntry, Quant]:
    """A model in the store: the catalog's numbers when it is known (no file read), else
    the GGUF's own header (``weights`` is the file the engine is given, part 1 of a split
    GGUF next to its other parts). ``weight_bytes`` is the stored files' exact size: every
    part of a split GGUF, not only the first."""
    known = catalog.find(name)
    layout = (
        ModelLayout(known.architecture, weight_bytes, 0, {})
        if known is not None and known.architecture is not None
        else read_gguf_layout(weights)
    )
    description = known.description if known is not None else name
    entry = entry_for_layout(name, description, layout)
    sized = ModelLayout(layout.architecture, weight_bytes, layout.expert_bytes, {})
    return entry, file_quant(sized, Path(weight_file).name)
