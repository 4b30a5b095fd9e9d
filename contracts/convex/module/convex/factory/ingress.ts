// The front door's transactions: Telegram update ids, webhooks, pairing codes, identity bindings
// and the app API's reads. The same rules as contracts/ingress.py and contracts/sqlite/ingress.py.
import type { Doc } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { loadProfile } from "./agents";
import { agentUnavailable } from "./errors";
import { newToken } from "./policy";
import { type EnqueueArgs, enqueue } from "./queue";
import { nonEmpty } from "./validate";

export const PAIRING_TTL_DEFAULT_MS = 15 * 60_000;
export const PAIRING_TTL_MIN_MS = 60_000;
export const PAIRING_TTL_MAX_MS = 24 * 3_600_000;
export const PAIRING_MAX_FAILURES = 5;
export const PAIRING_WINDOW_MS = 10 * 60_000;
const UPDATE_MEMORY_MS = 3 * 24 * 3_600_000;
const PRUNE_EVERY = 1024;

// --------------------------------------------------------------------------- pure rules

export const pairingTtlMs = (requested?: number) =>
  Math.min(Math.max(requested ?? PAIRING_TTL_DEFAULT_MS, PAIRING_TTL_MIN_MS), PAIRING_TTL_MAX_MS);

export function pairingRateLimited(failures: number, windowStartedAt: number | undefined, now: number): boolean {
  if (windowStartedAt === undefined || now - windowStartedAt >= PAIRING_WINDOW_MS) return false;
  return failures >= PAIRING_MAX_FAILURES;
}

export function nextFailureWindow(started: number | undefined, failures: number, now: number): [number, number] {
  if (started === undefined || now - started >= PAIRING_WINDOW_MS) return [now, 1];
  return [started, failures + 1];
}

export const normalizeCode = (code: string) => code.trim().toUpperCase();
export const telegramConversationId = (botId: string, chatId: string) => `telegram:${botId}:${chatId}`;
export const boundConversationId = (agentKey: string, user: string) => `user-agent:${agentKey}:${user}`;
export const telegramExternalId = (updateId: number) => `tg-update:${updateId}`;

// --------------------------------------------------------------------------- updates

/** Remember (bot, update id) and enqueue its message in the same transaction: both or neither. */
export async function ingestUpdate(
  db: DatabaseWriter,
  a: { botId: string; updateId: number; request?: EnqueueArgs },
  now: number,
): Promise<{ duplicate: boolean; messageId?: string }> {
  const seen = await db
    .query("factoryTelegramUpdates")
    .withIndex("by_update", (q) => q.eq("botId", a.botId).eq("updateId", a.updateId))
    .first();
  if (seen !== null) return { duplicate: true, ...(seen.messageId ? { messageId: seen.messageId } : {}) };
  const messageId = a.request !== undefined ? await enqueue(db, a.request, now) : undefined;
  await db.insert("factoryTelegramUpdates", { botId: a.botId, updateId: a.updateId, messageId, receivedAt: now });
  if (a.updateId % PRUNE_EVERY === 0) {
    const old = await db
      .query("factoryTelegramUpdates")
      .withIndex("by_received", (q) => q.lt("receivedAt", now - UPDATE_MEMORY_MS))
      .take(200);
    for (const row of old) await db.delete(row._id);
  }
  return { duplicate: false, ...(messageId !== undefined ? { messageId } : {}) };
}

// --------------------------------------------------------------------------- webhooks

type WebhookRow = Doc<"factoryTelegramWebhooks">;
export type Webhook = Omit<WebhookRow, "_id" | "_creationTime">;
const webhookView = ({ _id, _creationTime, ...rest }: WebhookRow): Webhook => rest;

export async function setWebhook(db: DatabaseWriter, w: Omit<Webhook, "configuredAt">, now: number): Promise<Webhook> {
  nonEmpty("agentKey", w.agentKey);
  nonEmpty("secretHash", w.secretHash);
  const row = { ...w, configuredAt: now };
  const existing = await db
    .query("factoryTelegramWebhooks")
    .withIndex("by_agentKey", (q) => q.eq("agentKey", w.agentKey))
    .unique();
  if (existing === null) await db.insert("factoryTelegramWebhooks", row);
  else await db.replace(existing._id, row);
  return row;
}

