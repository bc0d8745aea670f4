"""Real Redis and PostgreSQL servers for the tests of several gateway replicas, started from
Debian's packages (``.ci/run`` installs them) in a scratch folder and stopped afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsdeploy.bench.launch import free_port


def postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        pytest.fail("PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does)")
    return str(found[-1])


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run it as the package's own user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def wait_for(check: list[str], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not start within {timeout_s} s")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh PostgreSQL cluster on a free local port."""
    # Not under pytest's temporary folder: that is private to root, and PostgreSQL runs as
    # its own user when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="dsdeploy-postgres-"))
    data = folder / "data"
    data.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(folder, "postgres", "postgres")
    init = as_postgres([postgres_bin("initdb"), "-D", str(data), "-U", "dsdeploy", "-A", "trust"])
    subprocess.run(init, capture_output=True, check=True)
    port = free_port()
    server = subprocess.Popen(
        as_postgres(
            [postgres_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(folder)]
            + ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = [postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        wait_for(ready, "PostgreSQL")
        yield f"postgresql+psycopg://dsdeploy@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh Redis on a free local port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("Redis is not installed: `apt-get install redis-server` (.ci/run does)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(["redis-cli", "-p", str(port), "ping"], "Redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(30)
