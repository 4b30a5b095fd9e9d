"""Autoscaling policies replayed over the published trace set, on Fly's and DigitalOcean's terms.

Every policy drives ``autoscaler.simulate.World`` (a simulated fleet on a simulated clock that
charges what each platform charges: boot times, rate limits and 429s, failed creates and boots,
list lag, drain latency, per-second billing with minimums, a parked machine's share, a session
switch) through the same trace, with the same seed, on the same provider profile. The clock jumps
from event to event, so waits are exact to the millisecond. Figures are printed, never asserted.

The traces are the files in ``bench/traces`` (``bench/tracegen.py`` says how they were made):
bursty, lunch rush, steady 8 h, sparse, a 1,000-conversation herd, slow 30–120 s turns. Each run
starts ``WARM_UP_S`` before the trace's first message (a pool fills, nothing else happens) and
ends when every message is done and the fleet is back to its resting state.

The policies:

* (a) upstream as deployed (agent-factory, reference §4): pinned workers, one per active
  conversation, each launched for the first uncovered conversation; a reconcile on every enqueue
  and every ``TICK_S`` while there is work, spawning one worker per reconcile; creates not paced,
  so a create the platform's rate limit refuses (429) is lost until the next reconcile; workers
  exit after 30 minutes idle and their machines are removed on the next reconcile;
* (b) a queue-length policy (KEDA ScaledObject + HPA defaults on a list-length trigger): KEDA polls
  every 30 s, activates from zero and cools down to zero after 300 s; the HPA syncs every 15 s to
  ceil(queued / 5) within a 0.1 tolerance, up by at most max(100 %, 4) per sync, down to the
  highest recommendation of the last 300 s, picking victims blind to whether they are busy (a
  killed job goes back to its queue: ``busy killed``);
* (c) ours: the real ``autoscaler.planner.plan`` with the shipped defaults for the provider
  (``autoscaler.policy.shipped``), ticking every ``TICK_S``, early when work arrives or a worker is
  left with no job, and when an idle worker's window ends (at most every ``MIN_TICK_GAP_S``, as
  ``factory reconcile --watch`` does), creates paced by the limiter;
* (0) the floor, a reference: a machine exists exactly while a conversation has work, so machine
  time is the work itself and the only waits are behind the same conversation's earlier messages.

Beside cost and waits each row shows ``no mem``: of the turns of conversations served before, the
share whose worker lacked the conversation's latest memory (it neither ran that conversation's
previous turn nor restored a snapshot holding it), so the agent had the stored history window
only. No target is set on it; it is what a policy's sharing and snapshots cost the agent.

Targets (from the issue), checked per trace and provider: (c) ≤ 0.5× (a)'s machine-seconds, p95
wait ≤ (a)'s + 2 s, and ≤ 2× the floor's machine-seconds; the herd fully served within 5 minutes
on Fly. Where ``p95_bound`` (the least machine time with which any policy, even one that knows
every arrival, meets that p95) is above 2× the floor, the run says the two cannot both hold.
``python -m bench sweep`` is the sweep the defaults were chosen from (``sweep_settings``: any grid,
any provider, several seeds). ``python -m bench tick-on-idle`` replays ours as it was before the
stores signalled idle workers (ticks early on arrivals only, window 0), with idle ticks at window 0,
and as shipped: what the signal and the window each buy, and what they cost.
"""

from __future__ import annotations

import bisect
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoscaler.planner import plan
from autoscaler.policy import ScalingPolicy, shipped
from autoscaler.reconciler import RETRY_AFTER_S
from autoscaler.simulate import DIGITALOCEAN, FLY, ProviderProfile, SimMessage, World
from bench import tracegen

TRACES = ("bursty", "lunch_rush", "steady", "sparse", "herd", "slow_turns")
PROFILES = (FLY, DIGITALOCEAN)
SEED = 11
TICK_S = 15  # every reconcile loop here, and the HPA's sync period
MIN_TICK_GAP_S = 2.0  # ours: a watch loop ticks early on new work or an idle worker, at most this often
WARM_UP_S = 600
MAX_FLEET = 200  # the same cap for every policy (ours: its machine budget)
LIMIT_H = 3.0  # a run gives up this long after the trace's last message

AF_IDLE_S = 1800.0  # agent-factory idleTimeoutMs
KEDA_POLL_S = 30  # KEDA's pollingInterval default
KEDA_TARGET = 5  # messages per replica
KEDA_COOLDOWN_S = 300.0
HPA_DOWN_WINDOW_S = 300.0
HPA_TOLERANCE = 0.1
HERD_TARGET_S = 300.0