export async function getWebhook(db: DatabaseReader, agentKey: string): Promise<Webhook | null> {
  const row = await db
    .query("factoryTelegramWebhooks")
    .withIndex("by_agentKey", (q) => q.eq("agentKey", agentKey))
    .unique();
  return row === null ? null : webhookView(row);
}

export async function findWebhook(db: DatabaseReader, secretHash: string): Promise<Webhook | null> {
  const row = await db
    .query("factoryTelegramWebhooks")
    .withIndex("by_secretHash", (q) => q.eq("secretHash", secretHash))
    .first();
  return row === null ? null : webhookView(row);
}

// --------------------------------------------------------------------------- pairing codes

type CodeRow = Doc<"factoryPairingCodes">;
export function codeView({ _id, _creationTime, ...c }: CodeRow, now: number) {
  return { ...c, status: c.status === "pending" && c.expiresAt <= now ? ("expired" as const) : c.status };
}

async function codeRow(db: DatabaseReader, code: string): Promise<CodeRow | null> {
  return await db
    .query("factoryPairingCodes")
    .withIndex("by_code", (q) => q.eq("code", normalizeCode(code)))
    .unique();
}

export async function createPairingCode(
  db: DatabaseWriter,
  a: { code: string; agentKey: string; ttlMs?: number; consumerUserId?: string },
  now: number,
) {
  nonEmpty("code", a.code);
  const profile = await loadProfile(db, a.agentKey);
  if (profile === null) agentUnavailable(a.agentKey, "not defined");
  if (!profile.enabled) agentUnavailable(a.agentKey, "disabled");
  if (a.consumerUserId !== undefined) {
    // One pending code per user and agent: a new code supersedes the last.
    const pending = await db
      .query("factoryPairingCodes")
      .withIndex("by_consumer", (q) =>
        q.eq("consumerUserId", a.consumerUserId).eq("agentKey", a.agentKey).eq("status", "pending"),
      )
      .take(100);
    for (const row of pending) await db.patch(row._id, { status: "expired" });
  }
  const row = {
    code: normalizeCode(a.code),
    agentKey: a.agentKey,
    status: "pending" as const,
    createdAt: now,
    expiresAt: now + pairingTtlMs(a.ttlMs),
    ...(a.consumerUserId !== undefined ? { consumerUserId: a.consumerUserId } : {}),
  };
  await db.insert("factoryPairingCodes", row);
  return row;
}

export async function getPairingCode(db: DatabaseReader, code: string, now: number) {
  const row = await codeRow(db, code);
  return row === null ? null : codeView(row, now);
}

type Attempt = { code: string; botId: string; telegramUserId: string; telegramChatId: string };
type Outcome = "paired" | "unknown" | "expired" | "used" | "rate_limited";

async function failure(db: DatabaseWriter, a: Attempt, outcome: Outcome, now: number) {
  const row = await db
    .query("factoryPairingFailures")
    .withIndex("by_user", (q) => q.eq("botId", a.botId).eq("telegramUserId", a.telegramUserId))
    .unique();
  const [windowStartedAt, failures] = nextFailureWindow(row?.windowStartedAt, row?.failures ?? 0, now);
  if (row === null) {
    await db.insert("factoryPairingFailures", { botId: a.botId, telegramUserId: a.telegramUserId, windowStartedAt, failures });
  } else {
    await db.patch(row._id, { windowStartedAt, failures });
  }
  return { outcome };
}

