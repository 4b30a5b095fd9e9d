// The queue's transactions: enqueue, fail, release, sweep, redrive, and the conversation heads they keep
// (claims, heartbeats and completes, a busy worker's hot path, are in claim.ts). The same
// semantics as contracts/sqlite/queue.py (the reference), arranged for Convex's OCC:
//
// * A conversation's head is its one processing message if it has one, else its earliest
//   queued message by (arrivalAt, seq). Only a head is ever claimed, so at most one message
//   per conversation is in flight and delivery follows enqueue order.
// * Every change to a conversation's open messages ends in `settle`, which recomputes the
//   head, denormalises it onto the conversation and adjusts the per-status counters.
// * Heartbeat, complete and fail change a row only when status, lease, worker and expiry all
//   match; a replay with the same lease reports the first outcome and changes nothing.
import type { Doc, Id } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { agentUnavailable, conversationConflict } from "./errors";
import { loadProfile } from "./agents";
import {
  attemptsAfterRelease,
  backoffMs,
  claimRank,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_PRIORITY,
  MAX_ATTEMPTS_LIMIT,
  MAX_MESSAGE_BYTES,
  MAX_PRIORITY,
  MIN_PRIORITY,
  outOfAttempts,
  truncate,
  type Policy,
} from "./policy";
import { id, integer, MAX_EPOCH_MS, maxBytes, nonEmpty } from "./validate";
import type { Payload } from "./validators";

type Conversation = Doc<"factoryConversations">;
type Message = Doc<"factoryMessages">;
type Counts = Conversation["counts"];
type Delta = Partial<Counts>;

// Bounds, each keeping one transaction small (Convex: 4,096 index ranges, 32,000 documents).
export const SWEEP_BATCH = 200; // leases one releaseExpired call returns; the client loops
export const REDRIVE_BATCH = 200; // dead letters one redrive call re-queues; the client loops

// --------------------------------------------------------------------------- conversations

export async function findConversation(db: DatabaseReader, conversationId: string): Promise<Conversation | null> {
  return await db
    .query("factoryConversations")
    .withIndex("by_conversationId", (q) => q.eq("conversationId", conversationId))
    .unique();
}

async function headOf(db: DatabaseReader, conversationId: string): Promise<Message | null> {
  const byStatus = (status: "processing" | "queued") =>
    db
      .query("factoryMessages")
      .withIndex("by_conversation_status", (q) => q.eq("conversationId", conversationId).eq("status", status))
      .first();
  return (await byStatus("processing")) ?? (await byStatus("queued"));
}

/** Recompute a conversation's head after a change to its messages, and apply counter deltas. */
export async function settle(db: DatabaseWriter, conv: Conversation, delta: Delta = {}): Promise<void> {
  const counts: Counts = { ...conv.counts };
  for (const key of Object.keys(delta) as (keyof Counts)[]) counts[key] += delta[key] ?? 0;
  const head = await headOf(db, conv.conversationId);
  if (head === null) {
    await db.patch(conv._id, {
      counts,
      headStatus: "idle",
      headMessageId: undefined,
      claimRank: undefined,
      headScheduledFor: undefined,
      headSeq: undefined,
      headAttempts: undefined,
      availableAt: undefined,
      lockWorker: undefined,
    });
    return;
  }
  const processing = head.status === "processing";
  await db.patch(conv._id, {
    counts,
    headStatus: processing ? "processing" : "queued",
    headMessageId: head._id,
    claimRank: claimRank(head.priority),
    headScheduledFor: head.scheduledFor,
    headSeq: head.seq,
    headAttempts: head.attempts,
    availableAt: processing ? head.leaseExpiresAt : head.scheduledFor,
    lockWorker: processing ? head.claimedBy : undefined,
  });
}

export async function settleById(db: DatabaseWriter, conversationId: string, delta: Delta): Promise<void> {
  const conv = await findConversation(db, conversationId);
  if (conv !== null) await settle(db, conv, delta);
}

// --------------------------------------------------------------------------- enqueue

export type EnqueueArgs = {
  conversationId: string;
  agentKey: string;
  payload: Payload;
  priority?: number;
  scheduledFor?: number;
  maxAttempts?: number;
};

