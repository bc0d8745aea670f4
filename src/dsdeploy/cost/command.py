"""``dsdeploy cost``: the plan (this machine or a what-if) and the user's numbers in, each
way to run the model out — buy, rent, call an API — priced for the same month of tokens."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from dsdeploy.catalog import CatalogEntry
from dsdeploy.catalog.gpus import find_gpu
from dsdeploy.cost.breakeven import (
    BreakEven,
    break_even_tokens,
    capacity_tokens,
    months_to_break_even,
)
from dsdeploy.cost.power import power_draw
from dsdeploy.cost.prices import (
    CURRENCIES,
    HardwarePrice,
    PriceBook,
    check_currency,
    load_prices,
)
from dsdeploy.cost.recommend import Answers, Recommendation, recommend
from dsdeploy.cost.request import CostRequest, check, parse_tokens
from dsdeploy.cost.tco import (
    OptionCost,
    Owned,
    Upkeep,
    api_month,
    owned_month,
    rented_month,
)
from dsdeploy.cost.throughput import Throughput, Workload, estimated, measured
from dsdeploy.errors import ConfigError
from dsdeploy.hardware import probe
from dsdeploy.planner.machine import machine_for
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Asked, make_plan
from dsdeploy.planner.quants import Quant
from dsdeploy.planner.subject import plan_subject


@dataclass(frozen=True)
class CostReport:
    model: str
    currency: str
    cny_per_usd: float
    rate_source: str
    workload: Workload
    capacity_tokens: float
    """What one bought machine serves in a month busy every hour, in this mix."""
    options: list[OptionCost]
    break_even: list[BreakEven]
    recommendation: Recommendation
    prices: list[dict[str, str]]
    skipped: list[str] = field(default_factory=list)


def cost(request: CostRequest, data_dir: Path) -> CostReport:
    check(request)
    currency = check_currency(request.currency)
    book = load_prices(request.prices, request.rate)
    entry, quants = plan_subject(request.model)
    machine = machine_for(probe(data_dir), gpu=request.gpu, gpus=request.gpus, ram=request.ram)
    where = f"{machine.gpu_count} × {machine.gpu_name}" if request.gpu else "this machine"
    throughput, bench_w = local_throughput(request, entry, quants, machine, where)
    workload = workload_for(request, throughput)
    listed = book.hardware_for(machine.gpu_name) if request.gpu else None
    owned = owned_for(request, book, currency, machine, bench_w, listed)
    upkeep = Upkeep(request.upkeep_hours, request.upkeep_rate)
    buy = owned_month(
        f"buy {where}", entry.name, owned, upkeep, throughput, workload, request.hours_per_month
    )
    rented, skipped = rental_options(
        request, book, currency, entry, quants, machine, upkeep, workload
    )
    options = [buy, *rented, *api_options(request, book, currency, workload)]
    symbol = CURRENCIES[currency]
    return CostReport(
        model=entry.name,
        currency=currency,
        cny_per_usd=book.cny_per_usd,
        rate_source=f"{book.rate_provenance.source} ({book.rate_provenance.as_of})",
        workload=workload,
        capacity_tokens=capacity_tokens(throughput, workload, request.hours_per_month),
        options=options,
        break_even=[
            BreakEven(
                other.name,
                other.kind,
                months_to_break_even(buy, other),
                break_even_tokens(owned, upkeep, throughput, workload, other)
                if other.kind == "api"
                else None,
            )
            for other in options[1:]
        ],
        recommendation=recommend(
            options,
            Answers(
                request.sensitive_data,
                request.upkeep_capacity,
                request.upkeep_hours,
                request.months,
            ),
            lambda value: f"{symbol}{value:,.2f}",
        ),
        prices=used_prices(book, options, listed if request.hardware_price is None else None),
        skipped=skipped,
    )


def local_throughput(
    request: CostRequest,
    entry: CatalogEntry,
    quants: tuple[Quant, ...],
    machine: Machine,
    where: str,
) -> tuple[Throughput, float | None]:
    """Measured when a bench file of this model on this machine is given, else the plan's."""
    if request.bench is not None:
        if request.gpu is not None:
            raise ConfigError(
                "a bench file measures this machine, not a --gpu what-if: drop one of them"
            )
        return measured(request.bench, entry.name)
    plan = make_plan(entry, machine, Asked(quants=quants))
    if not plan.fits:
        raise ConfigError(
            f"{entry.name} does not fit on {where}; see `dsdeploy plan {request.model}` "
            "for what would run it"
        )
    return estimated(plan, where), None


