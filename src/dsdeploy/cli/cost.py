"""`dsdeploy cost`: what running a model here costs against renting a GPU or calling an API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsdeploy.bench.provenance import utc_timestamp
from dsdeploy.cli.common import console, fail, load_settings
from dsdeploy.cost import command as cost_command
from dsdeploy.cost import report as cost_report
from dsdeploy.cost.plot import plot
from dsdeploy.cost.request import CostRequest
from dsdeploy.errors import DsdeployError
from dsdeploy.progress import report_console

ASKED = CostRequest(model="")
"""The defaults, declared once in ``CostRequest``."""


def cost(
    model: Annotated[str, typer.Argument(help="Catalog name, GGUF file or HF folder.")],
    monthly_tokens: Annotated[
        str | None, typer.Option(help="Tokens a month, input and output together: 50M, 1.5B.")
    ] = None,
    utilisation: Annotated[
        float | None, typer.Option(help="Or: share of the month the machine is busy (0-1].")
    ] = None,
    output_share: Annotated[
        float, typer.Option(help="Share of the tokens that are output.")
    ] = ASKED.output_share,
    cache_hit: Annotated[
        float, typer.Option(help="Share of input tokens an API bills at its cache-hit price.")
    ] = ASKED.cache_hit,
    electricity: Annotated[
        float | None, typer.Option(help="Price of a kWh, in --currency.")
    ] = None,
    hardware_price: Annotated[
        float | None, typer.Option(help="What the machine (all its GPUs) costs, in --currency.")
    ] = None,
    depreciation_years: Annotated[
        float, typer.Option(help="Years the hardware is written off over.")
    ] = ASKED.depreciation_years,
    power_w: Annotated[
        float | None,
        typer.Option(help="Draw under load, W (default: bench, NVML or datasheet)."),
    ] = None,
    pue: Annotated[
        float, typer.Option(help="Cooling and power overhead: facility ÷ IT energy.")
    ] = ASKED.pue,
    hours_per_month: Annotated[
        float, typer.Option(help="Hours the machine is on.")
    ] = ASKED.hours_per_month,
    upkeep_hours: Annotated[
        float, typer.Option(help="People's hours a month to keep it running.")
    ] = ASKED.upkeep_hours,
    upkeep_rate: Annotated[
        float, typer.Option(help="Cost of one upkeep hour, in --currency.")
    ] = ASKED.upkeep_rate,
    gpu: Annotated[str | None, typer.Option(help="Price buying this GPU, e.g. 'RTX 4090'.")] = None,
    gpus: Annotated[int | None, typer.Option(help="How many of them.")] = None,
    ram: Annotated[str | None, typer.Option(help="RAM of the machine to buy, e.g. 64G.")] = None,
    bench: Annotated[
        Path | None, typer.Option(help="bench.json of this model here: measured throughput.")
    ] = None,
    rent: Annotated[
        list[str] | None, typer.Option(help="Rented GPU from the price file; repeat (default all).")
    ] = None,
    api: Annotated[
        list[str] | None, typer.Option(help="API from the price file; repeat (default all).")
    ] = None,
    prices: Annotated[
        Path | None, typer.Option(help="JSON file of prices over the packaged ones.")
    ] = None,
    currency: Annotated[str, typer.Option(help="CNY or USD.")] = ASKED.currency,
    rate: Annotated[float | None, typer.Option(help="CNY per USD (default: price file's).")] = None,
    months: Annotated[
        int, typer.Option(help="Horizon of the plot and the comparison.")
    ] = ASKED.months,
    sensitive_data: Annotated[
        bool, typer.Option(help="Requests carry data that must stay on your machines.")
    ] = ASKED.sensitive_data,
    upkeep_capacity: Annotated[
        bool, typer.Option(help="Someone has the upkeep hours a month to spare.")
    ] = ASKED.upkeep_capacity,
    out: Annotated[Path | None, typer.Option(help="Folder for cost.json and cost.png.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Cost per million tokens and break-even: buying hardware, renting GPUs, calling APIs."""
    settings = load_settings()
    request = CostRequest(
        model=model,
        electricity=electricity,
        monthly_tokens=monthly_tokens,
        utilisation=utilisation,
        output_share=output_share,
        cache_hit=cache_hit,
        gpu=gpu,
        gpus=gpus,
        ram=ram,
        bench=bench,
        hardware_price=hardware_price,
        depreciation_years=depreciation_years,
        power_w=power_w,
        pue=pue,
        hours_per_month=hours_per_month,
        upkeep_hours=upkeep_hours,
        upkeep_rate=upkeep_rate,
        rent=tuple(rent or ()),
        apis=tuple(api or ()),
        prices=prices,
        currency=currency,
        rate=rate,
        months=months,
        sensitive_data=sensitive_data,
        upkeep_capacity=upkeep_capacity,
    )
    try:
        report = cost_command.cost(request, settings.dirs.data)
    except DsdeployError as exc:
        raise fail(exc) from None
    folder = out or settings.dirs.data / "cost" / utc_timestamp()
    cost_report.write_json(report, folder / "cost.json")
    plot(report, months, folder / "cost.png")
    if json_output:
        print(cost_report.report_json(report))
    else:
        cost_report.print_report(report, report_console())
    console.print(f"wrote {folder / 'cost.json'} and {folder / 'cost.png'}")
