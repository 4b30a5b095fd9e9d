import { afterEach, describe, expect, test, vi } from "vitest";
import { api, claim, leaseOf, send, setup, T0 } from "./test.setup";

afterEach(() => {
  vi.useRealTimers();
});

const status = async (h: ReturnType<typeof setup>, messageId: string) =>
  ((await h.t.query(api.getMessage, { messageId })) as { status: string; attempts: number; lastError?: string });

describe("enqueue", () => {
  test("rejects bad input naming the field", async () => {
    const h = setup();
    const cases: [Record<string, unknown>, string][] = [
      [{ conversationId: " " }, "conversationId"],
      [{ priority: 101 }, "priority"],
      [{ priority: 1.5 }, "priority"],
      [{ scheduledFor: -1 }, "scheduledFor"],
      [{ maxAttempts: 0 }, "maxAttempts"],
      [{ payload: { provider: "telegram", providerUserId: "", messageText: "hi" } }, "payload.providerUserId"],
      [{ payload: { provider: "telegram", providerUserId: "u", messageText: "x".repeat(65 * 1024) } }, "payload.messageText"],
      // The bounds contracts/models.py sets: ids are short and printable, text is not blank.
      [{ conversationId: "c".repeat(257) }, "conversationId"],
      [{ agentKey: "a\u001b[2J" }, "agentKey"],
      [{ payload: { provider: "telegram", providerUserId: "u", messageText: "  " } }, "payload.messageText"],
      [{ payload: { provider: "telegram", providerUserId: "u", messageText: "hi", externalMessageId: "" } }, "payload.externalMessageId"],
      [{ scheduledFor: 253_402_300_800_000 }, "scheduledFor"],
    ];
    for (const [override, field] of cases) {
      const args = { conversationId: "c1", agentKey: "default", payload: { provider: "telegram", providerUserId: "u", messageText: "hi" }, ...override };
      await expect(h.t.mutation(api.enqueue, args)).rejects.toMatchObject({ data: { code: "INVALID_INPUT", field } });
    }
    expect(await claim(h)).toBeNull(); // nothing was stored
  });

  test("a message may be only attachments; an id of 256 characters is accepted", async () => {
    const h = setup();
    const photo = { provider: "telegram", providerUserId: "u", messageText: "", attachments: [{ kind: "photo" as const }] };
    expect(typeof (await h.t.mutation(api.enqueue, { conversationId: "c".repeat(256), agentKey: "default", payload: photo }))).toBe("string");
  });

  test("needs an enabled agent; 'default' exists out of the box", async () => {
    const h = setup();
    const args = (agentKey: string) => ({ conversationId: `c-${agentKey}`, agentKey, payload: { provider: "t", providerUserId: "u", messageText: "x" } });
    await expect(h.t.mutation(api.enqueue, args("ghost"))).rejects.toMatchObject({
      data: { code: "AGENT_UNAVAILABLE", agentKey: "ghost", reason: "not defined" },
    });
    await h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "off", enabled: false } });
    await expect(h.t.mutation(api.enqueue, args("off"))).rejects.toMatchObject({
      data: { code: "AGENT_UNAVAILABLE", reason: "disabled" },
    });
    expect(typeof (await h.t.mutation(api.enqueue, args("default")))).toBe("string");
  });

  test("a conversation belongs to one agent", async () => {
    const h = setup();
    await h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "other" } });
    await send(h, "c1", "first");
    await expect(
      h.t.mutation(api.enqueue, { conversationId: "c1", agentKey: "other", payload: { provider: "t", providerUserId: "u", messageText: "x" } }),
    ).rejects.toMatchObject({ data: { code: "CONVERSATION_CONFLICT", owner: "default", requested: "other" } });
  });

  test("dedupes on (conversationId, externalMessageId)", async () => {
    const h = setup();
    const a = await send(h, "c1", "hi", { payload: { externalMessageId: "tg-1" } });
    const b = await send(h, "c1", "hi again", { payload: { externalMessageId: "tg-1" } });
    const c = await send(h, "c2", "other chat", { payload: { externalMessageId: "tg-1" } });
    expect(b).toBe(a);
    expect(c).not.toBe(a);
    const stats = (await h.t.query(api.queueStats, {})) as { queued: number };
    expect(stats.queued).toBe(2);
  });
});

