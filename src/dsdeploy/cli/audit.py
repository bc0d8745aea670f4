"""`dsdeploy audit verify|export`: check the audit chain, and hand its records to others."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from dsdeploy.cli.common import console, load_settings
from dsdeploy.security.audit import AuditLog, audit_url
from dsdeploy.settings import Settings

FORMATS = ("jsonl", "csv")


def open_log(settings: Settings | None = None) -> AuditLog:
    settings = settings or load_settings()
    url = audit_url(settings.security, settings.dirs.data)
    try:
        return AuditLog.open(url)
    except SQLAlchemyError as exc:
        console.print(
            f"[red]error:[/] cannot open the audit database ({type(exc).__name__}); "
            "check DSDEPLOY_DB_URL",
            highlight=False,
        )
        raise typer.Exit(1) from None


def audit_verify() -> None:
    """Check every record of the audit chain; exit 1 naming the first one edited, deleted
    or out of place."""
    log = open_log()
    result = log.verify()
    log.close()
    if result.broken is not None:
        console.print(
            f"[red]audit chain broken[/] at {result.broken} "
            f"({result.records} records before it are intact)",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(f"audit chain intact: {result.records} records", highlight=False)


def utc_date(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        console.print(
            f"[red]error:[/] {flag} {value!r} is not a date; use e.g. 2026-12-01 or "
            "2026-12-01T08:00",
            highlight=False,
        )
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def audit_export(
    since: Annotated[
        str | None, typer.Option(help="First day or time to export (ISO 8601, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Export records before this day or time (ISO 8601, UTC).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (one JSON object a line) or csv.")
    ] = "jsonl",
    out: Annotated[
        Path | None, typer.Option(help="Write to this file (default: standard output).")
    ] = None,
) -> None:
    """Write the audit records in a time range, with their sequence numbers and hashes."""
    if fmt not in FORMATS:
        console.print(f"[red]error:[/] --format {fmt!r}: use jsonl or csv", highlight=False)
        raise typer.Exit(2)
    start, end = utc_date(since, "--since"), utc_date(until, "--until")
    log = open_log()
    target: IO[str]
    with out.open("w", newline="", encoding="utf-8") if out else nullcontext(sys.stdout) as target:
        written = log.export(target, start, end, fmt)
    log.close()
    console.print(f"{written} records exported", highlight=False)
