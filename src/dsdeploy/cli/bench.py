"""`dsdeploy bench`: speed side by side against the memory-bandwidth ceiling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsdeploy.bench import command as bench_command
from dsdeploy.bench import report as bench_report
from dsdeploy.bench.provenance import utc_timestamp
from dsdeploy.bench.run import SweepOptions, parse_concurrency
from dsdeploy.bench.workload import Workload
from dsdeploy.cli.common import console, describe, fail, load_settings
from dsdeploy.errors import DsdeployError
from dsdeploy.progress import report_console


def bench(
    target: Annotated[
        list[str] | None, typer.Option(help="NAME=URL of an OpenAI-compatible server; repeat.")
    ] = None,
    compare_raw: Annotated[
        bool, typer.Option(help="Start dsdeploy serve and measure it beside its raw engine.")
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Store model the targets serve (for η and its sha256).")
    ] = None,
    concurrency: Annotated[str, typer.Option(help="Concurrent streams to sweep.")] = "1,4,16",
    reps: Annotated[int, typer.Option(help="Repetitions, alternating the targets.")] = 5,
    prompt_words: Annotated[int, typer.Option(help="Words of text in each prompt.")] = 128,
    max_tokens: Annotated[int, typer.Option(help="Tokens each request decodes.")] = 128,
    shared_prefix: Annotated[
        bool, typer.Option(help="Every prompt starts with the same passage.")
    ] = False,
    requests: Annotated[
        int | None, typer.Option(help="Requests per trial (default: max(concurrency, 4)).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for bench.json and bench.png.")] = None,
    threads: Annotated[int | None, typer.Option(help=describe("threads"))] = None,
    parallel: Annotated[int | None, typer.Option(help=describe("parallel"))] = None,
    ctx_size: Annotated[int | None, typer.Option(help=describe("ctx_size"))] = None,
) -> None:
    """Measure TTFT, TPOT and tokens/s of servers side by side, against the memory ceiling."""
    settings = load_settings(threads=threads, parallel=parallel, ctx_size=ctx_size)
    try:
        options = SweepOptions(
            concurrency=parse_concurrency(concurrency),
            repetitions=reps,
            workload=Workload(prompt_words, max_tokens, shared_prefix),
            requests=requests,
        )
        folder = out or settings.dirs.data / "bench" / utc_timestamp()
        report = bench_command.bench(
            settings, target or [], compare_raw, model, options, folder, console
        )
    except DsdeployError as exc:
        raise fail(exc) from None
    bench_report.print_report(report, report_console())
    bench_report.write_json(report, folder / "bench.json")
    bench_report.plot(report, folder / "bench.png")
    console.print(f"wrote {folder / 'bench.json'} and {folder / 'bench.png'}")
