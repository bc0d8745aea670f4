"""Soak: ``dsdeploy serve`` under steady mixed load for a bounded time — does memory grow,
do errors appear, does the latency tail drift?

Two models are served: the default one and the same GGUF stored again under another name,
in a scratch home copied from $DSDEPLOY_HOME's store, with a memory budget that holds only
one of them. Closed-loop clients send a mix — chat plain and streamed, completions, the
Anthropic messages endpoint plain and streamed, and bad requests (broken JSON, a missing
field, an unknown model, a cap passed) whose 4xx is expected and counted apart from
errors. The model switches in phases (a quarter of the run each): the clients finish what
they sent, then ask the other model, so the gateway evicts the idle engine and loads the
other on demand. Requests that waited for that load are kept out of the latency figures
and reported as load times.

Every few seconds: the RSS of the gateway and of each engine (children of serve, psutil).
At the end: each process's RSS slope (least squares, MiB/hour) over the second half of the
run, errors by kind, p50/p99 latency per window and the p99 drift (last window vs first),
and the warnings and errors in serve's own log (served with ``--log-format json``).

    python benchmarks/soak.py [--minutes 20] [--concurrency 4] [--quick]

Prints tables and writes benchmarks/results/soak.json and soak.png (soak.quick.* with
--quick, about a minute of load).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dsdeploy.bench.launch import DSDEPLOY, free_port, run_cli, scratch_home, wait_healthy
from dsdeploy.bench.soak_stats import MIB, Outcome, Window, p99_drift, windows
from dsdeploy.bench.soak_watch import MemoryWatch, plot
from dsdeploy.serve import prepare
from dsdeploy.settings import DEFAULT_MODEL, Settings, settings_from
from dsdeploy.store import Store

RESULTS = Path(__file__).parent / "results"
MODELS = (DEFAULT_MODEL, f"{DEFAULT_MODEL}-copy")
MAX_TOKENS = 16
CTX_SIZE = 1024
KINDS = ("chat", "chat_stream", "completion", "messages", "messages_stream", "bad")
STREAM_ENDS = {"/v1/chat/completions": "data: [DONE]", "/v1/messages": "event: message_stop"}
console = Console(stderr=True)


def chat_body(model: str, n: int, stream: bool) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"Request {n}: describe a river briefly."}],
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "stream": stream,
    }


def bad_request(model: str, n: int) -> tuple[str, bytes, int]:
    """A request the gateway must refuse: path, body and the status it must get."""
    body = chat_body(model, n, False)
    choices = (
        (b'{"model": "' + model.encode() + b'", "messages": [', 400),  # broken JSON
        (json.dumps({"model": model}).encode(), 400),  # no messages
        (json.dumps({**body, "model": "no-such-model"}).encode(), 404),
        (json.dumps({**body, "max_tokens": 10**6}).encode(), 400),  # past the cap
    )
    payload, status = choices[n % len(choices)]
    return "/v1/chat/completions", payload, status


def request_for(kind: str, model: str, n: int) -> tuple[str, bytes, int]:
    if kind == "bad":
        return bad_request(model, n)
    if kind == "completion":
        body = {"model": model, "prompt": f"Request {n}: a river", "max_tokens": MAX_TOKENS}
        return "/v1/completions", json.dumps({**body, "ignore_eos": True}).encode(), 200
    path = "/v1/messages" if kind.startswith("messages") else "/v1/chat/completions"
    return path, json.dumps(chat_body(model, n, kind.endswith("_stream"))).encode(), 200


async def send(client: httpx.AsyncClient, path: str, body: bytes) -> tuple[int, str | None]:
    """The status, and what was wrong with a 200 answer (None when nothing was)."""
    headers = {"content-type": "application/json"}
    async with client.stream("POST", path, content=body, headers=headers) as answer:
        text = "".join([chunk async for chunk in answer.aiter_text()])
    if answer.status_code != 200:
        return answer.status_code, None
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        return 200, None if STREAM_ENDS[path] in text else "stream ended early"
    try:
        json.loads(text)
    except ValueError:
        return 200, "answer not JSON"
    return 200, None


@dataclass
class Phase:
    """The model the clients ask now; ``running`` is cleared while a switch drains them."""

    model: str
    started: float
    warm: bool = False
    """A request of this phase succeeded: later ones did not wait for the model to load."""
    busy: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    expected_4xx: int = 0
    loads: list[dict[str, object]] = field(default_factory=list)


class Load:
    """Closed-loop clients, each sending its next request when the last one is answered."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tally = Tally()
        self.start = time.monotonic()
        self.phase = Phase(MODELS[0], 0.0)
        self.phase.running.set()
        self.stopping = False
        self.numbers = itertools.count()

    def now(self) -> float:
        return time.monotonic() - self.start

    async def client_loop(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stopping:
            phase = self.phase
            if not phase.running.is_set():
                await phase.running.wait()
                continue
            phase.busy += 1
            try:
                await self.one(phase, rng.choice(KINDS))
            finally:
                phase.busy -= 1

    async def one(self, phase: Phase, kind: str) -> None:
        path, body, expected = request_for(kind, phase.model, next(self.numbers))
        cold = not phase.warm
        started = time.monotonic()
        try:
            status, broken = await send(self.client, path, body)
            error = broken or (None if status == expected else f"{kind} answered {status}")
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.TransportError as exc:
            error = f"transport: {type(exc).__name__}"
        latency = time.monotonic() - started
        tally = self.tally
        tally.requests[kind] += 1
        if error:
            tally.errors[error] += 1
        elif kind == "bad":
            tally.expected_4xx += 1
        elif cold and not phase.warm:
            phase.warm = True
            first_answer_s = round(self.now() - phase.started, 2)
            tally.loads.append({"model": phase.model, "first_answer_s": first_answer_s})
        timed = not error and kind != "bad" and not cold
        tally.outcomes.append(Outcome(self.now(), latency, bool(error), timed))

    async def switch(self, model: str) -> None:
        """Lets the clients finish what they sent, then points them at ``model``."""
        old = self.phase
        old.running.clear()
        while old.busy:
            await asyncio.sleep(0.05)
        self.phase = Phase(model, self.now())
        self.phase.running.set()
        old.running.set()

    async def phases(self, end_s: float, phase_s: float) -> None:
        for index in itertools.count(1):
            await asyncio.sleep(max(0.0, min(index * phase_s, end_s) - self.now()))
            if self.now() >= end_s - 1:
                break
            await self.switch(MODELS[index % len(MODELS)])
        self.stopping = True
        self.phase.running.set()


async def sample(
    load: Load, watch: MemoryWatch, every_s: float, end_s: float, progress: Progress
) -> None:
    task = progress.add_task("soak", total=end_s, status="")
    while True:
        rss = watch.sample(load.now())
        errors = sum(load.tally.errors.values())
        engines = " ".join(f"{name} {mib:.0f}" for name, mib in rss.items() if name != "gateway")
        status = (
            f"{load.phase.model}: {len(load.tally.outcomes)} requests, {errors} errors, "
            f"{load.tally.expected_4xx} 4xx; RSS MiB gateway {rss.get('gateway', 0):.0f} {engines}"
        )
        progress.update(task, completed=load.now(), status=status)
        if load.stopping:
            return
        await asyncio.sleep(every_s)


async def soak(base_url: str, serve_pid: int, args: argparse.Namespace) -> tuple[Load, MemoryWatch]:
    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        load, watch = Load(client), MemoryWatch(serve_pid)
        columns = (TextColumn("{task.description}"), TimeElapsedColumn(), BarColumn())
        with Progress(*columns, TextColumn("{task.fields[status]}"), console=console) as shown:
            end_s = args.minutes * 60
            sampler = asyncio.create_task(sample(load, watch, args.sample_s, end_s, shown))
            clients = [asyncio.create_task(load.client_loop(n)) for n in range(args.concurrency)]
            await load.phases(end_s, end_s / 4)
            await asyncio.gather(*clients)
            await sampler
    return load, watch


def budget_for_one(settings: Settings) -> int:
    """The plans of both models, as serve makes them; room for the larger, not both."""
    quiet = Console(file=io.StringIO())
    planned = [
        int(str(row["planned_bytes"])) for row in prepare(settings, [*MODELS], quiet).status()
    ]
    return max(planned) + MIB


def second_model(home: Path, env: dict[str, str], settings: Settings) -> None:
    """The default model's GGUF stored again under another name (one blob, two names)."""
    store = Store(settings.dirs.models)
    manifest = store.manifest(MODELS[0])
    assert manifest is not None
    run_cli(env, "pull", str(store.materialize(manifest).entry), "--name", MODELS[1])


def start_serve(
    env: dict[str, str], budget: int, args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [*DSDEPLOY, "serve", *MODELS, "--port", str(port), "--memory-budget", str(budget)]
    command += ["--parallel", str(args.concurrency), "--ctx-size", str(CTX_SIZE)]
    command += ["--threads", str(args.threads)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--log-format", "json"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base_url, log)
    except BaseException:
        process.terminate()
        process.wait(60)
        raise
    return process, base_url


def log_summary(log: Path) -> dict[str, object]:
    """serve's own log: how many lines, by level; lines that are not JSON; the first of
    those, and the first warnings and errors."""
    levels: Counter[str] = Counter()
    not_json, notable = 0, list[str]()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            not_json += 1
            if not_json <= 3:
                notable.append(f"not JSON: {line[:200]}")
            continue
        levels[record.get("level", "?")] += 1
        if record.get("level") in ("WARNING", "ERROR", "CRITICAL") and len(notable) < 10:
            notable.append(f"{record['level']} {record.get('logger')}: {record.get('message')}")
    return {"lines_by_level": dict(levels), "not_json": not_json, "first_notable": notable}


def summarize(
    load: Load, rows: list[dict[str, Any]], found: list[Window], extra: dict[str, object]
) -> dict[str, Any]:
    drift = p99_drift(found)
    firsts = [float(str(entry["first_answer_s"])) for entry in load.tally.loads]
    return {
        **extra,
        "requests": sum(load.tally.requests.values()),
        "requests_by_kind": dict(load.tally.requests),
        "expected_4xx": load.tally.expected_4xx,
        "errors": sum(load.tally.errors.values()),
        "errors_by_kind": dict(load.tally.errors),
        "model_switches": load.tally.loads,
        "median_first_answer_after_switch_s": statistics.median(firsts) if firsts else None,
        "processes": rows,
        "windows": [asdict(w) for w in found],
        "p99_drift_pct": None if drift is None else round(drift * 100, 1),
    }


def show(result: dict[str, Any], found: list[Window]) -> None:
    processes = Table(
        "process", "pid", "lived s", "first MiB", "last MiB", "max MiB", "MiB/h, 2nd half",
        title="resident memory",
    )  # fmt: skip
    for row in result["processes"]:
        slope = row["slope_mib_per_hour"]
        shown = ("process", "pid", "lived_s", "first_mib", "last_mib", "max_mib")
        processes.add_row(*(str(row[k]) for k in shown), "-" if slope is None else f"{slope:+.1f}")
    latency = Table("window from", "requests", "errors", "p50 ms", "p99 ms", title="latency")
    for w in found:
        cells = ["-" if v is None else f"{v:.0f}" for v in (w.p50_ms, w.p99_ms)]
        latency.add_row(f"{w.start_s / 60:.1f} min", str(w.requests), str(w.errors), *cells)
    out = Console()
    out.print(processes, latency)
    out.print(
        f"requests {result['requests']} {result['requests_by_kind']}\n"
        f"expected 4xx {result['expected_4xx']}; errors {result['errors']} "
        f"{result['errors_by_kind']}\n"
        f"model switches {len(result['model_switches'])}, first answer after each (s): "
        f"{[entry['first_answer_s'] for entry in result['model_switches']]}\n"
        f"p99 drift {result['p99_drift_pct']}%; serve exit {result['serve_exit']}; "
        f"serve log {result['serve_log']}",
        highlight=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="engine threads; one keeps decode steady on a busy machine (several threads "
        "wait for each other at every step when the CPU is oversubscribed)",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="one minute, two clients")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.concurrency = 1, 2
    args.window_s = max(10.0, args.minutes * 3)  # 20 windows
    args.sample_s = max(2.0, args.minutes / 4)  # 240 samples
    args.out = args.out or RESULTS / ("soak.quick.json" if args.quick else "soak.json")
    work = Path(tempfile.mkdtemp(prefix="dsdeploy-soak-"))
    try:
        home = work / "home"
        env = scratch_home(home)
        flags = {"parallel": args.concurrency, "ctx_size": CTX_SIZE, "threads": args.threads}
        settings = settings_from({"home": home, "cache_dir": env["DSDEPLOY_CACHE_DIR"], **flags})
        second_model(home, env, settings)
        budget = budget_for_one(settings)
        load_before = os.getloadavg()
        process, base_url = start_serve(env, budget, args, work / "serve.log")
        try:
            load, watch = asyncio.run(soak(base_url, process.pid, args))
        finally:
            process.terminate()
            code = process.wait(60)
        extra = {
            "memory_budget_mib": round(budget / MIB, 1),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "serve_exit": code,
            "serve_log": log_summary(work / "serve.log"),
        }
    except BaseException:
        console.print(f"kept {work} (serve.log, the scratch home) to see what went wrong")
        raise
    shutil.rmtree(work, ignore_errors=True)
    end_s = args.minutes * 60
    found = windows(load.tally.outcomes, args.window_s, end_s)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = summarize(load, watch.rows(end_s), found, {"settings": options, **extra})
    show(result, found)
    samples = {
        f"{s.name} ({s.pid})": {"t_s": s.times_s, "rss_mib": [v / MIB for v in s.rss_bytes]}
        for s in watch.series.values()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**result, "rss_samples": samples}, indent=2))
    title = f"soak: {args.minutes:g} min, {args.concurrency} clients, {MODELS[0]} and {MODELS[1]}"
    plot(list(watch.series.values()), found, title, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