describe("claim order", () => {
  test("per-conversation FIFO, one in flight per conversation", async () => {
    const h = setup();
    const m1 = await send(h, "c1", "one");
    const m2 = await send(h, "c1", "two");
    const job = (await claim(h, "w1"))!;
    expect(job).toMatchObject({ messageId: m1, attempt: 1, leaseExpiresAt: T0 + 60_000 });
    expect(await claim(h, "w2")).toBeNull(); // c1 is locked by w1
    expect(await h.t.mutation(api.workerComplete, leaseOf(job, "w1"))).toMatchObject({ ok: true });
    expect((await claim(h, "w2"))!.messageId).toBe(m2);
  });

  test("priority desc, then scheduledFor, then enqueue order", async () => {
    const h = setup();
    const low = await send(h, "a", "low", { priority: 10 });
    const early = await send(h, "b", "early", { scheduledFor: T0 - 5_000 });
    const first = await send(h, "c", "first");
    const second = await send(h, "d", "second");
    const high = await send(h, "e", "high", { priority: 90 });
    const order: string[] = [];
    for (let i = 0; i < 5; i++) order.push((await claim(h, `w${i}`))!.messageId);
    expect(order).toEqual([high, early, first, second, low]);
  });

  test("a due head is found behind busy and future heads of higher priority (no scan window)", async () => {
    const h = setup();
    for (let i = 0; i < 150; i++) await send(h, `busy-${i}`, "x", { priority: 90 });
    for (let i = 0; i < 150; i++) expect(await claim(h, `w${i}`)).not.toBeNull();
    for (let i = 0; i < 50; i++) await send(h, `later-${i}`, "x", { priority: 80, scheduledFor: T0 + 60_000 });
    const due = await send(h, "due", "x", { priority: 1 });
    expect((await claim(h, "finder"))!.messageId).toBe(due);
  });

  test("a claim reads index ranges, not the tables: its reads stay small however many rows wait", async () => {
    const h = setup({ FACTORY_AUTH: "open" }, { documentsRead: 40, databaseQueries: 40 });
    for (let i = 0; i < 200; i++) await send(h, `busy-${i}`, "x", { priority: 90 });
    for (let i = 0; i < 200; i++) expect(await claim(h, `w${i}`)).not.toBeNull();
    for (let i = 0; i < 200; i++) await send(h, `later-${i}`, "x", { priority: 70, scheduledFor: T0 + 60_000 });
    for (let i = 0; i < 200; i++) await send(h, `done-${i}`, "x", { priority: 60 });
    for (let i = 0; i < 200; i++) await h.t.mutation(api.workerComplete, leaseOf((await claim(h, `d${i}`))!, `d${i}`));
    const due = await send(h, "due", "x", { priority: 1 });
    expect((await claim(h, "finder"))!.messageId).toBe(due);
  }, 240_000); // some 1,400 calls: slow on a loaded 2-core machine, and no timing is asserted

  test("a message scheduled for later does not hold up one sent before its time", async () => {
    const h = setup();
    const later = await send(h, "c1", "later", { scheduledFor: T0 + 10_000 });
    const now = await send(h, "c1", "now");
    expect((await claim(h))!.messageId).toBe(now);
    h.advance(10_000);
    expect(await claim(h, "w2")).toBeNull(); // c1 still has `now` in flight
    expect((await status(h, later)).status).toBe("queued");
  });

  test("pinned claims only take their conversation", async () => {
    const h = setup();
    await send(h, "a", "a1", { priority: 90 });
    const b1 = await send(h, "b", "b1");
    expect((await claim(h, "w1", "b"))!.messageId).toBe(b1);
    expect(await claim(h, "w1", "b")).toBeNull();
    expect(await claim(h, "w1", "nobody")).toBeNull();
  });

  test("a draining or stopped worker gets nothing; an unknown worker registers by claiming", async () => {
    const h = setup();
    await send(h, "c1", "x");
    await h.t.mutation(api.workerRegister, { workerId: "w1", provider: "local" });
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "w1", status: "draining", reason: "scale down" });
    expect(await claim(h, "w1")).toBeNull();
    h.advance(1);
    expect(await claim(h, "newcomer")).not.toBeNull();
    const workers = (await h.t.query(api.listWorkers, {})) as { page: { workerId: string; provider: string }[] };
    expect(workers.page.map((w) => [w.workerId, w.provider])).toEqual([
      ["w1", "local"],
      ["newcomer", "unknown"],
    ]);
  });
});

