"""`dsdeploy doctor`: check this machine for every known deployment pitfall."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dsdeploy.cli.common import console, load_settings
from dsdeploy.cpu_isa import read_cpu_answers
from dsdeploy.doctor.checks import Ground, run_checks
from dsdeploy.doctor.finding import Finding, exit_code

STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def findings_table(findings: list[Finding]) -> Table:
    table = Table(show_lines=False)
    for column in ("status", "check", "finding", "fix"):
        table.add_column(column, overflow="fold")
    for f in findings:
        status = f"[{STYLE[f.status]}]{f.status}[/]"
        table.add_row(status, f.check, f.found, f.fix or "")
    return table


def apply_repairs(findings: list[Finding]) -> list[str]:
    """Only the safe fixes: chmod of dsdeploy's own files, folders it would create anyway."""
    done: list[str] = []
    for f in findings:
        if f.status != "ok" and f.repair is not None:
            try:
                done.append(f.repair.apply())
            except OSError as exc:
                done.append(f"could not fix {f.repair.path}: {exc.strerror}")
    return done


def doctor(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON.")
    ] = False,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Apply the safe fixes (chmod of dsdeploy's own files, missing folders), "
            "then check again.",
        ),
    ] = False,
) -> None:
    """Check this machine for known deployment pitfalls; each finding comes with its fix.
    Exit 0 when all is ok, 1 on a warning, 2 on a failure."""
    settings = load_settings()
    library_path = tuple(Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p)

    def check() -> list[Finding]:
        return run_checks(Ground(settings, read_cpu_answers(), library_path))

    findings = check()
    if fix:
        repaired = apply_repairs(findings)
        for line in repaired:
            console.print(f"fixed: {line}", highlight=False)
        if repaired:
            findings = check()
    if json_output:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        Console(soft_wrap=False).print(findings_table(findings))
    raise typer.Exit(exit_code(findings))
