// Snapshots of agents' OpenClaw state, the archives in Convex file storage (upstream's
// dataSnapshots with prepare → upload URL → finalize | fail). The newest row of a conversation is
// the only one offered for restore, and only when ready (contracts/sqlite/snapshots.py is the
// reference).
import type { Doc, Id } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter, MutationCtx, QueryCtx } from "../_generated/server";
import { loadProfile } from "./agents";
import { invalidInput } from "./errors";
import { findConversation, findWorker, nextCounter, pinnedWorkers } from "./queue";
import { integer, nonEmpty } from "./validate";

export const SNAPSHOT_FORMAT = 1;
// An upload that has not finished within this long is given up (its worker died mid-way).
export const ABANDONED_MS = 60 * 60 * 1000;
const LIST_MAX = 1_000;
const PRUNE_SCAN = 2_000;

type Snapshot = Doc<"factorySnapshots">;
export type Reason = Snapshot["reason"];

function record(s: Snapshot) {
  return {
    snapshotId: s._id,
    workspaceId: s.workspaceId,
    agentKey: s.agentKey,
    conversationId: s.conversationId,
    workerId: s.workerId,
    reason: s.reason,
    status: s.status,
    formatVersion: s.formatVersion,
    createdAt: s.createdAt,
    completedAt: s.completedAt,
    storageId: s.storageId,
    sha256: s.sha256,
    sizeBytes: s.sizeBytes,
    error: s.error,
  };
}

async function getSnapshot(db: DatabaseReader, snapshotId: string): Promise<Snapshot | null> {
  const id = db.normalizeId("factorySnapshots", snapshotId);
  return id === null ? null : await db.get(id);
}

export async function prepare(
  ctx: MutationCtx,
  a: { workerId: string; workspaceId: string; agentKey: string; conversationId: string; reason: Reason },
  now: number,
) {
  for (const field of ["workerId", "workspaceId", "agentKey", "conversationId"] as const) nonEmpty(field, a[field]);
  const id = await ctx.db.insert("factorySnapshots", {
    ...a,
    status: "uploading",
    formatVersion: SNAPSHOT_FORMAT,
    createdAt: now,
    seq: await nextCounter(ctx.db, "snapshotSeq"), // its own counter: snapshots never wait on enqueues
  });
  return { snapshotId: id, uploadUrl: await ctx.storage.generateUploadUrl(), expiresAt: now + ABANDONED_MS };
}

/** Uploading → ready, for the worker that prepared it; a draining worker moves on to stopping. */
export async function finalize(
  ctx: MutationCtx,
  a: { workerId: string; snapshotId: string; storageId: string; sha256: string; sizeBytes: number },
  now: number,
): Promise<boolean> {
  integer("sizeBytes", a.sizeBytes, 0);
  if (!/^[0-9a-f]{64}$/.test(a.sha256)) invalidInput("sha256", "must be 64 lower-case hex characters");
  const s = await getSnapshot(ctx.db, a.snapshotId);
  if (s === null || s.workerId !== a.workerId) return false;
  if (s.status !== "uploading") return s.status === "ready" && s.storageId === a.storageId;
  const storageId = ctx.db.system.normalizeId("_storage", a.storageId);
  const stored = storageId === null ? null : await ctx.db.system.get(storageId);
  // The file must be there in full: the size Convex measured is the size the worker sent.
  if (storageId === null || stored === null || stored.size !== a.sizeBytes) return false;
  await ctx.db.patch(s._id, { status: "ready", storageId, sha256: a.sha256, sizeBytes: a.sizeBytes, completedAt: now });
  const w = await findWorker(ctx.db, a.workerId);
  if (w !== null && w.status === "draining") {
    await ctx.db.patch(w._id, { status: "stopping", statusReason: `snapshot ${s._id} ready`, statusSince: now });
  }
  return true;
}

/** An upload that went wrong (its own worker), or a ready archive a restorer found corrupt. */
export async function fail(
  db: DatabaseWriter,
  a: { workerId: string; snapshotId: string; error: string },
  now: number,
): Promise<boolean> {
  const s = await getSnapshot(db, a.snapshotId);
  if (s === null || !(s.status === "ready" || (s.status === "uploading" && s.workerId === a.workerId))) return false;
  await db.patch(s._id, {
    status: "failed",
    error: `${a.error.slice(0, 1000)} (reported by ${a.workerId})`,
    completedAt: s.completedAt ?? now,
  });
  return true;
}

