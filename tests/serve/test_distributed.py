"""Distributed mode for real: a `redis-server`, `fluxai worker` processes and a `fluxai serve
--broker` API. A worker killed mid-job and an API restart lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import TEST_MODEL, free_port, wait_ready

ENGINE = ["--model", TEST_MODEL, "--threads", "1", "--visibility-timeout", "4",
          "--stale-after", "3", "--previews", "1"]
TERMINAL = {"Ready", "Error", "Moderated", "Cancelled"}


class Procs:
    def __init__(self, redis_url: str, logs: Path):
        self.redis_url = redis_url
        self.logs = logs
        self.running: list[subprocess.Popen] = []
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def spawn(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        # Children inherit the test's niceness; adding more would starve them on a busy box.
        proc = subprocess.Popen([sys.executable, "-m", "fluxai.cli.main",
                                 *args, "--broker", self.redis_url, *ENGINE],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.running.append(proc)
        return proc

    def worker(self, name: str) -> subprocess.Popen:
        return self.spawn("worker", name=name)

    def api(self, port: int) -> subprocess.Popen:
        return self.spawn("serve", "--port", str(port), "--max-steps", "400", name="api")

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def procs(redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(redis_url, tmp_path)
    yield p
    p.stop_all()


def _poll_all(url: str, ids: list[str], timeout_s: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10) as c:
        while True:
            jobs = {i: c.get(f"/v1/jobs/{i}").json() for i in ids}
            if all(j["status"] in TERMINAL for j in jobs.values()) or time.monotonic() > deadline:
                return jobs
            time.sleep(0.2)


@pytest.mark.slow  # four processes start under a shared CPU: about a minute
def test_killed_worker_and_restarted_api_lose_no_job(procs: Procs) -> None:
    workers = [procs.worker("w1"), procs.worker("w2")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = procs.api(port)
    wait_ready(url, timeout_s=600)
    body = {"size": "128x128", "steps": 60}
    with httpx.Client(base_url=url, timeout=30) as c:
        ids = [c.post("/v1/jobs", json={**body, "prompt": f"job {i}"}).json()["id"]
               for i in range(6)]
        # Wait for a job to be running, then kill its worker without warning.
        victim = None
        deadline = time.monotonic() + 600
        while victim is None:
            assert time.monotonic() < deadline, "no job was seen running"
            for i in ids:
                job = c.get(f"/v1/jobs/{i}").json()
                if job["status"] == "Running" and job["step"] >= 1:
                    victim = job
                    break
            time.sleep(0.05)
    host_pid = victim["worker"].rsplit(":", 1)[1]
    killed = [w for w in workers if str(w.pid) == host_pid]
    assert killed, f"job runs on {victim['worker']}, none of {[w.pid for w in workers]}"
    os.kill(killed[0].pid, signal.SIGKILL)
    killed[0].wait()
    # The API goes down and comes back; Redis holds every job meanwhile.
    api.terminate()
    api.wait(timeout=30)
    procs.api(port)
    wait_ready(url, timeout_s=600)
    jobs = _poll_all(url, ids, timeout_s=600)
    assert {i: j["status"] for i, j in jobs.items()} == {i: "Ready" for i in ids}
    # The killed worker's job was finished by the survivor.
    assert jobs[victim["id"]]["worker"] != victim["worker"]
