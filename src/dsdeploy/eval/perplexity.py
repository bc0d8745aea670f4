"""Run ``llama-perplexity`` and read its figures.

The reference model's full next-token distributions are saved once
(``--kl-divergence-base``); each quantized model is then run over the same tokens with
``--kl-divergence``, which prints perplexity of both, the mean KL divergence per token and
"Same top p", the share of positions where both models rank the same token first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.engines.llamacpp_tools import run_tool
from dsdeploy.errors import EvalError

FINAL_PPL = re.compile(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)")
CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks")
NUMBER = r"(-?[\d.]+)"
KLD_FIGURES = {
    "perplexity": rf"Mean PPL\(Q\)\s*:\s*{NUMBER}",
    "reference_perplexity": rf"Mean PPL\(base\)\s*:\s*{NUMBER}",
    "mean_kld": rf"Mean\s+KLD:\s*{NUMBER}",
    "mean_kld_error": rf"Mean\s+KLD:\s*{NUMBER}\s*±\s*{NUMBER}",
    "kld_p99": rf"99\.0%\s+KLD:\s*{NUMBER}",
    "same_top_p": rf"Same top p:\s*{NUMBER}",
}


@dataclass(frozen=True)
class Window:
    """How the text is cut: ``ctx`` tokens per chunk (the second half of each is scored)."""

    ctx: int
    chunks: int | None
    threads: int

    def flags(self) -> list[str]:
        flags = ["-c", str(self.ctx), "-t", str(self.threads)]
        return flags + (["--chunks", str(self.chunks)] if self.chunks else [])


@dataclass(frozen=True)
class Divergence:
    perplexity: float
    reference_perplexity: float
    mean_kld: float
    mean_kld_error: float
    kld_p99: float
    same_top_p: float
    """Percent of positions where the top-1 token agrees with the reference."""


@dataclass(frozen=True)
class ReferenceScore:
    perplexity: float
    chunks: int
    """Chunks of ``ctx`` tokens the text gave (the second half of each is scored)."""


def save_reference(
    binary: Path, reference: Path, text: Path, logits: Path, window: Window
) -> ReferenceScore:
    """Score the reference on the text, saving its distributions for the comparisons."""
    output = run_tool(
        [binary, "-m", reference, "-f", text, "--kl-divergence-base", logits, *window.flags()],
        "llama-perplexity on the reference",
    )
    found, chunks = FINAL_PPL.search(output), CHUNKS.search(output)
    if found is None or chunks is None:
        raise EvalError(f"llama-perplexity printed no perplexity for {reference.name}")
    return ReferenceScore(float(found.group(1)), int(chunks.group(1)))


def divergence(binary: Path, model: Path, logits: Path, window: Window) -> Divergence:
    output = run_tool(
        [binary, "-m", model, "--kl-divergence-base", logits, "--kl-divergence", *window.flags()],
        f"llama-perplexity --kl-divergence on {model.name}",
    )
    figures: dict[str, float] = {}
    for name, pattern in KLD_FIGURES.items():
        found = re.search(pattern, output)
        if found is None:
            raise EvalError(f"llama-perplexity printed no {name} for {model.name}")
        figures[name] = float(found.group(found.lastindex or 1))
    return Divergence(**figures)
