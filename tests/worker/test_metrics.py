"""WorkerMetrics: its own registry, the typed API, the exposition."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry

from worker.metrics import DELIVERY_BUCKETS, WorkerMetrics


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_each_instance_has_its_own_registry() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()  # no "Duplicated timeseries" error
    first.claimed()
    assert value(first, "factory_worker_claims_total") == 1
    assert value(second, "factory_worker_claims_total") == 0
    assert prometheus_client.REGISTRY.get_sample_value("factory_worker_claims_total") is None


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry=registry, namespace="w")
    metrics.completed()
    assert registry.get_sample_value("w_completes_total") == 1


def test_the_counters_count() -> None:
    metrics = WorkerMetrics()
    metrics.claimed()
    metrics.completed()
    metrics.failed(retryable=True)
    metrics.failed(retryable=True)
    metrics.failed(retryable=False)
    metrics.dead_lettered()
    metrics.lease_lost()
    metrics.reply_sent("telegram")
    metrics.reply_sent("app")
    assert value(metrics, "factory_worker_claims_total") == 1
    assert value(metrics, "factory_worker_completes_total") == 1
    assert value(metrics, "factory_worker_fails_total", retryable="true") == 2
    assert value(metrics, "factory_worker_fails_total", retryable="false") == 1
    assert value(metrics, "factory_worker_dead_letters_total") == 1
    assert value(metrics, "factory_worker_lease_losses_total") == 1
    assert value(metrics, "factory_worker_replies_sent_total", channel="telegram") == 1
    assert value(metrics, "factory_worker_replies_sent_total", channel="app") == 1


def test_label_values_exist_before_the_first_event() -> None:
    metrics = WorkerMetrics(channels=("telegram", "app"))
    assert value(metrics, "factory_worker_fails_total", retryable="true") == 0
    assert value(metrics, "factory_worker_fails_total", retryable="false") == 0
    assert value(metrics, "factory_worker_replies_sent_total", channel="app") == 0


def test_busy_gauge() -> None:
    metrics = WorkerMetrics()
    metrics.set_busy(True)
    assert value(metrics, "factory_worker_busy") == 1
    metrics.set_busy(False)
    assert value(metrics, "factory_worker_busy") == 0


def test_histograms_cover_fifty_milliseconds_to_five_minutes() -> None:
    assert DELIVERY_BUCKETS[0] == 0.05
    assert DELIVERY_BUCKETS[-1] == 300
    metrics = WorkerMetrics()
    metrics.delivery_seconds.observe(0.04)
    metrics.delivery_seconds.observe(42)
    metrics.job_seconds.observe(400)
    assert value(metrics, "factory_worker_delivery_seconds_bucket", le="0.05") == 1
    assert value(metrics, "factory_worker_delivery_seconds_bucket", le="60.0") == 2
    assert value(metrics, "factory_worker_delivery_seconds_count") == 2
    assert value(metrics, "factory_worker_job_seconds_bucket", le="300.0") == 0
    assert value(metrics, "factory_worker_job_seconds_bucket", le="600.0") == 1


def test_exposition_negotiates_the_format() -> None:
    metrics = WorkerMetrics()
    metrics.claimed()
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    assert b"factory_worker_claims_total 1.0" in body
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
