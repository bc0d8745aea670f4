"""The part of ``vllm serve``'s command line dsdeploy passes, parsed as vLLM does: an option
the stand-in does not know is refused with argparse's "unrecognized arguments", as vLLM's
own parser refuses it, so a misspelt flag fails here as it would there."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    serve = argparse.ArgumentParser(prog="vllm serve")
    serve.add_argument("model_tag", nargs="?")
    serve.add_argument("--model")
    serve.add_argument("--uds", required=True)
    serve.add_argument("--served-model-name", nargs="+")
    serve.add_argument("--tensor-parallel-size", type=int, default=1)
    serve.add_argument("--pipeline-parallel-size", type=int, default=1)
    serve.add_argument("--max-model-len", type=int)
    serve.add_argument("--max-num-seqs", type=int)
    serve.add_argument("--kv-cache-dtype", choices=["auto", "fp8", "fp8_e4m3", "fp8_e5m2"])
    serve.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    serve.add_argument("--max-log-len", type=int)
    serve.add_argument("--disable-uvicorn-access-log", action="store_true")
    serve.add_argument("--distributed-executor-backend", choices=["ray", "mp", "uni"])
    serve.add_argument("--reasoning-parser")
    serve.add_argument("--enable-auto-tool-choice", action="store_true")
    serve.add_argument("--tool-call-parser")
    serve.add_argument("--trust-remote-code", action="store_true")
    return serve


def parse(args: list[str]) -> argparse.Namespace:
    """``serve MODEL …`` (the vllm program) or ``--model MODEL …`` (the api_server module)."""
    if args[:1] == ["serve"]:
        args = args[1:]
    options = parser().parse_args(args)
    options.model = options.model_tag or options.model
    if options.model is None:
        parser().error("a model is required")
    return options


def flags(argv: list[str]) -> dict[str, str]:
    """A command line's ``--name value`` pairs, for comparing it with a plan field by field;
    a flag followed by another flag (or by nothing) maps to ''."""
    found: dict[str, str] = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) else ""
            found[word] = "" if value.startswith("--") else value
    return found
