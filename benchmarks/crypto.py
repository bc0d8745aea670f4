"""Weights encrypted at rest: what encryption costs.

1. Throughput on a synthetic file (1 GiB; 256 MiB with --quick), one thread each:
   *encrypt* as ``dsdeploy encrypt`` does it (read and sha256 the plaintext, AES-256-GCM in
   1 MiB chunks, sha256 and write the ciphertext, fsync), and *decrypt* as ``serve`` does it
   (authenticate and decrypt every chunk, sha256 the plaintext, write it into a sealed
   memfd). Peak RSS shows that memory stays flat however large the file.
2. ``dsdeploy serve`` start time (process start until /health answers 200, so Python start,
   planning and the engine's load are in it) for the default model stored in the clear and
   stored encrypted, alternating, in two homes copied from $DSDEPLOY_HOME's store.

    python benchmarks/crypto.py [--size-mib 1024] [--reps 3] [--quick]

Prints a table and writes benchmarks/results/crypto.json (crypto.quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from dsdeploy.bench.launch import (
    DSDEPLOY,
    free_port,
    home_env,
    run_cli,
    scratch_home,
    wait_healthy,
)
from dsdeploy.security.weights_crypto import DEFAULT_CHUNK, Kek, encrypt_stream
from dsdeploy.security.weights_memory import decrypt_to_memfd
from dsdeploy.security.weights_store import HashingReader
from dsdeploy.settings import DEFAULT_MODEL
from dsdeploy.store import HashingWriter

RESULTS = Path(__file__).parent / "results" / "crypto.json"
MIB = 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_file(path: Path, size: int) -> None:
    """Random bytes, written 4 MiB at a time (AES runs at the same speed on any data)."""
    pattern = os.urandom(4 * MIB)
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(pattern[: min(left, len(pattern))])
            left -= len(pattern)


def time_encrypt(plain: Path, sealed: Path, kek: Kek) -> tuple[float, str]:
    started = time.perf_counter()
    reader = HashingReader(plain)
    writer = HashingWriter(sealed)
    encrypt_stream(reader, writer, kek, plain.stat().st_size, DEFAULT_CHUNK)
    reader.close()
    writer.close()
    return time.perf_counter() - started, reader.hash.hexdigest()


def time_decrypt(sealed: Path, kek: Kek, plain_sha256: str) -> float:
    started = time.perf_counter()
    fd = decrypt_to_memfd(sealed, kek, "bench", plain_sha256)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return elapsed


def throughput(size: int, reps: int, work: Path) -> dict[str, object]:
    kek = Kek(os.urandom(32), "benchmark")
    plain, sealed = work / "plain.bin", work / "sealed.bin"
    make_file(plain, size)
    rss_before = peak_rss_mib()
    encrypt_s, decrypt_s = [], []
    for _ in range(reps):
        seconds, sha256 = time_encrypt(plain, sealed, kek)
        encrypt_s.append(seconds)
        decrypt_s.append(time_decrypt(sealed, kek, sha256))
    return {
        "size_mib": size / MIB,
        "encrypt_mib_per_s": [size / MIB / s for s in encrypt_s],
        "decrypt_to_memfd_mib_per_s": [size / MIB / s for s in decrypt_s],
        "peak_rss_mib_before": rss_before,
        "peak_rss_mib_after": peak_rss_mib(),
    }


def serve_start_s(home: Path, log: Path) -> float:
    port = free_port()
    env = home_env(home)
    started = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*DSDEPLOY, "serve", DEFAULT_MODEL, "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=300)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)


def serve_times(reps: int, work: Path) -> dict[str, list[float]]:
    """The default model from the configured home's store (pulled there if missing)."""
    homes = {"plain": work / "plain-home", "encrypted": work / "encrypted-home"}
    for home in homes.values():
        scratch_home(home)
    run_cli(home_env(homes["encrypted"]), "keygen-weights")
    run_cli(home_env(homes["encrypted"]), "encrypt", DEFAULT_MODEL)
    times: dict[str, list[float]] = {name: [] for name in homes}
    for rep in range(reps):
        order = list(homes) if rep % 2 == 0 else list(reversed(homes))
        for name in order:
            times[name].append(serve_start_s(homes[name], work / f"serve-{name}.log"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="256 MiB, one rep of each")
    args = parser.parse_args()
    if args.quick:
        args.size_mib, args.reps = 256, 1
    work = Path(tempfile.mkdtemp(prefix="dsdeploy-crypto-bench-"))
    try:
        speed = throughput(args.size_mib * MIB, args.reps, work)
        (work / "plain.bin").unlink()
        (work / "sealed.bin").unlink()
        starts = serve_times(args.reps, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(speed, starts, args)


def report(
    speed: dict[str, object], starts: dict[str, list[float]], args: argparse.Namespace
) -> None:
    load = os.getloadavg()[0]
    print(
        f"{args.size_mib} MiB, {args.reps} reps, load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    for what in ("encrypt_mib_per_s", "decrypt_to_memfd_mib_per_s"):
        values = speed[what]
        assert isinstance(values, list)
        each = " ".join(f"{v:.0f}" for v in values)
        print(f"{what:<28} median {statistics.median(values):7.0f}  each: {each}")
    print(
        f"peak RSS {speed['peak_rss_mib_before']:.0f} MiB before, "
        f"{speed['peak_rss_mib_after']:.0f} MiB after (file {args.size_mib} MiB)"
    )
    for name, values in starts.items():
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"serve start, {name:<10} median {statistics.median(values):6.2f} s  each: {each}")
    out = RESULTS.with_suffix(".quick.json") if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    medians = {name: statistics.median(values) for name, values in starts.items()}
    out.write_text(
        json.dumps(
            {
                **speed,
                "reps": args.reps,
                "load_average": load,
                "serve_start_s": starts,
                "median_serve_start_s": medians,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
