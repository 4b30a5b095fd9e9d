"""The published trace set of ``make bench`` (``bench/traces/*.csv.gz``) and how it was made.

``python -m bench.tracegen`` writes the files again; everything is drawn from seeded
``random.Random`` generators, so the files are the same on every machine. The bench reads the
files, not this module: the set is published data that other policies can be run against.

A trace is CSV, gzip'd: ``arrival_ms,conversation,duration_ms``, one row per message in arrival
order; ``duration_ms`` is the agent turn (model calls and tools) the message will take.

The shapes (see each generator for the numbers):

* ``bursty``: 8 h over 150 conversations, a day squeezed into 8 hours, with group bursts;
* ``lunch_rush``: 4 h over 400 conversations, quiet, then a lunch peak three times the morning;
* ``steady``: 8 h over 150 conversations at a constant rate, no bursts;
* ``sparse``: 8 h, 2 conversations, each writing once every 12–28 minutes;
* ``herd``: 1,000 conversations each sending one message within 10 seconds;
* ``slow_turns``: 4 h over 60 conversations whose turns take 30–120 s.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOUR_MS = 3_600_000
TRACES_DIR = Path(__file__).with_name("traces")


@dataclass(frozen=True)
class Message:
    arrival_ms: int
    conversation: str
    duration_ms: int


def _turn_ms(rng: random.Random, median_s: float = 12.0, sigma: float = 0.8) -> int:
    """An agent turn: lognormal, median 12 s, p95 ≈ 45 s, clipped to 1–300 s."""
    return int(1000 * min(300.0, max(1.0, rng.lognormvariate(math.log(median_s), sigma))))


def _poisson(rng: random.Random, peak_per_h: float, hours: float, level: Callable[[float], float]) -> list[float]:
    """Arrival times (hours) of a Poisson process at ``peak_per_h`` × ``level(h)``, by thinning."""
    times: list[float] = []
    t = 0.0
    while peak_per_h > 0:
        t += rng.expovariate(peak_per_h)
        if t >= hours:
            return times
        if rng.random() < level(t):
            times.append(t)
    return times


def _zipf_picker(rng: random.Random, conversations: int, s: float = 0.8) -> Callable[[], str]:
    """Conversation ids drawn by a Zipf(s) popularity whose ranks are shuffled over the ids."""
    ids = [f"c{i:04d}" for i in range(conversations)]
    ranks = list(range(1, conversations + 1))
    rng.shuffle(ranks)
    weights = [1 / r**s for r in ranks]
    return lambda: rng.choices(ids, weights)[0]


def _sessions(
    rng: random.Random,
    starts_h: list[float],
    pick: Callable[[], str],
    *,
    follow_up_p: float = 0.65,
    think_median_s: float = 45.0,
    turn: Callable[[random.Random], int] = _turn_ms,
) -> list[Message]:
    """A session: 1 + Geometric messages (another with ``follow_up_p``, at most 12), each after
    the previous turn plus a lognormal think time (median ``think_median_s``, 5–600 s)."""
    out: list[Message] = []
    for start in starts_h:
        conversation = pick()
        at = int(start * HOUR_MS)
        for k in range(12):
            duration = turn(rng)
            out.append(Message(at, conversation, duration))
            if k == 11 or rng.random() >= follow_up_p:
                break
            think = min(600.0, max(5.0, rng.lognormvariate(math.log(think_median_s), 0.8)))
            at += duration + int(think * 1000)
    return out


def bursty(seed: int = 1) -> list[Message]:
    """8 h, 150 conversations: sessions at 100/h at the peak of a day squeezed into 8 hours (busy
    spell peaking at 2.75 h, a quiet night from 5.5 h to 7 h at 4 %, a morning ramp), and group
    bursts at 4/h × level: 3–8 conversations each sending 2–6 messages 1–8 s apart."""

    def level(h: float) -> float:
        if h < 5.5:
            return 0.3 + 0.7 * math.sin(math.pi * h / 5.5) ** 2
        if h < 7.0:
            return 0.04
        return 0.04 + 0.26 * (h - 7.0)

    rng = random.Random(seed)
    pick = _zipf_picker(rng, 150)
    messages = _sessions(rng, _poisson(rng, 100.0, 8.0, level), pick)
    ids = [f"c{i:04d}" for i in range(150)]
    for start in _poisson(rng, 4.0, 8.0, level):
        for conversation in rng.sample(ids, rng.randint(3, 8)):
            at = int(start * HOUR_MS) + rng.randint(0, 30_000)
            for _ in range(rng.randint(2, 6)):
                messages.append(Message(at, conversation, _turn_ms(rng)))
                at += rng.randint(1_000, 8_000)
    return messages


def lunch_rush(seed: int = 2) -> list[Message]:
    """4 h, 400 conversations: sessions at 300/h at the peak; 30 % of it for 1.5 h, a ramp to the
    lunch peak from 2 h to 2.75 h, back down to 15 % by 3.5 h."""

    def level(h: float) -> float:
        if h < 1.5:
            return 0.3
        if h < 2.0:
            return 0.3 + 0.7 * (h - 1.5) / 0.5
        if h < 2.75:
            return 1.0
        if h < 3.5:
            return 1.0 - 0.85 * (h - 2.75) / 0.75
        return 0.15

    rng = random.Random(seed)
    return _sessions(rng, _poisson(rng, 300.0, 4.0, level), _zipf_picker(rng, 400))


def steady(seed: int = 3) -> list[Message]:
    """8 h, 150 conversations: sessions at a constant 40/h, no bursts."""
    rng = random.Random(seed)
    return _sessions(rng, _poisson(rng, 40.0, 8.0, lambda h: 1.0), _zipf_picker(rng, 150))


def sparse(seed: int = 4) -> list[Message]:
    """8 h, 2 conversations, each writing once every 12–28 minutes (uniform)."""
    rng = random.Random(seed)
    out: list[Message] = []
    for conversation in ("c0000", "c0001"):
        at = rng.randint(0, 10 * 60_000)
        while at < 8 * HOUR_MS:
            out.append(Message(at, conversation, _turn_ms(rng)))
            at += rng.randint(12 * 60_000, 28 * 60_000)
    return out


def herd(seed: int = 5) -> list[Message]:
    """1,000 conversations each sending one message within 10 seconds (a broadcast's replies)."""
    rng = random.Random(seed)
    return [Message(rng.randint(0, 10_000), f"c{i:04d}", _turn_ms(rng)) for i in range(1_000)]


def slow_turns(seed: int = 6) -> list[Message]:
    """4 h, 60 conversations: sessions at 30/h whose turns take 30–120 s (uniform), think median 60 s."""
    rng = random.Random(seed)
    return _sessions(
        rng,
        _poisson(rng, 30.0, 4.0, lambda h: 1.0),
        _zipf_picker(rng, 60),
        think_median_s=60.0,
        turn=lambda r: r.randint(30_000, 120_000),
    )


TRACES: dict[str, Callable[[], list[Message]]] = {
    "bursty": bursty,
    "lunch_rush": lunch_rush,
    "steady": steady,
    "sparse": sparse,
    "herd": herd,
    "slow_turns": slow_turns,
}


def encode(messages: list[Message]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["arrival_ms", "conversation", "duration_ms"])
    for m in sorted(messages, key=lambda m: (m.arrival_ms, m.conversation)):
        writer.writerow([m.arrival_ms, m.conversation, m.duration_ms])
    # mtime=0: the same trace gives the same bytes.
    return gzip.compress(text.getvalue().encode(), mtime=0)


def decode(data: bytes) -> list[Message]:
    rows = csv.DictReader(io.StringIO(gzip.decompress(data).decode()))
    return [Message(int(r["arrival_ms"]), r["conversation"], int(r["duration_ms"])) for r in rows]


def load(name: str) -> list[Message]:
    return decode((TRACES_DIR / f"{name}.csv.gz").read_bytes())


def main() -> None:
    TRACES_DIR.mkdir(exist_ok=True)
    for name, make in TRACES.items():
        path = TRACES_DIR / f"{name}.csv.gz"
        messages = make()
        path.write_bytes(encode(messages))
        print(f"{path}: {len(messages):,} messages")


if __name__ == "__main__":
    main()
