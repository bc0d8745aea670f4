"""`dsdeploy convert`: a Hugging Face checkpoint folder into the store as a GGUF model."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from dsdeploy.cli.admin_audit import admin_audit
from dsdeploy.cli.common import console, fail, load_settings
from dsdeploy.convert import Conversion
from dsdeploy.convert import convert as convert_checkpoint
from dsdeploy.errors import DsdeployError
from dsdeploy.progress import step_progress
from dsdeploy.pull import name_for


def convert(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint folder: config.json, tokenizer, safetensors.")
    ],
    quant: Annotated[
        str, typer.Option(help="llama-quantize type (Q4_K_M, Q5_K_M, Q8_0 …) or F16/BF16.")
    ] = "Q4_K_M",
    name: Annotated[
        str | None, typer.Option(help="Store name (default: folder name and quant).")
    ] = None,
) -> None:
    """Convert a checkpoint with llama.cpp's converter, quantize it and store it, so that
    `dsdeploy serve NAME` serves it. Checked before any tool runs."""
    settings = load_settings()
    try:
        job = Conversion(checkpoint, name or name_for(str(checkpoint), quant.lower()), quant)
        with admin_audit(settings) as note:
            manifest = convert_checkpoint(
                settings, job, partial(step_progress, console=console), console.print
            )
            note("model.converted", f"{manifest.name} sha256 {manifest.weights.sha256}")
    except DsdeployError as exc:
        raise fail(exc) from None
    size = manifest.weights.size / 2**20
    console.print(
        f"{manifest.name}: {size:.1f} MiB GGUF ({quant.upper()}), "
        f"sha256 {manifest.weights.sha256}; serve it with `dsdeploy serve {manifest.name}`",
        highlight=False,
    )
