// Workers, the demand snapshot, operator statistics, the reconcile lock and the launch ledger.
//
// Bounds (each view reads index ranges, never a whole growing table in one call):
// * open conversations (those with a head) are counted up to OPEN_SCAN per head status; past
//   that, demand and stats counts saturate (far beyond any fleet this module serves);
// * message totals are summed from per-conversation counters, QUEUE_TOTALS_PAGE conversations
//   per call: the client follows `totalsCursor` with queueTotals until it is null;
// * workers and launches are listed a page at a time (`listWorkers`, `ledgerList`);
// * live workers (not stopped), and those that stopped within EXITED_VISIBLE_MS, are read up to
//   LIVE_WORKERS per status for the demand snapshot;
// * an idle worker's readiness poll counts ready conversations up to READY_CAP only.
import type { PaginationOptions, PaginationResult } from "convex/server";
import type { Doc } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { controlOf } from "./claim";
import { EXITED_VISIBLE_MS, heartbeatDue, staleAfterMs } from "./policy";
import { findConversation, findWorker } from "./queue";
import { pendingWorkers } from "./snapshots";
import { id, integer, nonEmpty } from "./validate";
import type { LaunchState, WorkerStatus } from "./validators";

export const OPEN_SCAN = 10_000;
export const READY_CAP = 50;
export const LIVE_WORKERS = 1_000;
export const QUEUE_TOTALS_PAGE = 2_000;
export const OPEN_LAUNCHES = 1_000;
export const READY_IDS_LIMIT = 200;
export const RECENT_HORIZON_MS = 2 * 3_600_000;
export const RECENT_LIMIT = 1_000;
export const RECONCILE_LOCK = "reconcile";

type Worker = Doc<"factoryWorkers">;
type Conversation = Doc<"factoryConversations">;

const STATUS_ORDER: Record<WorkerStatus, number> = { active: 0, draining: 1, stopping: 2, stopped: 3 };

export function workerRecord(w: Worker) {
  return {
    workerId: w.workerId,
    provider: w.provider,
    status: w.status,
    registeredAt: w.registeredAt,
    heartbeatAt: w.heartbeatAt,
    statusReason: w.statusReason,
    statusSince: w.statusSince,
    machineRef: w.machineRef,
    launchId: w.launchId,
    capabilities: w.capabilities,
    lastClaimAt: w.lastClaimAt,
    busySince: w.busySince,
    idleSince: w.idleSince,
    conversationId: w.conversationId,
    pinnedConversationId: w.pinnedConversationId,
  };
}

export type Registration = {
  workerId: string;
  provider: string;
  machineRef?: { machineId: string; appName?: string; region?: string };
  launchId?: string;
  capabilities?: string[];
  conversationId?: string; // the one conversation it serves (affinity)
};

/** Insert or refresh a worker. A worker already told to stop keeps its status. */
export async function register(db: DatabaseWriter, r: Registration, now: number) {
  id("workerId", r.workerId);
  id("provider", r.provider);
  if (r.machineRef !== undefined) nonEmpty("machineRef.machineId", r.machineRef.machineId);
  const existing = await findWorker(db, r.workerId);
  if (existing === null) {
    await db.insert("factoryWorkers", {
      workerId: r.workerId,
      provider: r.provider,
      status: "active",
      statusSince: now,
      machineRef: r.machineRef,
      launchId: r.launchId,
      capabilities: r.capabilities ?? [],
      registeredAt: now,
      heartbeatAt: now,
      idleSince: now,
      pinnedConversationId: r.conversationId,
    });
  } else {
    await db.patch(existing._id, {
      provider: r.provider,
      machineRef: r.machineRef ?? existing.machineRef,
      launchId: r.launchId ?? existing.launchId,
      capabilities: r.capabilities ?? [],
      heartbeatAt: now,
      pinnedConversationId: r.conversationId ?? existing.pinnedConversationId,
    });
  }
  return workerRecord((await findWorker(db, r.workerId))!);
}

