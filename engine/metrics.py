"""Counters and a latency histogram, written out in Prometheus' text format."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Callable

__all__ = ["Metrics", "Snapshot"]

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

    def snapshot(self) -> Snapshot:
        """Every counter and latency bucket, cumulative, as JSON data."""
        with self._lock:
            return {"counters": [[name, [list(kv) for kv in labels], value]
                                 for (name, labels), value in self._counters.items()],
                    "latency": {k: list(v) for k, v in self._latency.items()}}

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
        """All metrics in Prometheus' text exposition format (version 0.0.4)."""
        lines: list[str] = []
        counters, latency = self._totals()
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
