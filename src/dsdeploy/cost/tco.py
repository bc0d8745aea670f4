"""A month of each way to run the model, in one currency: bought hardware (depreciation,
energy, upkeep), a rented GPU (hours, upkeep), or an API (tokens × price).

Energy follows the arithmetic people check by hand: watts × hours × utilisation × PUE
÷ 1000 = kWh, × the price of a kWh (300 W for a 720-hour month = 216 kWh, ¥129.6 at ¥0.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dsdeploy.cost.throughput import Throughput, Workload

HOURS_PER_MONTH = 720.0
"""30 days × 24 hours, the month of the worked examples people compare against."""


@dataclass(frozen=True)
class Upkeep:
    """People's time a self-hosted model takes: updates, restarts, watching it."""

    hours_per_month: float
    rate: float
    """Per hour, in the report's currency."""

    @property
    def monthly(self) -> float:
        return self.hours_per_month * self.rate


@dataclass(frozen=True)
class Owned:
    price: float
    """Of one machine, in the report's currency."""
    depreciation_years: float
    watts: float
    watts_source: str
    electricity: float
    """Per kWh."""
    pue: float = 1.0
    """Facility energy ÷ IT energy: cooling and power conversion (1.0 at home)."""


@dataclass(frozen=True)
class OptionCost:
    name: str
    kind: str
    """"buy", "rent" or "api"."""
    model: str
    upfront: float
    running: float
    """Cash per month after the purchase."""
    amortised: float
    """Per month with the purchase spread over its depreciation years."""
    per_million_input: float
    per_million_output: float
    lines: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    throughput: str = ""
    """"measured" (a bench run) or "estimate" (the plan) for self-hosted ways."""

    def cumulative(self, months: float) -> float:
        return self.upfront + self.running * months


def kind_of(throughput: Throughput) -> str:
    return "measured" if throughput.measured else "estimate"


def energy_kwh(watts: float, hours: float, utilisation: float, pue: float = 1.0) -> float:
    return watts * hours * utilisation * pue / 1000


def machines_needed(busy_seconds: float, hours: float) -> int:
    """Whole machines to fit a month's machine time into the hours they are on."""
    return max(1, math.ceil(busy_seconds / (hours * 3600) - 1e-9))


def per_million(monthly: float, throughput: Throughput, workload: Workload) -> tuple[float, float]:
    """The month's cost shared out by machine time: a second costs the month ÷ the busy
    seconds, and an input (output) token takes 1 ÷ its rate of them."""
    per_second = monthly / throughput.busy_seconds(workload)
    return (
        per_second / throughput.input_tokens_per_s * 1e6,
        per_second / throughput.output_tokens_per_s * 1e6,
    )


def owned_month(
    name: str,
    model: str,
    owned: Owned,
    upkeep: Upkeep,
    throughput: Throughput,
    workload: Workload,
    hours: float = HOURS_PER_MONTH,
) -> OptionCost:
    busy = throughput.busy_seconds(workload)
    count = machines_needed(busy, hours)
    utilisation = busy / (count * hours * 3600)
    kwh = energy_kwh(owned.watts * count, hours, utilisation, owned.pue)
    energy = kwh * owned.electricity
    depreciation = owned.price * count / (owned.depreciation_years * 12)
    running = energy + upkeep.monthly
    amortised = running + depreciation
    input_cost, output_cost = per_million(amortised, throughput, workload)
    notes = [owned.watts_source, throughput.source]
    if count > 1:
        notes.append(f"the month's tokens need {count} machines at {owned.watts:.0f} W each")
    return OptionCost(
        name,
        "buy",
        model,
        upfront=owned.price * count,
        running=running,
        amortised=amortised,
        per_million_input=input_cost,
        per_million_output=output_cost,
        lines={
            "machines": count,
            "watts": owned.watts * count,
            "hours": hours,
            "utilisation": utilisation,
            "pue": owned.pue,
            "energy_kwh": kwh,
            "energy": energy,
            "depreciation": depreciation,
            "upkeep_hours": upkeep.hours_per_month,
            "upkeep": upkeep.monthly,
        },
        notes=tuple(notes),
        throughput=kind_of(throughput),
    )


def rented_month(
    name: str,
    model: str,
    per_hour: float,
    upkeep: Upkeep,
    throughput: Throughput,
    workload: Workload,
    hours: float = HOURS_PER_MONTH,
) -> OptionCost:
    """A rented GPU is on (and billed) every hour of the month: it serves an API."""
    busy = throughput.busy_seconds(workload)
    count = machines_needed(busy, hours)
    rent = per_hour * count * hours
    running = rent + upkeep.monthly
    input_cost, output_cost = per_million(running, throughput, workload)
    return OptionCost(
        name,
        "rent",
        model,
        upfront=0.0,
        running=running,
        amortised=running,
        per_million_input=input_cost,
        per_million_output=output_cost,
        lines={
            "machines": count,
            "utilisation": busy / (count * hours * 3600),
            "rent": rent,
            "upkeep": upkeep.monthly,
        },
        notes=(throughput.source,),
        throughput=kind_of(throughput),
    )


def api_month(
    name: str,
    model: str,
    hit: float,
    miss: float,
    output: float,
    workload: Workload,
) -> OptionCost:
    """Prices per million tokens; cache hits are the share of input the API has seen."""
    input_price = workload.cache_hit * hit + (1 - workload.cache_hit) * miss
    tokens = (workload.input_tokens * input_price + workload.output_tokens * output) / 1e6
    return OptionCost(
        name,
        "api",
        model,
        upfront=0.0,
        running=tokens,
        amortised=tokens,
        per_million_input=input_price,
        per_million_output=output,
        lines={"tokens": tokens},
    )