describe("leases", () => {
  test("heartbeat extends a live lease; anything else is refused with the reason and changes nothing", async () => {
    const h = setup();
    await send(h, "c1", "x");
    const job = (await claim(h))!;
    expect(job.now).toBe(T0);
    expect(job.leaseExpiresAt - job.now).toBe(60_000);
    h.advance(30_000);
    expect(await h.t.mutation(api.workerHeartbeat, leaseOf(job))).toEqual({
      ok: true,
      leaseExpiresAt: T0 + 90_000,
      now: T0 + 30_000,
      control: { shouldStop: false },
    });
    const refused = (lease: object) => h.t.mutation(api.workerHeartbeat, lease);
    expect(await refused({ ...leaseOf(job), leaseId: "forged" })).toMatchObject({ ok: false, refused: "lease_lost" });
    expect(await refused(leaseOf(job, "w2"))).toMatchObject({ ok: false, refused: "lease_lost" });
    expect(await refused({ ...leaseOf(job), messageId: "not-an-id" })).toMatchObject({
      ok: false,
      refused: "unknown_message",
    });
    h.advance(60_000); // exactly at the extended expiry: already dead
    expect(await refused(leaseOf(job))).toMatchObject({ ok: false, refused: "lease_expired" });
    expect(await h.t.mutation(api.workerComplete, leaseOf(job))).toMatchObject({ ok: false, refused: "lease_expired" });
  });

  test("an expired lease is dead before any sweep: a claim takes the conversation over", async () => {
    const h = setup();
    const m = await send(h, "c1", "x");
    const first = (await claim(h, "w1"))!;
    h.advance(60_000);
    const second = (await claim(h, "w2"))!;
    expect(second).toMatchObject({ messageId: m, attempt: 2 });
    expect(second.leaseId).not.toBe(first.leaseId);
    expect(await h.t.mutation(api.workerComplete, leaseOf(first, "w1"))).toMatchObject({
      ok: false,
      refused: "lease_lost",
    });
    expect(await h.t.mutation(api.workerComplete, leaseOf(second, "w2"))).toMatchObject({ ok: true });
  });

  test("attempts are counted at claim: a message that keeps crashing its worker is dead-lettered", async () => {
    const h = setup();
    const m = await send(h, "c1", "poison", { maxAttempts: 2 });
    const next = await send(h, "c1", "next");
    await claim(h, "w1");
    h.advance(60_000);
    expect((await claim(h, "w2"))!.attempt).toBe(2);
    h.advance(60_000);
    const after = (await claim(h, "w3"))!; // the dead lease is dead-lettered, the next message claimed
    expect(after.messageId).toBe(next);
    expect(await status(h, m)).toMatchObject({ status: "dead_letter", lastError: "lease expired on attempt 2 of 2" });
  });

  test("lease ids are unguessable and fresh on every claim", async () => {
    const h = setup();
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      await send(h, `c${i}`, "x");
      const job = (await claim(h, `w${i}`))!;
      expect(job.leaseId).toMatch(/^[A-Za-z0-9_-]{22}$/);
      ids.add(job.leaseId);
    }
    expect(ids.size).toBe(20);
  });
});

