"""`/metrics` in Prometheus' text format, read from the job store at scrape time, so every API
replica reports the same numbers for the whole service (workers included)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from fluxai.serve.jobs import BUCKETS, PENDING, RUNNING, STATUSES, JobStore

RATE_WINDOW_S = 60.0


class StoreCollector:
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self) -> Iterator[Any]:
        s = self.store.stats()
        yield GaugeMetricFamily("fluxai_queue_depth", "Jobs waiting for a worker",
                                value=self.store.count(PENDING))
        yield GaugeMetricFamily("fluxai_jobs_running", "Jobs being generated now",
                                value=self.store.count(RUNNING))
        finished = CounterMetricFamily("fluxai_jobs_finished", "Jobs finished, by final status",
                                       labels=["status"])
        for status in STATUSES[2:]:
            finished.add_metric([status], s.get(f"jobs_{status}", 0.0))
        yield finished
        buckets = [(str(b), s.get(f"latency_le_{b}", 0.0)) for b in BUCKETS]
        buckets.append(("+Inf", s.get("latency_count", 0.0)))
        yield HistogramMetricFamily("fluxai_job_latency_seconds",
                                    "Time from accepting a job to its images being ready",
                                    buckets=buckets, sum_value=s.get("latency_sum", 0.0))
        yield CounterMetricFamily("fluxai_images_generated", "Images generated",
                                  value=s.get("images", 0.0))
        yield GaugeMetricFamily("fluxai_images_per_second",
                                f"Images generated per second over the last {RATE_WINDOW_S:g} s",
                                value=self.store.recent_images(RATE_WINDOW_S) / RATE_WINDOW_S)
        yield CounterMetricFamily("fluxai_cache_hits", "Requests answered from the result cache",
                                  value=s.get("cache_hits", 0.0))
        errors = CounterMetricFamily("fluxai_http_errors", "Error responses, by HTTP status",
                                     labels=["code"])
        for name, value in sorted(s.items()):
            if name.startswith("http_"):
                errors.add_metric([name[5:]], value)
        yield errors


def render(store: JobStore) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))  # type: ignore[arg-type]
    return generate_latest(registry)
