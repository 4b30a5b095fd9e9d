import { describe, expect, test } from "vitest";
import { nextSlot, slotOn } from "./factory/slots";
import { api, claim, send, setup, T0 } from "./test.setup";

const at = (iso: string) => Date.parse(iso);

describe("slot math", () => {
  test("a gap runs at the first valid minute; an overlap runs once", () => {
    const ny = { kind: "daily" as const, at: "02:30", tz: "America/New_York" };
    expect(slotOn(ny, Date.UTC(2024, 2, 10))).toBe(at("2024-03-10T07:00:00Z"));
    const fall = { kind: "daily" as const, at: "01:30", tz: "America/New_York" };
    const first = at("2024-11-03T05:30:00Z");
    expect(slotOn(fall, Date.UTC(2024, 10, 3))).toBe(first);
    expect(nextSlot(fall, first)).toBe(at("2024-11-04T06:30:00Z"));
  });

  test("monthly days clamp; weekly runs on its weekdays", () => {
    const rome = { kind: "monthly" as const, at: "09:00", tz: "Europe/Rome", day: 31 };
    expect(nextSlot(rome, at("2025-02-01T00:00:00+01:00"))).toBe(at("2025-02-28T09:00:00+01:00"));
    const weekly = { kind: "weekly" as const, at: "08:15", tz: "UTC", weekdays: [1, 5] };
    expect(nextSlot(weekly, at("2026-11-30T08:15:00Z"))).toBe(at("2026-12-04T08:15:00Z"));
  });
});

async function templateAndJob(h: ReturnType<typeof setup>, nextRunAt: number) {
  await h.t.mutation(api.pushTemplatePut, { template: { templateId: "t1", agentKey: "default", text: "hi {name}" } });
  await send(h, "c1", "earlier", { payload: { provider: "telegram", providerUserId: "42" } });
  const done = await claim(h);
  await h.t.mutation(api.workerComplete, { workerId: "w1", messageId: done!.messageId, leaseId: done!.leaseId });
  return await h.t.mutation(api.pushJobPut, {
    job: {
      jobId: "j1",
      templateId: "t1",
      conversationId: "c1",
      schedule: { kind: "daily", at: "09:00", tz: "UTC" },
      variables: { name: "Ada" },
      nextRunAt,
    },
  });
}

describe("dispatch", () => {
  test("a slot is enqueued once; a stale or repeated dispatch changes nothing", async () => {
    const h = setup();
    const slot = T0 + 60_000;
    await templateAndJob(h, slot);
    const request = {
      jobId: "j1",
      runKey: `job:j1:${slot}`,
      slotAt: slot,
      expectedNextRunAt: slot,
      nextRunAt: slot + 86_400_000,
    };
    const first = await h.t.mutation(api.pushDispatch, request);
    expect(first).toMatchObject({ status: "enqueued", fresh: true });
    expect(await h.t.mutation(api.pushDispatch, request)).toMatchObject({ status: "enqueued", fresh: false });
    const stale = await h.t.mutation(api.pushDispatch, { ...request, runKey: "job:j1:other" });
    expect(stale).toMatchObject({ fresh: false, error: "another dispatcher handled this slot" });
    const pushed = await claim(h, "w2");
    expect(pushed!.payload).toMatchObject({
      provider: "system_push",
      providerUserId: "42",
      messageText: "hi Ada",
      metadata: { telegramChatId: "42", pushJobId: "j1", runKey: `job:j1:${slot}`, pushMode: "scheduled" },
    });
    const jobs = (await h.t.query(api.pushJobs, {})) as { nextRunAt: number; lastRunKey: string }[];
    expect(jobs[0]).toMatchObject({ nextRunAt: slot + 86_400_000, lastRunKey: `job:j1:${slot}` });
  });

  test("the module's own pass runs the latest missed slot once and moves the job past now", async () => {
    const h = setup();
    await templateAndJob(h, at("2023-11-10T09:00:00Z")); // days before T0 (2023-11-14T22:13:20Z)
    expect(await h.t.mutation(api.pushDispatchDue, {})).toMatchObject({ scanned: 1, enqueued: 1 });
    expect(await h.t.mutation(api.pushDispatchDue, {})).toMatchObject({ scanned: 0, enqueued: 0 });
    const dispatches = (await h.t.query(api.pushDispatches, { jobId: "j1" })) as { runKey: string }[];
    expect(dispatches.map((d) => d.runKey)).toEqual([`job:j1:${at("2023-11-14T09:00:00Z")}`]);
    const jobs = (await h.t.query(api.pushJobs, {})) as { nextRunAt: number }[];
    expect(jobs[0]!.nextRunAt).toBe(at("2023-11-15T09:00:00Z"));
  });
});

describe("broadcast", () => {
  test("batches through every conversation once; a repeated id sends nothing", async () => {
    const h = setup();
    for (let i = 0; i < 130; i++) await send(h, `conv-${String(i).padStart(3, "0")}`, "x");
    const args = { broadcastId: "b1", text: "maintenance at noon", requestedBy: "ops" };
    expect(await h.t.mutation(api.broadcast, args)).toEqual({ hasMore: true });
    const done = (await h.t.mutation(api.broadcast, args)) as {
      hasMore: boolean;
      broadcast: { status: string; recipients: { status: string }[]; fresh: boolean };
    };
    expect(done.hasMore).toBe(false);
    expect(done.broadcast).toMatchObject({ status: "done", fresh: true });
    expect(done.broadcast.recipients.filter((r) => r.status === "enqueued")).toHaveLength(130);
    const again = (await h.t.mutation(api.broadcast, args)) as { broadcast: { fresh: boolean } };
    expect(again.broadcast.fresh).toBe(false);
    const stats = (await h.t.query(api.queueStats, {})) as { queued: number };
    expect(stats.queued).toBe(260);
  });
});