/** Bind the Telegram user to the code's agent, once; failures count towards a rate limit. */
export async function consumePairingCode(db: DatabaseWriter, a: Attempt, now: number) {
  const failures = await db
    .query("factoryPairingFailures")
    .withIndex("by_user", (q) => q.eq("botId", a.botId).eq("telegramUserId", a.telegramUserId))
    .unique();
  if (failures !== null && pairingRateLimited(failures.failures, failures.windowStartedAt, now)) {
    return { outcome: "rate_limited" as const };
  }
  const row = await codeRow(db, a.code);
  if (row === null) return await failure(db, a, "unknown", now);
  const code = codeView(row, now);
  if (code.status === "used") {
    if (code.telegramUserId === a.telegramUserId) {
      // Telegram redelivered the same /start: report the pairing it made.
      const binding = await resolveBinding(db, a.botId, a.telegramUserId);
      return { outcome: "paired" as const, agentKey: code.agentKey, ...(binding ? { binding } : {}) };
    }
    return await failure(db, a, "used", now);
  }
  if (code.status === "expired") {
    await db.patch(row._id, { status: "expired" });
    return await failure(db, a, "expired", now);
  }
  const active = await db
    .query("factoryBindings")
    .withIndex("by_user", (q) => q.eq("botId", a.botId).eq("telegramUserId", a.telegramUserId).eq("status", "active"))
    .collect();
  for (const b of active) await db.patch(b._id, { status: "revoked", revokedAt: now });
  const user = code.consumerUserId ?? `telegram:${a.botId}:${a.telegramUserId}`;
  const binding = {
    bindingId: "bind_" + newToken(),
    agentKey: code.agentKey,
    botId: a.botId,
    telegramUserId: a.telegramUserId,
    telegramChatId: a.telegramChatId,
    ...(code.consumerUserId !== undefined ? { consumerUserId: code.consumerUserId } : {}),
    conversationId: boundConversationId(code.agentKey, user),
    status: "active" as const,
    source: "telegram_pairing" as const,
    boundAt: now,
  };
  await db.insert("factoryBindings", binding);
  await db.patch(row._id, { status: "used", usedAt: now, telegramUserId: a.telegramUserId, telegramChatId: a.telegramChatId });
  if (failures !== null) await db.delete(failures._id);
  return { outcome: "paired" as const, agentKey: code.agentKey, binding };
}

// --------------------------------------------------------------------------- bindings

type BindingRow = Doc<"factoryBindings">;
const bindingView = ({ _id, _creationTime, ...b }: BindingRow) => b;

export async function resolveBinding(db: DatabaseReader, botId: string, telegramUserId: string) {
  const row = await db
    .query("factoryBindings")
    .withIndex("by_user", (q) => q.eq("botId", botId).eq("telegramUserId", telegramUserId).eq("status", "active"))
    .first();
  return row === null ? null : bindingView(row);
}

export async function listBindings(db: DatabaseReader, agentKey: string | undefined, includeRevoked: boolean) {
  const statuses = includeRevoked ? (["active", "revoked"] as const) : (["active"] as const);
  const out: ReturnType<typeof bindingView>[] = [];
  for (const status of statuses) {
    const rows =
      agentKey === undefined
        ? await db.query("factoryBindings").withIndex("by_status", (q) => q.eq("status", status)).take(1000)
        : await db
            .query("factoryBindings")
            .withIndex("by_agent", (q) => q.eq("agentKey", agentKey).eq("status", status))
            .take(1000);
    out.push(...rows.map(bindingView));
  }
  return out.sort((x, y) => x.boundAt - y.boundAt || x.bindingId.localeCompare(y.bindingId));
}

export async function revokeBinding(db: DatabaseWriter, bindingId: string, now: number): Promise<boolean> {
  const row = await db
    .query("factoryBindings")
    .withIndex("by_bindingId", (q) => q.eq("bindingId", bindingId))
    .unique();
  if (row === null || row.status !== "active") return false;
  await db.patch(row._id, { status: "revoked", revokedAt: now });
  return true;
}

// --------------------------------------------------------------------------- the app API's reads

/** The conversation's latest messages, oldest first, each with its status and (when done) reply. */
export async function conversationMessages(db: DatabaseReader, conversationId: string, limit: number) {
  const rows = [];
  for (const status of ["queued", "processing", "done", "dead_letter"] as const) {
    rows.push(
      ...(await db
        .query("factoryMessages")
        .withIndex("by_conversation_status", (q) => q.eq("conversationId", conversationId).eq("status", status))
        .order("desc")
        .take(limit)),
    );
  }
  const latest = rows.sort((a, b) => a.seq - b.seq).slice(-limit);
  const out = [];
  for (const m of latest) {
    const reply = await db
      .query("factoryHistory")
      .withIndex("by_source", (q) => q.eq("conversationId", conversationId).eq("sourceMessageId", m._id))
      .collect();
    const assistant = reply.filter((h) => h.role === "assistant").at(-1);
    out.push({
      messageId: m._id,
      status: m.status,
      text: m.payload.messageText,
      enqueuedAt: m.enqueuedAt,
      ...(m.externalMessageId !== undefined ? { externalMessageId: m.externalMessageId } : {}),
      ...(assistant !== undefined ? { reply: assistant.content } : {}),
      ...(m.finishedAt !== undefined ? { finishedAt: m.finishedAt } : {}),
      ...(m.lastError !== undefined ? { lastError: m.lastError } : {}),
    });
  }
  return out;
}