export async function controlState(db: DatabaseWriter, workerId: string, now: number) {
  nonEmpty("workerId", workerId);
  const w = await findWorker(db, workerId);
  if (w !== null && w.status === "active" && heartbeatDue(w.heartbeatAt, now)) await db.patch(w._id, { heartbeatAt: now });
  return controlOf(w);
}

/** Move a worker forward through active → draining → stopping → stopped; never backwards. */
export async function setStatus(
  db: DatabaseWriter,
  a: { workerId: string; status: Exclude<WorkerStatus, "active">; reason: string },
  now: number,
): Promise<boolean> {
  nonEmpty("workerId", a.workerId);
  nonEmpty("reason", a.reason);
  const w = await findWorker(db, a.workerId);
  if (w === null || STATUS_ORDER[a.status] < STATUS_ORDER[w.status]) return false;
  const statusSince = a.status === w.status ? w.statusSince : now;
  await db.patch(w._id, { status: a.status, statusReason: a.reason, statusSince });
  return true;
}

export async function listWorkers(db: DatabaseReader, page: PaginationOptions) {
  const result: PaginationResult<Worker> = await db.query("factoryWorkers").withIndex("by_registered").paginate(page);
  return { page: result.page.map(workerRecord), isDone: result.isDone, continueCursor: result.continueCursor };
}

/** The demand snapshot's workers: live ones, and those that exited within EXITED_VISIBLE_MS (the
 * reconciler parks or destroys an exited worker's machine at once), as contracts/rules.py
 * exit_visible. */
async function liveWorkers(db: DatabaseReader, now: number): Promise<Worker[]> {
  const out: Worker[] = [];
  for (const status of ["active", "draining", "stopping"] as const) {
    out.push(
      ...(await db
        .query("factoryWorkers")
        .withIndex("by_status", (q) => q.eq("status", status))
        .take(LIVE_WORKERS)),
    );
  }
  out.push(
    ...(await db
      .query("factoryWorkers")
      .withIndex("by_status_since", (q) => q.eq("status", "stopped").gt("statusSince", now - EXITED_VISIBLE_MS))
      .order("desc") // past the cap, the newest exits are the ones with machines left to settle
      .take(LIVE_WORKERS)),
  );
  return out.sort((a, b) =>
    a.registeredAt !== b.registeredAt ? a.registeredAt - b.registeredAt : a.workerId < b.workerId ? -1 : 1,
  );
}

// --------------------------------------------------------------------------- demand and stats

type Readiness = {
  readyConversations: number;
  inflightConversations: number;
  retryingConversations: number;
  scheduledConversations: number;
  oldestReadyAgeMs?: number;
  nextReadyAt?: number;
  busy: Map<string, string>; // worker id → conversation it holds a live lease on
  ready: Conversation[]; // the ready ones, for their ids in claim order
};

async function openHeads(db: DatabaseReader, status: "queued" | "processing"): Promise<Conversation[]> {
  return await db
    .query("factoryConversations")
    .withIndex("by_available", (q) => q.eq("headStatus", status))
    .take(OPEN_SCAN);
}

/** Classify every open conversation by its head: ready (claimable now), in flight (live lease),
 * retrying or scheduled (queued for later). */
async function readiness(db: DatabaseReader, now: number): Promise<Readiness> {
  const r: Readiness = {
    readyConversations: 0,
    inflightConversations: 0,
    retryingConversations: 0,
    scheduledConversations: 0,
    busy: new Map(),
    ready: [],
  };
  let oldest: number | undefined;
  let upcoming: number | undefined;
  for (const status of ["queued", "processing"] as const) {
    for (const c of await openHeads(db, status)) {
      const at = c.availableAt!;
      if (at <= now) {
        r.readyConversations++;
        r.ready.push(c);
        oldest = oldest === undefined ? at : Math.min(oldest, at);
        continue;
      }
      upcoming = upcoming === undefined ? at : Math.min(upcoming, at);
      if (status === "processing") {
        r.inflightConversations++;
        if (c.lockWorker !== undefined) r.busy.set(c.lockWorker, c.conversationId);
      } else if (c.headAttempts! > 0) r.retryingConversations++;
      else r.scheduledConversations++;
    }
  }
  if (oldest !== undefined) r.oldestReadyAgeMs = now - oldest;
  if (upcoming !== undefined) r.nextReadyAt = upcoming;
  return r;
}

