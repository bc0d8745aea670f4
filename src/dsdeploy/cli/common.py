"""What every command shares: the error console, settings from flags, one-line failures."""

from __future__ import annotations

import logging
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

from dsdeploy.errors import DsdeployError, EngineStartFailed
from dsdeploy.gateway.logs import LogStream
from dsdeploy.settings import Settings, option_field, settings_from

console = Console(stderr=True, soft_wrap=True)  # a line stays one line in logs and pipes


def describe(field: str) -> str:
    """Flag help is the option's own description: each option is declared once."""
    return str(option_field(field).description or "")


def load_settings(**flags: Any) -> Settings:
    """Flags given on the command line win over DSDEPLOY_* variables, which win over defaults."""
    try:
        return settings_from(flags)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        console.print(f"[red]error:[/] invalid setting {where}: {first['msg']}")
        raise typer.Exit(2) from None


def fail(exc: DsdeployError, out: Console = console) -> typer.Exit:
    out.print(f"[red]error:[/] {exc}", highlight=False)
    if isinstance(exc, EngineStartFailed) and exc.log_tail:
        out.print("last lines of the engine log:", style="dim")
        for line in exc.log_tail:
            out.print(f"  {line}", style="dim", highlight=False, markup=False)
    return typer.Exit(1)


def log_console(logger: str) -> Console:
    """A console whose every print is one line of ``logger``, for commands whose whole
    output must be log lines (``serve --log-format json``)."""
    return Console(
        file=LogStream(logging.getLogger(logger)),
        width=200,  # a line as the program wrote it, not wrapped
        no_color=True,
        soft_wrap=True,
        force_terminal=False,
        force_interactive=False,
    )
