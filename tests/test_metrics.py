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
    assert 'engine_events_skipped_total{destination="calixa",reason="odd \\"quoted\\"\\nreason\\\\"} 1.0' in text
    assert 'engine_outbox_jobs{status="pending"} 3' in text
    assert 'engine_delivery_latency_seconds_bucket{destination="calixa",le="0.25"} 1' in text
    assert 'engine_delivery_latency_seconds_bucket{destination="calixa",le="10"} 2' in text
    assert 'engine_delivery_latency_seconds_bucket{destination="calixa",le="+Inf"} 2' in text
    assert 'engine_delivery_latency_seconds_sum{destination="calixa"} 7.2' in text
    assert "# TYPE engine_requests_delivered_total counter" in text  # declared even before use
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert text.endswith("\n")


def test_another_process_figures_are_counted_in_and_never_go_down() -> None:
    shim, delivery = Metrics(), Metrics()
    shim.inc("events_received_total", 5, source="web")
    delivery.inc("requests_delivered_total", 3, destination="calixa")
    delivery.observe_latency("calixa", 0.2)
    shim.absorb("delivery-1", delivery.snapshot())
    delivery.inc("requests_delivered_total", 1, destination="calixa")
    shim.absorb("delivery-1", delivery.snapshot())  # cumulative: replaces, does not add
    assert shim.value("requests_delivered_total", destination="calixa") == 4
    shim.retire("delivery-1")  # it died; its successor starts from zero
    successor = Metrics()
    successor.inc("requests_delivered_total", 2, destination="calixa")
    shim.absorb("delivery-2", successor.snapshot())
    assert shim.value("requests_delivered_total", destination="calixa") == 6
    text = shim.render()
    assert 'engine_requests_delivered_total{destination="calixa"} 6' in text
    assert 'engine_events_received_total{source="web"} 5' in text
    assert 'engine_delivery_latency_seconds_count{destination="calixa"} 1' in text
