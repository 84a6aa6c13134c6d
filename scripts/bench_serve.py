"""Load benchmark of `fluxai serve`: N requests from C concurrent clients against a local server.

    python scripts/bench_serve.py --model flux-tiny --requests 200 --clients 16
    python scripts/bench_serve.py --compare-batching   # --max-batch 1 against the default 8

Starts the server as its own process (so the clients do not share its interpreter), sends
`POST /v1/images/generations` with a fresh random seed each (no cache hits), and prints failures,
latency percentiles and images/s as a markdown table row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import httpx
from tqdm import tqdm


@dataclass
class Result:
    label: str
    latencies: list[float]
    failures: int
    wall_s: float
    images: int

    def row(self) -> str:
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0] * 99
        return (f"| {self.label} | {len(self.latencies) + self.failures} | {self.failures} | "
                f"{q[49]:.2f} | {q[94]:.2f} | {self.images / self.wall_s:.2f} |")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, max_batch: int, data_dir: str) -> tuple[
        subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "fluxai.cli.main", "serve", "--model", args.model,
           "--port", str(port), "--data-dir", data_dir, "--max-batch", str(max_batch),
           "--previews", "0", "--rate-limit", "0"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-500:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise TimeoutError("server not ready after 300 s")


def load(url: str, args: argparse.Namespace, label: str) -> Result:
    body = {"prompt": "a red circle above a blue square", "response_format": "url"}
    if args.size:
        body["size"] = args.size
    if args.steps:
        body["steps"] = args.steps
    todo = iter(range(args.requests))
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    bar = tqdm(total=args.requests, desc=label)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/images/generations", json={**body, "seed": 1000 + i})
                    ok = r.status_code == 200 and len(r.json()["data"]) == 1
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        failures[0] += 1
                    bar.update(1)

    # One warm-up request, so the first pass does not time lazy initialisation.
    httpx.post(f"{url}/v1/images/generations", json={**body, "seed": 1}, timeout=600)
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    bar.close()
    return Result(label, latencies, failures[0], wall, len(latencies))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.environ.get("FLUXAI_BENCH_MODEL", "flux-tiny"))
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--size", default=None, help="WxH (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="default: the model's")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads in the server")
    p.add_argument("--compare-batching", action="store_true",
                   help="also run with --max-batch 1 to measure what batching gains")
    args = p.parse_args()
    if args.requests < 1 or args.clients < 1:
        p.error("--requests and --clients must be positive")
    batches = [1, args.max_batch] if args.compare_batching else [args.max_batch]
    results = []
    for max_batch in batches:
        with tempfile.TemporaryDirectory() as data_dir:
            proc, url = start_server(args, max_batch, data_dir)
            try:
                results.append(load(url, args, f"{args.model}, max-batch {max_batch}"))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    print("| server | requests | failures | p50 s | p95 s | images/s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    return 0 if all(r.failures == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
