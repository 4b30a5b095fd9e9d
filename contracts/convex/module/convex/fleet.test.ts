import { afterEach, describe, expect, test, vi } from "vitest";
import { EXITED_VISIBLE_MS } from "./factory/policy";
import { api, claim, leaseOf, send, setup, T0 } from "./test.setup";

afterEach(() => {
  vi.useRealTimers();
});

type WorkerRecord = { workerId: string; status: string; heartbeatAt: number; capabilities: string[]; machineRef?: object };

describe("workers", () => {
  test("register inserts, then refreshes without resurrecting a stopped worker", async () => {
    const h = setup();
    const first = (await h.t.mutation(api.workerRegister, {
      workerId: "w1",
      provider: "fly",
      machineRef: { machineId: "m-1", region: "iad" },
      capabilities: ["gpu"],
    })) as WorkerRecord;
    expect(first).toMatchObject({ workerId: "w1", status: "active", registeredAt: T0, capabilities: ["gpu"] });
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "w1", status: "stopping", reason: "drain" });
    h.advance(5_000);
    const again = (await h.t.mutation(api.workerRegister, { workerId: "w1", provider: "fly" })) as WorkerRecord;
    expect(again).toMatchObject({ status: "stopping", heartbeatAt: T0 + 5_000, registeredAt: T0, capabilities: [] });
    expect(again.machineRef).toEqual({ machineId: "m-1", region: "iad" });
  });

  test("control state: unknown and non-active workers stop; an active poll refreshes the heartbeat", async () => {
    const h = setup();
    expect(await h.t.mutation(api.workerControlState, { workerId: "ghost" })).toMatchObject({ shouldStop: true });
    await h.t.mutation(api.workerRegister, { workerId: "w1", provider: "local" });
    h.advance(10_000);
    expect(await h.t.mutation(api.workerControlState, { workerId: "w1" })).toEqual({ shouldStop: false });
    const workers = (await h.t.query(api.listWorkers, {})) as { page: WorkerRecord[] };
    expect(workers.page[0]!.heartbeatAt).toBe(T0 + 10_000);
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "w1", status: "draining", reason: "scale down" });
    expect(await h.t.mutation(api.workerControlState, { workerId: "w1" })).toEqual({
      shouldStop: true,
      reason: "status draining: scale down",
    });
  });

  test("status only moves forward", async () => {
    const h = setup();
    await h.t.mutation(api.workerRegister, { workerId: "w1", provider: "local" });
    const set = (status: string) => h.t.mutation(api.fleetSetWorkerStatus, { workerId: "w1", status, reason: "r" });
    expect(await set("stopping")).toBe(true);
    expect(await set("draining")).toBe(false);
    expect(await set("stopped")).toBe(true);
    expect(await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "nope", status: "stopped", reason: "r" })).toBe(false);
  });

  test("listWorkers pages through the registry in registration order", async () => {
    const h = setup();
    for (let i = 0; i < 5; i++) {
      await h.t.mutation(api.workerRegister, { workerId: `w${i}`, provider: "local" });
      h.advance(1);
    }
    const first = (await h.t.query(api.listWorkers, { numItems: 3 })) as { page: WorkerRecord[]; isDone: boolean; continueCursor: string };
    expect(first.page.map((w) => w.workerId)).toEqual(["w0", "w1", "w2"]);
    expect(first.isDone).toBe(false);
    const rest = (await h.t.query(api.listWorkers, { numItems: 3, cursor: first.continueCursor })) as { page: WorkerRecord[]; isDone: boolean };
    expect(rest.page.map((w) => w.workerId)).toEqual(["w3", "w4"]);
    expect(rest.isDone).toBe(true);
  });
});