function checkEnqueue(a: EnqueueArgs): void {
  id("conversationId", a.conversationId);
  id("agentKey", a.agentKey);
  id("payload.provider", a.payload.provider);
  id("payload.providerUserId", a.payload.providerUserId);
  // Omitted means "no dedupe"; an empty one would dedupe every message against the first.
  if (a.payload.externalMessageId !== undefined) id("payload.externalMessageId", a.payload.externalMessageId);
  if ((a.payload.attachments ?? []).length === 0) nonEmpty("payload.messageText", a.payload.messageText);
  maxBytes("payload.messageText", a.payload.messageText, MAX_MESSAGE_BYTES);
  if (a.priority !== undefined) integer("priority", a.priority, MIN_PRIORITY, MAX_PRIORITY);
  if (a.scheduledFor !== undefined) integer("scheduledFor", a.scheduledFor, 0, MAX_EPOCH_MS);
  if (a.maxAttempts !== undefined) integer("maxAttempts", a.maxAttempts, 1, MAX_ATTEMPTS_LIMIT);
  for (const [i, att] of (a.payload.attachments ?? []).entries()) {
    if (att.sizeBytes !== undefined) integer(`payload.attachments.${i}.sizeBytes`, att.sizeBytes, 0);
    if (att.expiresAt !== undefined) integer(`payload.attachments.${i}.expiresAt`, att.expiresAt, 0);
  }
}

/** The next value of a named counter (one document each): writers of that counter serialise on it. */
export async function nextCounter(db: DatabaseWriter, name: string): Promise<number> {
  const counter = await db
    .query("factoryCounters")
    .withIndex("by_name", (q) => q.eq("name", name))
    .unique();
  if (counter === null) {
    await db.insert("factoryCounters", { name, value: 1 });
    return 1;
  }
  await db.patch(counter._id, { value: counter.value + 1 });
  return counter.value + 1;
}

/** The next enqueue sequence number: enqueues serialise on its counter (claims never read it),
 * which keeps "enqueue order" exact across conversations. */
async function nextSeq(db: DatabaseWriter): Promise<number> {
  return await nextCounter(db, "seq");
}

/** Queue a message; the same (conversationId, externalMessageId) returns the first id. */
export async function enqueue(db: DatabaseWriter, a: EnqueueArgs, now: number): Promise<Id<"factoryMessages">> {
  checkEnqueue(a);
  const external = a.payload.externalMessageId;
  if (external !== undefined) {
    const existing = await db
      .query("factoryMessages")
      .withIndex("by_dedupe", (q) => q.eq("conversationId", a.conversationId).eq("externalMessageId", external))
      .first();
    if (existing !== null) return existing._id;
  }
  const profile = await loadProfile(db, a.agentKey);
  if (profile === null) agentUnavailable(a.agentKey, "not defined");
  if (!profile.enabled) agentUnavailable(a.agentKey, "disabled");
  let conv = await findConversation(db, a.conversationId);
  if (conv === null) {
    const id = await db.insert("factoryConversations", {
      conversationId: a.conversationId,
      agentKey: a.agentKey,
      createdAt: now,
      historyCount: 0,
      counts: { queued: 0, processing: 0, done: 0, deadLetter: 0 },
      headStatus: "idle",
      userId: a.payload.providerUserId,
    });
    conv = (await db.get(id))!;
  } else if (conv.agentKey !== a.agentKey) {
    conversationConflict(a.conversationId, conv.agentKey, a.agentKey);
  }
  const scheduledFor = a.scheduledFor ?? now;
  const messageId = await db.insert("factoryMessages", {
    conversationId: a.conversationId,
    agentKey: a.agentKey,
    payload: a.payload,
    externalMessageId: external,
    status: "queued",
    priority: a.priority ?? DEFAULT_PRIORITY,
    scheduledFor,
    arrivalAt: Math.max(scheduledFor, now),
    enqueuedAt: now,
    seq: await nextSeq(db),
    attempts: 0,
    maxAttempts: a.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
  });
  if (a.scheduledFor === undefined || a.scheduledFor <= now) {
    const gaps = conv.lastArrivalAt === undefined ? [] : [Math.max(0, now - conv.lastArrivalAt), ...(conv.arrivalGaps ?? [])];
    await db.patch(conv._id, { lastArrivalAt: now, arrivalGaps: gaps.slice(0, RECENT_GAPS) });
  }
  // The new message may arrive before a head that is only scheduled for later.
  await settle(db, conv, { queued: 1 });
  return messageId;
}

/** Arrival gaps a conversation keeps for the autoscaler's keep-warm estimate. */
export const RECENT_GAPS = 8;

// --------------------------------------------------------------------------- workers

export async function findWorker(db: DatabaseReader, workerId: string): Promise<Doc<"factoryWorkers"> | null> {
  return await db
    .query("factoryWorkers")
    .withIndex("by_workerId", (q) => q.eq("workerId", workerId))
    .unique();
}

const MAX_PINNED = 8;

