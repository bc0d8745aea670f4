"""The ``dsdeploy`` command: one module per command group, one thin function per verb;
errors become one line and exit 1. The app is assembled here, explicitly, when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from dsdeploy import __version__
from dsdeploy.cli import (
    audit,
    bench,
    convert,
    cost,
    deploy,
    doctor,
    engine,
    evaluate,
    finetune,
    keys,
    models,
    planning,
    serving,
    weights,
)


def version_callback(value: bool) -> None:
    if value:
        print(f"dsdeploy {__version__}")
        raise typer.Exit()


def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True)
    ] = False,
) -> None:
    """Run DeepSeek models on your own hardware as a safe OpenAI-compatible service."""


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    app.callback()(main_options)
    app.command("serve")(serving.serve)
    app.command("ps")(serving.ps)
    app.command("reload")(serving.reload)
    app.command("pull")(models.pull)
    app.command("convert")(convert.convert)
    app.command("hw")(planning.hw)
    app.command("plan")(planning.plan)
    app.command("bench")(bench.bench)
    app.command("cost")(cost.cost)
    app.command("doctor")(doctor.doctor)
    app.command("deploy")(deploy.deploy)
    app.command("report")(deploy.report)
    app.command("finetune")(finetune.finetune_command)
    app.command("keygen-weights")(weights.keygen_weights)
    app.command("encrypt")(weights.encrypt)
    app.command("decrypt")(weights.decrypt)

    models_app = typer.Typer(no_args_is_help=True, help="Models in the local store.")
    models_app.command("list")(models.models_list)
    models_app.command("show")(models.models_show)
    models_app.command("rm")(models.models_rm)
    models_app.command("verify")(models.models_verify)
    models_app.command("check")(models.models_check)
    models_app.command("gc")(models.models_gc)
    models_app.command("export")(models.models_export)
    models_app.command("import")(models.models_import)
    app.add_typer(models_app, name="models")

    engine_app = typer.Typer(no_args_is_help=True, help="Install and list inference engines.")
    engine_app.command("install")(engine.engine_install)
    engine_app.command("list")(engine.engine_list)
    app.add_typer(engine_app, name="engine")

    eval_app = typer.Typer(no_args_is_help=True, help="Measure model quality on this machine.")
    eval_app.command("quant")(evaluate.eval_quant_command)
    eval_app.command("tasks")(evaluate.eval_tasks_command)
    app.add_typer(eval_app, name="eval")

    keys_app = typer.Typer(no_args_is_help=True, help="API keys the gateway accepts.")
    keys_app.command("create")(keys.keys_create)
    keys_app.command("list")(keys.keys_list)
    keys_app.command("revoke")(keys.keys_revoke)
    keys_app.command("rotate")(keys.keys_rotate)
    app.add_typer(keys_app, name="keys")
    audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
    audit_app.command("verify")(audit.audit_verify)
    audit_app.command("export")(audit.audit_export)
    app.add_typer(audit_app, name="audit")
    return app


def main() -> None:
    build_app()()
