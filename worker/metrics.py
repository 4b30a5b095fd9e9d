"""The worker's Prometheus metrics, on a registry of its own.

Each ``WorkerMetrics`` owns a fresh ``CollectorRegistry`` instead of the process-global one, so two
workers (or two tests) in one process never collide on a metric name, and ``/metrics`` shows exactly
what this worker recorded. The worker loop calls the small methods below; ``/metrics`` renders
``exposition()``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

# From a fast gateway answer (~50 ms) to the longest LLM runs we let a lease live through (5 min).
DELIVERY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300)
# A job is a delivery plus hydration, the reply send (which may wait out a Telegram 429) and the
# store calls, so it gets one more bucket past the delivery ceiling.
JOB_BUCKETS: tuple[float, ...] = (*DELIVERY_BUCKETS, 600)

DEFAULT_CHANNELS: tuple[str, ...] = ("telegram",)
RESTORE_OUTCOMES: tuple[str, ...] = ("restored", "none", "skipped", "corrupt", "failed")
SNAPSHOT_OUTCOMES: tuple[str, ...] = ("ready", "refused", "failed")


class WorkerMetrics:
    """Counters, histograms and the busy gauge of one worker process."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "factory_worker",
        channels: Iterable[str] = DEFAULT_CHANNELS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ns, reg = namespace, self.registry
        self.claims = Counter("claims", "Jobs claimed from the queue.", namespace=ns, registry=reg)
        self.completes = Counter("completes", "Jobs completed.", namespace=ns, registry=reg)
        self.fails = Counter("fails", "Jobs failed back to the queue.", ["retryable"], namespace=ns, registry=reg)
        self.dead_letters = Counter(
            "dead_letters", "Failed jobs the store moved to the dead letter.", namespace=ns, registry=reg
        )
        self.releases = Counter(
            "releases",
            "Jobs given back without spending an attempt (an infrastructure fault, or a shutdown).",
            ["component"],
            namespace=ns,
            registry=reg,
        )
        self.outages = Counter(
            "outages", "Infrastructure faults that stopped the claims.", ["component"], namespace=ns, registry=reg
        )
        self.lease_losses = Counter(
            "lease_losses", "Jobs abandoned because their lease was lost.", namespace=ns, registry=reg
        )
        self.replies_sent = Counter(
            "replies_sent", "Agent replies sent on to the user.", ["channel"], namespace=ns, registry=reg
        )
        self.delivery_seconds = Histogram(
            "delivery_seconds",
            "Time to get an agent's reply from the OpenClaw gateway.",
            namespace=ns,
            registry=reg,
            buckets=DELIVERY_BUCKETS,
        )
        self.job_seconds = Histogram(
            "job_seconds",
            "Time from claim to complete or fail of one job.",
            namespace=ns,
            registry=reg,
            buckets=JOB_BUCKETS,
        )
        self.busy = Gauge("busy", "1 while a job is in flight, else 0.", namespace=ns, registry=reg)
        self.restores = Counter(
            "restores", "Snapshot restores at boot, by outcome.", ["outcome"], namespace=ns, registry=reg
        )
        self.snapshots = Counter(
            "snapshots", "Snapshots taken at exit, by outcome.", ["outcome"], namespace=ns, registry=reg
        )
        self.seeded = Counter(
            "seeded_sessions", "Gateway sessions seeded from the stored history.", namespace=ns, registry=reg
        )
        # Touch every known label value so dashboards see a 0 series instead of no series: a rate()
        # over a series that appears only on the first failure misses that failure.
        for retryable in (True, False):
            self.fails.labels(retryable=_label(retryable))
        for channel in channels:
            self.replies_sent.labels(channel=channel)
        for outcome in RESTORE_OUTCOMES:
            self.restores.labels(outcome=outcome)
        for outcome in SNAPSHOT_OUTCOMES:
            self.snapshots.labels(outcome=outcome)
        for component in ("gateway", "store", "shutdown"):
            self.releases.labels(component=component)
        for component in ("gateway", "store"):
            self.outages.labels(component=component)

    # ------------------------------------------------------------------ the worker loop's API

    def claimed(self) -> None:
        self.claims.inc()

    def completed(self) -> None:
        self.completes.inc()

    def failed(self, *, retryable: bool) -> None:
        self.fails.labels(retryable=_label(retryable)).inc()

    def dead_lettered(self) -> None:
        self.dead_letters.inc()

    def released(self, component: str) -> None:
        self.releases.labels(component=component).inc()

    def outage(self, component: str) -> None:
        self.outages.labels(component=component).inc()

    def lease_lost(self) -> None:
        self.lease_losses.inc()

    def reply_sent(self, channel: str) -> None:
        self.replies_sent.labels(channel=channel).inc()

    def set_busy(self, busy: bool) -> None:
        self.busy.set(1 if busy else 0)

    def restore(self, outcome: str) -> None:
        self.restores.labels(outcome=outcome).inc()

    def snapshot(self, outcome: str) -> None:
        self.snapshots.labels(outcome=outcome).inc()

    def seeded_session(self) -> None:
        self.seeded.inc()

    # ------------------------------------------------------------------ exposition

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry rendered for a scrape: (body, content type), negotiated from ``Accept``."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _label(retryable: bool) -> str:
    return "true" if retryable else "false"