describe("demand and stats", () => {
  test("the demand snapshot classifies conversations and workers", async () => {
    const h = setup();
    await h.t.mutation(api.workerRegister, { workerId: "idle", provider: "local", launchId: "L1" });
    await send(h, "ready", "x");
    await send(h, "busy", "x", { priority: 90 });
    await send(h, "retry", "x", { priority: 80 });
    await send(h, "later", "x", { scheduledFor: T0 + 30_000 });
    const busy = (await claim(h, "worker-busy"))!;
    const retry = (await claim(h, "worker-retry"))!;
    expect(busy.conversationId).toBe("busy");
    const failed = (await h.t.mutation(api.workerFail, { ...leaseOf(retry, "worker-retry"), errorMessage: "x" })) as {
      nextScheduledFor: number;
    };
    h.advance(500);
    const snap = (await h.t.query(api.fleetDemand, {})) as Record<string, unknown> & {
      workers: { workerId: string; busy: boolean; conversationId?: string; heartbeatAgeMs: number; idleSince?: number }[];
    };
    expect(snap).toMatchObject({
      now: T0 + 500,
      readyConversations: 1,
      inflightConversations: 1,
      retryingConversations: 1,
      scheduledConversations: 1,
      oldestReadyAgeMs: 500,
      nextReadyAt: failed.nextScheduledFor,
    });
    const byId = Object.fromEntries(snap.workers.map((w) => [w.workerId, w]));
    expect(byId["worker-busy"]).toMatchObject({ busy: true, conversationId: "busy", heartbeatAgeMs: 500 });
    expect(byId["worker-retry"]).toMatchObject({ busy: false, idleSince: T0 });
    expect(byId["idle"]).toMatchObject({ busy: false, launchId: "L1", idleSince: T0 });
    // The caller may pass the store's time explicitly (Convex caches queries by their reads).
    const later = (await h.t.query(api.fleetDemand, { now: T0 + 60_000 })) as Record<string, number>;
    expect(later).toMatchObject({ readyConversations: 4, inflightConversations: 0 });
  });

  test("a worker that exited stays in the snapshot, as stopped, for a while", async () => {
    const h = setup();
    const ids = async () =>
      ((await h.t.query(api.fleetDemand, {})) as { workers: { workerId: string; status: string }[] }).workers.map(
        (w) => `${w.workerId}:${w.status}`,
      );
    await h.t.mutation(api.workerRegister, { workerId: "old", provider: "local" });
    await h.t.mutation(api.workerRegister, { workerId: "recent", provider: "local" });
    await h.t.mutation(api.workerRegister, { workerId: "live", provider: "local" });
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "old", status: "stopped", reason: "exited" });
    h.advance(1_000);
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "recent", status: "stopped", reason: "exited" });
    expect(await ids()).toEqual(["live:active", "old:stopped", "recent:stopped"]); // one registeredAt: by id
    h.advance(EXITED_VISIBLE_MS - 1_000); // "old" stopped exactly EXITED_VISIBLE_MS ago: gone
    expect(await ids()).toEqual(["live:active", "recent:stopped"]);
    h.advance(1_000);
    expect(await ids()).toEqual(["live:active"]);
  });

  test("the snapshot carries recent conversations with their arrival gaps, newest first", async () => {
    const h = setup();
    await send(h, "chatty", "1");
    h.advance(10_000);
    await send(h, "chatty", "2");
    await send(h, "later", "not an arrival yet", { scheduledFor: T0 + 3_600_000 });
    h.advance(20_000);
    await send(h, "chatty", "3");
    const snap = (await h.t.query(api.fleetDemand, {})) as {
      recent: { conversationId: string; lastArrivalAt: number; gapsMs: number[]; active: boolean }[];
    };
    expect(snap.recent).toEqual([
      { conversationId: "chatty", lastArrivalAt: T0 + 30_000, gapsMs: [20_000, 10_000], active: true },
    ]);
  });

  test("queue stats count messages by status and conversations by readiness", async () => {
    const h = setup();
    await send(h, "a", "1");
    await send(h, "a", "2");
    await send(h, "b", "1", { maxAttempts: 1 });
    const job = (await claim(h, "w1"))!;
    await h.t.mutation(api.workerComplete, leaseOf(job));
    const dead = (await claim(h, "w1", "b"))!;
    await h.t.mutation(api.workerFail, { ...leaseOf(dead), errorMessage: "x" });
    await claim(h, "w2");
    const stats = await h.t.query(api.queueStats, {});
    expect(stats).toMatchObject({
      queued: 0,
      processing: 1,
      done: 1,
      deadLetters: 1,
      readyConversations: 0,
      inflightConversations: 1,
      totalsCursor: null,
      workers: { active: 2 },
    });
  });

  test("an active worker without a heartbeat for two leases counts as stale, as in SQLite", async () => {
    const h = setup();
    await h.t.mutation(api.workerRegister, { workerId: "gone", provider: "local" });
    h.advance(120_001);
    await h.t.mutation(api.workerRegister, { workerId: "alive", provider: "local" });
    expect(await h.t.query(api.queueStats, {})).toMatchObject({ workers: { active: 1, stale: 1 } });
  });

  test("the reconciler's signal moves when a worker exits", async () => {
    const h = setup();
    await h.t.mutation(api.workerRegister, { workerId: "w1", provider: "local" }); // idle at T0
    await send(h, "c", "x");
    await claim(h, "w2"); // busy: no idleSince of its own
    expect(await h.t.query(api.fleetSignal, {})).toEqual({ lastIdleAt: T0 });
    h.advance(5_000);
    await h.t.mutation(api.fleetSetWorkerStatus, { workerId: "w2", status: "stopped", reason: "exited" });
    expect(await h.t.query(api.fleetSignal, {})).toEqual({ lastIdleAt: T0 + 5_000 });
  });

  test("queue readiness tells an idle worker whether to claim and when to look again", async () => {
    const h = setup();
    expect(await h.t.query(api.queueReadiness, {})).toEqual({ readyConversations: 0 });
    await send(h, "a", "x", { scheduledFor: T0 + 5_000 });
    expect(await h.t.query(api.queueReadiness, {})).toEqual({ readyConversations: 0, nextReadyAt: T0 + 5_000 });
    h.advance(5_000);
    expect(await h.t.query(api.queueReadiness, {})).toEqual({ readyConversations: 1 });
    const job = (await claim(h))!;
    expect(await h.t.query(api.queueReadiness, {})).toEqual({ readyConversations: 0, nextReadyAt: job.leaseExpiresAt });
    for (let i = 0; i < 60; i++) await send(h, `many-${i}`, "x");
    expect(await h.t.query(api.queueReadiness, {})).toMatchObject({ readyConversations: 50 }); // counted up to a cap
  });
});

