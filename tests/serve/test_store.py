"""Both job stores keep the same promises: compare-and-set status changes, idempotency keys,
state that outlives the process, files and counters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxai.serve.jobs import (
    CANCELLED,
    PENDING,
    READY,
    RUNNING,
    Job,
    JobStore,
    RedisStore,
    SQLiteStore,
    new_id,
)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "jobs.sqlite")
    else:
        url = request.getfixturevalue("redis_url")
        yield RedisStore(url, prefix=f"test-{new_id()}:")


def job(**kw: object) -> Job:
    return Job(id=new_id(), spec={"prompt": "p"}, model="m", **kw)  # type: ignore[arg-type]


def test_created_job_reads_back_equal(store: JobStore) -> None:
    j = job(parameters=[{"seed": 1}], files=["a"])
    store.create(j)
    assert store.get(j.id) == j


def test_transition_only_from_allowed_status(store: JobStore) -> None:
    j = job()
    store.create(j)
    assert store.transition(j.id, {PENDING}, CANCELLED)
    # The worker's Pending -> Running now loses: a cancelled job never starts.
    assert not store.transition(j.id, {PENDING}, RUNNING)
    assert store.get(j.id).status == CANCELLED  # type: ignore[union-attr]


def test_status_counts_follow_transitions(store: JobStore) -> None:
    a, b = job(), job()
    store.create(a)
    store.create(b)
    store.transition(a.id, {PENDING}, RUNNING)
    assert (store.count(PENDING), store.count(RUNNING)) == (1, 1)
    assert store.ids_with_status(RUNNING) == [a.id]


def test_same_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    first, created = store.create(job(), "key-1")
    again, created_again = store.create(job(), "key-1")
    assert created and not created_again and again.id == first.id


def test_update_changes_only_named_fields(store: JobStore) -> None:
    j = job()
    store.create(j)
    store.update(j.id, cancel_requested=True)
    store.update(j.id, step=3)
    got = store.get(j.id)
    assert got is not None and got.cancel_requested and got.step == 3


def test_files_round_trip(store: JobStore) -> None:
    store.put_file("f1", b"\x89PNG data")
    assert store.get_file("f1") == b"\x89PNG data"
    assert store.get_file("nope") is None


def test_finished_jobs_feed_counters_and_latency_buckets(store: JobStore) -> None:
    store.record_finished(READY, 0.3, 2)
    stats = store.stats()
    assert stats["images"] == 2 and stats["latency_le_0.5"] == 1
    assert "latency_le_0.25" not in stats
    assert store.recent_images(60) == 2


def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    j = job()
    SQLiteStore(tmp_path / "jobs.sqlite").create(j, "idem")
    reopened = SQLiteStore(tmp_path / "jobs.sqlite")
    assert reopened.get(j.id) == j
    assert reopened.create(job(), "idem")[0].id == j.id


def test_redis_forgets_finished_jobs_after_the_file_ttl(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"test-{new_id()}:", file_ttl_s=120)
    j = job()
    store.create(j)
    assert store.r.ttl(store._key(j.id)) == -1  # unfinished: kept until it finishes
    store.transition(j.id, {PENDING}, READY)
    assert 0 < store.r.ttl(store._key(j.id)) <= 120
    assert store.count(READY) == 0 and store.count(PENDING) == 0
