"""The stand-in's process: ``main(args, record)`` is what a test's ``vllm`` program runs
(``launcher`` writes one); it serves until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from tests.vllm_standin.app import create_app
from tests.vllm_standin.cli import parse

ROOT = Path(__file__).resolve().parents[2]


def launcher(folder: Path, record: Path) -> Path:
    """A ``vllm`` program in ``folder`` that runs the stand-in and records into ``record``.
    The engine's environment is an allowlist, so the program carries its own paths."""
    program = folder / "vllm"
    program.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.vllm_standin.__main__ import main\n"
        f"sys.exit(main(sys.argv[1:], {str(record)!r}))\n"
    )
    program.chmod(0o755)
    return program


def recorded_starts(record: Path) -> list[dict[str, object]]:
    """Each start of the stand-in: its argv (after the program) and environment."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


async def serve(options: argparse.Namespace, socket: str) -> None:
    runner = web.AppRunner(create_app(options), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.UnixSite(runner, socket).start()
    print("INFO:     Application startup complete.", flush=True)  # vLLM's (uvicorn's) line
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, stopping.set)
    await stopping.wait()
    await runner.cleanup()


def main(args: list[str], record: str) -> int:
    options = parse(args)
    if options.enable_auto_tool_choice and not options.tool_call_parser:
        print("TypeError: --enable-auto-tool-choice requires --tool-call-parser", flush=True)
        return 1
    start = {"pid": os.getpid(), "argv": args, "env": dict(os.environ)}
    with open(record, "a") as sink:
        sink.write(json.dumps(start) + "\n")
    asyncio.run(serve(options, options.uds))
    return 0
