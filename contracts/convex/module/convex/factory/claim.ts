// Claims, and the complete that settles a job and claims the next: a busy worker's hot path. The
// same semantics as contracts/sqlite/claim.py (the reference).
//
// * A claim takes, among conversations without a live lock, the due head with the highest
//   priority, then the one claimable longest (availableAt: a queued head's scheduledFor, which
//   for a retry is when its backoff ends; a processing head's lease expiry), then enqueue order.
// * Its read set is bounded: `by_claim` orders heads by (status, rank, availableAt, seq), so the
//   first head of a rank is due or none of that rank is. A claim reads one index entry per
//   priority in use among queued heads, and among processing heads only the ranks up to the best
//   queued one: at most 2 × 101 single-document reads, however many conversations wait. A claim
//   pinned to a conversation reads that conversation only. One claim dead-letters at most
//   MAX_TAKEOVERS expired-on-last-attempt heads.
// * A conversation whose pinned worker holds it (policy.holds: active, heard from within HOLD_MS)
//   is that worker's: an unpinned claim passes over it, reading the head and its pinned workers
//   (by_pinned), at most MAX_HELD_SKIPS times per claim; past that it finds nothing this time.
// * A worker's document is written only when its state changes (idle → busy at a claim, busy →
//   idle at a complete that claims nothing next) or when its heartbeat is due for a refresh
//   (policy.heartbeatDue): a complete that chains into the next claim leaves it alone.
// * A complete with `claimNext` records the job it claimed on the completed message, so a
//   replayed complete (the HTTP answer was lost) hands that job back instead of claiming another.
import { onComplete } from "./runtime";
import type { Doc, Id } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { appendHistory, bundleFor, type HistoryInput } from "./agents";
import { heartbeatDue, holds, newToken, outOfAttempts, stopReason, type Policy } from "./policy";
import {
  deadLetterFields,
  fenced,
  findConversation,
  findWorker,
  getMessageDoc,
  pinnedWorkers,
  refusal,
  sameLease,
  settle,
  settleById,
  type LeaseRef,
  type LeaseResult,
} from "./queue";
import { nonEmpty } from "./validate";
import type { Payload } from "./validators";

type Conversation = Doc<"factoryConversations">;
type Message = Doc<"factoryMessages">;
type Worker = Doc<"factoryWorkers">;

export const MAX_TAKEOVERS = 25; // expired heads one claim may dead-letter before giving up
export const MAX_HELD_SKIPS = 32; // heads held by their pinned workers one claim may pass over

export type ClaimedJob = {
  messageId: Id<"factoryMessages">;
  conversationId: string;
  agentKey: string;
  leaseId: string;
  leaseExpiresAt: number;
  attempt: number;
  payload: Payload;
  // The store's clock when it granted the lease: with leaseExpiresAt, the lease's length.
  now: number;
};

export type ControlState = { shouldStop: boolean; reason?: string };
export type ClaimResult = {
  control: ControlState;
  now: number;
  job?: ClaimedJob;
  bundle?: NonNullable<Awaited<ReturnType<typeof bundleFor>>>;
};

const UNKNOWN_WORKER: ControlState = { shouldStop: true, reason: "unknown worker: register before polling" };

export function controlOf(worker: Worker | null): ControlState {
  if (worker === null) return UNKNOWN_WORKER;
  const reason = stopReason(worker.status, worker.statusReason);
  return reason === undefined ? { shouldStop: false } : { shouldStop: true, reason };
}

// --------------------------------------------------------------------------- choosing a head

const before = (a: Conversation, b: Conversation): boolean =>
  a.claimRank! !== b.claimRank!
    ? a.claimRank! < b.claimRank!
    : a.availableAt! !== b.availableAt!
      ? a.availableAt! < b.availableAt!
      : a.headSeq! < b.headSeq!;

/** Whether a worker pinned to the conversation keeps it from this (unpinned) claimant. */
async function held(db: DatabaseReader, conv: Conversation, workerId: string, now: number): Promise<boolean> {
  const pinned = await pinnedWorkers(db, conv.conversationId);
  return pinned.some((w) => w.workerId !== workerId && holds(w.status, w.heartbeatAt, now));
}

/** The best due head of one status among ranks up to `maxRank` that no pinned worker holds: one
 * index read per rank in use, and one more (with its holder's) per held head passed over, at most
 * MAX_HELD_SKIPS; past them the claim finds nothing this time (their holders take them). */
async function bestHead(
  db: DatabaseReader,
  status: "queued" | "processing",
  now: number,
  maxRank: number,
  workerId: string,
  skips: { left: number },
): Promise<Conversation | null> {
  let rank = -1;
  for (;;) {
    let nextRank: number | null = null;
    const heads = db
      .query("factoryConversations")
      .withIndex("by_claim", (q) => q.eq("headStatus", status).gt("claimRank", rank));
    for await (const conv of heads) {
      if (conv.claimRank! > maxRank) return null;
      if (conv.availableAt! > now) {
        nextRank = conv.claimRank!; // none of this rank is due: on to the next rank in use
        break;
      }
      if (!(await held(db, conv, workerId, now))) return conv;
      if (--skips.left < 0) return null;
    }
    if (nextRank === null) return null;
    rank = nextRank;
  }
}