describe("complete and fail", () => {
  test("a replayed complete reports the first outcome and changes nothing", async () => {
    const h = setup();
    const m = await send(h, "c1", "x");
    const job = (await claim(h))!;
    expect(await h.t.mutation(api.workerComplete, leaseOf(job))).toMatchObject({ ok: true });
    expect(await h.t.mutation(api.workerComplete, leaseOf(job))).toMatchObject({ ok: true });
    expect(await h.t.mutation(api.workerFail, { ...leaseOf(job), errorMessage: "late" })).toEqual({
      requeued: false,
      deadLettered: false,
      refused: "lease_lost",
    });
    expect(await status(h, m)).toMatchObject({ status: "done", attempts: 1 });
    const stats = (await h.t.query(api.queueStats, {})) as { done: number };
    expect(stats.done).toBe(1);
  });

  test("a retryable fail re-queues at the head with backoff and blocks the conversation", async () => {
    const h = setup();
    const m = await send(h, "c1", "flaky");
    const later = await send(h, "c1", "later");
    const job = (await claim(h))!;
    const result = (await h.t.mutation(api.workerFail, { ...leaseOf(job), errorMessage: "boom" })) as {
      requeued: boolean;
      nextScheduledFor: number;
    };
    expect(result.requeued).toBe(true);
    expect(result.nextScheduledFor).toBeGreaterThanOrEqual(T0 + 1_000);
    expect(result.nextScheduledFor).toBeLessThanOrEqual(T0 + 1_100);
    // Replaying the fail reports the same outcome.
    expect(await h.t.mutation(api.workerFail, { ...leaseOf(job), errorMessage: "boom" })).toEqual(result);
    expect(await claim(h, "w2")).toBeNull(); // `later` waits behind the retry
    h.advance(result.nextScheduledFor - T0);
    expect(await claim(h, "w2")).toMatchObject({ messageId: m, attempt: 2 });
    expect((await status(h, later)).status).toBe("queued");
  });

  test("a non-retryable fail dead-letters with the reason and unblocks the conversation", async () => {
    const h = setup();
    const m = await send(h, "c1", "bad");
    const next = await send(h, "c1", "next");
    const job = (await claim(h))!;
    expect(
      await h.t.mutation(api.workerFail, { ...leaseOf(job), errorMessage: "bad payload", retryable: false }),
    ).toEqual({ requeued: false, deadLettered: true });
    expect(await status(h, m)).toMatchObject({ status: "dead_letter", lastError: "not retryable: bad payload" });
    expect((await claim(h, "w2"))!.messageId).toBe(next);
  });

  test("the last attempt's fail dead-letters", async () => {
    const h = setup();
    const m = await send(h, "c1", "x", { maxAttempts: 1 });
    const job = (await claim(h))!;
    const result = await h.t.mutation(api.workerFail, { ...leaseOf(job), errorMessage: "boom" });
    expect(result).toEqual({ requeued: false, deadLettered: true });
    expect((await status(h, m)).lastError).toBe("out of attempts (1/1): boom");
  });
});

