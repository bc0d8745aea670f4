"""Quality measured on this machine by ``dsdeploy eval quant``, put next to the plan's
quantization choice: the published perplexity figures come from other models, a
measurement of this model is the one to trust."""

from __future__ import annotations

from dsdeploy.eval.quant_results import QuantEval
from dsdeploy.planner.plan import Plan


def add_measured_quality(plan: Plan, result: QuantEval | None) -> None:
    """Append a note with the measured figures for the chosen quantization, if any exist."""
    if result is None or plan.llama is None:
        return
    chosen = plan.llama.quant.name.upper()
    where = f"measured here by `dsdeploy eval quant` ({result.created[:10]})"
    row = next((r for r in result.rows if r.file_type.upper() == chosen), None)
    if row is None:
        measured = ", ".join(r.file_type for r in result.rows)
        plan.notes.append(f"{where} for {measured}, not {chosen}: {result.recommendation}")
        return
    plan.notes.append(
        f"{where}: {row.file_type} mean KL divergence {row.mean_kld:.4f}, top-1 agreement "
        f"{row.same_top_p:.1f}%, perplexity {row.perplexity_delta:+.3f} against "
        f"{result.reference.description}"
    )
