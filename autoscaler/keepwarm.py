"""Keep-warm: how many idle workers to hold for conversations that are expected back.

Pure. The store reports each recently active conversation with the gaps between its latest
arrivals (``DemandSnapshot.recent``). A conversation is *expected back* while it has been silent
for less than ``keep_warm_gap_factor`` times its typical gap (the median of its recent gaps), and
never longer than ``keep_warm_max_s``: a chat in full flow (turns a minute apart) is waited for a
few minutes, a user who writes every twenty minutes is waited for most of an hour, one who wrote
once is not waited for at all. That is the adaptive, per-conversation window.

Warm workers are pooled (any idle worker takes any conversation), so the number kept is not one
per expected conversation but what their arrivals need: enough that the arrivals expected while a
replacement worker starts (rate × cold start) find an idle one 95 % of the time (a Poisson
quantile), at least one while nothing is running at all, and at most ``keep_warm_workers`` (the
budget). A worker busy with a turn covers the rest: it is free again long before a sparse
conversation returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.policy import ScalingPolicy
from contracts.models import RecentConversation

_QUANTILE = 0.95


@dataclass(frozen=True)
class WarmTarget:
    workers: int  # idle workers to keep for expected returns
    expected: int  # conversations expected back
    rate_per_s: float  # their arrivals per second, summed

    @property
    def why(self) -> str:
        if not self.workers:
            return ""
        return f"{self.workers} kept warm for {self.expected} conversation(s) expected back"


def typical_gap_s(conversation: RecentConversation) -> float | None:
    """The median of its recent gaps in seconds; None before it has a second arrival."""
    gaps = sorted(conversation.gaps_ms)
    if not gaps:
        return None
    mid = len(gaps) // 2
    median = gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2
    return max(median, 1.0) / 1000


def warm_target(
    recent: Sequence[RecentConversation], policy: ScalingPolicy, now: int, *, cold_start_s: float, active: int
) -> WarmTarget:
    """Idle workers worth keeping for the conversations in ``recent`` that are silent but expected
    back, given ``active`` conversations at work now."""
    back = expected_back(recent, policy, now)
    if not back:
        return WarmTarget(0, 0, 0.0)
    rate = sum(1 / gap for _, gap in back)
    needed = max(poisson_quantile(rate * cold_start_s, _QUANTILE), 0 if active else 1)
    return WarmTarget(min(needed, len(back), policy.keep_warm_workers), len(back), rate)


def pinned_kept(recent: Sequence[RecentConversation], policy: ScalingPolicy, now: int) -> list[str]:
    """Conversations whose idle pinned worker is kept rather than drained, most recently active
    first, at most ``keep_warm_workers``: a pinned worker serves no one else, so keep-warm for it
    is per conversation, not a pooled count."""
    back = sorted(expected_back(recent, policy, now), key=lambda b: -b[0].last_arrival_at)
    return [c.conversation_id for c, _ in back[: policy.keep_warm_workers]]


def expected_back(
    recent: Sequence[RecentConversation], policy: ScalingPolicy, now: int
) -> list[tuple[RecentConversation, float]]:
    """The silent conversations in ``recent`` expected back, each with its typical gap in seconds."""
    if policy.keep_warm_workers == 0:
        return []
    back = []
    for conversation in recent:
        if conversation.active:
            continue  # its work is counted in the demand already
        gap = typical_gap_s(conversation)
        if gap is None or gap > policy.keep_warm_max_s:
            continue
        silent_s = max(0, now - conversation.last_arrival_at) / 1000
        if silent_s <= min(policy.keep_warm_gap_factor * gap, policy.keep_warm_max_s):
            back.append((conversation, gap))
    return back


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(Poisson(mean) <= k) >= q."""
    term = total = math.exp(-mean)
    k = 0
    while total < q and k < 10_000:
        k += 1
        term *= mean / k
        total += term
    return k