/** The best due head: a queued one, or one whose lease expired (a dead lease frees it at once). */
async function bestDueHead(db: DatabaseReader, now: number, workerId: string): Promise<Conversation | null> {
  const skips = { left: MAX_HELD_SKIPS };
  const queued = await bestHead(db, "queued", now, Number.POSITIVE_INFINITY, workerId, skips);
  const maxRank = queued?.claimRank ?? Number.POSITIVE_INFINITY;
  const expired = await bestHead(db, "processing", now, maxRank, workerId, skips);
  if (queued === null || expired === null) return queued ?? expired;
  return before(expired, queued) ? expired : queued;
}

async function pinnedHead(db: DatabaseReader, conversationId: string, now: number): Promise<Conversation | null> {
  const conv = await findConversation(db, conversationId);
  if (conv === null || conv.headStatus === "idle" || conv.availableAt! > now) return null;
  return conv;
}

// --------------------------------------------------------------------------- the worker's document

/** The claimant's document, registering a worker that never did (an upstream-style worker). */
async function claimant(db: DatabaseWriter, workerId: string, now: number): Promise<Worker> {
  const found = await findWorker(db, workerId);
  if (found !== null) return found;
  const id = await db.insert("factoryWorkers", {
    workerId,
    provider: "unknown",
    status: "active",
    capabilities: [],
    registeredAt: now,
    heartbeatAt: now,
    idleSince: now,
  });
  return (await db.get(id))!;
}

/** Write the worker's document when its state changed (`settled`: it just finished its job) or
 * its heartbeat is due; a busy worker that stays busy is left alone in between. */
async function record(db: DatabaseWriter, worker: Worker, now: number, job: ClaimedJob | null, settled: boolean) {
  const busy = worker.busySince !== undefined;
  if (job !== null && !busy) {
    await db.patch(worker._id, {
      heartbeatAt: now,
      lastClaimAt: now,
      busySince: now,
      idleSince: undefined,
      conversationId: job.conversationId,
    });
  } else if (job === null && settled && busy) {
    await db.patch(worker._id, { heartbeatAt: now, busySince: undefined, idleSince: now });
  } else if (heartbeatDue(worker.heartbeatAt, now)) {
    await db.patch(
      worker._id,
      job === null ? { heartbeatAt: now } : { heartbeatAt: now, lastClaimAt: now, conversationId: job.conversationId },
    );
  }
}

// --------------------------------------------------------------------------- claim

async function lease(
  db: DatabaseWriter,
  conv: Conversation,
  message: Message,
  workerId: string,
  now: number,
  policy: Policy,
): Promise<ClaimedJob> {
  const leaseId = newToken();
  const leaseExpiresAt = now + policy.leaseTtlMs;
  const attempt = message.attempts + 1;
  const wasQueued = message.status === "queued";
  const taken = wasQueued ? {} : { supersededLeaseId: message.leaseId }; // an expired lease, taken over
  await db.patch(message._id, {
    status: "processing",
    attempts: attempt,
    leaseId,
    leaseExpiresAt,
    claimedBy: workerId,
    ...taken,
  });
  await settle(db, conv, wasQueued ? { queued: -1, processing: 1 } : {});
  return jobOf({ ...message, attempts: attempt, leaseId, leaseExpiresAt }, now);
}

function jobOf(m: Message, now: number): ClaimedJob {
  return {
    messageId: m._id,
    conversationId: m.conversationId,
    agentKey: m.agentKey,
    leaseId: m.leaseId!,
    leaseExpiresAt: m.leaseExpiresAt!,
    attempt: m.attempts,
    payload: m.payload,
    now,
  };
}

/** Lease the best due head (or the pinned conversation's), taking over an expired lease. */
async function take(
  db: DatabaseWriter,
  worker: Worker,
  conversationId: string | undefined,
  now: number,
  policy: Policy,
): Promise<ClaimedJob | null> {
  if (worker.status !== "active") return null;
  for (let takeover = 0; takeover < MAX_TAKEOVERS; takeover++) {
    const conv =
      conversationId === undefined
        ? await bestDueHead(db, now, worker.workerId)
        : await pinnedHead(db, conversationId, now);
    if (conv === null) return null;
    const message = (await db.get(conv.headMessageId!))!;
    if (message.status === "processing" && outOfAttempts(message.attempts, message.maxAttempts)) {
      // The lease expired on the last attempt: that delivery is over, and so is the message.
      const reason = `lease expired on attempt ${message.attempts} of ${message.maxAttempts}`;
      await db.patch(message._id, deadLetterFields(reason, now, true));
      await settle(db, conv, { processing: -1, deadLetter: 1 });
      continue;
    }
    return await lease(db, conv, message, worker.workerId, now, policy);
  }
  return null; // many dead leases at once: the next claim (or the sweep) carries on
}

