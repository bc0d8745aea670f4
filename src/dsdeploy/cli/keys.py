"""`dsdeploy keys …`: issue, list, revoke and rotate the gateway's API keys."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.table import Table

from dsdeploy.cli.admin_audit import admin_audit
from dsdeploy.cli.common import console, fail, load_settings
from dsdeploy.errors import ConfigError, DsdeployError
from dsdeploy.progress import report_console
from dsdeploy.security.keys import ApiKey, KeyStore
from dsdeploy.settings import Settings

DURATION = re.compile(r"(\d+)([hdw])")
UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float) -> float:
    """``30d``, ``12h``, ``2w`` from now, or a UTC date (``2027-01-01``) or date and time."""
    if found := DURATION.fullmatch(text.strip()):
        return now + int(found[1]) * UNIT_S[found[2]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--expires {text!r} is neither a duration (30d, 12h, 2w) nor a date (2027-01-01)"
        ) from None
    at = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    if at <= now:
        raise ConfigError(f"--expires {text!r} is in the past")
    return at


def open_store(settings: Settings) -> KeyStore:
    return KeyStore.open(settings.security, settings.dirs.data)


def show_key(key: ApiKey, presented: str) -> None:
    print(presented)  # alone on standard output, so it can be captured by a script
    console.print(
        f"key {key.id} ({key.name}): store it now, it will not be shown again", highlight=False
    )


def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in `keys list`).")],
    models: Annotated[
        list[str] | None, typer.Option("--models", help="A model it may use (repeat); default all.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight at once.")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime (30d, 12h, 2w) or a UTC date (2027-01-01).")
    ] = None,
    admin: Annotated[
        bool, typer.Option(help="May also use the operator routes (/ps, /metrics).")
    ] = False,
) -> None:
    """Create an API key and print it once: only its digest is kept."""
    settings = load_settings()
    try:
        expires_at = None if expires is None else parse_expiry(expires, time.time())
        with admin_audit(settings) as note:
            key, presented = open_store(settings).create(
                name,
                models or (),
                rpm=rpm,
                tpm=tpm,
                max_concurrent=max_concurrent,
                expires_at=expires_at,
                scope="admin" if admin else "user",
            )
            note("key.created", f"{key.id} ({key.scope}) {key.name}")
    except DsdeployError as exc:
        raise fail(exc) from None
    show_key(key, presented)


def when(at: float | None) -> str:
    if at is None:
        return "never"
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M")


def limits(key: ApiKey) -> str:
    parts = [
        f"{value} {unit}"
        for value, unit in ((key.rpm, "rpm"), (key.tpm, "tpm"), (key.max_concurrent, "conc"))
        if value is not None
    ]
    return ", ".join(parts) or "none"


def keys_list() -> None:
    """Show every key: id, name, scope, models, limits, dates and state (never a secret)."""
    table = Table("id", "name", "scope", "models", "limits", "created", "expires", "state")
    now = time.time()
    for key in open_store(load_settings()).list():
        table.add_row(
            key.id,
            key.name,
            key.scope,
            ", ".join(key.models) or "all",
            limits(key),
            when(key.created_at),
            when(key.expires_at),
            key.state(now),
        )
    report_console().print(table)


def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke a key: refused at once here, within the key cache's seconds on replicas."""
    settings = load_settings()
    try:
        with admin_audit(settings) as note:
            key = open_store(settings).revoke(key_id)
            note("key.revoked", key.id)
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"revoked key {key.id} ({key.name})", highlight=False)


def keys_rotate(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Give a key a new secret, keeping its id, name and limits; the old one stops working."""
    settings = load_settings()
    try:
        with admin_audit(settings) as note:
            key, presented = open_store(settings).rotate(key_id)
            note("key.rotated", key.id)
    except DsdeployError as exc:
        raise fail(exc) from None
    show_key(key, presented)
