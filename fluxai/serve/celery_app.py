"""Distributed mode: Celery over Redis. Late acknowledgement and prefetch 1 mean a message is
acknowledged only after its job is stored as finished, so a killed worker's job goes back to the
queue (after the visibility timeout) instead of being lost; job state lives in Redis."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery

from fluxai.serve.config import ServeConfig
from fluxai.serve.jobs import PENDING, RUNNING, TERMINAL, RedisStore

TASK = "fluxai.generate"
QUEUE = "fluxai"
log = logging.getLogger("fluxai.worker")
_state: dict[str, Any] = {}  # the worker process's engine and store, set before it consumes


def make_celery(cfg: ServeConfig) -> Celery:
    app = Celery("fluxai", broker=cfg.broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_transport_options={
            "visibility_timeout": cfg.visibility_timeout_s,
            # kombu looks for overdue unacknowledged messages every 10 s and only scans on
            # every 10th look (100 s); scan more often so redelivery follows the timeout.
            "unacked_restore_interval": max(1, min(10, cfg.visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.task(name=TASK, bind=False)(generate)
    return app


def claim(store: RedisStore, job_id: str, me: str, stale_after_s: float) -> bool:
    """Wait until this worker may run the job: it is Pending, or its Running worker has stopped
    beating. False when there is nothing to do (finished, cancelled, gone)."""
    while True:
        job = store.get(job_id)
        if job is None or job.status in TERMINAL:
            return False
        now = time.time()
        if job.status == PENDING:
            if store.transition(job_id, {PENDING}, RUNNING, worker=me, heartbeat=now,
                                started_at=now):
                return True
            continue
        if job.worker == me or job.heartbeat is None or now - job.heartbeat > stale_after_s:
            # Redelivered after its worker died: take it over from the last step.
            if store.transition(job_id, {RUNNING}, RUNNING, worker=me, heartbeat=now, step=0,
                                started_at=now):
                log.info("taking over job %s from %s", job_id, job.worker)
                return True
            continue
        time.sleep(0.5)  # a redelivery while its worker still lives: wait for the outcome


def generate(job_id: str) -> None:
    engine, store, cfg = _state["engine"], _state["store"], _state["cfg"]
    if not claim(store, job_id, engine.name, cfg.stale_after_s):
        return
    job = store.get(job_id)
    if job is not None:
        engine.run([job])


class CeleryDispatch:
    """The API side: queue a job's id as a Celery message; readiness asks Redis and workers."""

    def __init__(self, cfg: ServeConfig, store: RedisStore):
        self.cfg = cfg
        self.store = store
        self.app = make_celery(cfg)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def submit(self, job_id: str) -> None:
        self.app.send_task(TASK, args=[job_id], queue=QUEUE)

    def ready(self) -> tuple[bool, str]:
        if not self.store.ping():
            return False, f"broker {self.cfg.broker} is not reachable"
        workers = self.store.workers()
        if not workers:
            return False, "no worker has announced itself with a loaded model"
        return True, f"{len(workers)} worker(s) ready"

    def models(self) -> list[str]:
        return sorted({w["model"] for w in self.store.workers()} or {self.cfg.model})

    def depth(self) -> int:
        return self.store.count(PENDING)


def run_worker(cfg: ServeConfig) -> None:
    """Load the model once, announce this worker every few seconds, consume one job at a time."""
    from fluxai.serve.engine import Engine

    store = RedisStore(cfg.broker or "", file_ttl_s=cfg.file_ttl_s)
    if not store.ping():
        raise ConnectionError(f"broker {cfg.broker} is not reachable")
    engine = Engine(cfg, store)
    _state.update(engine=engine, store=store, cfg=cfg)

    def announce() -> None:
        while True:
            store.worker_alive(engine.name, {"name": engine.name, "model": cfg.model})
            time.sleep(5)

    threading.Thread(target=announce, daemon=True).start()
    app = make_celery(cfg)
    # solo pool: the task runs in this process, next to the loaded model; scale with processes.
    app.Worker(pool="solo", concurrency=1, queues=[QUEUE], loglevel="INFO",
               hostname=f"fluxai@{engine.name}", without_gossip=True, without_mingle=True,
               without_heartbeat=True).start()
