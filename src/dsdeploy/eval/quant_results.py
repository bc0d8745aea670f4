"""Measured quantization quality, kept per model in the data dir so ``plan`` can show it
next to its quantization choice: ``load_quant_eval(dirs, model)``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from dsdeploy.errors import EvalError
from dsdeploy.paths import Dirs


class QuantRow(BaseModel):
    file_type: str = Field(description="llama-quantize file type, e.g. Q4_K_M.")
    size_bytes: int
    bits_per_weight: float = Field(
        description="Tensor bits per weight as written, fallbacks included."
    )
    perplexity: float
    perplexity_delta: float = Field(description="Perplexity minus the reference's.")
    mean_kld: float = Field(description="Mean KL divergence from the reference, nats per token.")
    mean_kld_error: float
    kld_p99: float
    same_top_p: float = Field(description="Percent of tokens whose top-1 matches the reference.")


class Reference(BaseModel):
    description: str
    size_bytes: int
    bits_per_weight: float
    perplexity: float
    dequantized_from: list[str] = Field(
        default_factory=list,
        description="Types of the model's weights when the reference had to be dequantized.",
    )


class QuantEval(BaseModel):
    schema_version: int = 1
    model: str
    model_sha256: str
    engine_version: str
    created: str
    text: str = Field(description="The evaluation text and its source.")
    ctx: int
    chunks: int | None = Field(description="Chunks of ctx tokens scored (half of each).")
    reference: Reference
    rows: list[QuantRow]
    recommended: str | None
    recommendation: str


def quant_eval_path(dirs: Dirs, model: str) -> Path:
    return dirs.data / "evals" / model / "quant.json"


def save_quant_eval(dirs: Dirs, result: QuantEval) -> Path:
    path = quant_eval_path(dirs, result.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(result.model_dump_json(indent=2))
    partial.replace(path)  # a reader never sees half a file
    return path


def load_quant_eval(dirs: Dirs, model: str) -> QuantEval | None:
    """The last ``dsdeploy eval quant MODEL`` result, or None when it was never run."""
    path = quant_eval_path(dirs, model)
    if not path.exists():
        return None
    try:
        return QuantEval.model_validate_json(path.read_text())
    except ValidationError:
        raise EvalError(
            f"{path} is not a quantization result this dsdeploy can read: "
            f"run `dsdeploy eval quant {model}` again"
        ) from None
