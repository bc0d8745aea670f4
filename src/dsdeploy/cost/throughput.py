"""How many tokens a machine turns through per second: measured by ``dsdeploy bench`` (its
JSON, refused when it measured another model), or the plan's estimate, marked as such."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsdeploy.errors import ConfigError
from dsdeploy.planner.plan import Plan


@dataclass(frozen=True)
class Workload:
    """A month of traffic."""

    input_tokens: float
    output_tokens: float
    cache_hit: float = 0.0
    """Share of input tokens an API bills at its cache-hit price."""

    @property
    def tokens(self) -> float:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Throughput:
    """Tokens per second if the machine did only prefill (input) or only decode (output);
    a workload's machine time is the sum of its two parts."""

    input_tokens_per_s: float
    output_tokens_per_s: float
    source: str
    measured: bool

    def busy_seconds(self, workload: Workload) -> float:
        return (
            workload.input_tokens / self.input_tokens_per_s
            + workload.output_tokens / self.output_tokens_per_s
        )


def estimated(plan: Plan, where: str) -> Throughput:
    """The plan's decode ceiling for one stream, for output and (an upper bound on their
    cost) for input too: prefill runs batched and faster, and batching serves more streams,
    so a measured figure is lower in cost — `dsdeploy bench` gives it."""
    rate = plan.decode_tokens_per_s_bound
    return Throughput(
        rate,
        rate,
        f"estimate for {where}: one stream at the memory-bandwidth ceiling, {rate:.1f} tokens/s "
        "(input charged at the same rate; measure with dsdeploy bench)",
        measured=False,
    )


def read_bench(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read bench file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not a dsdeploy bench JSON file") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list):
        raise ConfigError(f"{path} is not a dsdeploy bench JSON file (no rows)")
    return raw


def measured(path: Path, model: str) -> tuple[Throughput, float | None]:
    """The best row of a bench run of ``model``, and the GPU draw the run measured.

    At concurrency c, prefill takes TTFT and each further token TPOT, so input runs at
    c × prompt tokens ÷ TTFT and output at c ÷ TPOT; together they give back the run's
    requests per second."""
    raw = read_bench(path)
    facts = raw.get("model")
    name = facts.get("name") if isinstance(facts, dict) else None
    if name is None:
        raise ConfigError(
            f"{path} does not say which model it measured; "
            f"rerun dsdeploy bench with --model {model}"
        )
    if name != model:
        raise ConfigError(f"{path} measured {name!r}, not {model!r}; bench {model} or cost {name}")
    rows = [r for r in raw["rows"] if usable(r)]
    if not rows:
        raise ConfigError(f"{path} has no row without errors to take a throughput from")
    best = max(rows, key=lambda r: float(r["aggregate_tokens_per_s"]))
    concurrency = int(best["concurrency"])
    input_rate = concurrency * float(best["prompt_tokens"]) / (best["ttft_ms"]["p50"] / 1000)
    output_rate = concurrency / (best["tpot_ms"]["p50"] / 1000)
    machine = raw.get("machine")
    host = machine.get("hostname", "?") if isinstance(machine, dict) else "?"
    power = raw.get("gpu_power_w")
    throughput = Throughput(
        input_rate,
        output_rate,
        f"measured by dsdeploy bench on {host} ({raw.get('created', '?')}): target "
        f"{best['target']} at concurrency {concurrency}, {input_rate:.0f} input and "
        f"{output_rate:.1f} output tokens/s",
        measured=True,
    )
    return throughput, float(power) if isinstance(power, (int, float)) and power > 0 else None


def usable(row: Any) -> bool:
    """A row with requests, no errors, and finite latencies."""
    try:
        values = (row["ttft_ms"]["p50"], row["tpot_ms"]["p50"], row["prompt_tokens"])
        return (
            row["errors"] == 0
            and row["requests"] > 0
            and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)
        )
    except (KeyError, TypeError):
        return False
