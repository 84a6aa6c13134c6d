"""Local mode keeps job state in SQLite: jobs a stopped server had accepted finish after restart."""

from __future__ import annotations

import time
from pathlib import Path

from fluxai.serve.jobs import PENDING, RUNNING, Job, SQLiteStore
from fluxai.serve.schemas import GenSpec
from tests.serve.conftest import TEST_MODEL, start_server, test_config, wait_status


def test_jobs_left_pending_or_running_by_a_dead_server_end_ready(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.sqlite")
    spec = GenSpec(prompt="left behind", width=64, height=64, steps=2).to_dict()
    # What a killed server leaves: one job mid-run, two never started.
    store.create(Job(id="running1", spec=spec, model=TEST_MODEL, status=RUNNING, step=1,
                     steps=2, started_at=time.time()))
    for i in range(2):
        store.create(Job(id=f"pending{i}", spec=spec, model=TEST_MODEL, status=PENDING))
    server = start_server(test_config(tmp_path))
    try:
        with server.client() as c:
            done = [wait_status(c, i, {"Ready", "Error", "Cancelled"})
                    for i in ("running1", "pending0", "pending1")]
    finally:
        server.stop()
    assert [d["status"] for d in done] == ["Ready"] * 3
