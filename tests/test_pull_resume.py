"""Interrupted, concurrent and disk-starved pulls: nothing is lost, nothing is corrupted."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from dsdeploy.store import Store
from tests.conftest import DSDEPLOY, dsdeploy_env, run_cli
from tests.hub_models import SMOLLM2_SHA256
from tests.hub_server import HubServer, Repo

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SPEC = [f"hf:{REPO}", "--quant", "Q4_1"]


@pytest.fixture
def gguf_repo(hub: HubServer, smollm2_bytes: bytes) -> HubServer:
    hub.hub.repos[REPO] = Repo(files={"SmolLM2-135M-Instruct-Q4_1.gguf": smollm2_bytes})
    return hub


def start_pull(home: Path, hub: HubServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DSDEPLOY, "pull", *args],
        env=dsdeploy_env(home, HF_ENDPOINT=hub.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def cdn_requests(hub: HubServer) -> list[str]:
    """The Range header of each GET of the file's bytes ('' for a whole-file GET)."""
    return [rng for method, path, rng in hub.hub.requests if method == "GET" and "/cdn/" in path]


def wait_for_size(path: Path, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= size):
        assert time.monotonic() < deadline, f"{path} never reached {size} bytes"
        time.sleep(0.05)


def test_pull_killed_mid_download_resumes_from_its_partial(
    gguf_repo: HubServer, isolated_home: Path, smollm2_bytes: bytes
) -> None:
    store = Store(isolated_home / "data" / "models")
    partial = store.partial / f"{SMOLLM2_SHA256}.part"
    gguf_repo.hub.rate = 10e6
    process = start_pull(isolated_home, gguf_repo, *SPEC)
    try:
        wait_for_size(partial, 16 << 20)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    killed_at = partial.stat().st_size
    assert 0 < killed_at < len(smollm2_bytes)
    assert store.names() == []
    assert not store.blob_path(SMOLLM2_SHA256).exists()

    gguf_repo.hub.rate = None
    done = run_cli(isolated_home, "pull", *SPEC, HF_ENDPOINT=gguf_repo.url)
    assert done.returncode == 0, done.stderr
    assert cdn_requests(gguf_repo) == ["", f"bytes={killed_at}-"]
    assert store.blob_path(SMOLLM2_SHA256).read_bytes() == smollm2_bytes
    assert not partial.exists()


def test_resume_from_a_server_that_ignores_range_starts_the_file_again(
    gguf_repo: HubServer, isolated_home: Path, smollm2_bytes: bytes
) -> None:
    store = Store(isolated_home / "data" / "models")
    store.resumable_partial(SMOLLM2_SHA256).write_bytes(smollm2_bytes[: 1 << 20])
    gguf_repo.hub.ranges = False
    done = run_cli(isolated_home, "pull", *SPEC, HF_ENDPOINT=gguf_repo.url)
    assert done.returncode == 0, done.stderr
    assert cdn_requests(gguf_repo) == [f"bytes={1 << 20}-"]
    assert store.blob_path(SMOLLM2_SHA256).read_bytes() == smollm2_bytes


def test_a_busy_server_is_tried_again(
    hub: HubServer, isolated_home: Path, smollm2_bytes: bytes
) -> None:
    hub.hub.plain["m.gguf"] = smollm2_bytes
    hub.hub.busy = 2
    done = run_cli(isolated_home, "pull", f"{hub.url}/files/m.gguf", "--name", "m")
    assert done.returncode == 0, done.stderr
    gets = [path for method, path, _ in hub.hub.requests if method == "GET"]
    assert gets.count("/files/m.gguf") == 3


def test_unreachable_hub_is_one_line(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "pull", *SPEC, HF_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: cannot reach http://127.0.0.1:9: ")


def test_concurrent_pulls_of_one_model_download_it_once(
    gguf_repo: HubServer, isolated_home: Path
) -> None:
    gguf_repo.hub.rate = 40e6
    processes = [start_pull(isolated_home, gguf_repo, *SPEC) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert cdn_requests(gguf_repo) == [""]
    store = Store(isolated_home / "data" / "models")
    assert store.names() == ["smollm2-135m-instruct-gguf-q4_1"]
    verified = run_cli(isolated_home, "models", "verify")
    assert verified.returncode == 0, verified.stderr


@pytest.fixture
def small_disk() -> None:
    """A real full disk: a 8 MiB tmpfs mounted in a private user and mount namespace."""
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here for a private tmpfs: {probe.stderr!r}")


def pull_on_small_disk(home: Path, hub: HubServer, *args: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o size=8m tmpfs "$1" && shift && exec "$@"'
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
    return subprocess.run(
        [*command, str(home), *DSDEPLOY, "pull", *args],
        env=dsdeploy_env(home, HF_ENDPOINT=hub.url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("small_disk")
def test_pull_larger_than_the_free_disk_is_refused_before_downloading(
    gguf_repo: HubServer, isolated_home: Path
) -> None:
    done = pull_on_small_disk(isolated_home, gguf_repo, *SPEC)
    assert done.returncode == 1
    last = " ".join(done.stderr.strip().splitlines()[-1].split())
    assert last.startswith("error: not enough disk space: download 0.09 GiB, 0.01 GiB free")
    assert cdn_requests(gguf_repo) == []


@pytest.mark.usefixtures("small_disk")
def test_disk_filling_up_mid_download_is_one_clear_error(
    hub: HubServer, isolated_home: Path, smollm2_bytes: bytes
) -> None:
    hub.hub.plain["model.gguf"] = smollm2_bytes
    done = pull_on_small_disk(isolated_home, hub, f"{hub.url}/unsized/model.gguf")
    assert done.returncode == 1, done.stderr
    last = " ".join(done.stderr.strip().splitlines()[-1].split())
    assert last.startswith("error: model.gguf: disk full after ")
    assert last.endswith("run the same pull again to resume")