/** The active workers pinned to a conversation (a handful at most: its worker, and one starting). */
export async function pinnedWorkers(db: DatabaseReader, conversationId: string): Promise<Doc<"factoryWorkers">[]> {
  return await db
    .query("factoryWorkers")
    .withIndex("by_pinned", (q) => q.eq("pinnedConversationId", conversationId).eq("status", "active"))
    .take(MAX_PINNED);
}

async function patchWorker(
  db: DatabaseWriter,
  workerId: string,
  fields: Partial<Omit<Doc<"factoryWorkers">, "_id" | "_creationTime">>,
): Promise<void> {
  const worker = await findWorker(db, workerId);
  if (worker !== null) await db.patch(worker._id, fields);
}

// --------------------------------------------------------------------------- settle

export type LeaseRef = { workerId: string; messageId: string; leaseId: string };

async function getMessageDoc(db: DatabaseReader, messageId: string): Promise<Message | null> {
  const id = db.normalizeId("factoryMessages", messageId);
  return id === null ? null : await db.get(id);
}

export const sameLease = (m: Message, lease: LeaseRef): boolean =>
  m.leaseId === lease.leaseId && m.claimedBy === lease.workerId;

/** The message this lease still owns: processing, same lease and worker, lease not expired. */
export async function fenced(db: DatabaseReader, lease: LeaseRef, now: number): Promise<Message | null> {
  const m = await getMessageDoc(db, lease.messageId);
  if (m === null || m.status !== "processing" || !sameLease(m, lease)) return null;
  return m.leaseExpiresAt !== undefined && now < m.leaseExpiresAt ? m : null;
}

async function releaseWorker(db: DatabaseWriter, workerId: string, now: number): Promise<void> {
  await patchWorker(db, workerId, { heartbeatAt: now, busySince: undefined, idleSince: now });
}

/** Why a fenced call found nothing to change (see LeaseRefusal in contracts/models.py). */
export type LeaseRefusal = "lease_lost" | "lease_expired" | "unknown_message";
export type LeaseResult = { ok: boolean; refused?: LeaseRefusal; leaseExpiresAt?: number; now: number };

export async function refusal(db: DatabaseReader, lease: LeaseRef, now: number): Promise<LeaseRefusal> {
  const m = await getMessageDoc(db, lease.messageId);
  if (m === null) return "unknown_message";
  const expired = m.leaseExpiresAt !== undefined && m.leaseExpiresAt <= now;
  return m.status === "processing" && sameLease(m, lease) && expired ? "lease_expired" : "lease_lost";
}

export function deadLetterFields(reason: string, now: number, clearLease: boolean): Partial<Message> {
  return {
    status: "dead_letter",
    lastError: reason,
    finishedAt: now,
    leaseExpiresAt: undefined,
    ...(clearLease ? { leaseId: undefined } : {}),
  };
}

export type FailArgs = LeaseRef & { errorMessage: string; retryable?: boolean };
export type FailResult = {
  requeued: boolean;
  deadLettered: boolean;
  nextScheduledFor?: number;
  refused?: LeaseRefusal;
};

export async function fail(
  db: DatabaseWriter,
  a: FailArgs,
  now: number,
  policy: Policy,
  random: () => number,
): Promise<FailResult> {
  const m = await fenced(db, a, now);
  if (m === null) return await failReplay(db, a, now);
  const error = truncate(a.errorMessage);
  const retryable = a.retryable ?? true;
  await releaseWorker(db, a.workerId, now);
  if (!retryable || outOfAttempts(m.attempts, m.maxAttempts)) {
    const why = retryable ? `out of attempts (${m.attempts}/${m.maxAttempts})` : "not retryable";
    await db.patch(m._id, deadLetterFields(`${why}: ${error}`, now, false));
    await settleById(db, m.conversationId, { processing: -1, deadLetter: 1 });
    return { requeued: false, deadLettered: true };
  }
  const nextScheduledFor = now + backoffMs(m.attempts, random, policy);
  await db.patch(m._id, { status: "queued", scheduledFor: nextScheduledFor, leaseExpiresAt: undefined, lastError: error });
  await settleById(db, m.conversationId, { processing: -1, queued: 1 });
  return { requeued: true, deadLettered: false, nextScheduledFor };
}

async function failReplay(db: DatabaseReader, lease: LeaseRef, now: number): Promise<FailResult> {
  const m = await getMessageDoc(db, lease.messageId);
  if (m !== null && sameLease(m, lease)) {
    if (m.status === "dead_letter") return { requeued: false, deadLettered: true };
    if (m.status === "queued") return { requeued: true, deadLettered: false, nextScheduledFor: m.scheduledFor };
  }
  return { requeued: false, deadLettered: false, refused: await refusal(db, lease, now) };
}