/** Claim order: priority (as claimRank), then claimable longest (availableAt), then enqueue order. */
function claimOrder(a: Conversation, b: Conversation): number {
  return (
    (a.claimRank ?? 0) - (b.claimRank ?? 0) ||
    (a.availableAt ?? 0) - (b.availableAt ?? 0) ||
    (a.headSeq ?? 0) - (b.headSeq ?? 0)
  );
}

export async function demand(db: DatabaseReader, now: number) {
  const { busy, ready, ...counts } = await readiness(db, now);
  const uploading = await pendingWorkers(db, now);
  const workers = (await liveWorkers(db, now)).map((w) => {
    const conversationId = busy.get(w.workerId);
    return {
      workerId: w.workerId,
      provider: w.provider,
      status: w.status,
      heartbeatAgeMs: Math.max(0, now - w.heartbeatAt),
      busy: conversationId !== undefined,
      statusSince: w.statusSince,
      busySince: conversationId !== undefined ? w.busySince : undefined,
      idleSince: conversationId !== undefined ? undefined : (w.idleSince ?? w.registeredAt),
      machineRef: w.machineRef,
      launchId: w.launchId,
      conversationId: w.pinnedConversationId ?? conversationId,
      pinned: w.pinnedConversationId !== undefined,
      snapshotPending: uploading.has(w.workerId),
    };
  });
  const readyConversationIds = ready
    .sort(claimOrder)
    .slice(0, READY_IDS_LIMIT)
    .map((c) => c.conversationId);
  return { now, ...counts, workers, readyConversationIds, recent: await recentConversations(db, now) };
}

/** Conversations with an arrival within the horizon, most recent first: keep-warm's evidence. */
async function recentConversations(db: DatabaseReader, now: number) {
  const rows = await db
    .query("factoryConversations")
    .withIndex("by_last_arrival", (q) => q.gte("lastArrivalAt", now - RECENT_HORIZON_MS))
    .order("desc")
    .take(RECENT_LIMIT);
  return rows.map((c) => ({
    conversationId: c.conversationId,
    lastArrivalAt: c.lastArrivalAt!,
    gapsMs: c.arrivalGaps ?? [],
    active: c.headStatus !== "idle",
  }));
}

/** A cheap view for an idle worker's poll: how many conversations are claimable (counted up to
 * READY_CAP), and when the next waiting one (retry, schedule, running lease) becomes so. */
export async function queueReadiness(db: DatabaseReader, now: number) {
  let ready = 0;
  let nextReadyAt: number | undefined;
  for (const status of ["queued", "processing"] as const) {
    const due = await db
      .query("factoryConversations")
      .withIndex("by_available", (q) => q.eq("headStatus", status).lte("availableAt", now))
      .take(READY_CAP);
    ready += due.length;
    const upcoming = await db
      .query("factoryConversations")
      .withIndex("by_available", (q) => q.eq("headStatus", status).gt("availableAt", now))
      .first();
    if (upcoming !== null && (nextReadyAt === undefined || upcoming.availableAt! < nextReadyAt)) {
      nextReadyAt = upcoming.availableAt!;
    }
  }
  return { readyConversations: Math.min(ready, READY_CAP), nextReadyAt };
}

/** What an idle worker subscribes to over /api/sync: the head that falls due first among queued
 * heads (or, for a worker pinned to a conversation, that conversation's head). Nothing in it
 * depends on the clock, so the subscription re-runs only when those documents change; the worker
 * wakes on a change, or at `nextReadyAt` when that is still to come. Two index reads. */