describe("reconcile lock and launch ledger", () => {
  test("one holder at a time until the lock expires; the holder renews and releases", async () => {
    const h = setup();
    const acquire = (holder: string) => h.t.mutation(api.acquireReconcileLock, { holder, ttlMs: 10_000 });
    expect(await acquire("cron")).toBe(true);
    expect(await acquire("operator")).toBe(false);
    h.advance(9_000);
    expect(await acquire("cron")).toBe(true); // renewed until T0 + 19s
    h.advance(9_000);
    expect(await acquire("operator")).toBe(false);
    await h.t.mutation(api.releaseReconcileLock, { holder: "operator" }); // not the holder: no effect
    expect(await acquire("operator")).toBe(false);
    await h.t.mutation(api.releaseReconcileLock, { holder: "cron" });
    expect(await acquire("operator")).toBe(true);
    await expect(h.t.mutation(api.acquireReconcileLock, { holder: "x", ttlMs: 0 })).rejects.toMatchObject({
      data: { code: "INVALID_INPUT", field: "ttlMs" },
    });
  });

  test("a launch is recorded once; updates and listings follow", async () => {
    const h = setup();
    const rec = { launchId: "L1", provider: "fly", requestedAt: T0 };
    expect(await h.t.mutation(api.ledgerRecord, rec)).toEqual({ ...rec, state: "requested", updatedAt: T0 });
    expect(await h.t.mutation(api.ledgerRecord, { ...rec, provider: "other", state: "running" })).toMatchObject({
      provider: "fly",
      state: "requested",
    });
    await h.t.mutation(api.ledgerRecord, { launchId: "L0", provider: "fly", requestedAt: T0 - 1 });
    h.advance(1_000);
    expect(await h.t.mutation(api.ledgerUpdate, { launchId: "L1", state: "running", machineId: "m1" })).toBe(true);
    expect(await h.t.mutation(api.ledgerUpdate, { launchId: "L0", state: "gone", detail: "destroyed" })).toBe(true);
    expect(await h.t.mutation(api.ledgerUpdate, { launchId: "nope", state: "gone" })).toBe(false);
    const open = (await h.t.query(api.ledgerList, {})) as { page: { launchId: string }[] };
    expect(open.page).toEqual([{ ...rec, state: "running", machineId: "m1", updatedAt: T0 + 1_000 }]);
    const all = (await h.t.query(api.ledgerList, { includeClosed: true })) as { page: { launchId: string }[] };
    expect(all.page.map((l) => l.launchId)).toEqual(["L0", "L1"]);
  });
});
