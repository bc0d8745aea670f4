"""`dsdeploy serve` and `dsdeploy ps`: the gateway in front of the models' engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dsdeploy.cli.common import console, describe, fail, load_settings, log_console
from dsdeploy.control.client import request_reload
from dsdeploy.errors import DsdeployError
from dsdeploy.gateway.logs import configure_logging
from dsdeploy.progress import report_console
from dsdeploy.ps import fetch_status, status_table
from dsdeploy.serve import serve as run_server


def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Models in the store to serve (default: every stored model)."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help=describe("engine_kind"), metavar="llama.cpp|vllm|transformers"),
    ] = None,
    host: Annotated[str | None, typer.Option(help=describe("host"))] = None,
    port: Annotated[int | None, typer.Option(help=describe("port"))] = None,
    threads: Annotated[int | None, typer.Option(help=describe("threads"))] = None,
    ctx_size: Annotated[int | None, typer.Option(help=describe("ctx_size"))] = None,
    parallel: Annotated[int | None, typer.Option(help=describe("parallel"))] = None,
    keep_alive: Annotated[float | None, typer.Option(help=describe("keep_alive_s"))] = None,
    memory_budget: Annotated[str | None, typer.Option(help=describe("memory_budget"))] = None,
    drain_timeout: Annotated[float | None, typer.Option(help=describe("drain_timeout_s"))] = None,
    engine_rss_limit: Annotated[
        str | None, typer.Option(help=describe("engine_rss_limit"), metavar="2x|SIZE|off")
    ] = None,
    preload: Annotated[list[str] | None, typer.Option(help=describe("preload"))] = None,
    pin: Annotated[list[str] | None, typer.Option(help=describe("pin"))] = None,
    allow_ip: Annotated[list[str] | None, typer.Option(help=describe("allow_ips"))] = None,
    trusted_proxy: Annotated[
        list[str] | None, typer.Option(help=describe("trusted_proxies"))
    ] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(help=describe("allowed_hosts"))] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help=describe("cors_origins"))] = None,
    tls_cert: Annotated[Path | None, typer.Option(help=describe("tls_cert"))] = None,
    tls_key: Annotated[Path | None, typer.Option(help=describe("tls_key"))] = None,
    redis_url: Annotated[str | None, typer.Option(help=describe("redis_url"))] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option(help=describe("max_output_tokens"))
    ] = None,
    max_choices: Annotated[int | None, typer.Option(help=describe("max_choices"))] = None,
    max_stop_sequences: Annotated[
        int | None, typer.Option(help=describe("max_stop_sequences"))
    ] = None,
    max_stop_chars: Annotated[int | None, typer.Option(help=describe("max_stop_chars"))] = None,
    max_messages: Annotated[int | None, typer.Option(help=describe("max_messages"))] = None,
    max_queued_requests: Annotated[
        int | None, typer.Option(help=describe("max_queued_requests"))
    ] = None,
    body_timeout: Annotated[float | None, typer.Option(help=describe("body_timeout_s"))] = None,
    require_keys: Annotated[bool, typer.Option(help=describe("require_keys"))] = False,
    insecure_no_auth: Annotated[bool, typer.Option(help=describe("insecure_no_auth"))] = False,
    auth_failures: Annotated[int | None, typer.Option(help=describe("auth_failures"))] = None,
    auth_failure_window: Annotated[
        int | None, typer.Option(help=describe("auth_failure_window_s"))
    ] = None,
    weights_key_file: Annotated[str | None, typer.Option(help=describe("weights_key_file"))] = None,
    audit: Annotated[
        bool | None, typer.Option("--audit/--no-audit", help=describe("audit"))
    ] = None,
    audit_content: Annotated[
        str | None, typer.Option(help=describe("audit_content"), metavar="off|redacted")
    ] = None,
    reasoning_field: Annotated[
        str | None,
        typer.Option(help=describe("reasoning_field"), metavar="both|reasoning_content|reasoning"),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help=describe("log_format"), metavar="text|json")
    ] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help=describe("access_log"))
    ] = None,
) -> None:
    """Serve models at an OpenAI-compatible API, loading each on its first request.

    A single model is loaded at once and kept; the model and the engine are pulled and built
    first if needed."""
    settings = load_settings(
        engine_kind=engine,
        host=host,
        port=port,
        threads=threads,
        ctx_size=ctx_size,
        parallel=parallel,
        keep_alive_s=keep_alive,
        memory_budget=memory_budget,
        drain_timeout_s=drain_timeout,
        engine_rss_limit=engine_rss_limit,
        preload=preload,
        pin=pin,
        allow_ips=allow_ip,
        trusted_proxies=trusted_proxy,
        allowed_hosts=allowed_host,
        cors_origins=cors_origin,
        tls_cert=tls_cert,
        tls_key=tls_key,
        redis_url=redis_url,
        max_output_tokens=max_output_tokens,
        max_choices=max_choices,
        max_stop_sequences=max_stop_sequences,
        max_stop_chars=max_stop_chars,
        max_messages=max_messages,
        max_queued_requests=max_queued_requests,
        body_timeout_s=body_timeout,
        require_keys=require_keys or None,  # a flag left out leaves DSDEPLOY_* in charge
        insecure_no_auth=insecure_no_auth or None,
        auth_failures=auth_failures,
        auth_failure_window_s=auth_failure_window,
        weights_key_file=weights_key_file,
        audit=audit,
        audit_content=audit_content,
        reasoning_field=reasoning_field,
        log_format=log_format,
        access_log=access_log,
    )
    configure_logging(settings.gateway)
    out = log_console("dsdeploy.serve") if settings.gateway.log_format == "json" else console
    try:
        run_server(settings, models or [], out)
    except DsdeployError as exc:
        raise fail(exc, out) from None


def ps(
    url: Annotated[
        str | None,
        typer.Option(help="The server's address (default: from --host/--port settings)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="DSDEPLOY_API_KEY", help="Admin API key, if keys are required."),
    ] = None,
) -> None:
    """Show a running server's models: state, memory planned and used, slots, requests in
    flight, idle time, restarts and the last restart's recovery time."""
    gateway = load_settings().gateway
    try:
        models = fetch_status(url or f"http://{gateway.host}:{gateway.port}", api_key)
    except DsdeployError as exc:
        raise fail(exc) from None
    report_console().print(status_table(models))


def reload(
    model: Annotated[
        str | None,
        typer.Argument(help="The model to reload (default: every loaded model)."),
    ] = None,
) -> None:
    """Reload a running server's model without downtime: its engine is started again from
    the store as it is now (weights pulled again, a rebuilt engine) beside the old one,
    which finishes its requests and stops. SIGHUP to `dsdeploy serve` does the same."""
    data_dir = load_settings().dirs.data
    try:
        outcomes = request_reload(data_dir, model)
    except DsdeployError as exc:
        raise fail(exc) from None
    if not outcomes:
        print("no model is loaded; nothing to reload (each loads on its first request)")
    for outcome in outcomes:
        if not outcome.error:
            print(outcome.summary())
    failed = [outcome for outcome in outcomes if outcome.error]
    for outcome in failed:
        console.print("[red]error:[/]", escape(outcome.summary()), highlight=False)
    if failed:
        raise typer.Exit(1)
