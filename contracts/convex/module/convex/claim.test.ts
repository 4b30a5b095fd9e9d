import { afterEach, describe, expect, test, vi } from "vitest";
import { MAX_HELD_SKIPS } from "./factory/claim";
import { HOLD_MS } from "./factory/policy";
import { api, claim, leaseOf, send, setup, T0, type Claimed } from "./test.setup";

afterEach(() => {
  vi.useRealTimers();
});

type ClaimResult = { control: { shouldStop: boolean; reason?: string }; now: number; job?: Claimed; bundle?: { messageId: string; history: { content: string }[] } };
type CompleteResult = { ok: boolean; refused?: string; control: { shouldStop: boolean }; appended?: { updated: boolean; messageCount: number }; next?: ClaimResult };

const turns = [
  { role: "user", content: "question" },
  { role: "assistant", content: "answer" },
];

async function worker(h: ReturnType<typeof setup>, workerId = "w1") {
  await h.t.mutation(api.workerRegister, { workerId, provider: "test" });
}

describe("claim order", () => {
  test("a due head that has been claimable longest goes first: retries and expired leases alike", async () => {
    const h = setup();
    await worker(h);
    await send(h, "retried", "retried");
    const failed = (await claim(h))!;
    await h.t.mutation(api.workerFail, { ...leaseOf(failed), errorMessage: "flaky" }); // due at ~T0 + 1 s
    await send(h, "expired", "expired");
    expect(await claim(h)).not.toBeNull(); // its lease runs out at T0 + 60 s
    await send(h, "fresh", "fresh");
    await send(h, "scheduled", "scheduled", { scheduledFor: T0 + 30_000 });
    h.advance(60_000);
    const order: string[] = [];
    for (let job = await claim(h); job !== null; job = await claim(h)) {
      order.push(job.payload.messageText);
      await h.t.mutation(api.workerComplete, leaseOf(job));
    }
    expect(order).toEqual(["fresh", "retried", "scheduled", "expired"]);
  });

  test("an expired high-priority lease is found behind any number of expired low-priority ones", async () => {
    const h = setup();
    await worker(h);
    for (let i = 0; i < 120; i++) {
      await send(h, `low-${i}`, "low", { priority: 10 });
      expect(await claim(h)).not.toBeNull();
    }
    h.advance(1_000);
    await send(h, "high", "high", { priority: 90 });
    expect(await claim(h)).not.toBeNull();
    h.advance(60_000); // every lease has expired; the high one last
    expect((await claim(h))!.payload.messageText).toBe("high");
  });
});

describe("the hold of a pinned worker", () => {
  test("an unpinned claim passes over held heads, at most MAX_HELD_SKIPS of them; holders take theirs", async () => {
    const h = setup();
    await worker(h, "spare");
    for (let i = 0; i < MAX_HELD_SKIPS + 1; i++) {
      await h.t.mutation(api.workerRegister, { workerId: `holder-${i}`, provider: "test", conversationId: `held-${i}` });
      await send(h, `held-${i}`, `held ${i}`);
    }
    await send(h, "free", "free");
    // Behind 33 held heads: past the bound, this claim finds nothing rather than read on.
    expect(await claim(h, "spare")).toBeNull();
    const taken = (await claim(h, "holder-0", "held-0"))!;
    expect(taken.payload.messageText).toBe("held 0");
    // 32 held heads left: within the bound, the free one is found behind them.
    expect((await claim(h, "spare"))!.payload.messageText).toBe("free");
    h.advance(HOLD_MS); // every holder silent for 30 s: theirs go to anyone, oldest first
    expect((await claim(h, "spare2"))!.payload.messageText).toBe("held 1");
  });
});