HOUR_MS = 3_600_000


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Trace:
    name: str
    messages: tuple[SimMessage, ...]  # by arrival, shifted by the warm-up

    @classmethod
    def load(cls, name: str) -> Trace:
        shift = WARM_UP_S * 1000
        rows = tracegen.load(name)
        return cls(name, tuple(SimMessage(r.conversation, r.arrival_ms + shift, r.duration_ms) for r in rows))

    @property
    def start_ms(self) -> int:
        return self.messages[0].arrived_ms

    @property
    def end_ms(self) -> int:
        return self.messages[-1].arrived_ms

    def instant_starts(self) -> list[int]:
        """When each message would start with instant, unlimited warm capacity: once its conversation is free."""
        free_at: dict[str, int] = {}
        starts = []
        for m in self.messages:
            start = max(m.arrived_ms, free_at.get(m.conversation, 0))
            free_at[m.conversation] = start + m.duration_ms
            starts.append(start)
        return starts

    def shape(self) -> str:
        turns = sorted(m.duration_ms for m in self.messages)
        span_h = (self.end_ms - self.start_ms) / HOUR_MS
        return (
            f"{len(self.messages):,} messages over {len({m.conversation for m in self.messages}):,} conversations "
            f"in {span_h:.1f} h; turns median {_pct(turns, 50) / 1000:.0f} s, p95 {_pct(turns, 95) / 1000:.0f} s; "
            f"{sum(turns) / 3_600_000:.1f} h of work"
        )


# --------------------------------------------------------------------------- the policies


class Policy(ABC):
    key = ""
    label = ""
    reconcile_on_enqueue = False  # a reconcile right away on every arrival (upstream)
    tick_early = False  # a tick soon after an arrival or an idle worker, at most every MIN_TICK_GAP_S (ours)

    @abstractmethod
    def new_world(self, profile: ProviderProfile, seed: int) -> World: ...

    @abstractmethod
    def tick(self, world: World) -> int | None:
        """Observe ``world`` and act on it, as one reconcile of this policy would. Returns when the
        policy wants to look again before its interval (None: at the interval)."""


class Upstream(Policy):
    key, label = "a", "upstream as deployed"
    reconcile_on_enqueue = True

    def new_world(self, profile: ProviderProfile, seed: int) -> World:
        return World(profile=profile, seed=seed, pinned=True, idle_exit_s=AF_IDLE_S, auto_destroy=False, paced=False)

    def tick(self, world: World) -> int | None:
        world.reap_exited()
        active = world.active_conversations()
        if not active:
            return None
        pinned = (world.pins.get(m.launch_id) for m in world.machines.values() if m.state != "stopped")
        pending = (
            world.pins.get(r.launch_id) for r in world.ledger.values() if r.state == "requested"
        )  # spawned, not created yet
        covered = {c for c in (*pinned, *pending) if c is not None} & active
        if min(len(active), MAX_FLEET) > len(covered):
            for conversation in sorted(active - covered)[:1]:  # spawnStep 1, by conversation id
                world.launch(pinned=conversation)
        return None


