"""Prove a ``llama-server`` runs on this machine before it is trusted, and measure it.

A build that compiles can still die on its first matrix multiply (an instruction the CPU
lists but the OS does not allow), so a binary is used only after it loaded a real model
and answered a completion here. ``llama-bench`` then records what the build does on this
machine, for ``dsdeploy engine list``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from dsdeploy.engines.exit_status import explain_signal
from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.errors import EngineSmokeFailed
from dsdeploy.planner.launch_plan import LaunchPlan

SMOKE_TIMEOUT_S = 120.0
SMOKE_PROMPT = "The three primary colours are red, yellow and"
BENCH_PROMPT_TOKENS = 512
BENCH_GEN_TOKENS = 128


@dataclass(frozen=True)
class SmokeSubject:
    """The model every new engine must load and answer with here, and the threads to use."""

    name: str
    """The model's name in the store, for messages."""
    model: Path
    threads: int
    environ: Mapping[str, str]
    """dsdeploy's environment, of which the engine gets only the allowlist."""


@dataclass(frozen=True)
class BenchNumbers:
    """llama-bench on the smoke model: prompt processing and generation, tokens/s."""

    pp_tokens_per_s: float
    tg_tokens_per_s: float
    prompt_tokens: int
    gen_tokens: int
    threads: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tail_lines(log: Path, count: int = 15) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if line.strip()][-count:]


def refuse(
    binary: Path, model_name: str, log: Path, returncode: int | None, why: str
) -> EngineSmokeFailed:
    return EngineSmokeFailed(
        f"{binary} failed its smoke test on {model_name}, so dsdeploy will not use it: {why}; "
        f"its log is {log}",
        tail_lines(log),
        returncode,
    )


def ask_one_completion(client: httpx.Client, proc: subprocess.Popen[bytes]) -> str | None:
    """Wait for the engine to load, then ask for a few tokens; None if all went well."""
    deadline = time.monotonic() + SMOKE_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "it stopped while loading"
        with contextlib.suppress(httpx.TransportError):
            if client.get("/health").status_code == 200:
                break
        time.sleep(0.05)
    else:
        return f"not ready within {SMOKE_TIMEOUT_S:.0f} s"
    try:
        reply = client.post(
            "/completion",
            json={"prompt": SMOKE_PROMPT, "n_predict": 8, "temperature": 0, "cache_prompt": False},
            timeout=SMOKE_TIMEOUT_S,
        )
    except httpx.TransportError:
        return "the connection dropped during the completion"
    if reply.status_code != 200 or not isinstance(reply.json().get("content"), str):
        return f"the completion was answered with HTTP {reply.status_code}"
    return None


def smoke_test(binary: Path, subject: SmokeSubject, log: Path) -> None:
    """Load the subject's model in ``binary`` on a private socket and complete a prompt;
    raise EngineSmokeFailed, naming a killing signal and what to do, if it cannot."""
    engine = LlamaCppEngine(binary, subject.model, "smoke", LaunchPlan(subject.threads, 512, 1))
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dsdeploy-smoke-") as rundir:
        socket_path = Path(rundir) / "engine.sock"
        with log.open("wb") as sink:
            spec = engine.launch(socket_path, subject.environ)
            proc = subprocess.Popen(
                spec.argv,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        transport = httpx.HTTPTransport(uds=str(socket_path))
        try:
            with httpx.Client(transport=transport, base_url="http://engine", timeout=5) as client:
                problem = ask_one_completion(client, proc)
        finally:
            stopped_by_us = proc.poll() is None
            if stopped_by_us:
                os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
    if problem is None:
        return
    if not stopped_by_us:
        problem = f"{problem}: {explain_signal(returncode, loading=True)}"
        if returncode >= 0:
            problem = f"{problem}; {engine.explain_failure(tail_lines(log))}"
    raise refuse(binary, subject.name, log, returncode, problem)


def run_bench(bench_binary: Path, subject: SmokeSubject, log: Path) -> BenchNumbers | None:
    """pp512 and tg128 with one repetition; None if llama-bench is absent or cannot run
    them, EngineSmokeFailed if a signal kills it (the build is as broken as its server)."""
    if not bench_binary.exists():
        return None
    done = subprocess.run(
        [
            str(bench_binary),
            *("-m", str(subject.model), "-t", str(subject.threads), "-r", "1", "-o", "json"),
            *("-p", str(BENCH_PROMPT_TOKENS), "-n", str(BENCH_GEN_TOKENS)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode < 0:
        log.write_text(done.stderr)
        why = explain_signal(done.returncode, loading=True)
        raise refuse(bench_binary, subject.name, log, done.returncode, f"llama-bench died: {why}")
    if done.returncode != 0:
        return None
    rows = json.loads(done.stdout)
    speed = {("pp" if row["n_prompt"] else "tg"): float(row["avg_ts"]) for row in rows}
    return BenchNumbers(
        speed["pp"], speed["tg"], BENCH_PROMPT_TOKENS, BENCH_GEN_TOKENS, subject.threads
    )
