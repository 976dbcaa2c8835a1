"""Counters, gauges and a latency histogram, exposed through prometheus_client (one registry
per Metrics, so one per app), with this process's own figures (`process_*`)."""

from __future__ import annotations

import resource
import threading
from collections import defaultdict
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "Snapshot"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_GAUGE_HELP = {"outbox_jobs": "Jobs in the outbox, by status."}

_HELP = {
    "events_received_total": "Events received, by source.",
    "events_rejected_total": "Events rejected as invalid, by source.",
    "requests_mapped_total": "Requests mapped, by destination.",
    "events_skipped_total": "Events a destination skipped, by destination and reason.",
    "requests_duplicate_total": "Requests dropped as duplicates of a messageId seen in 24 hours.",
    "requests_delivered_total": "Requests delivered (2xx), by destination.",
    "requests_retried_total": "Attempts that failed and will be retried, by destination.",
    "requests_dead_lettered_total": "Requests moved to the dead letters, by destination.",
}


Snapshot = dict[str, Any]
"""Counters and latency buckets as plain JSON data, to carry them from one process to another."""


class Metrics:
    """Thread-safe counters keyed by name and labels; `gauges` are read when rendered.

    Another process's figures (the delivery process that `serve` starts) are added in with
    `absorb`, so that one scrape sees the whole deployment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._latency: dict[str, list[float]] = {}
        self._peers: dict[str, Snapshot] = {}
        self.gauges: dict[str, Callable[[], dict[str, float]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EngineCollector(self))
        ProcessCollector(registry=self.registry)

    def snapshot(self) -> Snapshot:
        """Every counter and latency bucket, cumulative, and this process's CPU time and
        peak memory, as JSON data."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with self._lock:
            return {"counters": [[name, [list(kv) for kv in labels], value]
                                 for (name, labels), value in self._counters.items()],
                    "latency": {k: list(v) for k, v in self._latency.items()},
                    "process": {"cpu_seconds": usage.ru_utime + usage.ru_stime,
                                "resident_memory_bytes": usage.ru_maxrss * 1024}}

    def absorb(self, peer: str, snapshot: Snapshot) -> None:
        """Count `peer`'s cumulative figures in: its newest snapshot replaces its last one."""
        with self._lock:
            self._peers[peer] = snapshot

    def retire(self, peer: str) -> None:
        """`peer` ended (its counters restart with its successor): keep its last figures as
        this process's own, so that counters never go down."""
        with self._lock:
            snapshot = self._peers.pop(peer, None)
            if snapshot is not None:
                self._add(snapshot, self._counters, self._latency)

    @staticmethod
    def _add(snapshot: Snapshot, counters: dict[tuple[str, tuple[tuple[str, str], ...]], float],
             latency: dict[str, list[float]]) -> None:
        for name, labels, value in snapshot.get("counters", []):
            key = (name, tuple((str(k), str(v)) for k, v in labels))
            counters[key] = counters.get(key, 0.0) + float(value)
        for destination, buckets in snapshot.get("latency", {}).items():
            mine = latency.setdefault(destination, [0.0] * (len(_BUCKETS) + 2))
            for i, value in enumerate(buckets[: len(mine)]):
                mine[i] += float(value)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += amount

    def value(self, name: str, **labels: str) -> float:
        counters, _ = self._totals()
        return counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def _totals(self) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], dict[str, list[float]]]:
        with self._lock:
            counters = dict(self._counters)
            latency = {k: list(v) for k, v in self._latency.items()}
            peers = list(self._peers.values())
        for snapshot in peers:
            self._add(snapshot, counters, latency)
        return counters, latency

    def observe_latency(self, destination: str, seconds: float) -> None:
        with self._lock:
            buckets = self._latency.setdefault(destination, [0.0] * (len(_BUCKETS) + 2))
            for i, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-2] += 1          # count
            buckets[-1] += seconds    # sum

    def render(self) -> str:
        """All metrics in Prometheus' text exposition format (version 0.0.4): the engine's,
        a delivery process's it absorbed, and this process's own (`process_*`)."""
        return generate_latest(self.registry).decode()

    def _families(self) -> Iterator[Any]:
        counters, latency = self._totals()
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = defaultdict(list)
        for (name, labels), value in counters.items():
            by_name[name].append((labels, value))
        for name in sorted(set(by_name) | set(_HELP)):
            series = sorted(by_name.get(name, []))
            label_names = [k for k, _ in series[0][0]] if series else []
            family = CounterMetricFamily(f"engine_{name}", _HELP.get(name, name), labels=label_names)
            for labels, value in series:
                family.add_metric([v for _, v in labels], value)
            yield family
        for name, read in sorted(self.gauges.items()):
            gauge = GaugeMetricFamily(f"engine_{name}", _GAUGE_HELP.get(name, name), labels=["status"])
            for label, value in sorted(read().items()):
                gauge.add_metric([label], value)
            yield gauge
        histogram = HistogramMetricFamily("engine_delivery_latency_seconds",
                                          "Time from acceptance to delivery.", labels=["destination"])
        for destination, buckets in sorted(latency.items()):
            bounds = [(f"{bound:g}", buckets[i]) for i, bound in enumerate(_BUCKETS)]
            histogram.add_metric([destination], bounds + [("+Inf", buckets[-2])], buckets[-1])
        yield histogram
        with self._lock:
            peers = [p["process"] for p in self._peers.values() if p.get("process")]
        if peers:
            cpu = CounterMetricFamily("engine_delivery_process_cpu_seconds",
                                      "CPU time of the delivery process serve runs beside it.")
            cpu.add_metric([], sum(float(p["cpu_seconds"]) for p in peers))
            rss = GaugeMetricFamily("engine_delivery_process_max_resident_memory_bytes",
                                    "Peak resident memory of the delivery process serve runs beside it.")
            rss.add_metric([], sum(float(p["resident_memory_bytes"]) for p in peers))
            yield cpu
            yield rss


class _EngineCollector(Collector):
    """Reads a Metrics when its registry is scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics._families()
