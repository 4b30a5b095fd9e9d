// The operator console's reads and sign-in: conversation search, a conversation's messages,
// settled messages (throughput and latency), agent and pairing lists, the latest reconcile,
// operator tokens and console sessions. The same rules as contracts/sqlite/console.py.
//
// Bounds: list reads answer 1..1000 rows; settled messages come a page at a time (the client
// follows continueCursor), so a busy hour never reads past a transaction's limits in one call.
import type { PaginationOptions } from "convex/server";
import type { Doc } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { DEFAULT_AGENT, type AgentProfile, messageRecord } from "./agents";
import { codeView } from "./ingress";
import { integer, nonEmpty } from "./validate";
import type { ReconcileRecord } from "./validators";

export const SESSION_MEMORY_MS = 7 * 24 * 3_600_000;
const bounded = (limit: number) => Math.min(Math.max(Math.floor(limit), 1), 1000);
// Past every code point: the upper end of a prefix range.
const PREFIX_END = "\u{10FFFF}";

// --------------------------------------------------------------------------- conversations

type Conversation = Doc<"factoryConversations">;

function summary(c: Conversation) {
  return {
    conversationId: c.conversationId,
    agentKey: c.agentKey,
    createdAt: c.createdAt,
    queued: c.counts.queued,
    processing: c.counts.processing,
    done: c.counts.done,
    deadLetters: c.counts.deadLetter,
    ...(c.userId !== undefined ? { userId: c.userId } : {}),
  };
}

/** Conversations whose id starts with `query`, of the agent it names, or started by the user it
 * names; an empty query lists the newest. Newest first. */
export async function searchConversations(db: DatabaseReader, query: string, limit: number) {
  const n = bounded(limit);
  const q = query.trim();
  if (q === "") {
    return (await db.query("factoryConversations").withIndex("by_created").order("desc").take(n)).map(summary);
  }
  const found = new Map<string, Conversation>();
  const ranges = [
    db
      .query("factoryConversations")
      .withIndex("by_conversationId", (r) => r.gte("conversationId", q).lt("conversationId", q + PREFIX_END))
      .take(n),
    db
      .query("factoryConversations")
      .withIndex("by_agent_created", (r) => r.eq("agentKey", q))
      .order("desc")
      .take(n),
    db
      .query("factoryConversations")
      .withIndex("by_user", (r) => r.eq("userId", q))
      .order("desc")
      .take(n),
  ];
  for (const rows of await Promise.all(ranges)) for (const c of rows) found.set(c.conversationId, c);
  return [...found.values()]
    .sort((a, b) => b.createdAt - a.createdAt || (a.conversationId < b.conversationId ? -1 : 1))
    .slice(0, n)
    .map(summary);
}

/** The conversation's latest messages, oldest first, with attempts, lease holder and timings. */
export async function conversationRecords(db: DatabaseReader, conversationId: string, limit: number) {
  const n = bounded(limit);
  const rows: Doc<"factoryMessages">[] = [];
  for (const status of ["queued", "processing", "done", "dead_letter"] as const) {
    rows.push(
      ...(await db
        .query("factoryMessages")
        .withIndex("by_conversation_status", (q) => q.eq("conversationId", conversationId).eq("status", status))
        .order("desc")
        .take(n)),
    );
  }
  return rows
    .sort((a, b) => a.seq - b.seq)
    .slice(-n)
    .map(messageRecord);
}

/** One page of messages that settled with `status` at or after `since`, newest first. */
export async function settledPage(
  db: DatabaseReader,
  status: "done" | "dead_letter",
  since: number,
  page: PaginationOptions,
) {
  integer("since", since, 0);
  const result = await db
    .query("factoryMessages")
    .withIndex("by_status_finished", (q) => q.eq("status", status).gte("finishedAt", since))
    .order("desc")
    .paginate(page);
  return {
    page: result.page.map((m) => ({
      status: m.status,
      enqueuedAt: m.enqueuedAt,
      finishedAt: m.finishedAt!,
      attempts: m.attempts,
    })),
    isDone: result.isDone,
    continueCursor: result.continueCursor,
  };
}

// --------------------------------------------------------------------------- agents and pairing codes

export async function listAgentProfiles(db: DatabaseReader): Promise<AgentProfile[]> {
  const stored = await db.query("factoryAgents").withIndex("by_agentKey").take(1000);
  const profiles = stored.map((doc) => ({ ...DEFAULT_AGENT, secretsRef: [], ...doc.profile }) as AgentProfile);
  if (!profiles.some((p) => p.agentKey === DEFAULT_AGENT.agentKey)) profiles.push(DEFAULT_AGENT);
  return profiles.sort((a, b) => (a.agentKey < b.agentKey ? -1 : a.agentKey > b.agentKey ? 1 : 0));
}

