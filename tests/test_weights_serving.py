"""An encrypted model is served by the real engine from memory: it answers, survives an
engine restart, and no 4 KiB block of its plaintext is written to any disk."""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from dsdeploy.bench.launch import wait_healthy
from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.security.weights_crypto import Kek, encrypt_stream
from dsdeploy.security.weights_memory import SealedWeights
from dsdeploy.store import Store
from tests.conftest import engine_of, run_cli, start_server

BLOCK = 4096
PSEUDO_FILESYSTEMS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue"}
PSEUDO_FILESYSTEMS |= {"securityfs", "debugfs", "tracefs", "pstore", "bpf", "configfs", "fusectl"}
HELLO = [{"role": "user", "content": "hi"}]


def plaintext_blocks(weights: Path, count: int = 64) -> set[bytes]:
    """Digests of ``count`` 4 KiB-aligned blocks of the model's tensor data, each varied
    enough (many distinct bytes) that it cannot occur by chance in another file."""
    size = weights.stat().st_size
    rng = random.Random(64)
    found: set[bytes] = set()
    with weights.open("rb") as source:
        while len(found) < count:
            source.seek(rng.randrange(size // 10 // BLOCK, size // BLOCK) * BLOCK)
            block = source.read(BLOCK)
            if len(block) == BLOCK and len(set(block)) >= 128:
                found.add(hashlib.sha256(block).digest())
    return found


def writable_mounts() -> list[Path]:
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        _, where, fstype, options, *_ = line.split()
        if fstype not in PSEUDO_FILESYSTEMS and "rw" in options.split(","):
            mounts.append(Path(where.replace("\\040", " ")))
    return mounts


def files_under(root: Path, *, changed_since: float | None, skip: Iterable[Path]) -> Iterator[Path]:
    """Regular files under ``root`` on its own filesystem (other mounts are walked on
    their own), changed since ``changed_since`` when it is given."""
    skipped = {str(p) for p in skip}
    device = root.stat().st_dev
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if os.path.join(folder, d) not in skipped
            and os.lstat(os.path.join(folder, d)).st_dev == device
        ]
        for name in files:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue  # removed meanwhile
            fresh = changed_since is None or max(info.st_mtime, info.st_ctime) >= changed_since
            if fresh and info.st_size >= BLOCK and (info.st_mode & 0o170000) == 0o100000:
                yield Path(path)


def holds_a_block(path: Path, digests: set[bytes]) -> bool:
    try:
        with path.open("rb") as source:
            while block := source.read(BLOCK):
                if hashlib.sha256(block).digest() in digests:
                    return True
    except OSError:
        return False
    return False


@pytest.mark.engine
def test_an_encrypted_model_is_served_from_memory_and_its_plaintext_touches_no_disk(
    model_home: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.time()
    home = tmp_path / "home"
    shutil.copytree(model_home / "data" / "models", home / "data" / "models", symlinks=True)
    source_store = Store(model_home / "data" / "models")
    plain = source_store.weights_path(source_store.get("smollm2"))
    digests = plaintext_blocks(plain)
    assert holds_a_block(plain, digests)  # the scan can find what it looks for

    assert run_cli(home, "keygen-weights").returncode == 0
    encrypted = run_cli(home, "encrypt", "smollm2")
    assert encrypted.returncode == 0, encrypted.stderr
    server = start_server(home, tmp_path / "serve.log")
    try:
        engine = engine_of(server)
        argv = engine.cmdline()
        model_argument = argv[argv.index("--model") + 1]
        assert model_argument.startswith("/proc/self/fd/")
        assert not any(arg.endswith(".gguf") for arg in argv)
        reply = server.api_client.chat.completions.create(
            model="smollm2", messages=HELLO, max_tokens=4
        )
        assert reply.choices[0].message.content is not None

        engine.kill()  # the restarted engine reads the same memfd
        time.sleep(1)
        wait_healthy(server.process, server.base_url, server.log, timeout_s=60)
        assert engine_of(server).pid != engine.pid
        again = server.api_client.chat.completions.create(
            model="smollm2", messages=HELLO, max_tokens=4
        )
        assert again.choices[0].message.content is not None
    finally:
        assert server.stop() == 0

    # Every file this test's server could have written: all of its home and temporary
    # folder, and anything changed since the test began on any writable filesystem. Other
    # test sessions (and this one's plain store) hold the public default model in the
    # clear and are left out; so are files older than the test, like others' copies.
    ours = tmp_path_factory.getbasetemp()
    skip = [p for p in ours.parent.iterdir() if p != ours] + [model_home]
    scanned = [*files_under(tmp_path, changed_since=None, skip=[])]
    scanned += [
        path
        for mount in writable_mounts()
        for path in files_under(mount, changed_since=started, skip=[*skip, tmp_path])
    ]
    # The scan reached this server's files: the encrypted blob in its store, its audit log.
    assert any(path.parent.name == "blobs" for path in scanned), scanned
    assert any(path.name == "audit.db" for path in scanned), scanned
    assert [path for path in scanned if holds_a_block(path, digests)] == []


def test_a_server_of_encrypted_weights_cannot_be_dumped() -> None:
    """The gateway holds the key: it makes itself non-dumpable (checked in a child)."""
    code = (
        "import ctypes; from dsdeploy.security.weights_memory import forbid_dumps; "
        "forbid_dumps(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"
    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 1  # this process is untouched


def test_the_engine_is_given_the_memfd_by_descriptor_and_never_a_file_path(
    tmp_path: Path,
) -> None:
    kek = Kek(os.urandom(32), "test")
    plain = os.urandom(3 * 2**20)
    sealed = tmp_path / "sealed"
    with sealed.open("wb") as sink:
        encrypt_stream(io.BytesIO(plain), sink, kek, len(plain))
    weights = SealedWeights(sealed, kek, "m.gguf", hashlib.sha256(plain).hexdigest())
    weights.load()
    try:
        engine = LlamaCppEngine(
            Path("/bin/ls"), Path("/m.gguf"), "m", LaunchPlan(1, 512, 1), weights=weights
        )
        spec = engine.launch(tmp_path / "e.sock", {})
        assert spec.pass_fds == (weights.fd,)
        assert spec.argv[spec.argv.index("--model") + 1] == f"/proc/self/fd/{weights.fd}"
        child = subprocess.run(
            ["sha256sum", f"/proc/self/fd/{weights.fd}"],
            pass_fds=spec.pass_fds,
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.split()[0] == hashlib.sha256(plain).hexdigest()
    finally:
        weights.release()
    with pytest.raises(RuntimeError):  # released: nothing left to hand to an engine
        _ = weights.fd