export type ReleaseArgs = LeaseRef & { reason: string };

/** Give a message back without spending an attempt (the fault was not the message's). Fenced by
 * the lease and worker but not by the expiry: a lease that ran out while its worker could not reach
 * the store is still nobody else's until a claim takes it over. The message keeps its place. */
export async function release(db: DatabaseWriter, a: ReleaseArgs, now: number): Promise<LeaseResult> {
  nonEmpty("reason", a.reason);
  const m = await getMessageDoc(db, a.messageId);
  if (m === null || !sameLease(m, a) || (m.status !== "processing" && m.status !== "queued")) {
    const refused = await refusal(db, a, now);
    if (m !== null && m.supersededLeaseId === a.leaseId && (m.status === "processing" || m.status === "queued")) {
      // Taken over while this worker could not reach the store: the message is someone else's
      // now, but the attempt this lease spent was not the message's fault.
      await db.patch(m._id, { attempts: attemptsAfterRelease(m.attempts), supersededLeaseId: undefined });
      await settleById(db, m.conversationId, {});
    }
    return { ok: false, refused, now };
  }
  if (m.status === "queued") return { ok: true, now }; // a replay: the first call gave it back already
  await db.patch(m._id, {
    status: "queued",
    attempts: attemptsAfterRelease(m.attempts),
    leaseExpiresAt: undefined,
    lastError: truncate(`released: ${a.reason}`),
  });
  await settleById(db, m.conversationId, { processing: -1, queued: 1 });
  await releaseWorker(db, a.workerId, now);
  return { ok: true, now };
}

// --------------------------------------------------------------------------- sweep and redrive

export type ReleaseResult = { released: number; deadLettered: number; hasMore: boolean };

/** Return expired leases to the queue, or to the dead letter when out of attempts. */
export async function releaseExpired(db: DatabaseWriter, now: number): Promise<ReleaseResult> {
  const expired = await db
    .query("factoryConversations")
    .withIndex("by_available", (q) => q.eq("headStatus", "processing").lte("availableAt", now))
    .take(SWEEP_BATCH);
  let released = 0;
  let deadLettered = 0;
  for (const conv of expired) {
    const m = (await db.get(conv.headMessageId!))!;
    if (outOfAttempts(m.attempts, m.maxAttempts)) {
      await db.patch(m._id, deadLetterFields(`lease expired on attempt ${m.attempts} of ${m.maxAttempts}`, now, true));
      await settle(db, conv, { processing: -1, deadLetter: 1 });
      deadLettered++;
    } else {
      // Claimable since its lease expired, as before the sweep: sweeping moves nobody's place.
      await db.patch(m._id, {
        status: "queued",
        scheduledFor: conv.availableAt!,
        leaseId: undefined,
        leaseExpiresAt: undefined,
        supersededLeaseId: m.leaseId,
        lastError: "lease expired while processing",
      });
      await settle(db, conv, { processing: -1, queued: 1 });
      released++;
    }
    const worker = m.claimedBy === undefined ? null : await findWorker(db, m.claimedBy);
    if (worker !== null && worker.busySince !== undefined) {
      await db.patch(worker._id, { busySince: undefined, idleSince: now });
    }
  }
  return { released, deadLettered, hasMore: expired.length === SWEEP_BATCH };
}

export type RedriveResult = { redriven: string[]; hasMore: boolean };

/** Put dead letters back in their place in their conversation, with fresh attempts. */
export async function redrive(db: DatabaseWriter, messageId: string | undefined, now: number): Promise<RedriveResult> {
  let found: Message[];
  let hasMore = false;
  if (messageId !== undefined) {
    const m = await getMessageDoc(db, messageId);
    found = m !== null && m.status === "dead_letter" ? [m] : [];
  } else {
    found = await db
      .query("factoryMessages")
      .withIndex("by_status_finished", (q) => q.eq("status", "dead_letter"))
      .take(REDRIVE_BATCH);
    hasMore = found.length === REDRIVE_BATCH;
  }
  found.sort((a, b) => a.seq - b.seq);
  const perConversation = new Map<string, number>();
  for (const m of found) {
    await db.patch(m._id, {
      status: "queued",
      attempts: 0,
      scheduledFor: now,
      leaseId: undefined,
      leaseExpiresAt: undefined,
      claimedBy: undefined,
      finishedAt: undefined,
    });
    perConversation.set(m.conversationId, (perConversation.get(m.conversationId) ?? 0) + 1);
  }
  for (const [conversationId, n] of perConversation) {
    await settleById(db, conversationId, { deadLetter: -n, queued: n });
  }
  return { redriven: found.map((m) => m._id), hasMore };
}

export { getMessageDoc };
