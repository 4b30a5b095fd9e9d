// Agent profiles, conversation history, the hydration bundle and the read views of
// messages and conversations.
import type { Doc, Id } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { HISTORY_WINDOW } from "./policy";
import { findConversation, getMessageDoc } from "./queue";
import { invalidInput } from "./errors";
import { resolveSecrets } from "./secrets";
import { id, integer } from "./validate";
import type { AgentProfileInput, BridgeConfigInput, Payload } from "./validators";

export type AgentProfile = {
  agentKey: string;
  version: string;
  enabled: boolean;
  secretsRef: string[];
  botIdentity?: string;
  openclawAgentId: string;
  bridgeConfig?: BridgeConfigInput & { enabled: boolean; allowedHosts: string[] };
  workspaceFiles: Record<string, string>;
  skills?: string[];
};

// The same rules as contracts/models.py (check_workspace_path and friends).
const WORKSPACE_FILES = ["SOUL.md", "AGENTS.md", "IDENTITY.md", "USER.md"];
const MAX_WORKSPACE_FILE_CHARS = 20_000;
const MAX_WORKSPACE_BYTES = 256 * 1024;
export const BRIDGE_SKILL = "agent-bridge";
const SKILL_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const SKILL_FILE = /^skills\/([^/]+)\/SKILL\.md$/;

function checkSkillName(field: string, name: string): string {
  if (!SKILL_NAME.test(name)) {
    invalidInput(field, `skill name '${name}' must be 1-64 of a-z 0-9 _ -, starting with a letter or digit`);
  }
  return name;
}

function checkWorkspaceFiles(files: Record<string, string>): Record<string, string> {
  let total = 0;
  for (const [path, text] of Object.entries(files)) {
    const skill = SKILL_FILE.exec(path);
    if (!WORKSPACE_FILES.includes(path) && skill === null) {
      invalidInput(
        "workspaceFiles",
        `'${path}' is not a workspace file: use ${WORKSPACE_FILES.join(", ")} or skills/<name>/SKILL.md`,
      );
    }
    if (skill !== null && checkSkillName("workspaceFiles", skill[1]!) === BRIDGE_SKILL) {
      invalidInput("workspaceFiles", `'${path}': the ${BRIDGE_SKILL} skill is written by the worker for agents with a bridge`);
    }
    if (text.length > MAX_WORKSPACE_FILE_CHARS) {
      invalidInput(
        "workspaceFiles",
        `${path} has ${text.length} characters; OpenClaw injects at most ${MAX_WORKSPACE_FILE_CHARS}: shorten it`,
      );
    }
    total += new TextEncoder().encode(text).length;
  }
  if (total > MAX_WORKSPACE_BYTES) {
    invalidInput("workspaceFiles", `the workspace files add up to ${total} bytes; the limit is ${MAX_WORKSPACE_BYTES}`);
  }
  return files;
}

export const TELEGRAM_TOKEN_REF = "telegram.botToken";

/** The built-in "default" agent: enabled until an operator stores a profile under its key. */
export const DEFAULT_AGENT: AgentProfile = {
  agentKey: "default",
  version: "1.0.0",
  enabled: true,
  secretsRef: ["telegram.botToken.default"],
  openclawAgentId: "main",
  workspaceFiles: {},
};

function withDefaults(p: AgentProfileInput): AgentProfile {
  return {
    agentKey: p.agentKey,
    version: p.version ?? "1.0.0",
    enabled: p.enabled ?? true,
    secretsRef: p.secretsRef ?? [],
    openclawAgentId: p.openclawAgentId ?? "main",
    workspaceFiles: p.workspaceFiles ?? {},
    ...(p.botIdentity !== undefined ? { botIdentity: p.botIdentity } : {}),
    ...(p.bridgeConfig !== undefined
      ? { bridgeConfig: { ...p.bridgeConfig, enabled: p.bridgeConfig.enabled ?? true, allowedHosts: p.bridgeConfig.allowedHosts ?? [] } }
      : {}),
    ...(p.skills !== undefined ? { skills: [...new Set(p.skills)] } : {}),
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
  checkWorkspaceFiles(input.workspaceFiles ?? {});
  for (const name of input.skills ?? []) checkSkillName("skills", name);
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

// --------------------------------------------------------------------------- bridge

const BRIDGE_PREFIX = "agent-bridge";
const BRIDGE_FIELDS = ["baseUrl", "serviceId", "serviceKey", "appKey", "appBaseUrlMapJson"] as const;

/** Every secret the agent's bridge may be resolved from, in upstream's order: the profile's own
 * refs, then agent-bridge.<field>.<agentKey> and agent-bridge.<field>. They travel sealed; the
 * worker opens them and picks each field (contracts/bridge.py: bridge_secret_refs, resolve_bridge). */
function bridgeSecretRefs(agentKey: string, config: NonNullable<AgentProfile["bridgeConfig"]>): string[] {
  const refs = [config.serviceKeySecretRef, config.appBaseUrlMapJsonSecretRef].filter((r): r is string => !!r);
  for (const field of BRIDGE_FIELDS) refs.push(`${BRIDGE_PREFIX}.${field}.${agentKey}`, `${BRIDGE_PREFIX}.${field}`);
  return refs;
}

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
  // Sealed: the worker opens them (and picks the bot token and bridge fields) with the key only
  // it holds. Only an agent with an enabled bridge is sent bridge secrets.
  const refs = [...profile.secretsRef, `${TELEGRAM_TOKEN_REF}.${agentKey}`, TELEGRAM_TOKEN_REF];
  if (profile.bridgeConfig?.enabled) refs.push(...bridgeSecretRefs(agentKey, profile.bridgeConfig));
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
