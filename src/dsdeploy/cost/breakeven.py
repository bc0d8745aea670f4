"""When buying pays off: the months until bought hardware has cost less than another way,
and the monthly volume at which its month (depreciation included) equals an API's."""

from __future__ import annotations

from dataclasses import dataclass

from dsdeploy.cost.tco import HOURS_PER_MONTH, OptionCost, Owned, Upkeep, energy_kwh
from dsdeploy.cost.throughput import Throughput, Workload


@dataclass(frozen=True)
class BreakEven:
    against: str
    kind: str
    months: float | None
    """Until the purchase has cost less in all; None: never."""
    tokens_per_month: float | None
    """Volume at which the amortised month equals an API's bill (APIs only); None: never."""


def months_to_break_even(first: OptionCost, other: OptionCost) -> float | None:
    """Months after which ``first`` (dearer up front, cheaper each month) has cost less in
    total than ``other``; None when it never does."""
    saved_per_month = other.running - first.running
    if saved_per_month <= 0:
        return None
    return max(0.0, (first.upfront - other.upfront) / saved_per_month)


def break_even_tokens(
    owned: Owned, upkeep: Upkeep, throughput: Throughput, workload: Workload, api: OptionCost
) -> float | None:
    """Tokens a month (in the workload's input/output mix) at which one bought machine's
    month — depreciation and upkeep, plus the energy those tokens take — equals the API's
    bill for them; None when the API's tokens cost no more than their energy alone."""
    fixed = owned.price / (owned.depreciation_years * 12) + upkeep.monthly
    busy_hours = throughput.busy_seconds(workload) / 3600
    energy = energy_kwh(owned.watts, busy_hours, 1.0, owned.pue) * owned.electricity
    if api.running <= energy:
        return None
    return fixed / (api.running - energy) * workload.tokens


def capacity_tokens(
    throughput: Throughput, workload: Workload, hours: float = HOURS_PER_MONTH
) -> float:
    """Tokens one machine serves in a month busy every hour, in the workload's mix."""
    return hours * 3600 / throughput.busy_seconds(workload) * workload.tokens


def cumulative(options: list[OptionCost], months: int) -> dict[str, list[float]]:
    """Total spent by the end of each month 0..months, per option (the plot's lines)."""
    return {o.name: [o.cumulative(m) for m in range(months + 1)] for o in options}