export async function queueSignal(db: DatabaseReader, conversationId: string | undefined) {
  const head =
    conversationId !== undefined
      ? await findConversation(db, conversationId)
      : await db
          .query("factoryConversations")
          .withIndex("by_available", (q) => q.eq("headStatus", "queued"))
          .first();
  if (head === null || head.headStatus === "idle") return {};
  return { nextReadyAt: head.availableAt!, headSeq: head.headSeq! };
}

/** What the reconciler's watch subscribes to: `queueSignal`'s queued head, and when a worker was
 * last left with no job or exited (the newest `idleSince` or stopped worker's `statusSince`), so
 * the watch ticks when a worker goes idle or exits as well as when work arrives: the reconciler
 * parks or destroys an exited worker's machine at once. Two more index reads: the last entries of
 * `by_idleSince` and of `by_status_since` for stopped workers; they re-run when those workers'
 * documents change (the idle one's heartbeats too), and the value changes only when a worker goes
 * idle, the newest idle one goes busy, or a worker exits. The field keeps its name, `lastIdleAt`:
 * the Python binding reads it. */
export async function fleetSignal(db: DatabaseReader) {
  const signal = await queueSignal(db, undefined);
  const idle = await db.query("factoryWorkers").withIndex("by_idleSince").order("desc").first();
  const exited = await db
    .query("factoryWorkers")
    .withIndex("by_status_since", (q) => q.eq("status", "stopped"))
    .order("desc")
    .first();
  const at = Math.max(idle?.idleSince ?? -Infinity, exited?.statusSince ?? -Infinity);
  return at === -Infinity ? signal : { ...signal, lastIdleAt: at };
}

async function queueTotalsPage(db: DatabaseReader, cursor: string | null) {
  const result = await db.query("factoryConversations").paginate({ cursor, numItems: QUEUE_TOTALS_PAGE });
  const totals = { queued: 0, processing: 0, done: 0, deadLetters: 0 };
  for (const c of result.page) {
    totals.queued += c.counts.queued;
    totals.processing += c.counts.processing;
    totals.done += c.counts.done;
    totals.deadLetters += c.counts.deadLetter;
  }
  return { ...totals, totalsCursor: result.isDone ? null : result.continueCursor };
}

export async function queueTotals(db: DatabaseReader, cursor: string) {
  return await queueTotalsPage(db, cursor);
}

export async function stats(db: DatabaseReader, now: number, leaseTtlMs: number) {
  const { busy: _busy, nextReadyAt: _next, ready: _ready, ...counts } = await readiness(db, now);
  const workers: Record<string, number> = {};
  const cutoff = now - staleAfterMs(leaseTtlMs);
  for (const status of ["active", "draining", "stopping", "stopped"] as const) {
    const rows = await db
      .query("factoryWorkers")
      .withIndex("by_status", (q) => q.eq("status", status))
      .take(OPEN_SCAN);
    for (const w of rows) {
      // An active worker that stopped heartbeating exited without saying so.
      const shown = status === "active" && w.heartbeatAt < cutoff ? "stale" : status;
      workers[shown] = (workers[shown] ?? 0) + 1;
    }
  }
  return { ...(await queueTotalsPage(db, null)), ...counts, workers, leaseTtlMs };
}

export async function deadLetters(db: DatabaseReader, limit: number) {
  integer("limit", limit, 0, 1000);
  const rows = await db
    .query("factoryMessages")
    .withIndex("by_status_finished", (q) => q.eq("status", "dead_letter"))
    .order("desc")
    .take(limit);
  return rows.map((m) => ({
    messageId: m._id,
    conversationId: m.conversationId,
    agentKey: m.agentKey,
    attempts: m.attempts,
    maxAttempts: m.maxAttempts,
    lastError: m.lastError ?? "",
    deadLetteredAt: m.finishedAt ?? 0,
    messageText: m.payload.messageText,
    ...(m.externalMessageId !== undefined ? { externalMessageId: m.externalMessageId } : {}),
  }));
}

// --------------------------------------------------------------------------- reconcile lock

async function lockDoc(db: DatabaseReader, name: string) {
  return await db
    .query("factoryLocks")
    .withIndex("by_name", (q) => q.eq("name", name))
    .unique();
}

