"""`dsdeploy deploy` and `dsdeploy report`: deployment files rendered from the plan and the
settings, and the deployment's report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dsdeploy.cli.common import console, fail, load_settings
from dsdeploy.deploy.report import render_report
from dsdeploy.deploy.report_facts import gather
from dsdeploy.deploy.spec import deploy_spec
from dsdeploy.deploy.systemd import DEFAULT_BIN
from dsdeploy.deploy.targets import TARGETS, Options, renderer, write_files
from dsdeploy.errors import DsdeployError
from dsdeploy.planning import WhatIf, plan_for
from dsdeploy.settings import DEFAULT_MODEL


def deploy(
    target: Annotated[str, typer.Argument(help=f"What to render: {' | '.join(TARGETS)}.")],
    model: Annotated[
        str, typer.Argument(help="Catalog name, GGUF file or HF folder (as `dsdeploy plan`).")
    ] = DEFAULT_MODEL,
    out: Annotated[Path, typer.Option(help="Folder the files are written to.")] = Path("deploy"),
    gpu: Annotated[str | None, typer.Option(help="Plan for this GPU, e.g. 'H100'.")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs per machine.")] = None,
    ram: Annotated[str | None, typer.Option(help="RAM per machine, e.g. 64G.")] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per slot.")] = None,
    nodes: Annotated[
        int | None,
        typer.Option(
            min=1, help="Spread vLLM over this many machines (default: the fewest that hold it)."
        ),
    ] = None,
    weights_key: Annotated[
        Path | None,
        typer.Option(help="Weights key file to hand to the service as a credential or secret."),
    ] = None,
    bin_path: Annotated[
        Path, typer.Option("--bin", help="dsdeploy's launcher on the target (systemd).")
    ] = DEFAULT_BIN,
) -> None:
    """Render a Dockerfile, compose file, systemd unit or Kubernetes manifests for a model,
    sized by its plan on this machine or on a what-if one."""
    settings = load_settings()
    try:
        render = renderer(target)
        entry, machine, plan = plan_for(settings, model, WhatIf(gpu, gpus, ram, ctx))
        spec = deploy_spec(entry, machine, plan, settings, nodes=nodes, weights_key=weights_key)
        written = write_files(out, render(spec, Options(settings, bin_path)))
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"{spec.model}: {spec.serving.summary}", highlight=False)
    for path in written:
        print(path)


def report(
    model: Annotated[
        str, typer.Argument(help="Catalog name, model in the store, GGUF file or HF folder.")
    ] = DEFAULT_MODEL,
    out: Annotated[
        Path | None, typer.Option(help="Write the Markdown here (default: print it).")
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="Plan for this GPU, e.g. 'H100'.")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs per machine.")] = None,
    ram: Annotated[str | None, typer.Option(help="RAM per machine, e.g. 64G.")] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per slot.")] = None,
) -> None:
    """Write a deployment report in Markdown (model card style): model and file hashes,
    plan, measured quantization quality, security configuration, doctor findings."""
    settings = load_settings()
    library_path = tuple(Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p)
    try:
        text = render_report(gather(settings, model, WhatIf(gpu, gpus, ram, ctx), library_path))
    except DsdeployError as exc:
        raise fail(exc) from None
    if out is None:
        print(text, end="")
        return
    try:
        out.write_text(text)
    except OSError as exc:
        console.print(f"[red]error:[/] cannot write {out}: {exc.strerror}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"wrote {out}", highlight=False)
