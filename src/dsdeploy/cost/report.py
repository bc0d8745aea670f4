"""The cost report three ways: tables on the terminal, JSON for scripts, and (plot.py) a PNG."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dsdeploy.cost.breakeven import BreakEven
from dsdeploy.cost.command import CostReport
from dsdeploy.cost.prices import CURRENCIES


def report_json(report: CostReport) -> str:
    return json.dumps(asdict(report), indent=1, ensure_ascii=False)


def write_json(report: CostReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_json(report) + "\n", encoding="utf-8")


def tokens(n: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}"


def print_report(report: CostReport, console: Console) -> None:
    symbol = CURRENCIES[report.currency]

    def money(value: float) -> str:
        return f"{symbol}{value:,.2f}"

    work = report.workload
    console.print(
        f"[bold]{report.model}[/]: {tokens(work.input_tokens)} input + "
        f"{tokens(work.output_tokens)} output tokens a month "
        f"({work.cache_hit:.0%} of input cache hits at an API); {report.currency}, "
        f"1 USD = {report.cny_per_usd:g} CNY ({report.rate_source})",
        highlight=False,
    )
    table = Table("option", "runs", "up front", "a month", "a month, amortised",
                  "per M input", "per M output", "tokens/s", title="cost")  # fmt: skip
    for option in report.options:
        table.add_row(
            option.name,
            option.model,
            money(option.upfront),
            money(option.running),
            money(option.amortised),
            money(option.per_million_input),
            money(option.per_million_output),
            option.throughput or "—",
        )
    console.print(table)
    buy = report.options[0]
    lines = buy.lines
    console.print(
        f"{buy.name}: {lines['watts']:g} W × {lines['hours']:g} h × {lines['utilisation']:.0%} "
        f"busy × PUE {lines['pue']:g} = {lines['energy_kwh']:.1f} kWh → {money(lines['energy'])} "
        "a month",
        highlight=False,
    )
    unpriced = (
        " (not priced: give --upkeep-rate)" if lines["upkeep_hours"] and not lines["upkeep"] else ""
    )
    console.print(
        f"  depreciation {money(lines['depreciation'])} and upkeep {money(lines['upkeep'])} "
        f"({lines['upkeep_hours']:g} h{unpriced}) a month; one machine serves up to "
        f"{tokens(report.capacity_tokens)} tokens a month",
        highlight=False,
    )
    for note in buy.notes:
        console.print(f"  {note}", highlight=False)
    print_break_even(report, console)
    for line in report.skipped:
        console.print(f"[dim]left out: {line}[/]", highlight=False)
    rec = report.recommendation
    console.print(f"[bold]recommendation:[/] {rec.choice}", highlight=False)
    for reason in rec.reasons:
        console.print(f"  - {reason}", highlight=False)


def print_break_even(report: CostReport, console: Console) -> None:
    table = Table("buying, against", "months to break even", "tokens a month to break even",
                  title="break-even")  # fmt: skip
    for row in report.break_even:
        months = "never" if row.months is None else f"{row.months:.1f}"
        table.add_row(row.against, months, volume_text(row, report.capacity_tokens))
    console.print(table)


def volume_text(row: BreakEven, capacity: float) -> str:
    if row.kind != "api":
        return "—"
    if row.tokens_per_month is None:
        return "never"
    beyond = " (more than one machine serves)" if row.tokens_per_month > capacity else ""
    return tokens(row.tokens_per_month) + beyond
