"""Pull throughput: dsdeploy's downloader (sha256 while downloading, fsync, rename into the
store) against curl writing the same file, from the same loopback server, in the same run.

The server sends the file with ``sendfile`` so that it is not the bottleneck; ``--rate-mbps``
caps it, to compare at a realistic link speed too. The two clients alternate, which one
goes first alternating too, for ``--reps`` rounds; the table shows the median of each.

    python benchmarks/pull_throughput.py [--size-mib 1024] [--reps 5] [--rate-mbps 0]

Prints a table and writes benchmarks/results/pull_throughput.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dsdeploy.sources.fetch import RemoteFile, download
from dsdeploy.store import Store

RESULTS = Path(__file__).parent / "results" / "pull_throughput.json"
SEND_CHUNK = 4 << 20


def serve_file(path: Path, rate: float | None) -> ThreadingHTTPServer:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            del format, args

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            began, sent = time.monotonic(), 0
            with path.open("rb") as source:
                while sent < size:
                    sent += self.connection.sendfile(source, sent, min(SEND_CHUNK, size - sent))
                    if rate:
                        time.sleep(max(0.0, sent / rate - (time.monotonic() - began)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def time_curl(url: str, dest: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
    elapsed = time.perf_counter() - began
    dest.unlink()
    return elapsed


def time_dsdeploy(url: str, remote: RemoteFile, root: Path) -> float:
    store = Store(root)
    began = time.perf_counter()
    stored = download(remote, store, lambda done, total: None)
    elapsed = time.perf_counter() - began
    assert stored.sha256 == remote.sha256
    shutil.rmtree(root)
    return elapsed


def make_file(path: Path, size: int) -> str:
    """Random bytes (nothing compresses or dedups them), and their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // (1 << 20)):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rate-mbps", type=float, default=0, help="server cap, MB/s (0: none)")
    args = parser.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="pull-bench-", dir=Path.home()))
    try:
        source = work / "model.bin"
        sha256 = make_file(source, size)
        server = serve_file(source, args.rate_mbps * 1e6 or None)
        url = f"http://127.0.0.1:{server.server_address[1]}/model.bin"
        remote = RemoteFile("model.bin", url, size, sha256)
        times: dict[str, list[float]] = {"curl": [], "dsdeploy": []}
        for rep in range(args.reps):
            order = ["curl", "dsdeploy"] if rep % 2 == 0 else ["dsdeploy", "curl"]
            for client in order:
                if client == "curl":
                    times["curl"].append(time_curl(url, work / "curl.out"))
                else:
                    times["dsdeploy"].append(time_dsdeploy(url, remote, work / "store"))
        server.shutdown()
        server.server_close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(times, size, args)


def report(times: dict[str, list[float]], size: int, args: argparse.Namespace) -> None:
    speeds = {name: [size / t / 1e6 for t in runs] for name, runs in times.items()}
    medians = {name: statistics.median(runs) for name, runs in speeds.items()}
    ratio = medians["dsdeploy"] / medians["curl"]
    print(
        f"{args.size_mib} MiB over loopback, {args.reps} alternating reps, server cap "
        f"{args.rate_mbps or 'none'} MB/s"
    )
    print(f"{'client':<10} {'median MB/s':>12}  each rep (MB/s)")
    for name, runs in speeds.items():
        print(f"{name:<10} {medians[name]:>12.0f}  {' '.join(f'{s:.0f}' for s in runs)}")
    print(f"dsdeploy / curl = {ratio:.2f} (sha256 and fsync included on the dsdeploy side)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "size_mib": args.size_mib,
                "reps": args.reps,
                "rate_mbps": args.rate_mbps,
                "mb_per_s": speeds,
                "median_mb_per_s": medians,
                "ratio_dsdeploy_to_curl": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