async function newest(db: DatabaseReader, workspaceId: string, agentKey: string, conversationId: string) {
  return await db
    .query("factorySnapshots")
    .withIndex("by_conversation", (q) =>
      q.eq("workspaceId", workspaceId).eq("agentKey", agentKey).eq("conversationId", conversationId),
    )
    .order("desc")
    .filter((q) => q.neq(q.field("status"), "expired"))
    .first();
}

export async function latest(
  ctx: QueryCtx,
  a: { workspaceId: string; agentKey: string; conversationId: string },
) {
  const s = await newest(ctx.db, a.workspaceId, a.agentKey, a.conversationId);
  if (s === null || s.status !== "ready" || s.storageId === undefined) return null;
  return {
    snapshotId: s._id,
    agentKey: s.agentKey,
    conversationId: s.conversationId,
    sha256: s.sha256,
    sizeBytes: s.sizeBytes,
    createdAt: s.createdAt,
    storageId: s.storageId,
    downloadUrl: (await ctx.storage.getUrl(s.storageId)) ?? undefined,
  };
}

/** What a fresh machine needs before its first claim: the conversation's agent and newest snapshot. */
export async function boot(ctx: QueryCtx, a: { workspaceId: string; conversationId: string }) {
  const conv = await findConversation(ctx.db, a.conversationId);
  if (conv === null) return null;
  const profile = await loadProfile(ctx.db, conv.agentKey);
  if (profile === null) return null;
  const snapshot = await latest(ctx, { ...a, agentKey: conv.agentKey });
  const pinned = await pinnedWorkers(ctx.db, a.conversationId);
  return {
    conversationId: a.conversationId,
    agentKey: conv.agentKey,
    profile,
    ...(snapshot !== null ? { snapshot } : {}),
    pinnedWorkers: pinned.map((w) => w.workerId).sort(),
  };
}

export async function list(db: DatabaseReader, a: { conversationId?: string; limit: number }) {
  const limit = Math.min(Math.max(a.limit, 1), LIST_MAX);
  const rows =
    a.conversationId !== undefined
      ? await db
          .query("factorySnapshots")
          .withIndex("by_conversation_only", (q) => q.eq("conversationId", a.conversationId!))
          .order("desc")
          .take(limit)
      : await db.query("factorySnapshots").withIndex("by_seq").order("desc").take(limit);
  return rows.map(record);
}

/** Keep the newest `keep` ready snapshots per conversation, expire the rest and delete their
 * archives; uploads abandoned for an hour become failed. Bounded: PRUNE_SCAN rows per call. */
export async function prune(ctx: MutationCtx, a: { keep: number; conversationId?: string }, now: number) {
  integer("keep", a.keep, 0);
  const scope =
    a.conversationId !== undefined
      ? ctx.db.query("factorySnapshots").withIndex("by_conversation_only", (q) => q.eq("conversationId", a.conversationId!))
      : ctx.db.query("factorySnapshots").withIndex("by_seq");
  const rows = await scope.order("desc").take(PRUNE_SCAN);
  const seen = new Map<string, number>();
  let expired = 0;
  let abandoned = 0;
  const released: Id<"_storage">[] = [];
  for (const s of rows) {
    if (s.status === "uploading" && s.createdAt < now - ABANDONED_MS) {
      await ctx.db.patch(s._id, { status: "failed", error: "upload abandoned", completedAt: now });
      abandoned++;
    } else if (s.status === "ready") {
      const key = `${s.workspaceId}\u0000${s.agentKey}\u0000${s.conversationId}`;
      const rank = (seen.get(key) ?? 0) + 1;
      seen.set(key, rank);
      if (rank > a.keep) {
        await ctx.db.patch(s._id, { status: "expired" });
        expired++;
        if (s.storageId !== undefined) released.push(s.storageId);
      }
    } else if (s.status === "failed" && s.storageId !== undefined) {
      released.push(s.storageId);
      await ctx.db.patch(s._id, { storageId: undefined });
    }
  }
  // Each archive belongs to one snapshot (one upload URL each), so it can go with it.
  for (const storageId of released) {
    if ((await ctx.db.system.get(storageId)) !== null) await ctx.storage.delete(storageId);
  }
  return { expired, abandoned };
}

/** Workers with an upload in progress (not yet abandoned): their machines must wait for it. */
export async function pendingWorkers(db: DatabaseReader, now: number): Promise<Set<string>> {
  const rows = await db
    .query("factorySnapshots")
    .withIndex("by_status_worker", (q) => q.eq("status", "uploading"))
    .take(1_000);
  return new Set(rows.filter((s) => s.createdAt >= now - ABANDONED_MS).map((s) => s.workerId));
}
