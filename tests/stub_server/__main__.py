"""``python -m tests.stub_server --socket PATH [options]``: serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import resource
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from tests.stub_server.app import create_app
from tests.stub_server.state import Stub, parse_command_line


async def load(stub: Stub, stopping: asyncio.Event) -> None:
    """Pretend to load the model: /health says 503 until this ends, or the load fails."""
    await asyncio.sleep(stub.behaviour.load_delay_s)
    if stub.behaviour.load_error:
        print(stub.behaviour.load_error, file=sys.stderr, flush=True)
        stub.exit_code = 1
        stopping.set()
        return
    stub.ready = True
    print("all slots are idle", flush=True)  # llama-server's own ready line


def spawn_child(stub: Stub) -> None:
    """A worker in the stub's process group, as engines with worker processes have. The
    stub never stops it: only a signal to the whole group does."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"], stdin=subprocess.DEVNULL
    )
    stub.record("child", child=child.pid)


async def serve(socket: Path, stub: Stub) -> int:
    # aiohttp cancels a handler whose client went away, so the stub sees abandoned requests.
    runner = web.AppRunner(
        create_app(stub), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    await web.UnixSite(runner, str(socket)).start()
    stub.record("listening")
    if stub.behaviour.spawn_child:
        spawn_child(stub)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, stopping.set)
    loading = asyncio.create_task(load(stub, stopping))
    await stopping.wait()
    loading.cancel()
    await runner.cleanup()
    return stub.exit_code


def main() -> None:
    socket, behaviour = parse_command_line(sys.argv[1:])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a stub killed by SIGILL leaves no core
    sys.exit(asyncio.run(serve(socket, Stub(behaviour))))


if __name__ == "__main__":
    main()
