"""The prices ``dsdeploy cost`` compares against: the packaged ``catalog/prices.json`` with a
source and a date on every figure, extended or overridden by the user's own file, and turned
into one currency at a stated rate."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from dsdeploy.errors import ConfigError

CURRENCIES = {"CNY": "¥", "USD": "$"}
Named = TypeVar("Named")


@dataclass(frozen=True)
class Provenance:
    source: str
    as_of: str
    note: str = ""


@dataclass(frozen=True)
class ApiPrice:
    """Per million tokens, in ``currency``."""

    name: str
    provider: str
    model: str
    currency: str
    input_cache_hit: float
    input_cache_miss: float
    output: float
    provenance: Provenance


@dataclass(frozen=True)
class RentalPrice:
    name: str
    provider: str
    gpu: str
    gpus: int
    currency: str
    per_hour: float
    provenance: Provenance


@dataclass(frozen=True)
class HardwarePrice:
    gpu: str
    currency: str
    price: float
    provenance: Provenance


@dataclass(frozen=True)
class PriceBook:
    cny_per_usd: float
    rate_provenance: Provenance
    apis: tuple[ApiPrice, ...]
    rentals: tuple[RentalPrice, ...]
    hardware: tuple[HardwarePrice, ...]

    def convert(self, amount: float, currency: str, to: str) -> float:
        if currency == to:
            return amount
        return amount * self.cny_per_usd if to == "CNY" else amount / self.cny_per_usd

    def api(self, name: str) -> ApiPrice:
        return _named({a.name: a for a in self.apis}, name, "API")

    def rental(self, name: str) -> RentalPrice:
        return _named({r.name: r for r in self.rentals}, name, "rented GPU")

    def hardware_for(self, gpu: str) -> HardwarePrice | None:
        return next((h for h in self.hardware if h.gpu == gpu), None)


def _named(items: dict[str, Named], name: str, kind: str) -> Named:
    for key, item in items.items():
        if key.lower() == name.lower():
            return item
    raise ConfigError(
        f"no {kind} price named {name!r}; known: {', '.join(items)} (add one with --prices FILE)"
    )


def check_currency(currency: str) -> str:
    if currency.upper() not in CURRENCIES:
        raise ConfigError(f"unknown currency {currency!r}; use CNY or USD")
    return currency.upper()


def amount(raw: dict[str, Any], key: str, where: str) -> float:
    """A price from a file: a number, not negative."""
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}: {key} is negative ({value}); prices cannot be below 0")
    return float(value)


def provenance(raw: dict[str, Any], where: str) -> Provenance:
    """Every figure says where it came from and when: a price without them is refused."""
    source, as_of = raw.get("source"), raw.get("as_of")
    if not source or not as_of:
        raise ConfigError(
            f"{where}: every price needs a 'source' (URL or document) and 'as_of' date"
        )
    return Provenance(str(source), str(as_of), str(raw.get("note", "")))


def api_price(raw: dict[str, Any]) -> ApiPrice:
    where = f"API price {raw.get('name', '?')!r}"
    return ApiPrice(
        name=str(raw["name"]),
        provider=str(raw.get("provider", "")),
        model=str(raw.get("model", "")),
        currency=check_currency(str(raw.get("currency", "USD"))),
        input_cache_hit=amount(raw, "input_cache_hit", where),
        input_cache_miss=amount(raw, "input_cache_miss", where),
        output=amount(raw, "output", where),
        provenance=provenance(raw, where),
    )


def rental_price(raw: dict[str, Any]) -> RentalPrice:
    """Hourly; a price stated per second (as serverless pages do) is kept as stated."""
    where = f"rented GPU {raw.get('name', '?')!r}"
    per_hour = (
        amount(raw, "per_second", where) * 3600
        if "per_second" in raw
        else amount(raw, "per_hour", where)
    )
    gpus = raw.get("gpus", 1)
    if not isinstance(gpus, int) or gpus < 1:
        raise ConfigError(f"{where}: gpus must be a whole number of at least 1, got {gpus!r}")
    return RentalPrice(
        name=str(raw["name"]),
        provider=str(raw.get("provider", "")),
        gpu=str(raw["gpu"]),
        gpus=gpus,
        currency=check_currency(str(raw.get("currency", "USD"))),
        per_hour=per_hour,
        provenance=provenance(raw, where),
    )


def hardware_price(raw: dict[str, Any]) -> HardwarePrice:
    where = f"hardware price for {raw.get('gpu', '?')!r}"
    return HardwarePrice(
        gpu=str(raw["gpu"]),
        currency=check_currency(str(raw.get("currency", "USD"))),
        price=amount(raw, "price", where),
        provenance=provenance(raw, where),
    )


def merged(base: list[dict[str, Any]], extra: list[dict[str, Any]], key: str) -> list[Any]:
    """The user's entries replace the packaged ones of the same name and add the rest."""
    by_name = {str(item[key]).lower(): item for item in base}
    by_name.update({str(item.get(key, "")).lower(): item for item in extra})
    return list(by_name.values())


def read_price_file(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read price file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"price file {path} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"price file {path} must hold a JSON object like catalog/prices.json")
    return raw


def load_prices(extra_file: Path | None = None, rate: float | None = None) -> PriceBook:
    """The packaged prices, the user's file over them, and ``rate`` (CNY per USD) over both."""
    raw = json.loads(resources.files("dsdeploy.catalog").joinpath("prices.json").read_text())
    user = read_price_file(extra_file) if extra_file else {}
    try:
        rate_raw = user.get("exchange_rate") or raw["exchange_rate"]
        book = PriceBook(
            cny_per_usd=amount(rate_raw, "cny_per_usd", "exchange rate"),
            rate_provenance=provenance(rate_raw, "exchange rate"),
            apis=tuple(map(api_price, merged(raw["apis"], user.get("apis", []), "name"))),
            rentals=tuple(
                map(rental_price, merged(raw["rentals"], user.get("rentals", []), "name"))
            ),
            hardware=tuple(
                map(hardware_price, merged(raw["hardware"], user.get("hardware", []), "gpu"))
            ),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"price file {extra_file} does not have the shape of catalog/prices.json ({exc!r})"
        ) from None
    if rate is not None:
        if rate <= 0:
            raise ConfigError(f"--rate must be above 0 (CNY per USD), got {rate}")
        book = replace(book, cny_per_usd=rate, rate_provenance=Provenance("--rate", "given"))
    elif book.cny_per_usd <= 0:
        raise ConfigError("the exchange rate must be above 0 (CNY per USD)")
    return book
