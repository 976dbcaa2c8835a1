"""Counters and a latency histogram, written out in Prometheus' text format."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

__all__ = ["Metrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_HELP = {
    "events_received_total": "Events received, by source.",
    "events_rejected_total": "Events rejected as invalid, by source.",
    "events_mapped_total": "Requests mapped, by destination.",
    "events_skipped_total": "Events a destination skipped, by destination and reason.",
    "requests_duplicate_total": "Requests dropped as duplicates of a messageId seen in 24 hours.",
    "requests_delivered_total": "Requests delivered (2xx), by destination.",
    "requests_retried_total": "Attempts that failed and will be retried, by destination.",
    "requests_dead_lettered_total": "Requests moved to the dead letters, by destination.",
    "requests_suppressed_total": "Requests suppressed by a once-per-key window, by destination.",
}


class Metrics:
    """Thread-safe counters keyed by name and labels; `gauges` are read when rendered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._latency: dict[str, list[float]] = {}
        self.gauges: dict[str, Callable[[], dict[str, float]]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += amount

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def observe_latency(self, destination: str, seconds: float) -> None:
        with self._lock:
            buckets = self._latency.setdefault(destination, [0.0] * (len(_BUCKETS) + 2))
            for i, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-2] += 1          # count
            buckets[-1] += seconds    # sum

    def render(self) -> str:
        """All metrics in Prometheus' text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
            latency = {k: list(v) for k, v in self._latency.items()}
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = defaultdict(list)
        for (name, labels), value in counters.items():
            by_name[name].append((labels, value))
        for name in sorted(set(by_name) | set(_HELP)):
            full = f"engine_{name}"
            lines.append(f"# HELP {full} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {full} counter")
            for labels, value in sorted(by_name.get(name, [])):
                lines.append(f"{full}{_labels(labels)} {value:g}")
        for name, read in sorted(self.gauges.items()):
            full = f"engine_{name}"
            lines.append(f"# TYPE {full} gauge")
            for label, value in sorted(read().items()):
                lines.append(f"{full}{_labels((('status', label),))} {value:g}")
        lines.append("# HELP engine_delivery_latency_seconds Time from acceptance to delivery.")
        lines.append("# TYPE engine_delivery_latency_seconds histogram")
        for destination, buckets in sorted(latency.items()):
            base = (("destination", destination),)
            for i, bound in enumerate(_BUCKETS):
                lines.append(f"engine_delivery_latency_seconds_bucket{_labels(base + (('le', f'{bound:g}'),))} {buckets[i]:g}")
            lines.append(f"engine_delivery_latency_seconds_bucket{_labels(base + (('le', '+Inf'),))} {buckets[-2]:g}")
            lines.append(f"engine_delivery_latency_seconds_count{_labels(base)} {buckets[-2]:g}")
            lines.append(f"engine_delivery_latency_seconds_sum{_labels(base)} {buckets[-1]:g}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
               for k, v in labels)
    return "{" + ",".join(escaped) + "}"
