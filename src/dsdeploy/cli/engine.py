"""`dsdeploy engine …`: build, prove and list inference engines."""

from __future__ import annotations

from typing import Annotated

import typer

from dsdeploy.cli.common import console, describe, fail, load_settings
from dsdeploy.engine_report import decode_ceiling_line, engine_table
from dsdeploy.engine_setup import install_engine
from dsdeploy.engines import llamacpp_locate
from dsdeploy.errors import ConfigError, DsdeployError
from dsdeploy.progress import report_console


def engine_install(
    engine: Annotated[str, typer.Argument(help="Engine to install.")] = "llama.cpp",
    backend: Annotated[str | None, typer.Option(help=describe("engine_backend"))] = None,
    jobs: Annotated[int | None, typer.Option(help=describe("build_jobs"))] = None,
    rebuild: Annotated[
        bool, typer.Option(help="Build again even if this machine has a cached build.")
    ] = False,
) -> None:
    """Build llama.cpp's llama-server for this machine and check it runs here (once)."""
    settings = load_settings(engine_backend=backend, build_jobs=jobs)
    try:
        if engine != "llama.cpp":
            raise ConfigError(f"unknown engine {engine!r}; installable engines: llama.cpp")
        install_engine(settings, console, rebuild=rebuild)
    except DsdeployError as exc:
        raise fail(exc) from None


def engine_list() -> None:
    """Show the engines dsdeploy can use, whether each ran here, its speed, and the ceiling."""
    settings = load_settings()
    try:
        active = llamacpp_locate.locate(
            settings.dirs, settings.engine.llama_server, settings.engine.engine_backend
        )
        built = list(llamacpp_locate.built_engines(settings.dirs))
    except DsdeployError as exc:
        raise fail(exc) from None
    candidates = ([active] if active else []) + [b for b in built if b != active]
    out = report_console()
    out.print(engine_table(settings.dirs, candidates, active))
    ceiling = decode_ceiling_line(settings.dirs, active)
    if ceiling:
        out.print(ceiling, highlight=False)
    if active is None:
        console.print("no llama-server yet: run `dsdeploy engine install`")