export async function listPairingCodes(db: DatabaseReader, limit: number, now: number) {
  const rows = await db.query("factoryPairingCodes").withIndex("by_created").order("desc").take(bounded(limit));
  return rows.map((row) => codeView(row, now));
}

// --------------------------------------------------------------------------- the latest reconcile

export async function recordReconcile(db: DatabaseWriter, record: ReconcileRecord): Promise<null> {
  const row = await db
    .query("factoryReconciles")
    .withIndex("by_slot", (q) => q.eq("slot", "last"))
    .unique();
  if (row === null) await db.insert("factoryReconciles", { slot: "last", record });
  else await db.replace(row._id, { slot: "last", record });
  return null;
}

export async function lastReconcile(db: DatabaseReader) {
  const row = await db
    .query("factoryReconciles")
    .withIndex("by_slot", (q) => q.eq("slot", "last"))
    .unique();
  return row === null ? null : row.record;
}

// --------------------------------------------------------------------------- operator tokens

type TokenRow = Doc<"factoryOperatorTokens">;
const tokenView = ({ _id, _creationTime, ...t }: TokenRow) => t;
type TokenInput = Omit<TokenRow, "_id" | "_creationTime" | "revokedAt">;

async function tokenById(db: DatabaseReader, tokenId: string) {
  return await db
    .query("factoryOperatorTokens")
    .withIndex("by_tokenId", (q) => q.eq("tokenId", tokenId))
    .unique();
}

export async function createOperatorToken(db: DatabaseWriter, a: TokenInput) {
  nonEmpty("name", a.name);
  nonEmpty("tokenHash", a.tokenHash);
  const existing = await tokenById(db, a.tokenId);
  if (existing !== null) return tokenView(existing); // a retried create
  const id = await db.insert("factoryOperatorTokens", a);
  return tokenView((await db.get(id))!);
}

export async function findOperatorToken(db: DatabaseReader, tokenHash: string) {
  const row = await db
    .query("factoryOperatorTokens")
    .withIndex("by_hash", (q) => q.eq("tokenHash", tokenHash))
    .first();
  return row === null || row.revokedAt !== undefined ? null : tokenView(row);
}

export async function listOperatorTokens(db: DatabaseReader) {
  return (await db.query("factoryOperatorTokens").withIndex("by_created").take(1000)).map(tokenView);
}

/** Revoke a token; every session opened with it ends with it. */
export async function revokeOperatorToken(db: DatabaseWriter, tokenId: string, now: number): Promise<boolean> {
  const row = await tokenById(db, tokenId);
  if (row === null || row.revokedAt !== undefined) return false;
  await db.patch(row._id, { revokedAt: now });
  const sessions = await db
    .query("factoryConsoleSessions")
    .withIndex("by_token", (q) => q.eq("tokenId", tokenId))
    .take(1000);
  for (const s of sessions) if (s.endedAt === undefined) await db.patch(s._id, { endedAt: now });
  return true;
}

// --------------------------------------------------------------------------- console sessions

type SessionRow = Doc<"factoryConsoleSessions">;
const sessionView = ({ _id, _creationTime, ...s }: SessionRow) => s;
type SessionInput = Omit<SessionRow, "_id" | "_creationTime" | "endedAt">;

async function sessionByHash(db: DatabaseReader, sessionHash: string) {
  return await db
    .query("factoryConsoleSessions")
    .withIndex("by_hash", (q) => q.eq("sessionHash", sessionHash))
    .first();
}

export async function createConsoleSession(db: DatabaseWriter, a: SessionInput, now: number) {
  nonEmpty("sessionHash", a.sessionHash);
  nonEmpty("operator", a.operator);
  const old = await db
    .query("factoryConsoleSessions")
    .withIndex("by_expires", (q) => q.lt("expiresAt", now - SESSION_MEMORY_MS))
    .take(100);
  for (const s of old) await db.delete(s._id);
  const existing = await sessionByHash(db, a.sessionHash);
  if (existing !== null) return sessionView(existing); // a retried create
  const id = await db.insert("factoryConsoleSessions", a);
  return sessionView((await db.get(id))!);
}

/** The live session with this hash: not ended, not expired, its token (if any) not revoked. */
export async function findConsoleSession(db: DatabaseReader, sessionHash: string, now: number) {
  const s = await sessionByHash(db, sessionHash);
  if (s === null || s.endedAt !== undefined || s.expiresAt <= now) return null;
  if (s.tokenId !== undefined) {
    const token = await tokenById(db, s.tokenId);
    if (token === null || token.revokedAt !== undefined) return null;
  }
  return sessionView(s);
}

export async function endConsoleSession(db: DatabaseWriter, sessionHash: string, now: number): Promise<boolean> {
  const s = await sessionByHash(db, sessionHash);
  if (s === null || s.endedAt !== undefined) return false;
  await db.patch(s._id, { endedAt: now });
  return true;
}
