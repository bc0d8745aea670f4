"""`dsdeploy reload` and SIGHUP replace a served model's engine on the real engine: under
streaming load without a failed request, not at all when the new files fail their check,
and in place of the old one (requests waiting) when the memory budget holds one engine."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dsdeploy.planner.machine import parse_size
from dsdeploy.store import Store
from tests.conftest import Server, decoding_stream_body, engine_of, gone, run_cli, start_server

pytestmark = pytest.mark.engine

SMALL = ("--parallel", "2", "--threads", "1", "--ctx-size", "512")
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def private_home(model_home: Path, tmp_path: Path) -> Path:
    """A home of the test's own (its own store and control socket) holding the default
    model, its files linked rather than copied."""
    home = tmp_path / "own-home"
    models = model_home / "data" / "models"
    shutil.copytree(models, home / "data" / "models", symlinks=True, copy_function=os.link)
    return home


@dataclass
class Result:
    ok: bool
    started: float
    seconds: float
    detail: str = ""


def stream_once(client: httpx.Client, max_tokens: int) -> Result:
    """One streamed chat answer, ok when it ends with [DONE] and carries no error event."""
    started = time.monotonic()
    try:
        with client.stream(
            "POST", "/v1/chat/completions", json=decoding_stream_body(max_tokens)
        ) as r:
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        ok = r.status_code == 200 and events[-1:] == ["data: [DONE]"]
        ok = ok and not any('"error"' in event for event in events)
        detail = "" if ok else f"{r.status_code}: {events[-2:]}"
    except httpx.HTTPError as exc:
        ok, detail = False, repr(exc)
    return Result(ok, started, time.monotonic() - started, detail)


class Load:
    """Client threads each sending one streamed request after another until stopped."""

    def __init__(self, server: Server, clients: int, tokens: tuple[int, int]) -> None:
        self.results: list[Result] = []
        self.stopping = threading.Event()
        low, high = tokens
        self.threads = [
            threading.Thread(target=self.loop, args=(server, low + i * (high - low) // clients))
            for i in range(clients)
        ]

    def loop(self, server: Server, max_tokens: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            while not self.stopping.is_set():
                self.results.append(stream_once(client, max_tokens))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def wait_for(self, answers: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.results) < answers and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


def test_reload_under_streaming_load_fails_no_request(private_home: Path, tmp_path: Path) -> None:
    # The drain bound is not under test here: on a busy machine 8 queued answers take a while.
    log = tmp_path / "serve.log"
    server = start_server(private_home, log, *SMALL, DSDEPLOY_DRAIN_TIMEOUT_S="300")
    try:
        old = engine_of(server)
        with Load(server, clients=8, tokens=(32, 64)) as load:
            load.wait_for(8)
            before = len(load.results)
            started = time.monotonic()
            done = run_cli(private_home, "reload")
            reload_s = time.monotonic() - started
            during = len(load.results) - before
            load.wait_for(len(load.results) + 8)
        assert done.returncode == 0, done.stderr
        summary = r"^smollm2: blue-green reload in [\d.]+ s \(new engine serving after [\d.]+ s\)$"
        assert re.search(summary, done.stdout, re.M)
        assert load.failed == [], load.failed[:3]
        assert during > 0
        assert engine_of(server).pid != old.pid
        assert gone(old)
        print(
            f"\nreload under load: {done.stdout.strip()}; CLI {reload_s:.1f} s; "
            f"{len(load.results)} streams, {during} answered during the CLI call, 0 failed"
        )
    finally:
        server.stop()


def break_weights(home: Path) -> None:
    """Replace the stored model with a new version whose weights file is cut short, as a
    pull of a broken file would leave it."""
    store = Store(home / "data" / "models")
    manifest = store.get("smollm2")
    cut = store.weights_path(manifest).read_bytes()[: manifest.weights.size * 2 // 3]
    digest = hashlib.sha256(cut).hexdigest()
    store.blob_path(digest).write_bytes(cut)
    weights = manifest.weights.model_copy(update={"sha256": digest, "size": len(cut)})
    files = [weights if f.path == weights.path else f for f in manifest.files]
    store.write_manifest(manifest.model_copy(update={"files": files}))


def test_a_reload_to_weights_that_fail_their_check_keeps_the_old_engine(
    private_home: Path, tmp_path: Path
) -> None:
    server = start_server(private_home, tmp_path / "serve.log", *SMALL)
    try:
        old = engine_of(server)
        break_weights(private_home)
        done = run_cli(private_home, "reload", "smollm2")
        assert done.returncode == 1
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: smollm2: reload failed (refused): refused ")
        assert line.endswith("; the running engine stays")
        assert engine_of(server).pid == old.pid
        reply = server.api_client.chat.completions.create(
            model="smollm2", messages=HELLO, max_tokens=2
        )
        assert reply.choices[0].message.content is not None
        assert server.stop() == 0
        assert not (private_home / "data" / "control.sock").exists()  # removed on exit
    finally:
        server.stop()


BUDGET = "250M"
"""Holds one engine of the default model as SMALL plans it, not two."""


def test_sighup_with_a_budget_for_one_engine_reloads_stop_start_while_requests_wait(
    private_home: Path, tmp_path: Path
) -> None:
    server = start_server(
        private_home,
        tmp_path / "serve.log",
        *SMALL,
        "--memory-budget",
        BUDGET,
        DSDEPLOY_PROMPT_CACHE_MIB="0",  # the plan of one engine, without a prompt cache
    )
    try:
        planned = httpx.get(server.base_url + "/ps").json()["models"][0]["planned_bytes"]
        assert planned <= parse_size(BUDGET) < 2 * planned
        old = engine_of(server)
        with Load(server, clients=2, tokens=(8, 8)) as load:
            load.wait_for(2)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 120
            pattern = (
                r"smollm2: stop-start reload in ([\d.]+) s \(new engine serving after [\d.]+ s, "
                r"([\d.]+) s without an engine\)"
            )
            while not (found := re.search(pattern, server.log.read_text())):
                assert time.monotonic() < deadline, server.log.read_text()[-3000:]
                time.sleep(0.1)
            load.wait_for(len(load.results) + 2)
        gap_s = float(found[2])
        assert load.failed == [], load.failed[:3]
        assert max(r.seconds for r in load.results) >= gap_s / 2  # some waited for the load
        assert engine_of(server).pid != old.pid
        assert gone(old)
        print(f"\nstop-start: {found[0]}; {len(load.results)} requests, 0 failed")
    finally:
        server.stop()