def workload_for(request: CostRequest, throughput: Throughput) -> Workload:
    share = request.output_share
    if request.monthly_tokens is not None and request.utilisation is not None:
        raise ConfigError("give --monthly-tokens or --utilisation, not both")
    if request.monthly_tokens is not None:
        total = parse_tokens(request.monthly_tokens)
    elif request.utilisation is not None:
        mix = Workload(1 - share, share)
        total = request.utilisation * capacity_tokens(throughput, mix, request.hours_per_month)
    else:
        raise ConfigError(
            "say how much traffic to price: --monthly-tokens 50M, or --utilisation 0.5 "
            "(the share of the month this machine is busy)"
        )
    if total <= 0:
        raise ConfigError("--monthly-tokens must be above 0")
    return Workload(total * (1 - share), total * share, request.cache_hit)


def owned_for(
    request: CostRequest,
    book: PriceBook,
    currency: str,
    machine: Machine,
    bench_w: float | None,
    listed: HardwarePrice | None,
) -> Owned:
    if request.electricity is None:
        raise ConfigError(f"give the price of a kWh with --electricity (in {currency})")
    spec = find_gpu(request.gpu) if request.gpu else None
    tdp = (spec.name, spec.tdp_w, machine.gpu_count) if spec else None
    watts, source = power_draw(request.power_w, bench_w, tdp)
    return Owned(
        price=hardware_cost(request, listed, book, currency, machine),
        depreciation_years=request.depreciation_years,
        watts=watts,
        watts_source=source,
        electricity=request.electricity,
        pue=request.pue,
    )


def hardware_cost(
    request: CostRequest,
    listed: HardwarePrice | None,
    book: PriceBook,
    currency: str,
    machine: Machine,
) -> float:
    """The user's price, else a what-if GPU's listed price × its count."""
    if request.hardware_price is not None:
        return request.hardware_price
    if listed is None:
        what = f"{machine.gpu_count} × {machine.gpu_name}" if request.gpu else "this machine"
        raise ConfigError(
            f"no price for {what}: give what it costs with --hardware-price AMOUNT (in {currency})"
        )
    return book.convert(listed.price, listed.currency, currency) * machine.gpu_count


def rental_options(
    request: CostRequest,
    book: PriceBook,
    currency: str,
    entry: CatalogEntry,
    quants: tuple[Quant, ...],
    machine: Machine,
    upkeep: Upkeep,
    workload: Workload,
) -> tuple[list[OptionCost], list[str]]:
    """Each rented GPU the model fits on, planned like a what-if; named ones must fit."""
    chosen = [book.rental(name) for name in request.rent] or list(book.rentals)
    options: list[OptionCost] = []
    skipped: list[str] = []
    for rental in chosen:
        spec = find_gpu(rental.gpu)
        there = replace(
            machine,
            gpu_name=spec.name,
            gpu_memory=spec.memory,
            gpu_count=rental.gpus,
            gpu_bandwidth=spec.bandwidth,
        )
        plan = make_plan(entry, there, Asked(quants=quants))
        where = f"{rental.gpus} × {spec.name}"
        if not plan.fits:
            if request.rent:
                raise ConfigError(f"{entry.name} does not fit on {rental.name} ({where})")
            skipped.append(f"{rental.name}: {entry.name} does not fit on {where}")
            continue
        per_hour = book.convert(rental.per_hour, rental.currency, currency)
        options.append(
            rented_month(
                f"rent {rental.name}",
                entry.name,
                per_hour,
                upkeep,
                estimated(plan, where),
                workload,
                request.hours_per_month,
            )
        )
    return options, skipped


def api_options(
    request: CostRequest, book: PriceBook, currency: str, workload: Workload
) -> list[OptionCost]:
    chosen = [book.api(name) for name in request.apis] or list(book.apis)
    return [
        api_month(
            f"API {api.name}",
            api.model,
            book.convert(api.input_cache_hit, api.currency, currency),
            book.convert(api.input_cache_miss, api.currency, currency),
            book.convert(api.output, api.currency, currency),
            workload,
        )
        for api in chosen
    ]


def used_prices(
    book: PriceBook, options: list[OptionCost], hardware: HardwarePrice | None
) -> list[dict[str, str]]:
    """The source and date of every price an option was built from."""
    names = {o.name for o in options}
    rows = [
        {"price": f"API {a.name}", "source": a.provenance.source, "as_of": a.provenance.as_of}
        for a in book.apis
        if f"API {a.name}" in names
    ]
    rows += [
        {"price": f"rent {r.name}", "source": r.provenance.source, "as_of": r.provenance.as_of}
        for r in book.rentals
        if f"rent {r.name}" in names
    ]
    if hardware is not None:
        rows.append(
            {
                "price": f"hardware {hardware.gpu}",
                "source": hardware.provenance.source,
                "as_of": hardware.provenance.as_of,
            }
        )
    rows.append(
        {
            "price": "CNY per USD",
            "source": book.rate_provenance.source,
            "as_of": book.rate_provenance.as_of,
        }
    )
    return rows
