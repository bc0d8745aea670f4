"""What ``dsdeploy cost`` charges for a month of tokens, when buying breaks even, what it
recommends, and how it refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdeploy.bench.power import PowerSampler
from dsdeploy.cost.breakeven import break_even_tokens, capacity_tokens, months_to_break_even
from dsdeploy.cost.power import nvml_power_limit_w
from dsdeploy.cost.prices import load_prices
from dsdeploy.cost.recommend import Answers, recommend
from dsdeploy.cost.request import CostRequest, check, parse_tokens
from dsdeploy.cost.tco import (
    OptionCost,
    Owned,
    Upkeep,
    api_month,
    energy_kwh,
    owned_month,
    rented_month,
)
from dsdeploy.cost.throughput import Throughput, Workload, measured
from dsdeploy.errors import ConfigError
from tests.conftest import run_cli
from tests.fake_nvml import FakeNvml

# 1000 input tokens/s and 100 output tokens/s: 90M input + 9M output take 25 h + 25 h.
RATES = Throughput(1000.0, 100.0, "measured (test)", measured=True)
MONTH = Workload(90e6, 9e6, cache_hit=0.5)
RTX_BOX = Owned(
    price=18_000.0,
    depreciation_years=3,
    watts=400,
    watts_source="given",
    electricity=0.6,
    pue=1.25,
)
# ¥2 a million input on a miss, ¥0.2 on a hit, ¥8 a million output.
API_PRICES = (0.2, 2.0, 8.0)


def money(value: float) -> str:
    return f"¥{value:,.2f}"


def test_the_worked_example_300_w_for_a_720_hour_month_is_216_kwh_or_129_6_yuan() -> None:
    kwh = energy_kwh(watts=300, hours=720, utilisation=1.0)
    assert kwh == 216
    assert kwh * 0.6 == pytest.approx(129.6, abs=1e-12)


def test_a_month_of_owned_hardware_is_depreciation_energy_and_upkeep() -> None:
    month = owned_month("buy", "m", RTX_BOX, Upkeep(6, 100), RATES, MONTH)
    # 50 busy hours × 400 W × PUE 1.25 = 25 kWh = ¥15; 18,000 / 36 = ¥500; 6 h × ¥100 = ¥600
    assert month.lines["energy_kwh"] == pytest.approx(25)
    assert month.lines["energy"] == pytest.approx(15)
    assert month.lines["depreciation"] == pytest.approx(500)
    assert (month.upfront, month.running, month.amortised) == pytest.approx((18_000, 615, 1115))
    # ¥1115 over 180,000 busy seconds; an input token takes 1/1000 s, an output one 1/100 s
    assert month.per_million_input == pytest.approx(1115 / 180_000 / 1000 * 1e6)
    assert month.per_million_output == pytest.approx(1115 / 180_000 / 100 * 1e6)


def test_more_tokens_than_one_machine_serves_buys_a_second_one() -> None:
    heavy = Workload(1800e6, 180e6)  # 1000 busy hours: more than a 720-hour month
    month = owned_month("buy", "m", RTX_BOX, Upkeep(0, 0), RATES, heavy)
    assert month.lines["machines"] == 2
    assert month.upfront == 36_000
    assert month.lines["utilisation"] == pytest.approx(1000 / 1440)


def test_an_api_bills_cache_hits_and_misses_at_their_own_prices() -> None:
    bill = api_month("api", "m", *API_PRICES, MONTH)
    # 45M hits × ¥0.2 + 45M misses × ¥2 + 9M output × ¥8 = 9 + 90 + 72
    assert bill.running == pytest.approx(171)
    assert bill.per_million_input == pytest.approx(1.1)


def test_break_even_heavy_use_without_upkeep_pays_back_within_a_year() -> None:
    heavy = Workload(900e6, 90e6, cache_hit=0.5)  # 500 busy hours
    buy = owned_month("buy", "m", RTX_BOX, Upkeep(0, 0), RATES, heavy)
    api = api_month("api", "m", *API_PRICES, heavy)
    # by hand: energy 400 W × 500 h × 1.25 = 250 kWh × 0.6 = ¥150 a month;
    # API 450M × 0.2 + 450M × 2 + 90M × 8 = ¥1710; ¥18,000 ÷ (1710 − 150) = 11.538 months
    assert months_to_break_even(buy, api) == pytest.approx(18_000 / 1560)


def test_break_even_light_use_with_upkeep_never_pays_back() -> None:
    upkeep = Upkeep(6, 100)
    buy = owned_month("buy", "m", RTX_BOX, upkeep, RATES, MONTH)
    api = api_month("api", "m", *API_PRICES, MONTH)
    assert months_to_break_even(buy, api) is None  # ¥615 a month to run against ¥171
    # by hand: fixed ¥500 + ¥600; each 99M-token month saves 171 − 15 = ¥156 of API bill,
    # so the amortised month breaks even at 1100 / 156 × 99M = 698.08M tokens
    volume = break_even_tokens(RTX_BOX, upkeep, RATES, MONTH, api)
    assert volume == pytest.approx(1100 / 156 * 99e6)
    assert volume < capacity_tokens(RATES, MONTH) == pytest.approx(720 / 50 * 99e6)


def test_break_even_against_a_rented_gpu_that_is_on_all_month() -> None:
    heavy = Workload(900e6, 90e6)
    buy = owned_month("buy", "m", RTX_BOX, Upkeep(6, 100), RATES, heavy)
    rented = rented_month("rent", "m", 10.0, Upkeep(6, 100), RATES, heavy)
    # by hand: rent ¥10 × 720 h + ¥600 = ¥7800; buying runs at ¥150 + ¥600 = ¥750;
    # ¥18,000 ÷ (7800 − 750) = 2.553 months
    assert rented.running == pytest.approx(7800)
    assert months_to_break_even(buy, rented) == pytest.approx(18_000 / 7050)


def test_an_api_cheaper_than_the_energy_alone_never_breaks_even() -> None:
    free = api_month("api", "m", 0.0, 0.0, 0.0, MONTH)
    assert break_even_tokens(RTX_BOX, Upkeep(0, 0), RATES, MONTH, free) is None


def option(name: str, kind: str, upfront: float, running: float) -> OptionCost:
    return OptionCost(name, kind, "m", upfront, running, running, 0.0, 0.0)


OPTIONS = [
    option("buy", "buy", 18_000, 615),
    option("rent", "rent", 0, 7800),
    option("api", "api", 0, 171),
]


def test_sensitive_data_keeps_the_model_on_your_own_machine_whatever_it_costs() -> None:
    advice = recommend(OPTIONS, Answers(True, True, 6, 36), money)
    assert advice.choice == "buy"
    assert "sensitive data" in advice.reasons[0]


def test_no_one_to_keep_it_running_means_an_api() -> None:
    advice = recommend(OPTIONS, Answers(False, False, 6, 36), money)
    assert advice.choice == "api"
    assert "6 hours a month" in advice.reasons[0]


def test_otherwise_the_cheapest_over_the_horizon_wins_with_its_numbers() -> None:
    advice = recommend(OPTIONS, Answers(False, True, 6, 36), money)
    assert advice.choice == "api"
    assert "¥6,156.00" in " ".join(advice.reasons)  # 171 × 36
    assert any("never earned back" in reason for reason in advice.reasons)


def bench_json(path: Path, model: str | None) -> Path:
    row = {
        "target": "dsdeploy",
        "concurrency": 4,
        "repetitions": 3,
        "requests": 12,
        "errors": 0,
        "prompt_tokens": 200,
        "ttft_ms": {"p50": 400.0, "p90": 500.0, "p99": 600.0},
        "tpot_ms": {"p50": 20.0, "p90": 25.0, "p99": 30.0},
        "stream_tokens_per_s": 50.0,
        "aggregate_tokens_per_s": 150.0,
        "aggregate_cv": 0.02,
        "requests_per_s": 1.0,
        "efficiency": None,
    }
    facts = {"name": model, "sha256": "0" * 64, "engine_version": None, "bytes_per_token": 1}
    path.write_text(
        json.dumps(
            {
                "created": "20261202T000000Z",
                "machine": {"hostname": "box", "physical_cores": 2},
                "model": facts if model else None,
                "rows": [row, {**row, "concurrency": 1, "aggregate_tokens_per_s": 60.0}],
                "gpu_power_w": 287.5,
            }
        )
    )
    return path


def test_bench_throughput_comes_from_its_fastest_row(tmp_path: Path) -> None:
    rates, watts = measured(bench_json(tmp_path / "bench.json", "smollm2"), "smollm2")
    # concurrency 4: 4 × 200 prompt tokens per 0.4 s TTFT; 4 streams × 1 token per 20 ms
    assert rates.input_tokens_per_s == pytest.approx(2000)
    assert rates.output_tokens_per_s == pytest.approx(200)
    assert rates.measured and "concurrency 4" in rates.source
    assert watts == 287.5


def test_a_bench_file_that_does_not_name_its_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--model smollm2"):
        measured(bench_json(tmp_path / "bench.json", None), "smollm2")


def test_the_gpu_draw_is_sampled_while_a_bench_runs() -> None:
    with PowerSampler(FakeNvml(), interval_s=0.01) as power:
        pass
    assert power.mean_w == 312.5  # GPU 1 reports no power and adds nothing
    with PowerSampler(FakeNvml(driver=False)) as none:
        pass
    assert none.mean_w is None


def test_this_machines_power_is_its_gpus_power_limit() -> None:
    assert nvml_power_limit_w(FakeNvml()) == 600
    assert nvml_power_limit_w(FakeNvml(driver=False)) is None


def test_every_packaged_price_says_where_and_when_it_came_from() -> None:
    book = load_prices()
    assert {"deepseek-v3.2", "deepseek-v4-flash", "deepseek-v4-pro"} <= {a.name for a in book.apis}
    for item in (*book.apis, *book.rentals, *book.hardware):
        assert item.provenance.source and item.provenance.as_of
    assert book.rate_provenance.source.startswith("https://")
    assert book.convert(1.0, "USD", "CNY") == book.cny_per_usd


def test_a_price_file_overrides_by_name_and_must_cite_its_source(tmp_path: Path) -> None:
    mine = {
        "name": "deepseek-v4-flash",
        "currency": "CNY",
        "input_cache_hit": 0.02,
        "input_cache_miss": 1,
        "output": 2,
        "source": "contract 2026-11",
        "as_of": "2026-11-30",
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"apis": [mine]}))
    book = load_prices(path, rate=7.0)
    assert book.api("deepseek-v4-flash").currency == "CNY"
    assert book.cny_per_usd == 7.0
    path.write_text(json.dumps({"apis": [{**mine, "source": ""}]}))
    with pytest.raises(ConfigError, match="needs a 'source'"):
        load_prices(path)


def test_token_counts_read_like_people_write_them() -> None:
    assert [parse_tokens(t) for t in ("50M", "1.5B", "200k", "1200")] == [50e6, 1.5e9, 2e5, 1200]
    with pytest.raises(ConfigError, match="write it like 50M"):
        parse_tokens("lots")


def test_numbers_out_of_their_range_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="--pue must be 1 or more"):
        check(CostRequest(model="m", pue=0.5))
    with pytest.raises(ConfigError, match="--cache-hit must be between 0 and 1, got 1.5"):
        check(CostRequest(model="m", cache_hit=1.5))


WORKED = ("--power-w", "300", "--electricity", "0.6", "--hardware-price", "0")


def test_the_worked_example_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_cli(
        tmp_path, "cost", "smollm2", "--utilisation", "1", "--currency", "CNY",
        *WORKED, "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "300 W × 720 h × 100% busy × PUE 1 = 216.0 kWh → ¥129.60 a month" in done.stdout
    report = json.loads((out / "cost.json").read_text())
    buy = report["options"][0]
    assert buy["lines"]["energy_kwh"] == pytest.approx(216)
    assert buy["lines"]["energy"] == pytest.approx(129.6)
    assert (out / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = [o["name"] for o in report["options"]]
    assert names[0] == "buy this machine" and "API deepseek-v4-flash" in names
    assert all(p["source"] and p["as_of"] for p in report["prices"])
    assert report["recommendation"]["reasons"]


def test_buying_a_gpu_renting_one_and_an_api_in_one_command(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path, "cost", "deepseek-r1-distill-qwen-7b", "--gpu", "RTX 4090",
        "--rent", "runpod A100 80GB", "--api", "deepseek-v4-flash", "--monthly-tokens", "100M",
        "--electricity", "0.6", "--currency", "USD", "--json", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = [o["name"] for o in report["options"]]
    assert names == ["buy 1 × RTX 4090", "rent runpod A100 80GB", "API deepseek-v4-flash"]
    buy = report["options"][0]
    assert buy["upfront"] == 1599  # the card's listed launch price, in USD
    assert any("datasheet board power of 1 × RTX 4090" in n for n in buy["notes"])
    assert any("estimate" in n for n in buy["notes"])
    assert [row["against"] for row in report["break_even"]] == names[1:]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--electricity=-0.6",), "--electricity must be 0 or more, got -0.6"),
        (("--gpu", "RTX 9999"), "unknown GPU 'RTX 9999'"),
        (("--rent", "nowhere"), "no rented GPU price named 'nowhere'"),
        (("--currency", "EUR"), "unknown currency 'EUR'; use CNY or USD"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    done = run_cli(tmp_path, "cost", "smollm2", "--monthly-tokens", "10M", *WORKED, *args)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and says in done.stderr, done.stderr


def test_a_negative_price_in_a_price_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"rentals": [{
        "name": "cheap", "gpu": "RTX 4090", "per_hour": -1, "source": "x", "as_of": "2026-12-01",
    }]}))  # fmt: skip
    done = run_cli(tmp_path, "cost", "smollm2", "--utilisation", "0.5", *WORKED,
                   "--prices", str(path))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "rented GPU 'cheap': per_hour is negative (-1)" in done.stderr


def test_a_bench_file_of_another_model_is_refused(tmp_path: Path) -> None:
    bench = bench_json(tmp_path / "bench.json", "deepseek-r1-distill-qwen-7b")
    done = run_cli(tmp_path, "cost", "smollm2", "--monthly-tokens", "10M", *WORKED,
                   "--bench", str(bench))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "measured 'deepseek-r1-distill-qwen-7b', not 'smollm2'" in done.stderr
