"""The overview's figures, decided purely from what the store read: claims per second and
enqueue→reply latency over the last hour, per bucket and overall, and the chart drawn from them.

Claims are counted from settled messages: attempts are counted at claim, so a message that
finished after three deliveries stands for three claims, placed in the bucket it finished in.
Messages still in flight are not counted until they settle. Latency is enqueue → done (a reply).
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.figures import percentile
from contracts.models import SettledWindow

CHART_W, CHART_H = 640, 120


@dataclass(frozen=True)
class Bucket:
    start: int
    claims: int
    done: int
    dead: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class Throughput:
    since: int
    now: int
    bucket_ms: int
    buckets: tuple[Bucket, ...]
    claims: int
    done: int
    dead: int
    p50_ms: float | None
    p95_ms: float | None
    # Set when the store had more settled messages than were read: the figures cover the newest
    # ones, from this moment on.
    covered_from: int | None = None

    @property
    def claims_per_s(self) -> float:
        start = self.covered_from if self.covered_from is not None else self.since
        return self.claims / max(1.0, (self.now - start) / 1000)


def throughput(window: SettledWindow, bucket_ms: int) -> Throughput:
    """Bucket the window's settled messages by when they finished (oldest bucket first)."""
    count = max(1, -(-(window.now - window.since) // bucket_ms))
    per: list[list[int]] = [[0, 0, 0] for _ in range(count)]  # claims, done, dead
    latencies: list[list[float]] = [[] for _ in range(count)]
    for sample in window.samples:
        at = min(count - 1, max(0, (sample.finished_at - window.since) // bucket_ms))
        per[at][0] += sample.attempts
        if sample.status == "done":
            per[at][1] += 1
            latencies[at].append(max(0, sample.finished_at - sample.enqueued_at))
        else:
            per[at][2] += 1
    buckets = tuple(
        Bucket(window.since + i * bucket_ms, c, d, x, percentile(lat, 0.5), percentile(lat, 0.95))
        for i, ((c, d, x), lat) in enumerate(zip(per, latencies, strict=True))
    )
    every = [latency for bucket in latencies for latency in bucket]
    return Throughput(
        since=window.since,
        now=window.now,
        bucket_ms=bucket_ms,
        buckets=buckets,
        claims=sum(b.claims for b in buckets),
        done=sum(b.done for b in buckets),
        dead=sum(b.dead for b in buckets),
        p50_ms=percentile(every, 0.5),
        p95_ms=percentile(every, 0.95),
        covered_from=window.samples[-1].finished_at if window.truncated and window.samples else None,
    )


# --------------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    title: str
    dead_h: float  # the part of the bar that dead-lettered, drawn on top


@dataclass(frozen=True)
class Chart:
    """An inline SVG's geometry: claims per bucket as bars, p95 latency per bucket as a line."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    latency_points: str  # an SVG polyline's points ("x,y x,y …"); empty without latencies
    max_claims: int
    max_latency_ms: float | None


def chart(figures: Throughput, *, width: int = CHART_W, height: int = CHART_H) -> Chart:
    n = len(figures.buckets)
    slot = width / n
    top_claims = max([b.claims for b in figures.buckets] + [1])
    latencies = [b.p95_ms for b in figures.buckets if b.p95_ms is not None]
    top_latency = max(latencies) if latencies else None
    bars = []
    points = []
    for i, b in enumerate(figures.buckets):
        h = height * b.claims / top_claims
        settled = b.done + b.dead
        dead_h = h * b.dead / settled if settled else 0.0
        title = f"{b.claims} claims, {b.done} done, {b.dead} dead-lettered"
        if b.p95_ms is not None:
            title += f", p95 enqueue→reply {b.p95_ms / 1000:.1f} s"
        bars.append(Bar(x=i * slot + 1, y=height - h, w=max(1.0, slot - 2), h=h, title=title, dead_h=dead_h))
        if b.p95_ms is not None and top_latency:
            points.append(f"{i * slot + slot / 2:.1f},{height - height * b.p95_ms / top_latency:.1f}")
    return Chart(width, height, tuple(bars), " ".join(points), top_claims, top_latency)
