"""What the user asks ``dsdeploy cost`` for: every number declared once, with its bounds."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.cost.tco import HOURS_PER_MONTH
from dsdeploy.errors import ConfigError

TOKENS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CostRequest:
    """What the user fixed; amounts are in ``currency``."""

    model: str
    electricity: float | None = None
    monthly_tokens: str | None = None
    utilisation: float | None = None
    output_share: float = 0.25
    cache_hit: float = 0.0
    gpu: str | None = None
    gpus: int | None = None
    ram: str | None = None
    bench: Path | None = None
    hardware_price: float | None = None
    depreciation_years: float = 3.0
    power_w: float | None = None
    pue: float = 1.0
    hours_per_month: float = HOURS_PER_MONTH
    upkeep_hours: float = 6.0
    upkeep_rate: float = 0.0
    rent: tuple[str, ...] = ()
    apis: tuple[str, ...] = ()
    prices: Path | None = None
    currency: str = "CNY"
    rate: float | None = None
    months: int = 36
    sensitive_data: bool = False
    upkeep_capacity: bool = True


def parse_tokens(text: str) -> float:
    """'50M', '1.5B', '200k' or a plain number → tokens."""
    match = TOKENS.match(text)
    if match is None:
        raise ConfigError(f"cannot read token count {text!r}; write it like 50M, 1.5B or 200k")
    return float(match[1]) * 1000.0 ** " kmbt".index(match[2].lower() or " ")


BOUNDS: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("electricity", lambda v: v >= 0, "0 or more"),
    ("hardware_price", lambda v: v >= 0, "0 or more"),
    ("depreciation_years", lambda v: v > 0, "above 0"),
    ("pue", lambda v: v >= 1, "1 or more (facility energy ÷ IT energy)"),
    ("hours_per_month", lambda v: 0 < v <= 744, "above 0 and at most 744 (hours in a month)"),
    ("upkeep_hours", lambda v: v >= 0, "0 or more"),
    ("upkeep_rate", lambda v: v >= 0, "0 or more"),
    ("output_share", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("cache_hit", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("utilisation", lambda v: 0 < v <= 1, "above 0 and at most 1"),
    ("months", lambda v: 1 <= v <= 600, "between 1 and 600"),
)


def check(request: CostRequest) -> None:
    """Each number within what makes sense, or one line naming the flag and its range."""
    for name, fine, phrase in BOUNDS:
        value = getattr(request, name)
        if value is not None and not fine(value):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be {phrase}, got {value:g}")