describe("release", () => {
  test("gives the message back at its place with the claim's attempt undone, even after the lease ran out", async () => {
    const h = setup();
    const m = await send(h, "c1", "held up", { maxAttempts: 2 });
    const next = await send(h, "c1", "behind it");
    for (let round = 0; round < 3; round++) {
      // Three releases of a message allowed two attempts: none of them spends one.
      const job = (await claim(h, "w1"))!;
      expect(job).toMatchObject({ messageId: m, attempt: 1 });
      h.advance(90_000); // the lease ran out while the store was out of reach; nobody took it over
      expect(await h.t.mutation(api.workerRelease, { ...leaseOf(job), reason: "gateway down" })).toEqual({
        ok: true,
        now: h.now(),
      });
      expect(await h.t.mutation(api.workerRelease, { ...leaseOf(job), reason: "again" })).toMatchObject({ ok: true });
      expect(await status(h, m)).toMatchObject({ status: "queued", attempts: 0, lastError: "released: gateway down" });
    }
    const job = (await claim(h, "w2"))!;
    expect(job.messageId).toBe(m); // FIFO kept: still ahead of the message behind it
    expect(await h.t.mutation(api.workerComplete, leaseOf(job, "w2"))).toMatchObject({ ok: true });
    expect((await claim(h, "w2"))!.messageId).toBe(next);
  });

  test("is fenced: a lease taken over, forged or unknown changes nothing", async () => {
    const h = setup();
    await send(h, "c1", "x");
    await claim(h, "w1");
    h.advance(60_000);
    const second = (await claim(h, "w2"))!;
    const release = (lease: object) => h.t.mutation(api.workerRelease, { ...lease, reason: "r" });
    expect(await release({ ...leaseOf(second, "w2"), leaseId: "forged" })).toMatchObject({ refused: "lease_lost" });
    expect(await release({ ...leaseOf(second, "w2"), messageId: "nope" })).toMatchObject({
      refused: "unknown_message",
    });
    expect(await status(h, second.messageId)).toMatchObject({ status: "processing", attempts: 2 });
    await expect(h.t.mutation(api.workerRelease, { ...leaseOf(second, "w2"), reason: " " })).rejects.toMatchObject({
      data: { code: "INVALID_INPUT", field: "reason" },
    });
  });

  test("a lease taken over while its worker could not reach the store gets its attempt back, once", async () => {
    const h = setup();
    const m = await send(h, "c1", "x");
    const first = (await claim(h, "w1"))!;
    h.advance(60_000); // w1's store went away; its lease ran out and w2 took the message over
    const second = (await claim(h, "w2"))!;
    const release = (lease: object) => h.t.mutation(api.workerRelease, { ...lease, reason: "store down" });
    expect(await release(leaseOf(first, "w1"))).toMatchObject({ ok: false, refused: "lease_lost" });
    expect(await release(leaseOf(first, "w1"))).toMatchObject({ ok: false, refused: "lease_lost" }); // a replay
    // Still w2's, under w2's lease; only w1's attempt was given back.
    expect(await status(h, m)).toMatchObject({ status: "processing", attempts: 1 });
    expect(await h.t.mutation(api.workerComplete, leaseOf(second, "w2"))).toMatchObject({ ok: true });
  });

  test("a lease swept back to the queue gets its attempt back when its worker gives it back late", async () => {
    const h = setup();
    const m = await send(h, "c1", "x");
    const job = (await claim(h, "w1"))!;
    h.advance(60_000);
    expect(await h.t.mutation(api.releaseExpired, {})).toMatchObject({ released: 1 });
    expect(await status(h, m)).toMatchObject({ status: "queued", attempts: 1 });
    expect(await h.t.mutation(api.workerRelease, { ...leaseOf(job, "w1"), reason: "store down" })).toMatchObject({
      ok: false,
      refused: "lease_lost",
    });
    expect(await status(h, m)).toMatchObject({ status: "queued", attempts: 0 });
  });
});

describe("sweep and redrive", () => {
  test("releaseExpired returns expired leases, dead-lettering those out of attempts", async () => {
    const h = setup();
    const keep = await send(h, "a", "x");
    const dead = await send(h, "b", "x", { maxAttempts: 1 });
    await claim(h, "w1");
    await claim(h, "w2");
    expect(await h.t.mutation(api.releaseExpired, {})).toEqual({ released: 0, deadLettered: 0, hasMore: false });
    h.advance(60_000);
    expect(await h.t.mutation(api.releaseExpired, {})).toEqual({ released: 1, deadLettered: 1, hasMore: false });
    expect(await status(h, keep)).toMatchObject({ status: "queued", lastError: "lease expired while processing" });
    expect((await status(h, dead)).status).toBe("dead_letter");
    expect((await claim(h, "w3"))!).toMatchObject({ messageId: keep, attempt: 2 });
  });

  test("redrive puts dead letters back in their place with fresh attempts", async () => {
    const h = setup();
    const m1 = await send(h, "c1", "one", { maxAttempts: 1 });
    const m2 = await send(h, "c1", "two");
    const job = (await claim(h))!;
    await h.t.mutation(api.workerFail, { ...leaseOf(job), errorMessage: "boom" });
    const letters = (await h.t.query(api.listDeadLetters, {})) as { messageId: string; messageText: string }[];
    expect(letters.map((d) => [d.messageId, d.messageText])).toEqual([[m1, "one"]]);
    expect(await h.t.mutation(api.redrive, { messageId: m2 })).toEqual({ redriven: [], hasMore: false });
    expect(await h.t.mutation(api.redrive, {})).toEqual({ redriven: [m1], hasMore: false });
    expect(await claim(h, "w2")).toMatchObject({ messageId: m1, attempt: 1 }); // before m2 again
  });
});
