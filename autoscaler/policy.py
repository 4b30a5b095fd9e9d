"""How the fleet should size itself: a frozen, validated scaling policy.

:class:`ScalingPolicy` is the planner's only knob set; :data:`PROVIDER_DEFAULTS` holds what ships
for each platform, and :func:`shipped` combines them with an operator's settings (built at the
edge by ``factory.fleet.scaling_policy`` from ``FACTORY_SCALE_*``).

The defaults are the settings that meet the most targets over the published trace set in
``bench/traces`` (bursty, lunch rush, steady 8 h, sparse, a 1,000-conversation herd, slow turns)
on Fly's and DigitalOcean's terms in the simulator: at most half of upstream's machine-seconds,
p95 wait no worse than upstream's + 2 s, at most twice the floor's (a machine exactly while a
conversation has work); then the cheapest. In short:

* **Fly**: affinity (one worker per active conversation, so its memory stays on its machine); a
  warm pool of stopped machines sized to recent demand (2–10), started in about a second instead of
  created; a pool start for a conversation is told it first, so it restores its memory; a worker
  started unpinned pins itself to its first conversation; an idle worker is suspended after a 3 s
  window (its gateway keeps running), and a pinned one asleep for 30 minutes is resumed and drained,
  so it snapshots its conversation on the way out.
* **DigitalOcean**: affinity; no pool (a powered-off droplet bills in full); one spare unpinned
  droplet while at least 3 messages arrived in 5 minutes, so a new conversation does not wait a
  minute-long boot; at most 100 droplets; a 0 s window (a droplet drains after its turn).
* **local**: no pool; 3 s cold starts and start grace, since a fork and a process table answer at once.

What is measured behind each of these, what was tried and not kept (with its figures), and the
target lines still missed (Fly's sparse traffic; DigitalOcean's twice-the-floor line, which shared
droplets would meet on some traces at the cost of each conversation's memory) are in
``bench/DEFAULTS.md``.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScalingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # affinity: one worker per active conversation (agent-factory's rule);
    # pool: one worker per `conversations_per_worker` active conversations.
    mode: Literal["affinity", "pool"] = "affinity"
    conversations_per_worker: int = Field(4, ge=1)
    min_workers: int = Field(0, ge=0)
    max_workers: int = Field(1000, ge=0)
    # The most machines that may exist at once: running, launching and parked. The brake on a
    # herd is this spending cap, not a per-tick step: a tick asks for all it needs and the
    # provider's rate limits pace the creates.
    budget_machines: int | None = Field(200, ge=0)
    # An optional per-tick cap on launches and drains, each (None: no cap).
    max_step: int | None = Field(None, ge=1)
    # A worker must have been idle this long before it counts as excess (scale-down stabilisation).
    scale_down_window_s: float = Field(30.0, ge=0)
    # Launched workers exit on their own after this long idle (None: they wait to be drained).
    idle_timeout_s: float | None = Field(None, gt=0)
    # A launch that has shown neither a machine nor a worker after this long is looked up, then given up.
    launch_timeout_s: float = Field(300.0, gt=0)
    # A launch (or start) whose worker has not registered after this long no longer counts as
    # capacity: another is launched beside it (a boot that failed silently must not hold up the
    # work for the whole launch timeout); it is still cleaned up at the timeout, or used if it registers.
    launch_hedge_s: float = Field(60.0, gt=0)
    # A launched or started machine seen stopped this soon is given time (the start is in flight,
    # or the list has not caught up); after it, a machine that stopped before its worker registered
    # is destroyed.
    start_grace_s: float = Field(30.0, ge=0)
    # A draining worker that has not exited after this long is stopped and its machine destroyed.
    drain_deadline_s: float = Field(600.0, gt=0)
    # A worker whose heartbeat is older than this is gone (crashed, or its machine died).
    stale_worker_s: float = Field(300.0, gt=0)
    # A tagged machine nobody accounts for is collected after this long (covers slow registration).
    orphan_grace_s: float = Field(600.0, ge=0)

    # Warm pool: stopped machines kept to be started (about a second on Fly) instead of created.
    # A drained worker's stopped machine is parked while the pool has room, else destroyed.
    pool_size: int = Field(0, ge=0)
    # Size the pool to recent demand: at most as many parked machines as conversations that had a
    # message within this many seconds (None: always ``pool_size``); the surplus is destroyed.
    pool_hold_s: float | None = Field(None, ge=0)
    # …and never fewer than this (when it is below ``pool_size``).
    pool_min: int = Field(0, ge=0)
    # Fill the pool by creating machines stopped (Fly's skip_launch); off where the platform
    # cannot (a DigitalOcean droplet boots when created), then only drained machines are parked.
    pool_prefill: bool = True

    # Suspend (Fly): an idle worker past the window is suspended instead of drained, billed as a
    # stopped machine, and resumed with its gateway running when its conversation (or, unpinned,
    # any conversation) has work; after ``suspend_keep_s`` suspended its machine is destroyed.
    suspend_idle: bool = False
    suspend_keep_s: float = Field(1800.0, ge=0)
    # Affinity: workers launched unpinned (spares, the warm pool) pin themselves to the first
    # conversation they take, so its memory stays with them, is resumed with them and is snapshot
    # when they stop. Never for the launches that serve conversations beyond the budget in turn.
    sticky_workers: bool = False
    # Affinity (Fly): a pool machine started for a conversation that no worker covers is told that
    # conversation first (its stopped config updated), so it restores the conversation's memory
    # as a pinned launch does, where before it started unpinned and served it from the stored
    # history window; a parked machine gets the pool's environment back.
    pin_pool_starts: bool = False

    # Headroom, so a conversation that arrives with no worker of its own is taken at once instead
    # of waiting for a machine to boot: in affinity mode this many idle unpinned workers are kept
    # ready; in pool mode the fleet is sized for this many more conversations, and up to this many
    # idle workers are spared the drain.
    spare_workers: int = Field(0, ge=0)
    # …held while at least this many messages arrived within ``spare_hold_s`` (a quiet or sparse
    # fleet holds none: a spare would bill through every gap).
    spare_min_arrivals: int = Field(3, ge=1)
    spare_hold_s: float = Field(900.0, ge=0)

    # Keep-warm (autoscaler.keepwarm): idle workers held for conversations expected back. At most
    # this many (the budget; 0 turns keep-warm off).
    keep_warm_workers: int = Field(0, ge=0)
    # A conversation is expected back while silent for less than this many of its typical gaps…
    keep_warm_gap_factor: float = Field(1.5, gt=0)
    # …and never longer than this.
    keep_warm_max_s: float = Field(1800.0, ge=0)
    # What a cold start costs a waiting user (create → worker ready), and a start from the pool:
    # how many arrivals a warm worker must cover while a replacement starts.
    cold_start_s: float = Field(10.0, ge=0)
    warm_start_s: float = Field(5.0, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers ({self.min_workers}) is above max_workers ({self.max_workers})")
        if self.budget_machines is not None and self.budget_machines < self.min_workers:
            raise ValueError(f"budget_machines ({self.budget_machines}) is below min_workers ({self.min_workers})")
        if self.idle_timeout_s is not None and self.min_workers > 0:
            raise ValueError(
                "idle_timeout_s with min_workers > 0 would churn: workers would exit and be relaunched; set one of them"
            )
        return self

    @property
    def sticky_launches(self) -> bool:
        """Whether unpinned launches pin themselves at their first job (affinity only: a pooled
        worker shares its machine by design)."""
        return self.sticky_workers and self.mode == "affinity"

    def desired(self, active_conversations: int) -> int:
        """Workers wanted for this many active conversations, before the budget."""
        if self.mode == "affinity":
            wanted = active_conversations
        else:
            wanted = -(-active_conversations // self.conversations_per_worker)
        return max(self.min_workers, min(self.max_workers, wanted))


# What differs by platform: what a cold start costs there (create → worker ready), a start from
# the pool, how big a pool pays, and whether it can be filled with machines created stopped. A
# DigitalOcean droplet bills in full while powered off, so a pool there buys latency at full price.
PROVIDER_DEFAULTS: dict[str, dict[str, object]] = {
    # A local launch is a fork and its list is the process table: a stopped process is seen at
    # once and for what it is, so its machine need not be given Fly's or DigitalOcean's 30 s.
    "local": {
        "pool_size": 0,
        "pool_prefill": False,
        "cold_start_s": 3.0,
        "warm_start_s": 3.0,
        "launch_hedge_s": 30.0,
        "start_grace_s": 3.0,
    },
    "fly": {
        "pool_size": 10,
        "pool_hold_s": 900.0,
        "pool_min": 2,
        "pool_prefill": True,
        "suspend_idle": True,
        # A pool start or a resumed sleeper otherwise takes any conversation, returning ones
        # included, from the history window alone (bench/DEFAULTS.md, "memory on returning turns").
        "sticky_workers": True,
        # A pool start for a returning conversation restores its memory (bench/DEFAULTS.md, "pool
        # starts told their conversation").
        "pin_pool_starts": True,
        # With the watch told of idle workers: a worker idle for 3 s is suspended (window 0 suspends
        # it between a conversation's turns, and its resumes cost slow turns' p95; bench/DEFAULTS.md).
        "scale_down_window_s": 3.0,
        "cold_start_s": 15.0,
        "warm_start_s": 12.5,
        "launch_hedge_s": 30.0,
    },
    "digitalocean": {
        "pool_size": 0,
        "pool_prefill": False,
        # One spare unpinned droplet, held while ≥ 3 messages arrived in 5 minutes, and at most 100
        # droplets (past that, waiting conversations share the workers there are): the sweep's best
        # row that keeps each conversation's memory on its own droplet (bench/DEFAULTS.md).
        "spare_workers": 1,
        "spare_hold_s": 300.0,
        "budget_machines": 100,
        "scale_down_window_s": 0.0,
        "cold_start_s": 64.0,
        "warm_start_s": 32.0,
        "launch_hedge_s": 120.0,
    },
}


# Platforms that can suspend a machine with its memory (Fly: fleet-apis §1.2–1.3).
SUSPENDING_PROVIDERS = frozenset({"fly"})
# Platforms that can change a stopped machine's environment before starting it (Fly's update).
RECONFIGURING_PROVIDERS = frozenset({"fly"})


def shipped(provider: str, **settings: object) -> ScalingPolicy:
    """The shipped policy for ``provider``: the defaults, the provider's own, then ``settings``."""
    return ScalingPolicy.model_validate({**PROVIDER_DEFAULTS.get(provider, {}), **settings})
