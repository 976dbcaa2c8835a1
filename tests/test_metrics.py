"""Prometheus text output."""

from engine.metrics import Metrics


def test_counters_gauges_and_histogram_render() -> None:
    metrics = Metrics()
    metrics.inc("events_received_total", source="web")
    metrics.inc("events_received_total", 2, source="web")
    metrics.inc("events_skipped_total", destination="calixa", reason='odd "quoted"\nreason\\')
    metrics.gauges["outbox_jobs"] = lambda: {"pending": 3.0}
    metrics.observe_latency("calixa", 0.2)
    metrics.observe_latency("calixa", 7.0)
    text = metrics.render()
    assert 'engine_events_received_total{source="web"} 3' in text
    assert 'engine_events_skipped_total{destination="calixa",reason="odd \\"quoted\\" reason\\\\"} 1' in text
    assert 'engine_outbox_jobs{status="pending"} 3' in text
    assert 'engine_delivery_latency_seconds_bucket{destination="calixa",le="0.25"} 1' in text
    assert 'engine_delivery_latency_seconds_bucket{destination="calixa",le="10"} 2' in text
    assert 'engine_delivery_latency_seconds_bucket{destination="calixa",le="+Inf"} 2' in text
    assert 'engine_delivery_latency_seconds_sum{destination="calixa"} 7.2' in text
    assert "# TYPE engine_requests_delivered_total counter" in text  # declared even before use
    assert text.endswith("\n")
