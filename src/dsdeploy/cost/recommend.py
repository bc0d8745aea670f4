"""The three questions that decide local against cloud, in their order of weight: may the
data leave your machines, does anyone have the hours to keep a model running, and then —
only among what is left — which costs less over the horizon."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsdeploy.cost.breakeven import months_to_break_even
from dsdeploy.cost.tco import OptionCost


@dataclass(frozen=True)
class Recommendation:
    choice: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Answers:
    sensitive_data: bool
    upkeep_capacity: bool
    upkeep_hours: float
    months: int


def recommend(
    options: list[OptionCost], answers: Answers, money: Callable[[float], str]
) -> Recommendation:
    reasons: list[str] = []
    candidates = options
    if answers.sensitive_data:
        candidates = [o for o in options if o.kind == "buy"]
        reasons.append(
            "sensitive data: requests must stay on machines you control, so APIs and rented "
            "GPUs are ruled out whatever they cost"
        )
    elif not answers.upkeep_capacity:
        candidates = [o for o in options if o.kind == "api"]
        reasons.append(
            f"no one has the ~{answers.upkeep_hours:g} hours a month a self-hosted model takes "
            "(updates, restarts, watching it): an API needs none"
        )
    if not candidates:
        return Recommendation("none", (*reasons, "no option of that kind was costed"))
    ranked = sorted(candidates, key=lambda o: o.cumulative(answers.months))
    best = ranked[0]
    reasons.append(
        f"over {answers.months} months {best.name} costs {money(best.cumulative(answers.months))}"
        + (
            f", against {money(ranked[1].cumulative(answers.months))} for {ranked[1].name}"
            if len(ranked) > 1
            else ""
        )
    )
    reasons.extend(buying_reasons(best, options, money))
    return Recommendation(best.name, tuple(reasons))


def buying_reasons(
    best: OptionCost, options: list[OptionCost], money: Callable[[float], str]
) -> list[str]:
    """Why the purchase pays off or not against the cheapest API, and how sure the figure is."""
    apis = sorted((o for o in options if o.kind == "api"), key=lambda o: o.running)
    bought = [o for o in options if o.kind == "buy"]
    if not apis or not bought:
        return []
    buy, api = bought[0], apis[0]
    months = months_to_break_even(buy, api)
    reasons = [
        f"{buy.name} costs {money(buy.running)} a month to run against {money(api.running)} "
        f"for {api.name}: "
        + (
            "its price is never earned back"
            if months is None
            else f"its {money(buy.upfront)} is earned back in {months:.1f} months"
        )
    ]
    if best.kind == "buy" and best.throughput == "estimate":
        reasons.append("its throughput is an estimate: run dsdeploy bench before buying")
    return reasons