async function answer(db: DatabaseReader, worker: Worker | null, now: number, job: ClaimedJob | null, bundle: boolean) {
  const result: ClaimResult = { control: controlOf(worker), now };
  if (job === null) return result;
  result.job = job;
  if (bundle) {
    const hydrated = await bundleFor(db, job.messageId, job.conversationId, job.agentKey, job.payload);
    if (hydrated !== null) result.bundle = hydrated;
  }
  return result;
}

/** Lease the best due head, or null. Any claim, empty or not, counts as a heartbeat. */
export async function claim(
  db: DatabaseWriter,
  workerId: string,
  conversationId: string | undefined,
  now: number,
  policy: Policy,
): Promise<ClaimedJob | null> {
  return (await claimWithBundle(db, workerId, conversationId, now, policy, false)).job ?? null;
}

/** A claim answered with the job's hydration bundle (`bundle`) and the worker's control state. */
export async function claimWithBundle(
  db: DatabaseWriter,
  workerId: string,
  conversationId: string | undefined,
  now: number,
  policy: Policy,
  bundle = true,
): Promise<ClaimResult> {
  nonEmpty("workerId", workerId);
  const worker = await claimant(db, workerId, now);
  const job = await take(db, worker, conversationId, now, policy);
  await record(db, worker, now, job, false);
  return await answer(db, worker, now, job, bundle);
}

// --------------------------------------------------------------------------- complete

export type NextClaim = { conversationId?: string; withBundle?: boolean };
export type CompleteArgs = LeaseRef & { history?: HistoryInput[]; claimNext?: NextClaim };
export type CompleteResult = LeaseResult & {
  control: ControlState;
  appended?: { updated: boolean; messageCount: number };
  next?: ClaimResult;
};

/** The job an earlier try of this complete claimed next, if its lease is still live. */
async function chained(db: DatabaseReader, done: Message, workerId: string, now: number): Promise<ClaimedJob | null> {
  if (done.chainedTo === undefined) return null;
  const m = await db.get(done.chainedTo);
  if (m === null || m.status !== "processing" || m.claimedBy !== workerId || !(now < m.leaseExpiresAt!)) return null;
  return jobOf(m, now);
}

/** Mark the message done, append its history turns, and claim the worker's next job.
 *
 * A replay (same lease, already done) reports the first outcome and hands back the job that try
 * claimed next. `claimNext` is honoured only by an accepted complete or its replay, so a retried
 * call never claims twice. */
export async function complete(db: DatabaseWriter, a: CompleteArgs, now: number, policy: Policy): Promise<CompleteResult> {
  const owned = await fenced(db, a, now);
  const replay = owned === null ? await getMessageDoc(db, a.messageId) : null;
  const done = owned ?? (replay !== null && replay.status === "done" && sameLease(replay, a) ? replay : null);
  const worker = await findWorker(db, a.workerId);
  const control = controlOf(worker);
  const nothingNext = a.claimNext === undefined ? {} : { next: { control, now } };
  if (done === null) return { ok: false, refused: await refusal(db, a, now), now, control, ...nothingNext };
  const result: CompleteResult = { ok: true, now, control };
  if (a.history !== undefined && a.history.length > 0) {
    result.appended = await appendHistory(db, { conversationId: done.conversationId, messages: a.history, messageId: a.messageId }, now);
  }
  if (owned !== null) {
    await db.patch(owned._id, { status: "done", leaseExpiresAt: undefined, finishedAt: now });
    await settleById(db, owned.conversationId, { processing: -1, done: 1 });
    // After the history: a notification's reply is read from it, in this same transaction.
    await onComplete(db, owned, now);
  }
  if (worker === null) return { ...result, ...nothingNext };
  let job: ClaimedJob | null = null;
  if (a.claimNext !== undefined) {
    job = owned === null ? await chained(db, done, a.workerId, now) : null;
    if (job === null) {
      job = await take(db, worker, a.claimNext.conversationId, now, policy);
      if (job !== null) await db.patch(done._id, { chainedTo: job.messageId });
    }
  }
  await record(db, worker, now, job, owned !== null);
  if (a.claimNext !== undefined) result.next = await answer(db, worker, now, job, a.claimNext.withBundle ?? true);
  return result;
}

// --------------------------------------------------------------------------- heartbeat

/** Extend a live lease to the TTL; every answer says whether the worker must stop. */
export async function heartbeat(
  db: DatabaseWriter,
  lease: LeaseRef,
  now: number,
  policy: Policy,
): Promise<LeaseResult & { control: ControlState }> {
  const m = await fenced(db, lease, now);
  const worker = await findWorker(db, lease.workerId);
  const control = controlOf(worker);
  if (m === null) return { ok: false, refused: await refusal(db, lease, now), now, control };
  const leaseExpiresAt = now + policy.leaseTtlMs;
  await db.patch(m._id, { leaseExpiresAt });
  const conv = await findConversation(db, m.conversationId);
  if (conv !== null) await db.patch(conv._id, { availableAt: leaseExpiresAt });
  if (worker !== null && heartbeatDue(worker.heartbeatAt, now)) await db.patch(worker._id, { heartbeatAt: now });
  return { ok: true, leaseExpiresAt, now, control };
}