class QueueLength(Policy):
    key, label = "b", "queue length (KEDA/HPA)"

    def __init__(self) -> None:
        self.next_poll_ms = 0
        self.last_active_ms: int | None = None
        self.recommendations: deque[tuple[int, int]] = deque()

    def new_world(self, profile: ProviderProfile, seed: int) -> World:
        return World(profile=profile, seed=seed, auto_destroy=False)

    def tick(self, world: World) -> int | None:
        world.reap_exited()
        now, queued, current = world.now_ms, world.queued_messages(), len(world.machines)
        if now >= self.next_poll_ms:  # KEDA's own loop: activation from zero and the cooldown to zero
            self.next_poll_ms = now + KEDA_POLL_S * 1000
            if queued > 0:
                self.last_active_ms = now
            if current == 0 and queued > 0:
                world.launch()
                return None
            if current and self.last_active_ms is not None and now - self.last_active_ms >= KEDA_COOLDOWN_S * 1000:
                world.destroy_newest(current)
                self.recommendations.clear()
                return None
        if current == 0:
            return None  # the HPA does not act at zero replicas
        wanted = min(MAX_FLEET, max(1, -(-queued // KEDA_TARGET)))
        if abs(queued / (current * KEDA_TARGET) - 1) <= HPA_TOLERANCE:
            wanted = current
        self.recommendations.append((now, wanted))
        while self.recommendations[0][0] <= now - HPA_DOWN_WINDOW_S * 1000:
            self.recommendations.popleft()
        if wanted > current:
            for _ in range(min(wanted, current + max(current, 4)) - current):
                world.launch()
        else:
            stabilised = max(r for _, r in self.recommendations)
            if stabilised < current:
                world.destroy_newest(current - stabilised)
        return None


class Ours(Policy):
    key = "c"
    tick_early = True

    def __init__(
        self,
        policy: ScalingPolicy | None = None,
        label: str = "ours (shipped defaults)",
        *,
        pinned: bool = False,
        hold: bool = True,
    ):
        self.policy = policy
        self.label = label
        self.pinned = pinned
        self.hold = hold

    def policy_for(self, profile: ProviderProfile) -> ScalingPolicy:
        return self.policy if self.policy is not None else shipped(profile.name)

    def new_world(self, profile: ProviderProfile, seed: int) -> World:
        policy = self.policy_for(profile)
        self.active = policy
        # Fly machines destroy themselves when their worker exits unless a pool keeps them.
        auto_destroy = profile.name == "fly" and policy.pool_size == 0
        return World(
            profile=profile,
            seed=seed,
            idle_exit_s=policy.idle_timeout_s,
            auto_destroy=auto_destroy,
            pinned=self.pinned,
            hold=self.hold,
        )

    def tick(self, world: World) -> int | None:
        planned = plan(world.demand(), world.fleet(), world.open_launches(), self.active, world.now_ms)
        world.apply(planned.actions)
        recheck = planned.recheck_in_s
        return None if recheck is None else world.now_ms + math.ceil(recheck * 1000)


def policies() -> list[Policy]:
    return [Upstream(), QueueLength(), Ours()]


# --------------------------------------------------------------------------- the replay


@dataclass(frozen=True)
class Result:
    key: str
    label: str
    billed_ms: float
    waits_ms: tuple[int, ...]
    done: int
    unfinished: int
    busy_killed: int
    creates: int
    refused: int
    starts: int
    served_s: float  # from the first arrival until every conversation had its first reply
    # Turns of conversations served before, and those served without the conversation's latest
    # memory (the worker had only the stored history window; autoscaler.simulate's docstring).
    returning: int = 0
    forgot: int = 0
    pinned_beside: int = 0  # workers that pinned themselves beside another (autoscaler.simulate)

    def wait_s(self, pct: float) -> float:
        return _pct(sorted(self.waits_ms), pct) / 1000

    @property
    def machine_s(self) -> float:
        return self.billed_ms / 1000


def _pct(ordered: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def replay(
    trace: Trace, policy: Policy, profile: ProviderProfile, seed: int = SEED, *, tick_on_idle: bool = True
) -> Result:
    """Run ``policy`` over ``trace`` until every message is done and the fleet is at rest.
    ``tick_on_idle``: a policy that ticks early on arrivals also does so when a worker goes idle
    (the stores' idle signal), and again when it asked to look again (ours: an idle worker's
    scale-down window ends or a launch's hedge passes, the plan's ``recheck_in_s``), and 2 s after a
    refused create, as ``factory reconcile --watch`` does;
    False replays the watch as it was before the signal."""
    world = policy.new_world(profile, seed)
    messages, n, i = trace.messages, len(trace.messages), 0
    next_tick = 0
    deadline = trace.end_ms + int(LIMIT_H * HOUR_MS)
    last_tick = -(10**9)
    changed = refused = 0
    while world.now_ms < deadline:
        candidates = [next_tick] + ([messages[i].arrived_ms] if i < n else [])
        change = world.next_change_ms()
        at = min(candidates if change is None else [*candidates, change])
        world.advance(at)
        arrived = False
        while i < n and messages[i].arrived_ms <= at:
            world.arrive(messages[i])
            i += 1
            arrived = True
            if policy.reconcile_on_enqueue:
                policy.tick(world)
        # A worker left with no job, or one that exited: the stores ring the watch for both.
        idled, changed = world.went_idle + world.exits > changed, world.went_idle + world.exits
        if (arrived or (tick_on_idle and idled)) and policy.tick_early:
            next_tick = min(next_tick, max(at, last_tick + int(MIN_TICK_GAP_S * 1000)))
        failed, refused = world.refused > refused, world.refused
        if failed and policy.tick_early:
            # A refused create: the watch ticks again soon after a tick with failed actions.
            next_tick = min(next_tick, max(at, last_tick + int(RETRY_AFTER_S * 1000)))
        if at >= next_tick:
            again = policy.tick(world)
            last_tick = at
            next_tick = at + TICK_S * 1000
            if tick_on_idle and again is not None:
                next_tick = min(next_tick, max(again, last_tick + int(MIN_TICK_GAP_S * 1000)))
            if i == n and world.done == n and _at_rest(world):
                break
    served = max(world.first_reply_ms.values(), default=trace.start_ms) - trace.start_ms
    return Result(
        policy.key,
        policy.label,
        world.billed_ms,
        tuple(world.waits_ms),
        world.done,
        n - world.done,
        world.busy_destroyed,
        world.creates,
        world.refused,
        world.starts,
        served / 1000,
        world.returning,
        world.forgot,
        world.pinned_beside,
    )


def _at_rest(world: World) -> bool:
    """Nothing but parked machines left (and no launch on its way)."""
    return all(m.state == "stopped" for m in world.machines.values()) and not any(
        r.state == "requested" for r in world.ledger.values()
    )


FLOOR = "0"


def floor(trace: Trace) -> Result:
    """No policy: a warm worker exactly while a message runs (see the module docstring)."""
    starts = trace.instant_starts()
    waits = tuple(start - m.arrived_ms for m, start in zip(trace.messages, starts, strict=True))
    work = sum(m.duration_ms for m in trace.messages)
    first: dict[str, int] = {}
    for m, start in zip(trace.messages, starts, strict=True):
        first.setdefault(m.conversation, start + m.duration_ms)
    served = (max(first.values()) - trace.start_ms) / 1000
    return Result(FLOOR, "floor: exact instant capacity", work, waits, len(waits), 0, 0, 0, 0, 0, served)


def p95_bound(trace: Trace, profile: ProviderProfile, allowed_p95_s: float) -> float:
    """The least machine-seconds with which *any* policy, even one that knows every arrival in
    advance, keeps p95 wait ≤ ``allowed_p95_s`` on ``profile``'s terms: a lower bound.

    A message whose turn may start at most ``allowed_p95_s`` − (its floor wait) late, less than the
    fastest cold start (``create_s`` or, where a stopped machine is cheap, ``start_s``, then the
    gateway's ``ready_s``, all at their minimum), needs a worker there when it may start: one kept
    running since a turn ended (at best the latest end before it, fleet-wide), one booted ahead
    (billed from its create), or, where the platform suspends, one resumed (its start, plus a
    stopped machine's share of the gap). The cheapest of these for each such message, less the 5 %
    of messages p95 lets wait, plus the work itself. Each idle stretch is counted for every message
    after it, so the bound errs low.
    """
    starts = trace.instant_starts()
    ends = sorted(s + m.duration_ms for m, s in zip(trace.messages, starts, strict=True))
    boot_ms = _fastest_cold_start_ms(profile)
    costs = []
    for m, start in zip(trace.messages, starts, strict=True):
        slack_ms = 1000 * allowed_p95_s - (start - m.arrived_ms)
        if slack_ms >= boot_ms:
            costs.append(0.0)
            continue
        at = bisect.bisect_right(ends, start)
        idle_ms = start - ends[at - 1] if at else math.inf
        options = [idle_ms, boot_ms]
        if profile.can_suspend and 1000 * profile.start_s[0] <= slack_ms:
            options.append(1000 * profile.start_s[0] + profile.parked_cost * idle_ms)
        costs.append(min(options))
    excused = len(costs) - math.ceil(0.95 * len(costs))
    kept = sorted(costs)[: len(costs) - excused]
    return (sum(m.duration_ms for m in trace.messages) + sum(kept)) / 1000


def _fastest_cold_start_ms(profile: ProviderProfile) -> float:
    """A worker from nothing at the platform's best: a create (or, where a stopped machine is
    cheap, a start from the pool; its share of the gap errs low), then the gateway's start."""
    ready_ms = 1000 * profile.ready_s[0]
    boot_ms = 1000 * profile.create_s[0] + ready_ms
    if profile.parked_cost < 1:
        boot_ms = min(boot_ms, 1000 * profile.start_s[0] + ready_ms)
    return boot_ms


@dataclass(frozen=True)
class ResumeOdds:
    warm: int  # messages whose slack is shorter than the fastest cold start: they need a warm worker
    excused: int  # slow messages p95 lets pass beyond the first (which meets an empty fleet)
    holds: float  # the chance that no more resumes than that fail


def resume_odds(trace: Trace, profile: ProviderProfile, allowed_p95_s: float) -> ResumeOdds:
    """How often p95 ≤ ``allowed_p95_s`` can hold for a policy that cannot foresee arrivals and
    keeps no gateway running through the gaps, on a platform whose resumes fail: every message
    that needs a warm worker gets a resumed one (at best instantly), a failed resume (``resume_fail_p``,
    a fresh boot) makes it slow, and p95 excuses only a few slow messages, the first cold start
    among them. An upper bound on that policy's odds (resumes here take no time and never switch)."""
    starts = trace.instant_starts()
    boot_ms = _fastest_cold_start_ms(profile)
    warm = sum(
        1
        for m, start in zip(trace.messages, starts, strict=True)
        if 1000 * allowed_p95_s - (start - m.arrived_ms) < boot_ms
    )
    n = len(trace.messages)
    excused = n - math.ceil(0.95 * n) - 1
    resumes, p = max(0, warm - 1), profile.resume_fail_p
    holds = sum(math.comb(resumes, k) * p**k * (1 - p) ** (resumes - k) for k in range(excused + 1))
    return ResumeOdds(warm, excused, holds)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Verdict:
    vs_upstream: float
    p95_over_s: float
    vs_floor: float

    @property
    def checks(self) -> tuple[bool, bool, bool]:
        return self.vs_upstream <= 0.5, self.p95_over_s <= 2.0, self.vs_floor <= 2.0

    def text(self) -> str:
        marks = ["ok" if good else "MISS" for good in self.checks]
        return (
            f"{self.vs_upstream:.2f}× (a) m-s [{marks[0]}], p95 {self.p95_over_s:+.1f} s vs (a) [{marks[1]}], "
            f"{self.vs_floor:.2f}× floor [{marks[2]}]"
        )


def verdict(ours: Result, upstream: Result, base: Result) -> Verdict:
    return Verdict(
        ours.billed_ms / upstream.billed_ms if upstream.billed_ms else math.inf,
        ours.wait_s(95) - upstream.wait_s(95),
        ours.billed_ms / base.billed_ms if base.billed_ms else math.inf,
    )


def _row(r: Result) -> str:
    creates = "–" if r.key == FLOOR else f"{r.creates:,}" + (f" ({r.refused} refused)" if r.refused else "")
    starts = "" if not r.starts else f", {r.starts} starts"
    forgot = "–" if r.key == FLOOR or not r.returning else f"{r.forgot / r.returning:.0%}"
    return (
        f"  ({r.key}) {r.label:<26}{r.machine_s:>11,.0f}{r.wait_s(50):>8.1f}{r.wait_s(95):>8.1f}"
        f"{r.wait_s(100):>8.1f}{r.busy_killed:>7}{r.unfinished:>6}{forgot:>8}  {creates}{starts}"
    )


HEADER = (
    f"  {'policy':<30}{'machine-s':>11}{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'killed':>7}{'left':>6}{'no mem':>8}"
    "  creates"
)


def run_trace(
    trace: Trace, profile: ProviderProfile, chosen: Callable[[], list[Policy]] = policies, seed: int = SEED
) -> list[Result]:
    return [*(replay(trace, p, profile, seed) for p in chosen()), floor(trace)]


def _forgot(label: str, rows: Sequence[Result]) -> str:
    returning, forgot = sum(r.returning for r in rows), sum(r.forgot for r in rows)
    return f"{label} {forgot:,} of {returning:,} ({forgot / returning:.0%})" if returning else f"{label} –"


def _by_key(results: Sequence[Result], key: str) -> Result:
    return next(r for r in results if r.key == key)


def herd_contributions(seed: int = SEED) -> None:
    """What the warm pool and pooling each contribute to serving the herd on Fly."""
    trace = Trace.load("herd")
    base = shipped("fly")
    variants = [
        ("shipped: pool + pooling", Ours(base)),
        ("no pool, pooling", Ours(base.model_copy(update={"pool_size": 0}))),
        ("pool, no pooling (pinned)", Ours(base, pinned=True)),
        ("neither", Ours(base.model_copy(update={"pool_size": 0}), pinned=True)),
    ]
    # Without pooling a worker serves only the conversation it first took; the planner (not pin-aware)
    # then keeps idle pinned workers as capacity while other conversations wait at the budget.
    print(
        f"\nherd on fly: what the warm pool (≤ {base.pool_size}, sized to recent demand, ≥ {base.pool_min}) and "
        "pooling contribute "
        f"(target: served ≤ {HERD_TARGET_S:g} s)"
    )
    for label, policy in variants:
        r = replay(trace, policy, FLY, seed)
        served = f"served in {r.served_s:>6.0f} s" if not r.unfinished else f"{r.unfinished:,} never served"
        print(
            f"  {label:<28} {served}; p95 wait {r.wait_s(95):>6.1f} s; "
            f"{r.machine_s:>9,.0f} machine-s; {r.creates} creates, {r.starts} starts"
        )


def run(seed: int = SEED) -> dict[tuple[str, str], list[Result]]:
    started = time.perf_counter()
    print(
        f"\nAutoscaling over the published trace set (bench/traces): tick {TICK_S} s (ours also early on work, "
        f"an idle worker and a window's end, ≥ {MIN_TICK_GAP_S:g} s apart), fleet cap {MAX_FLEET}, "
        f"warm-up {WARM_UP_S} s, seed {seed}"
    )
    print("machine-s: billed, running-equivalent; wait: arrival → the turn starts (boot, queue, session switch)")
    for profile in PROFILES:
        p = shipped(profile.name)
        print(
            f"ours on {profile.name}: {p.mode}"
            + (f" ({p.conversations_per_worker} conversations a worker)" if p.mode == "pool" else "")
            + (
                f", room for {p.spare_workers} spare(s) while ≥ {p.spare_min_arrivals} arrived in {p.spare_hold_s:g} s"
                if p.spare_workers
                else ""
            )
            + f", pool {p.pool_size}"
            + (f" (sized to conversations in {p.pool_hold_s:g} s, ≥ {p.pool_min})" if p.pool_hold_s is not None else "")
            + f", window {p.scale_down_window_s:g} s, keep-warm ≤ "
            f"{p.keep_warm_workers} for ≤ {p.keep_warm_max_s:g} s at {p.keep_warm_gap_factor:g}× the gap, "
            f"budget {p.budget_machines} machines"
        )
    all_results: dict[tuple[str, str], list[Result]] = {}
    verdicts: list[tuple[str, str, Verdict]] = []
    for name in TRACES:
        trace = Trace.load(name)
        print(f"\n{name}: {trace.shape()}")
        for profile in PROFILES:
            results = run_trace(trace, profile, seed=seed)
            all_results[(name, profile.name)] = results
            print(f" {profile.name}")
            print(HEADER)
            for r in results:
                print(_row(r))
            upstream, base = _by_key(results, "a"), _by_key(results, FLOOR)
            v = verdict(_by_key(results, "c"), upstream, base)
            verdicts.append((name, profile.name, v))
            print(f"  target: {v.text()}")
            bound = p95_bound(trace, profile, upstream.wait_s(95) + 2.0)
            if bound > 2 * base.machine_s:
                print(
                    f"  ≤ 2× floor and p95 ≤ (a) + 2 s cannot both hold: any policy, even one that knows every "
                    f"arrival, needs ≥ {bound:,.0f} machine-s for that p95 ({bound / base.machine_s:.1f}× the floor's "
                    f"{base.machine_s:,.0f}; see p95_bound); the p95 is the target to keep"
                )
            odds = resume_odds(trace, profile, upstream.wait_s(95) + 2.0)
            if profile.can_suspend and odds.holds < 0.5:
                print(
                    f"  p95 ≤ (a) + 2 s needs a warm worker for {odds.warm} of {len(trace.messages)} messages: "
                    f"without foresight of arrivals, a resumed one; {profile.resume_fail_p:.0%} of resumes fail "
                    f"(a fresh boot) and p95 excuses {odds.excused} beyond the first cold start, so even instant "
                    f"resumes hold it in {odds.holds:.0%} of runs; insuring keeps a gateway running through every "
                    "gap (see resume_odds)"
                )
            if name == "herd" and profile is FLY:
                ours = _by_key(results, "c")
                good = ours.served_s <= HERD_TARGET_S
                print(
                    f"  herd served in {ours.served_s:.0f} s [{'ok' if good else 'MISS'}] "
                    f"(target ≤ {HERD_TARGET_S:g} s)"
                )
    herd_contributions(seed)
    print("\ntargets, all traces: (c) ≤ 0.5× (a) machine-s | p95 ≤ (a) + 2 s | ≤ 2× floor")
    for name, provider, v in verdicts:
        print(f"  {name:<11} {provider:<13} {v.text()}")
    print("\nmemory: returning turns served without their conversation's latest memory (the history window only)")
    for profile in PROFILES:
        shares = []
        for key in ("a", "c"):
            rows = [_by_key(all_results[(name, profile.name)], key) for name in TRACES]
            shares.append(_forgot(f"({key})", rows))
        # The stores before the hold: the same policy, with unpinned workers racing a
        # conversation's own worker for its messages (the herd has no returning turns).
        racing = [replay(Trace.load(name), Ours(hold=False), profile, seed) for name in TRACES if name != "herd"]
        beside = sum(r.pinned_beside for r in racing)
        print(
            f"  {profile.name:<13}{'  '.join(shares)}  {_forgot('(c) without the hold', racing)}, "
            f"{beside} worker(s) pinned beside another"
        )
    print(f"[{time.perf_counter() - started:.1f} s wall]")
    return all_results


# --------------------------------------------------------------------------- the sweep


Settings = dict[str, object]

# Seeds a sweep replays: a setting that wins on one seed only is luck. 11–13 are the bench's own
# seeds; 14 and 15 are held out from the figures the defaults were first read from, and on them a
# set whose slow-turns p95 sat at +2.0 s on seed 11 lost that line (+2.4 s on seed 15).
SWEEP_SEEDS = (11, 12, 13, 14, 15)

# Fly: the stabilisation window, keep-warm and a flat pool, over the shipped defaults.
SWEEP: dict[str, Sequence[object]] = {
    "scale_down_window_s": (0.0, 10.0, 30.0, 60.0, 120.0),
    "keep_warm_workers": (0, 2, 4),
    "keep_warm_gap_factor": (1.5, 2.5),
}
POOL_SIZES = (0, 10, 20)

# DigitalOcean: who may serve a conversation (pinned workers, or pooled ones, 1 or 2 conversations
# each), how many idle spares are held, and how long an idle worker stays, with the brakes below at
# their old defaults. A pool of stopped droplets is left out: a powered-off droplet bills in full.
DIGITALOCEAN_SWEEP: tuple[Settings, ...] = tuple(
    {
        "mode": mode,
        "conversations_per_worker": per,
        "spare_workers": spares,
        "scale_down_window_s": window,
        "budget_machines": 200,
        "spare_min_arrivals": 3,
        "spare_hold_s": 900.0,
    }
    for mode, per, windows in (
        ("affinity", 4, (0.0, 30.0)),
        ("pool", 1, (0.0, 20.0, 40.0)),
        ("pool", 2, (0.0, 20.0, 40.0)),
    )
    for spares in (0, 1, 2)
    for window in windows
)

# …then, on the best of those, the brakes: the machine budget (a herd's boots bill 45–60 s each) and
# how many arrivals within how long hold the spares.
DIGITALOCEAN_BRAKES: tuple[Settings, ...] = tuple(
    {"budget_machines": budget, "spare_min_arrivals": arrivals, "spare_hold_s": hold}
    for budget in (200, 100, 60)
    for arrivals in (3, 6, 12)
    for hold in (300.0, 900.0)
)


@dataclass(frozen=True)
class SweepRow:
    settings: Settings  # over the provider's shipped defaults ({}: the shipped defaults themselves)
    verdicts: tuple[tuple[str, int, Verdict], ...]  # (trace, seed, verdict)
    trace_machine_s: tuple[tuple[str, float], ...]  # (trace, machine-s summed over the seeds)

    @property
    def machine_s(self) -> float:
        return sum(m for _, m in self.trace_machine_s)

    @property
    def met(self) -> int:
        return sum(sum(v.checks) for _, _, v in self.verdicts)

    @property
    def p95_met(self) -> frozenset[tuple[str, int]]:
        return frozenset((name, seed) for name, seed, v in self.verdicts if v.checks[1])

    @property
    def worst_p95_over_s(self) -> float:
        return max(v.p95_over_s for _, _, v in self.verdicts)


class Yardstick:
    """Every trace on one provider over ``seeds``, with upstream's runs and the floors to judge by."""

    def __init__(self, profile: ProviderProfile, seeds: Sequence[int]) -> None:
        self.profile, self.seeds = profile, seeds
        self.traces = [Trace.load(name) for name in TRACES]
        self.upstream = {(t.name, seed): replay(t, Upstream(), profile, seed) for t in self.traces for seed in seeds}
        self.floors = {t.name: floor(t) for t in self.traces}

    def score(self, settings: Settings, *, tick_on_idle: bool = True) -> SweepRow:
        """Ours with ``settings`` over the shipped defaults, on every trace and seed."""
        policy = shipped(self.profile.name, **settings)
        verdicts, machine_s = [], []
        for t in self.traces:
            total = 0.0
            for seed in self.seeds:
                r = replay(t, Ours(policy), self.profile, seed, tick_on_idle=tick_on_idle)
                verdicts.append((t.name, seed, verdict(r, self.upstream[(t.name, seed)], self.floors[t.name])))
                total += r.machine_s
            machine_s.append((t.name, total))
        return SweepRow(settings, tuple(verdicts), tuple(machine_s))


def sweep_settings(
    profile: ProviderProfile, grid: Sequence[Settings], seeds: Sequence[int] = SWEEP_SEEDS
) -> tuple[SweepRow, list[SweepRow]]:
    """Ours with each of ``grid``'s settings (over the shipped defaults) over every trace and
    seed. Returns the shipped defaults' row and the grid's rows best first: those that keep every
    p95 line the shipped defaults meet, then the most targets met, then the least machine-seconds."""
    yardstick = Yardstick(profile, seeds)
    base = yardstick.score({})
    rows = [yardstick.score(settings) for settings in grid]
    rows.sort(key=lambda r: (base.p95_met <= r.p95_met, r.met, -r.machine_s), reverse=True)
    return base, rows


def print_sweep(profile: ProviderProfile, base: SweepRow, rows: Sequence[SweepRow], top: int = 12) -> None:
    """The best ``top`` rows, then the best one's targets per trace and seed against the shipped defaults'."""
    seeds = sorted({seed for _, seed, _ in base.verdicts})
    print(
        f"\nsweep on {profile.name}, seeds {', '.join(map(str, seeds))}: targets met (of {len(base.verdicts) * 3}), "
        "machine-s summed, worst p95 over (a), p95 lines the shipped defaults meet and the row loses"
    )
    for r in [base, *rows[:top]]:
        lost = len(base.p95_met - r.p95_met)
        label = r.settings or "shipped defaults"
        print(f"  {r.met:>3}  {r.machine_s:>11,.0f}  {r.worst_p95_over_s:>+8.1f} s  {lost:>2} lost  {label}")
    if not rows:
        return
    best = rows[0]
    print(f"best: {best.settings}; per trace, seed by seed: shipped defaults → best")
    for name in TRACES:
        cells = []
        for seed in seeds:
            before = next(v for t, s, v in base.verdicts if (t, s) == (name, seed))
            after = next(v for t, s, v in best.verdicts if (t, s) == (name, seed))
            cells.append(f"{_cell(before)} → {_cell(after)}")
        print(f"  {name:<11} " + " | ".join(cells))


def _cell(v: Verdict) -> str:
    marks = "".join("" if good else mark for good, mark in zip(v.checks, "ups", strict=True))
    return f"{v.p95_over_s:+.1f} s {v.vs_floor:.2f}×" + (f" ✗{marks}" if marks else "")


def sweep(seed: int | None = None) -> None:
    """Fly's grid (``SWEEP`` × ``POOL_SIZES``) and DigitalOcean's (``DIGITALOCEAN_SWEEP``), each
    over every trace: the defaults are the best rows (``--seed N``: that seed only)."""
    started = time.perf_counter()
    fly_grid = [dict(values, pool_size=pool) for pool in POOL_SIZES for values in _grid()]
    print_sweep(FLY, *sweep_settings(FLY, fly_grid, (SEED,) if seed is None else (seed,)))
    sweep_digitalocean(seed)
    print(f"[{time.perf_counter() - started:.1f} s wall]")


def sweep_digitalocean(seed: int | None = None) -> None:
    """DigitalOcean's grid, then its brakes on the best row and on the best affinity row
    (``python -m bench sweep-digitalocean``; ``--seed N``: that seed only)."""
    seeds = SWEEP_SEEDS if seed is None else (seed,)
    base, rows = sweep_settings(DIGITALOCEAN, DIGITALOCEAN_SWEEP, seeds)
    print_sweep(DIGITALOCEAN, base, rows)
    # The brakes go on the best row, and on the best one in affinity mode: only a pinned worker
    # carries its conversation's memory from machine to machine (bench/DEFAULTS.md), so the
    # shipped defaults are chosen from the second.
    keeps_memory = next(r.settings for r in rows if r.settings["mode"] == "affinity")
    for label, chosen in (("the best row", rows[0].settings), ("the best affinity row", keeps_memory)):
        print(f"\nbrakes on {label}: {chosen}")
        print_sweep(
            DIGITALOCEAN, *sweep_settings(DIGITALOCEAN, [{**chosen, **brake} for brake in DIGITALOCEAN_BRAKES], seeds)
        )


def tick_on_idle(seed: int | None = None) -> None:
    """Ours before the stores signalled idle workers (ticking early on arrivals only, window 0), with
    idle ticks at window 0, and as shipped (idle ticks, a tick when an idle worker's window ends,
    the provider's window: Fly 3 s); over every trace and provider (``--seed N``: that seed only)."""
    seeds = SWEEP_SEEDS if seed is None else (seed,)
    window_0: Settings = {"scale_down_window_s": 0.0}
    variants: tuple[tuple[str, Settings, bool], ...] = (
        ("arrivals only, window 0 (before)", window_0, False),
        ("+ idle ticks, window 0", window_0, True),
        ("as shipped", {}, True),
    )
    print(
        f"\ntick on idle, seeds {', '.join(map(str, seeds))}: "
        + " | ".join(label for label, _, _ in variants)
        + "; each: machine-s summed over the seeds, × the floor (worst seed), worst p95 over (a), targets met"
    )
    for profile in PROFILES:
        yardstick = Yardstick(profile, seeds)
        rows = [yardstick.score(settings, tick_on_idle=on) for _, settings, on in variants]
        for name in TRACES:
            print(f"  {profile.name:<13}{name:<11} " + " | ".join(_trace_cell(row, name) for row in rows))
        print(f"  {profile.name:<13}targets met: {' | '.join(str(r.met) for r in rows)} of {len(rows[0].verdicts) * 3}")


def _trace_cell(row: SweepRow, name: str) -> str:
    verdicts = [v for trace, _, v in row.verdicts if trace == name]
    return (
        f"{dict(row.trace_machine_s)[name]:>9,.0f} {max(v.vs_floor for v in verdicts):.2f}×"
        f" {max(v.p95_over_s for v in verdicts):+6.1f} s {sum(sum(v.checks) for v in verdicts):>2}"
    )


def _grid() -> list[Settings]:
    combos: list[Settings] = [{}]
    for key, values in SWEEP.items():
        combos = [dict(c, **{key: v}) for c in combos for v in values]
    return combos
