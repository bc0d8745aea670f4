"""``dsdeploy ps``: what a running server's engines are doing, read from its ``/ps``."""

from __future__ import annotations

from typing import Any

import httpx
from rich.table import Table

from dsdeploy.errors import ServerUnreachable

COLUMNS = (
    "model",
    "state",
    "pinned",
    "plan MiB",
    "RSS MiB",
    "slots",
    "in flight",
    "idle s",
    "restarts",
    "recovery s",
)


def fetch_status(url: str, api_key: str | None = None) -> list[dict[str, Any]]:
    headers = {} if api_key is None else {"authorization": f"Bearer {api_key}"}
    try:
        response = httpx.get(f"{url.rstrip('/')}/ps", headers=headers, timeout=5.0)
        if response.status_code == 401:
            raise ServerUnreachable(
                f"{url} wants an API key: pass --api-key or set DSDEPLOY_API_KEY "
                "(create one with `dsdeploy keys create --admin`)"
            )
        if response.status_code == 403:
            raise ServerUnreachable(
                f"{url}/ps needs an admin API key; create one with `dsdeploy keys create "
                "--admin` (or the server does not accept this address)"
            )
        response.raise_for_status()
        models = response.json()["models"]
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"no dsdeploy server answered at {url} ({type(exc).__name__}); is `dsdeploy "
            "serve` running there? (--url)"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise ServerUnreachable(f"{url}/ps did not answer like a dsdeploy server") from None
    return list(models)


def mib(value: object) -> str:
    return f"{value / 2**20:.0f}" if isinstance(value, int) else "-"


def seconds(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def shown(value: object) -> str:
    return "-" if value is None else str(value)


def status_table(models: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for name in COLUMNS:
        table.add_column(name, no_wrap=name in ("model", "state"))
    for m in models:
        table.add_row(
            shown(m.get("model")),
            shown(m.get("state")) + (" (reloading)" if m.get("reloading") else ""),
            "yes" if m.get("pinned") else "no",
            mib(m.get("planned_bytes")),
            mib(m.get("rss_bytes")),
            shown(m.get("slots")),
            shown(m.get("in_flight")),
            shown(m.get("idle_s")),
            shown(m.get("restarts")),
            seconds(m.get("recovery_s")),
        )
    return table
