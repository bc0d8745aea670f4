"""`dsdeploy eval …`: what quantization costs, and accuracy on small task sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsdeploy.bench.provenance import utc_timestamp
from dsdeploy.cli.common import console, describe, fail, load_settings
from dsdeploy.errors import DsdeployError
from dsdeploy.eval import quant as eval_quant
from dsdeploy.eval.perplexity import Window
from dsdeploy.eval.quant_report import plot_quant_eval, print_quant_eval
from dsdeploy.eval.quant_results import quant_eval_path, save_quant_eval
from dsdeploy.eval.tasks import load_sets
from dsdeploy.eval.tasks_report import print_scores, write_scores
from dsdeploy.eval.tasks_run import evaluate_tasks
from dsdeploy.progress import report_console, step_progress
from dsdeploy.settings import DEFAULT_MODEL


def eval_quant_command(
    model: Annotated[str, typer.Argument(help="Model name in the store.")] = DEFAULT_MODEL,
    quant: Annotated[
        list[str] | None, typer.Option(help="llama-quantize type to measure; repeat.")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Higher-precision GGUF to compare against.")
    ] = None,
    ctx: Annotated[int, typer.Option(help="Tokens per perplexity chunk.")] = 512,
    chunks: Annotated[
        int | None, typer.Option(help="Chunks of text to score (default all).")
    ] = None,
    max_kld: Annotated[float, typer.Option(help="Largest mean KLD to recommend.")] = 0.05,
    min_top1: Annotated[float, typer.Option(help="Least top-1 agreement to recommend, %.")] = 90.0,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the quantized files in this folder.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help=describe("threads"))] = None,
) -> None:
    """Quantize a model to each type and measure what each costs: PPL, KL divergence, top-1."""
    settings = load_settings(threads=threads)
    try:
        result = eval_quant.evaluate_quantizations(
            settings,
            model,
            quant or [],
            reference,
            Window(ctx=ctx, chunks=chunks, threads=eval_quant.default_threads(settings)),
            eval_quant.Bounds(max_kld=max_kld, min_same_top_p=min_top1),
            keep,
            console,
        )
    except DsdeployError as exc:
        raise fail(exc) from None
    path = save_quant_eval(settings.dirs, result)
    png = quant_eval_path(settings.dirs, model).with_suffix(".png")
    plot_quant_eval(result, png)
    print_quant_eval(result, report_console())
    console.print(f"wrote {path} and {png}")


def eval_tasks_command(
    target: Annotated[
        list[str] | None, typer.Option(help="NAME=URL of a running deployment; repeat.")
    ] = None,
    gguf: Annotated[
        list[Path] | None, typer.Option(help="GGUF file to serve and score (e.g. each quant).")
    ] = None,
    task_set: Annotated[
        list[str] | None, typer.Option("--set", help="Question set (default: all); repeat.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Questions asked at once.")] = 4,
    threads: Annotated[int | None, typer.Option(help=describe("threads"))] = None,
) -> None:
    """Accuracy of deployments on small offline question sets, through the OpenAI API."""
    settings = load_settings(threads=threads)
    try:
        sets = load_sets(task_set or [])
        with step_progress("asking", console) as progress:
            scores = evaluate_tasks(settings, target or [], gguf or [], sets, concurrency, progress)
    except DsdeployError as exc:
        raise fail(exc) from None
    path = settings.dirs.data / "evals" / "tasks" / f"{utc_timestamp()}.json"
    write_scores(scores, path)
    print_scores(scores, report_console())
    console.print(f"wrote {path}")