/** Take (or renew, for the same holder) the lock until it expires. */
export async function acquireLock(db: DatabaseWriter, holder: string, ttlMs: number, now: number): Promise<boolean> {
  nonEmpty("holder", holder);
  integer("ttlMs", ttlMs, 1);
  const lock = await lockDoc(db, RECONCILE_LOCK);
  if (lock === null) {
    await db.insert("factoryLocks", { name: RECONCILE_LOCK, holder, expiresAt: now + ttlMs });
    return true;
  }
  if (lock.holder !== holder && lock.expiresAt > now) return false;
  await db.patch(lock._id, { holder, expiresAt: now + ttlMs });
  return true;
}

export async function releaseLock(db: DatabaseWriter, holder: string): Promise<null> {
  const lock = await lockDoc(db, RECONCILE_LOCK);
  if (lock !== null && lock.holder === holder) await db.delete(lock._id);
  return null;
}

// --------------------------------------------------------------------------- launch ledger

type Launch = Doc<"factoryLaunches">;

function launchRecord(l: Launch) {
  return {
    launchId: l.launchId,
    provider: l.provider,
    requestedAt: l.requestedAt,
    state: l.state,
    machineId: l.machineId,
    updatedAt: l.updatedAt,
    detail: l.detail,
    conversationId: l.conversationId,
  };
}

async function launchDoc(db: DatabaseReader, launchId: string): Promise<Launch | null> {
  return await db
    .query("factoryLaunches")
    .withIndex("by_launchId", (q) => q.eq("launchId", launchId))
    .unique();
}

export type LaunchInput = {
  launchId: string;
  provider: string;
  requestedAt: number;
  state?: LaunchState;
  machineId?: string;
  updatedAt?: number;
  detail?: string;
  conversationId?: string;
};

/** Insert a launch before the provider call; an existing launch id returns the stored row. */
export async function ledgerRecord(db: DatabaseWriter, r: LaunchInput) {
  nonEmpty("launchId", r.launchId);
  nonEmpty("provider", r.provider);
  integer("requestedAt", r.requestedAt, 0);
  const existing = await launchDoc(db, r.launchId);
  if (existing !== null) return launchRecord(existing);
  const id = await db.insert("factoryLaunches", {
    launchId: r.launchId,
    provider: r.provider,
    requestedAt: r.requestedAt,
    state: r.state ?? "requested",
    machineId: r.machineId,
    updatedAt: r.updatedAt ?? r.requestedAt,
    detail: r.detail,
    conversationId: r.conversationId,
  });
  return launchRecord((await db.get(id))!);
}

export async function ledgerUpdate(
  db: DatabaseWriter,
  a: { launchId: string; state: LaunchState; machineId?: string; detail?: string },
  now: number,
): Promise<boolean> {
  const l = await launchDoc(db, a.launchId);
  if (l === null) return false;
  await db.patch(l._id, {
    state: a.state,
    machineId: a.machineId ?? l.machineId,
    detail: a.detail ?? l.detail,
    updatedAt: now,
  });
  return true;
}

/** Open launches (requested, running or parked) at once; with closed ones, a page at a time. */
export async function ledgerList(db: DatabaseReader, includeClosed: boolean, page: PaginationOptions) {
  if (includeClosed) {
    const result = await db.query("factoryLaunches").withIndex("by_requested").paginate(page);
    return { page: result.page.map(launchRecord), isDone: result.isDone, continueCursor: result.continueCursor };
  }
  const open: Launch[] = [];
  for (const state of ["requested", "running", "parked"] as const) {
    open.push(
      ...(await db
        .query("factoryLaunches")
        .withIndex("by_state", (q) => q.eq("state", state))
        .take(OPEN_LAUNCHES)),
    );
  }
  open.sort((a, b) =>
    a.requestedAt !== b.requestedAt ? a.requestedAt - b.requestedAt : a.launchId < b.launchId ? -1 : 1,
  );
  return { page: open.map(launchRecord), isDone: true, continueCursor: "" };
}
