"""Does a LoRA adapter trained by ``dsdeploy finetune`` teach the served model a format its
base does not follow, measured through the OpenAI API of ``dsdeploy serve``?

The data (tests/fixtures/finetune) answers every question with "ANSWER: …"; 30 questions
are held out. The script fine-tunes the default model (SmolLM2-135M-Instruct) on the rest,
serves base and adapter from one llama-server, asks each held-out question of both names
(greedy), and reports the share of replies that start with "ANSWER:", with training time
and peak memory beside the plan's prediction (read from the run's report.json).

``--quick`` trains 2 steps of 2 chats and asks 3 questions: it checks the pipeline, not the rate.
Prints a table and writes results/finetune_format[.quick].json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from dsdeploy.bench.launch import DSDEPLOY, free_port, scratch_home, wait_healthy
from dsdeploy.settings import DEFAULT_MODEL

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "finetune"
RESULTS = Path(__file__).parent / "results"
ADAPTER = "smollm2-answer"
PREFIX = "ANSWER:"


def finetune(env: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    command = [
        *DSDEPLOY, "finetune", DEFAULT_MODEL, "--data", str(FIXTURES / "answer_format.jsonl"),
        "--name", ADAPTER, "--steps", str(args.steps), "--batch", str(args.batch),
        "--seq-len", str(args.seq_len), "--lr", str(args.lr), "--eval-every", str(args.eval_every),
        "--no-gradient-checkpointing",
    ]  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"finetune failed: {done.stderr[-2000:]}")
    report: dict[str, object] = json.loads(
        (Path(env["DSDEPLOY_HOME"]) / "data" / "finetune" / ADAPTER / "report.json").read_text()
    )
    report["command_seconds"] = round(time.monotonic() - began, 1)
    return report


def replies_of(env: dict[str, str], prompts: list[str], log: Path) -> dict[str, list[str]]:
    """Each model name's greedy replies to ``prompts``, base and adapter from one server."""
    port = free_port()
    with log.open("w") as sink:
        server = subprocess.Popen(
            [*DSDEPLOY, "serve", DEFAULT_MODEL, ADAPTER, "--port", str(port), "--threads", "2"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_healthy(server, f"http://127.0.0.1:{port}", log, timeout_s=300)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        return {
            model: [ask(client, model, p) for p in prompts] for model in (DEFAULT_MODEL, ADAPTER)
        }
    finally:
        server.terminate()
        server.wait(timeout=60)


def ask(client: openai.OpenAI, model: str, prompt: str) -> str:
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=12,
        temperature=0,
    )
    return answer.choices[0].message.content or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--eval-every", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.eval_every = 2, 2, 1
    held_out = (FIXTURES / "answer_format_heldout.jsonl").read_text().splitlines()
    prompts = [json.loads(line)["prompt"] for line in held_out][: 3 if args.quick else None]
    with tempfile.TemporaryDirectory(prefix="finetune-bench-") as tmp:
        env = scratch_home(Path(tmp))
        report = finetune(env, args)
        replies = replies_of(env, prompts, Path(tmp) / "serve.log")
    rates = {
        m: sum(r.lstrip().startswith(PREFIX) for r in rs) / len(rs) for m, rs in replies.items()
    }
    planned = report["planned_bytes"]["total"]  # type: ignore[index]
    result = {
        "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len, "lr": args.lr,
        "held_out_prompts": len(prompts),
        "base_follow_rate": rates[DEFAULT_MODEL], "adapter_follow_rate": rates[ADAPTER],
        "examples": {model: rs[:3] for model, rs in replies.items()},
        "train_seconds": report["train_seconds"], "command_seconds": report["command_seconds"],
        "peak_rss_mib": round(int(report["peak_rss_bytes"]) / 2**20),  # type: ignore[call-overload]
        "planned_mib": round(planned / 2**20),
        "best_validation_loss": report["history"]["best_loss"],  # type: ignore[index]
        "stopped_early": report["history"]["stopped_early"],  # type: ignore[index]
    }  # fmt: skip
    for key, value in result.items():
        print(f"{key:24} {value}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("finetune_format.quick.json" if args.quick else "finetune_format.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
