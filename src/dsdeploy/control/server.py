"""The server's end of the control socket: ``POST /reload`` (body ``{"model": NAME}`` or
``{}`` for every loaded model) answers ``{"outcomes": [...]}``, one per model reloaded.

The socket is made here, not by uvicorn: uvicorn opens a ``uds`` socket to everyone (0666),
and a socket left by a killed server must not stop the next one from starting. A server
that exits removes the socket only while it is still its own (a newer server on the same
data folder may have taken the path over)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dsdeploy.control import answers, control_socket
from dsdeploy.errors import ConfigError
from dsdeploy.runtime.pool import EnginePool
from dsdeploy.runtime.reload import ReloadOutcome

log = logging.getLogger("dsdeploy.control")

Report = Callable[[ReloadOutcome], None]


async def reload_models(pool: EnginePool, names: list[str], report: Report) -> list[ReloadOutcome]:
    """Reload one model after another (each may need the memory another frees)."""
    outcomes = []
    for name in names:
        outcome = await pool.reload(name)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def control_app(pool: EnginePool, report: Report) -> Starlette:
    async def reload(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(model, str | None):
            return JSONResponse({"error": 'the body must be {"model": NAME} or {}'}, 400)
        if model is not None and model not in pool.model_names():
            known = ", ".join(pool.model_names())
            return JSONResponse({"error": f"{model!r} is not served here; served: {known}"}, 404)
        names = [model] if model is not None else pool.loaded_names()
        outcomes = await reload_models(pool, names, report)
        return JSONResponse({"outcomes": [outcome.to_json() for outcome in outcomes]})

    return Starlette(routes=[Route("/reload", reload, methods=["POST"])])


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


def bind_private(path: Path) -> socket.socket:
    """A listening-ready socket at ``path``, mode 0600 from its creation, in a folder that
    other users cannot write (they could otherwise put their own socket in its place)."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(folder.stat().st_mode) & 0o022:
        raise ConfigError(
            f"{folder} is writable by other users, who could replace the control socket; "
            f"chmod 700 {folder}"
        )
    if path.exists() or path.is_symlink():
        if answers(path):
            log.warning(
                "another dsdeploy serve answered on %s; this one takes the control socket "
                "over (`dsdeploy reload` reaches this one)",
                path,
            )
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with private_umask():
            sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot open the control socket {path} ({exc.strerror})") from None
    sock.setblocking(False)
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: stop signals belong to the API's server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlSocket:
    """The control app on ``<data dir>/control.sock`` while the server runs."""

    def __init__(self, data_dir: Path, app: Starlette) -> None:
        self.path = control_socket(data_dir)
        self._sock = bind_private(self.path)
        self._inode = self.path.stat().st_ino
        # A reload still under way at exit is left to the pool's stop after 1 s.
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, ws="none", timeout_graceful_shutdown=1
        )
        self._server = QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Return once the socket accepts connections."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises why it could not start

    async def stop(self) -> None:
        """Stop answering; a reload still under way is cancelled by the pool's stop."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
        self.remove()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
