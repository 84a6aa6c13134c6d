"""The in-process queue of `fluxai serve` without a broker: one worker thread that gathers jobs
arriving together into one forward pass when their settings allow it."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from fluxai.serve.config import ServeConfig
from fluxai.serve.jobs import PENDING, RUNNING, Job, JobStore
from fluxai.serve.schemas import GenSpec

log = logging.getLogger("fluxai.serve")


def pick_batch(first: Job, waiting: list[Job], max_images: int) -> list[Job]:
    """`first` plus the waiting jobs that share its settings, in arrival order, while the batch
    holds at most `max_images` images (a lone job larger than that still runs alone)."""
    key = GenSpec.from_dict(first.spec).batch_key()
    batch, images = [first], GenSpec.from_dict(first.spec).n
    for job in waiting:
        spec = GenSpec.from_dict(job.spec)
        if spec.batch_key() == key and images + spec.n <= max_images:
            batch.append(job)
            images += spec.n
    return batch


class LocalQueue:
    def __init__(self, cfg: ServeConfig, store: JobStore, make_engine: Callable[[], object]):
        self.cfg = cfg
        self.store = store
        self._make_engine = make_engine
        self.engine = None
        self.load_error: str | None = None
        self._ids: deque[str] = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._main, name="fluxai-worker", daemon=True)

    # -- what the API calls ---------------------------------------------------------------------
    def start(self) -> None:
        # Jobs a previous process accepted but did not finish run again: nothing is lost.
        for job_id in self.store.ids_with_status(RUNNING):
            self.store.transition(job_id, {RUNNING}, PENDING, step=0, preview=None)
        with self._cv:
            self._ids.extend(self.store.ids_with_status(PENDING))
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def submit(self, job_id: str) -> None:
        with self._cv:
            self._ids.append(job_id)
            self._cv.notify_all()

    def ready(self) -> tuple[bool, str]:
        if self.load_error:
            return False, f"model failed to load: {self.load_error}"
        if self.engine is None:
            return False, f"loading model {self.cfg.model}"
        return True, f"model {self.cfg.model} loaded"

    def models(self) -> list[str]:
        return [self.cfg.model]

    # -- the worker thread ----------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self.engine = self._make_engine()
        except Exception as e:
            self.load_error = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            log.error("fluxai serve: %s", self.load_error)
            return
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            try:
                self.engine.run(batch)  # type: ignore[attr-defined]
            except Exception:  # the store itself failed: log it, keep serving the others
                log.exception("fluxai serve: batch of %d job(s) failed", len(batch))

    def _next_batch(self) -> list[Job] | None:
        with self._cv:
            while not self._ids and not self._stop:
                self._cv.wait()
            if self._stop:
                return None
            # Give requests sent at the same moment a chance to share the pass.
            deadline = time.monotonic() + self.cfg.batch_wait_ms / 1000
            while len(self._ids) < self.cfg.max_batch and time.monotonic() < deadline:
                self._cv.wait(timeout=max(0.0, deadline - time.monotonic()))
            waiting_ids = list(self._ids)
        jobs = [j for j in (self.store.get(i) for i in waiting_ids)
                if j is not None and j.status == PENDING]
        batch: list[Job] = []
        if jobs:
            for job in pick_batch(jobs[0], jobs[1:], self.cfg.max_batch):
                if self.store.transition(job.id, {PENDING}, RUNNING, started_at=time.time(),
                                         worker=self.engine.name):  # type: ignore[attr-defined]
                    batch.append(job)
        taken = {j.id for j in batch} | {i for i in waiting_ids
                                        if i not in {j.id for j in jobs}}
        with self._cv:
            self._ids = deque(i for i in self._ids if i not in taken)
        return batch

    def depth(self) -> int:
        return self.store.count(PENDING)