describe("the hot path", () => {
  test("a claim with its bundle; an idle poll that says whether to stop", async () => {
    const h = setup();
    await worker(h);
    const idle = (await h.t.mutation(api.workerClaim, { workerId: "w1", withBundle: true })) as ClaimResult;
    expect(idle).toEqual({ control: { shouldStop: false }, now: T0 });
    const m = await send(h, "c1", "hello");
    const got = (await h.t.mutation(api.workerClaim, { workerId: "w1", withBundle: true })) as ClaimResult;
    expect(got.job).toMatchObject({ messageId: m, attempt: 1 });
    expect(got.bundle).toEqual(await h.t.query(api.workerHydrationBundle, { messageId: m }));
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "w1", status: "draining", reason: "scale down" });
    const told = (await h.t.mutation(api.workerClaim, { workerId: "w1", withBundle: true })) as ClaimResult;
    expect(told.control).toEqual({ shouldStop: true, reason: "status draining: scale down" });
    const beat = await h.t.mutation(api.workerHeartbeat, leaseOf(got.job!));
    expect(beat).toMatchObject({ ok: true, control: { shouldStop: true } });
  });

  test("complete carries the history and claims the next job; its replay hands back the same job", async () => {
    const h = setup();
    await worker(h);
    await send(h, "c1", "first");
    await send(h, "c1", "second");
    await send(h, "c2", "other");
    const job = (await claim(h))!;
    const args = { ...leaseOf(job), history: turns, claimNext: {} };
    const done = (await h.t.mutation(api.workerComplete, args)) as CompleteResult;
    expect(done).toMatchObject({ ok: true, appended: { updated: true, messageCount: 2 } });
    expect(done.next!.job!.payload.messageText).toBe("second");
    expect(done.next!.bundle!.history.map((t) => t.content)).toEqual(["question", "answer"]);
    const replay = (await h.t.mutation(api.workerComplete, args)) as CompleteResult;
    expect(replay).toMatchObject({ ok: true, appended: { updated: false, messageCount: 2 } });
    expect(replay.next!.job).toEqual(done.next!.job);
    const stats = (await h.t.query(api.queueStats, {})) as { queued: number; processing: number; done: number };
    expect([stats.done, stats.processing, stats.queued]).toEqual([1, 1, 1]);
  });

  test("a busy worker writes its document about once a second, not per message", async () => {
    const h = setup();
    await worker(h);
    for (let i = 0; i < 4; i++) await send(h, `c${i}`, `m${i}`);
    let job: Claimed | undefined = ((await h.t.mutation(api.workerClaim, { workerId: "w1", withBundle: true })) as ClaimResult).job;
    const seen = await h.t.run(async (ctx) => (await ctx.db.query("factoryWorkers").first())!);
    h.advance(500);
    const done = (await h.t.mutation(api.workerComplete, { ...leaseOf(job!), claimNext: { withBundle: false } })) as CompleteResult;
    job = done.next!.job;
    expect(job).toBeDefined();
    const after = await h.t.run(async (ctx) => (await ctx.db.query("factoryWorkers").first())!);
    expect([after.heartbeatAt, after.busySince, after.lastClaimAt]).toEqual([seen.heartbeatAt, seen.busySince, seen.lastClaimAt]);
    h.advance(1_000);
    await h.t.mutation(api.workerComplete, { ...leaseOf(job!), claimNext: {} });
    const later = await h.t.run(async (ctx) => (await ctx.db.query("factoryWorkers").first())!);
    expect(later.heartbeatAt).toBe(T0 + 1_500);
  });

  test("a refused complete appends nothing and claims nothing", async () => {
    const h = setup();
    await worker(h);
    await send(h, "c1", "one");
    await send(h, "c2", "two");
    const job = (await claim(h))!;
    h.advance(60_000);
    const refused = (await h.t.mutation(api.workerComplete, { ...leaseOf(job), history: turns, claimNext: {} })) as CompleteResult;
    expect(refused).toEqual({ ok: false, refused: "lease_expired", now: T0 + 60_000, control: { shouldStop: false }, next: { control: { shouldStop: false }, now: T0 + 60_000 } });
  });

  test("the subscription signal names the head that falls due first", async () => {
    const h = setup();
    expect(await h.t.query(api.queueSignal, {})).toEqual({});
    await send(h, "later", "x", { scheduledFor: T0 + 5_000 });
    expect(await h.t.query(api.queueSignal, {})).toMatchObject({ nextReadyAt: T0 + 5_000 });
    await send(h, "now", "y");
    expect(await h.t.query(api.queueSignal, {})).toMatchObject({ nextReadyAt: T0 });
    expect(await h.t.query(api.queueSignal, { conversationId: "later" })).toMatchObject({ nextReadyAt: T0 + 5_000 });
    expect(await h.t.query(api.queueSignal, { conversationId: "nobody" })).toEqual({});
  });

  test("the reconciler's signal adds when a worker was last left with no job", async () => {
    const h = setup();
    await worker(h); // registered idle at T0
    expect(await h.t.query(api.fleetSignal, {})).toEqual({ lastIdleAt: T0 });
    await send(h, "c", "x");
    const job = (await claim(h))!;
    expect(await h.t.query(api.fleetSignal, {})).toEqual({}); // its one worker is busy
    h.advance(5_000);
    await h.t.mutation(api.workerComplete, leaseOf(job));
    expect(await h.t.query(api.fleetSignal, {})).toEqual({ lastIdleAt: T0 + 5_000 });
  });
});
