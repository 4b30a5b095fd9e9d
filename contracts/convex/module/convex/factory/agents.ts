// Agent profiles, conversation history, the hydration bundle and the read views of
// messages and conversations.
import type { Doc, Id } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { HISTORY_WINDOW } from "./policy";
import { findConversation, getMessageDoc } from "./queue";
import { resolveSecrets } from "./secrets";
import { id, integer } from "./validate";
import type { AgentProfileInput, Payload } from "./validators";

export type AgentProfile = {
  agentKey: string;
  version: string;
  enabled: boolean;
  secretsRef: string[];
  botIdentity?: string;
  openclawAgentId: string;
  bridgeConfig?: Record<string, string>;
};

export const TELEGRAM_TOKEN_REF = "telegram.botToken";

/** The built-in "default" agent: enabled until an operator stores a profile under its key. */
export const DEFAULT_AGENT: AgentProfile = {
  agentKey: "default",
  version: "1.0.0",
  enabled: true,
  secretsRef: ["telegram.botToken.default"],
  openclawAgentId: "main",
};

function withDefaults(p: AgentProfileInput): AgentProfile {
  return {
    agentKey: p.agentKey,
    version: p.version ?? "1.0.0",
    enabled: p.enabled ?? true,
    secretsRef: p.secretsRef ?? [],
    openclawAgentId: p.openclawAgentId ?? "main",
    ...(p.botIdentity !== undefined ? { botIdentity: p.botIdentity } : {}),
    ...(p.bridgeConfig !== undefined ? { bridgeConfig: p.bridgeConfig } : {}),
  };
}

async function profileDoc(db: DatabaseReader, agentKey: string): Promise<Doc<"factoryAgents"> | null> {
  return await db
    .query("factoryAgents")
    .withIndex("by_agentKey", (q) => q.eq("agentKey", agentKey))
    .unique();
}

export async function loadProfile(db: DatabaseReader, agentKey: string): Promise<AgentProfile | null> {
  const doc = await profileDoc(db, agentKey);
  if (doc !== null) return withDefaults(doc.profile);
  return agentKey === DEFAULT_AGENT.agentKey ? DEFAULT_AGENT : null;
}

export async function upsertProfile(db: DatabaseWriter, input: AgentProfileInput, now: number): Promise<AgentProfile> {
  id("agentKey", input.agentKey);
  const profile = withDefaults(input);
  const doc = await profileDoc(db, profile.agentKey);
  if (doc === null) {
    await db.insert("factoryAgents", { agentKey: profile.agentKey, profile, enabled: profile.enabled, updatedAt: now });
  } else {
    await db.replace(doc._id, { agentKey: profile.agentKey, profile, enabled: profile.enabled, updatedAt: now });
  }
  return profile;
}

// --------------------------------------------------------------------------- history

export type HistoryMessage = { role: Doc<"factoryHistory">["role"]; content: string; at: number };

async function history(db: DatabaseReader, conversationId: string, limit: number): Promise<HistoryMessage[]> {
  if (limit <= 0) return [];
  const rows = await db
    .query("factoryHistory")
    .withIndex("by_conversation", (q) => q.eq("conversationId", conversationId))
    .order("desc")
    .take(limit);
  return rows.reverse().map(({ role, content, at }) => ({ role, content, at }));
}

export type HistoryInput = { role: HistoryMessage["role"]; content: string; at?: number };
export type AppendArgs = { conversationId: string; messages: HistoryInput[]; messageId?: string };

/** Append turns to a conversation's history; a redelivered message appends its turns once. */
export async function appendHistory(
  db: DatabaseWriter,
  a: AppendArgs,
  now: number,
): Promise<{ updated: boolean; messageCount: number }> {
  id("conversationId", a.conversationId);
  if (a.messages.length === 0) integer("messages", 0, 1); // "must be at least 1"
  for (const [i, m] of a.messages.entries()) if (m.at !== undefined) integer(`messages.${i}.at`, m.at, 0);
  const conv = await findConversation(db, a.conversationId);
  if (conv === null) return { updated: false, messageCount: 0 };
  const messageId = a.messageId;
  if (messageId !== undefined) {
    const seen = await db
      .query("factoryHistory")
      .withIndex("by_source", (q) => q.eq("conversationId", a.conversationId).eq("sourceMessageId", messageId))
      .first();
    if (seen !== null) return { updated: false, messageCount: conv.historyCount };
  }
  for (const [i, m] of a.messages.entries()) {
    await db.insert("factoryHistory", {
      conversationId: a.conversationId,
      idx: conv.historyCount + i,
      role: m.role,
      content: m.content,
      at: m.at ?? now,
      sourceMessageId: messageId,
    });
  }
  const messageCount = conv.historyCount + a.messages.length;
  await db.patch(conv._id, { historyCount: messageCount });
  return { updated: true, messageCount };
}

// --------------------------------------------------------------------------- views

/** What a worker needs to run a claimed message; null unless the message is processing. */
export async function hydrationBundle(db: DatabaseReader, messageId: string) {
  const m = await getMessageDoc(db, messageId);
  if (m === null || m.status !== "processing") return null;
  return await bundleFor(db, m._id, m.conversationId, m.agentKey, m.payload);
}

/** The bundle of a message the caller knows is processing; null when its agent profile is gone. */
export async function bundleFor(
  db: DatabaseReader,
  messageId: Id<"factoryMessages">,
  conversationId: string,
  agentKey: string,
  payload: Payload,
) {
  const profile = await loadProfile(db, agentKey);
  if (profile === null) return null;
  // Sealed: the worker opens them (and picks the bot token) with the key only it holds.
  const refs = [...profile.secretsRef, `${TELEGRAM_TOKEN_REF}.${agentKey}`, TELEGRAM_TOKEN_REF];
  return {
    messageId,
    conversationId,
    agentKey,
    payload,
    profile,
    history: await history(db, conversationId, HISTORY_WINDOW),
    sealedSecrets: await resolveSecrets(db, refs),
  };
}

export async function conversationView(db: DatabaseReader, conversationId: string, historyLimit: number) {
  const conv = await findConversation(db, conversationId);
  if (conv === null) return null;
  return {
    conversationId,
    agentKey: conv.agentKey,
    history: await history(db, conversationId, Math.min(historyLimit, 1000)),
    messageCount: conv.historyCount,
    queued: conv.counts.queued,
    processing: conv.counts.processing,
    done: conv.counts.done,
    deadLetters: conv.counts.deadLetter,
  };
}

export async function messageView(db: DatabaseReader, messageId: string) {
  const m = await getMessageDoc(db, messageId);
  return m === null ? null : messageRecord(m);
}

/** A message as operators see it: status, attempts, lease holder and timings. */
export function messageRecord(m: Doc<"factoryMessages">) {
  return {
    messageId: m._id,
    conversationId: m.conversationId,
    agentKey: m.agentKey,
    status: m.status,
    priority: m.priority,
    scheduledFor: m.scheduledFor,
    enqueuedAt: m.enqueuedAt,
    attempts: m.attempts,
    maxAttempts: m.maxAttempts,
    payload: m.payload,
    lastError: m.lastError,
    leaseExpiresAt: m.status === "processing" ? m.leaseExpiresAt : undefined,
    claimedBy: m.claimedBy,
    finishedAt: m.finishedAt,
  };
}
