// Push templates and jobs, their dispatches, and broadcasts: the schedule role on Convex, with
// the same semantics as contracts/sqlite/push.py (the reference).
//
// A slot is dispatched in one mutation: the message is enqueued (deduplicated by its run key),
// the dispatch is recorded under (jobId, runKey), and the job's nextRunAt moves on only if it is
// still the value the dispatcher read. Convex serialises conflicting mutations, so however many
// dispatchers race (a Python `factory dispatch`, this module's own cron), each slot is enqueued once.
import type { Doc } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { DEFAULT_AGENT } from "./agents";
import { invalidInput, notFound } from "./errors";
import { enqueue, findConversation } from "./queue";
import { knownZone, latestSlot, nextSlot, type Schedule } from "./slots";
import { maxBytes, nonEmpty } from "./validate";
import type { Payload, PushJob, PushTemplate } from "./validators";
import { MAX_MESSAGE_BYTES } from "./policy";
import { ConvexError } from "convex/values";

export const SYSTEM_PUSH = "system_push";
export const DISPATCH_BATCH = 50; // due jobs one dispatchDue call handles; the cron runs often
export const BROADCAST_BATCH = 100; // recipients one broadcast call enqueues; the client loops

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

function checkId(field: string, value: string): void {
  if (!ID.test(value)) invalidInput(field, `'${value}' is not an id: 1–128 of A-Z a-z 0-9 _ . : -`);
}

export function checkSchedule(s: Omit<Schedule, "tz"> & { tz?: string }): Schedule {
  if (!HHMM.test(s.at)) invalidInput("schedule.at", `'${s.at}' is not a time of day as HH:mm`);
  const tz = s.tz ?? "UTC";
  if (!knownZone(tz)) invalidInput("schedule.tz", `'${tz}' is not an IANA time zone such as Europe/Rome`);
  const weekdays = [...new Set(s.weekdays ?? [])].sort((a, b) => a - b);
  if (weekdays.some((d) => !Number.isInteger(d) || d < 1 || d > 7)) {
    invalidInput("schedule.weekdays", "weekdays are 1 (Monday) … 7 (Sunday)");
  }
  if ((s.kind === "weekly") !== weekdays.length > 0) {
    invalidInput("schedule.weekdays", "a weekly schedule, and only a weekly one, has weekdays");
  }
  if ((s.kind === "monthly") !== (s.day !== undefined)) {
    invalidInput("schedule.day", "a monthly schedule, and only a monthly one, has a day of the month");
  }
  if (typeof s.day === "number" && (!Number.isInteger(s.day) || s.day < 1 || s.day > 31)) {
    invalidInput("schedule.day", "a day of the month is 1–31 or last");
  }
  return { ...s, tz, ...(weekdays.length ? { weekdays } : {}) };
}

export function renderText(text: string, variables: Record<string, string>): string {
  return text.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name: string) => variables[name] ?? whole);
}

// --------------------------------------------------------------------------- templates and jobs

async function templateDoc(db: DatabaseReader, templateId: string) {
  return await db
    .query("factoryPushTemplates")
    .withIndex("by_templateId", (q) => q.eq("templateId", templateId))
    .unique();
}

async function jobDoc(db: DatabaseReader, jobId: string) {
  return await db
    .query("factoryPushJobs")
    .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
    .unique();
}

export async function templatePut(db: DatabaseWriter, t: PushTemplate, now: number): Promise<PushTemplate> {
  checkId("templateId", t.templateId);
  nonEmpty("agentKey", t.agentKey);
  nonEmpty("text", t.text);
  maxBytes("text", t.text, MAX_MESSAGE_BYTES);
  const doc = await templateDoc(db, t.templateId);
  const stored = { ...t, createdAt: doc?.template.createdAt ?? now, updatedAt: now };
  if (doc === null) await db.insert("factoryPushTemplates", { templateId: t.templateId, template: stored });
  else await db.patch(doc._id, { template: stored });
  return stored;
}

export async function templateDelete(db: DatabaseWriter, templateId: string): Promise<boolean> {
  const used = await db
    .query("factoryPushJobs")
    .withIndex("by_templateId", (q) => q.eq("templateId", templateId))
    .first();
  if (used !== null) {
    invalidInput("templateId", `template '${templateId}' is used by job '${used.jobId}'; delete that job first`);
  }
  const doc = await templateDoc(db, templateId);
  if (doc === null) return false;
  await db.delete(doc._id);
  return true;
}

export async function templates(db: DatabaseReader): Promise<PushTemplate[]> {
  return (await db.query("factoryPushTemplates").withIndex("by_templateId").take(1000)).map((d) => d.template);
}

export async function jobPut(db: DatabaseWriter, job: PushJob, now: number): Promise<PushJob> {
  checkId("jobId", job.jobId);
  if ((job.conversationId === undefined) === (job.telegramUserId === undefined)) {
    invalidInput("conversationId", "give a conversation, or a Telegram user (telegramUserId with botId)");
  }
  if ((job.telegramUserId === undefined) !== (job.botId === undefined)) {
    invalidInput("botId", "a Telegram user is reached through one bot; give botId with telegramUserId");
  }
  if (job.conversationId !== undefined) nonEmpty("conversationId", job.conversationId);
  if ((await templateDoc(db, job.templateId)) === null) notFound("push template", job.templateId);
  const schedule = checkSchedule(job.schedule);
  const doc = await jobDoc(db, job.jobId);
  const stored: PushJob = {
    ...job,
    schedule,
    variables: job.variables ?? {},
    catchUp: job.catchUp ?? "latest",
    skipAfterS: job.skipAfterS ?? 3600,
    enabled: job.enabled ?? true,
    createdAt: doc?.job.createdAt ?? now,
    updatedAt: now,
  };
  const fields = {
    jobId: job.jobId,
    templateId: job.templateId,
    job: stored,
    enabled: stored.enabled!,
    nextRunAt: stored.nextRunAt,
  };
  if (doc === null) await db.insert("factoryPushJobs", fields);
  else await db.replace(doc._id, fields);
  return stored;
}

export async function jobDelete(db: DatabaseWriter, jobId: string): Promise<boolean> {
  const doc = await jobDoc(db, jobId);
  if (doc === null) return false;
  await db.delete(doc._id);
  return true;
}

export async function jobs(db: DatabaseReader, dueAt: number | undefined, limit: number): Promise<PushJob[]> {
  const n = Math.min(Math.max(limit, 1), 1000);
  if (dueAt === undefined) return (await db.query("factoryPushJobs").withIndex("by_jobId").take(n)).map((d) => d.job);
  const due = await db
    .query("factoryPushJobs")
    .withIndex("by_due", (q) => q.eq("enabled", true).gte("nextRunAt", 0).lte("nextRunAt", dueAt))
    .take(n);
  return due.map((d) => d.job);
}

// --------------------------------------------------------------------------- dispatch

/** Where a reply in this conversation goes: a Telegram chat keeps receiving in its chat. */
async function route(db: DatabaseReader, conversationId: string, fallback: string) {
  let latest: Doc<"factoryMessages"> | null = null;
  for (const status of ["queued", "processing", "done", "dead_letter"] as const) {
    const m = await db
      .query("factoryMessages")
      .withIndex("by_conversation_status", (q) => q.eq("conversationId", conversationId).eq("status", status))
      .order("desc")
      .first();
    if (m !== null && (latest === null || m.seq > latest.seq)) latest = m;
  }
  if (latest === null) return { user: fallback, route: {} as Record<string, string> };
  const meta = latest.payload.metadata ?? {};
  if (latest.payload.provider === "telegram") {
    return {
      user: latest.payload.providerUserId,
      route: { telegramChatId: meta.telegramChatId ?? latest.payload.providerUserId },
    };
  }
  if (meta.telegramChatId !== undefined) {
    return { user: latest.payload.providerUserId, route: { telegramChatId: meta.telegramChatId } };
  }
  return { user: fallback, route: {} as Record<string, string> };
}

async function activeBinding(db: DatabaseReader, botId: string, telegramUserId: string) {
  return await db
    .query("factoryBindings")
    .withIndex("by_user", (q) => q.eq("botId", botId).eq("telegramUserId", telegramUserId).eq("status", "active"))
    .first();
}

async function enqueuePush(
  db: DatabaseWriter,
  a: {
    conversationId: string;
    agentKey: string;
    text: string;
    user?: string;
    chat?: string;
    key: string;
    metadata: Record<string, string>;
  },
  now: number,
): Promise<string> {
  const target = await route(db, a.conversationId, a.user ?? a.conversationId);
  if (a.chat !== undefined) target.route = { telegramChatId: a.chat };
  const payload: Payload = {
    provider: SYSTEM_PUSH,
    providerUserId: a.user ?? target.user,
    messageText: a.text,
    externalMessageId: a.key,
    metadata: { ...target.route, ...a.metadata },
  };
  return await enqueue(db, { conversationId: a.conversationId, agentKey: a.agentKey, payload }, now);
}

function failure(err: unknown): string {
  if (err instanceof ConvexError) {
    const data = err.data as { message?: string };
    return String(data.message ?? "failed").slice(0, 500);
  }
  throw err;
}

export type DispatchArgs = {
  jobId: string;
  runKey: string;
  slotAt: number;
  mode?: "scheduled" | "manual";
  expectedNextRunAt?: number;
  nextRunAt?: number;
  skipReason?: string;
};

type DispatchView = {
  jobId: string;
  runKey: string;
  slotAt: number;
  status: "enqueued" | "skipped" | "failed";
  createdAt: number;
  messageId?: string;
  error?: string;
  fresh: boolean;
};

function view(d: Doc<"factoryPushDispatches">, fresh: boolean): DispatchView {
  const { jobId, runKey, slotAt, status, createdAt, messageId, error } = d;
  return {
    jobId,
    runKey,
    slotAt,
    status,
    createdAt,
    fresh,
    ...(messageId ? { messageId } : {}),
    ...(error ? { error } : {}),
  };
}

export async function dispatch(db: DatabaseWriter, a: DispatchArgs, now: number): Promise<DispatchView> {
  const seen = await db
    .query("factoryPushDispatches")
    .withIndex("by_job_runKey", (q) => q.eq("jobId", a.jobId).eq("runKey", a.runKey))
    .unique();
  if (seen !== null) return view(seen, false);
  const doc = await jobDoc(db, a.jobId);
  if (doc === null) notFound("push job", a.jobId);
  const mode = a.mode ?? "scheduled";
  if (mode === "scheduled" && doc.job.nextRunAt !== a.expectedNextRunAt) {
    return {
      jobId: a.jobId,
      runKey: a.runKey,
      slotAt: a.slotAt,
      status: "skipped",
      createdAt: now,
      fresh: false,
      error: "another dispatcher handled this slot",
    };
  }
  let status: "enqueued" | "skipped" | "failed" = "skipped";
  let messageId: string | undefined;
  let error = a.skipReason;
  if (a.skipReason === undefined) {
    try {
      const template = await templateDoc(db, doc.job.templateId);
      if (template === null) notFound("push template", doc.job.templateId);
      let conversationId = doc.job.conversationId;
      let agentKey = template.template.agentKey;
      let chat: string | undefined;
      if (doc.job.telegramUserId !== undefined && doc.job.botId !== undefined) {
        const bound = await activeBinding(db, doc.job.botId, doc.job.telegramUserId);
        if (bound === null) notFound("active binding for", `${doc.job.botId}:${doc.job.telegramUserId}`);
        // The user's bound agent speaks, in the bound chat, as upstream does.
        conversationId = bound.conversationId;
        agentKey = bound.agentKey;
        chat = bound.telegramChatId ?? bound.telegramUserId;
      }
      const user = doc.job.providerUserId ?? doc.job.telegramUserId;
      messageId = await enqueuePush(
        db,
        {
          conversationId: conversationId!,
          agentKey,
          ...(chat !== undefined ? { chat } : {}),
          text: renderText(template.template.text, doc.job.variables ?? {}),
          ...(user ? { user } : {}),
          key: a.runKey,
          metadata: { pushJobId: a.jobId, runKey: a.runKey, pushMode: mode },
        },
        now,
      );
      status = "enqueued";
    } catch (err) {
      status = "failed";
      error = failure(err);
    }
  }
  const id = await db.insert("factoryPushDispatches", {
    jobId: a.jobId,
    runKey: a.runKey,
    slotAt: a.slotAt,
    status,
    createdAt: now,
    ...(messageId ? { messageId } : {}),
    ...(error ? { error } : {}),
  });
  const job: PushJob = { ...doc.job, lastRunAt: a.slotAt, lastRunKey: a.runKey, updatedAt: now };
  if (mode === "scheduled") job.nextRunAt = a.nextRunAt;
  await db.patch(doc._id, { job, nextRunAt: job.nextRunAt });
  return view((await db.get(id))!, true);
}

export async function dispatches(db: DatabaseReader, jobId: string, limit: number): Promise<DispatchView[]> {
  const rows = await db
    .query("factoryPushDispatches")
    .withIndex("by_job_created", (q) => q.eq("jobId", jobId))
    .order("desc")
    .take(Math.min(Math.max(limit, 1), 1000));
  return rows.map((d) => view(d, true));
}

/** What to do with one due job at `now` (schedules/dispatcher.py plan_slot, in this module). */
export function planSlot(job: PushJob, now: number): DispatchArgs | null {
  if (!(job.enabled ?? true) || job.nextRunAt === undefined || job.nextRunAt > now) return null;
  const schedule = job.schedule as Schedule;
  const latest = latestSlot(schedule, now);
  const slot = latest !== null && latest >= job.nextRunAt ? latest : job.nextRunAt;
  const late = now - slot;
  const skipAfter = (job.skipAfterS ?? 3600) * 1000;
  const skip =
    (job.catchUp ?? "latest") === "skip" && late > skipAfter
      ? `missed by ${Math.floor(late / 1000)} s (catch-up: skip after ${job.skipAfterS ?? 3600} s)`
      : undefined;
  return {
    jobId: job.jobId,
    runKey: `job:${job.jobId}:${slot}`,
    slotAt: slot,
    expectedNextRunAt: job.nextRunAt,
    nextRunAt: nextSlot(schedule, Math.max(now, slot)),
    ...(skip !== undefined ? { skipReason: skip } : {}),
  };
}

/** One dispatch pass inside Convex (its cron, or a Convex-only deployment's operator). */
export async function dispatchDue(db: DatabaseWriter, now: number) {
  const counts = { scanned: 0, enqueued: 0, skipped: 0, failed: 0, raced: 0 };
  for (const job of await jobs(db, now, DISPATCH_BATCH)) {
    const plan = planSlot(job, now);
    if (plan === null) continue;
    counts.scanned++;
    const result = await dispatch(db, plan, now);
    counts[result.fresh ? result.status : "raced"]++;
  }
  return { now, ...counts };
}

/** A job's first slot after now: used when a job is created, edited or re-enabled in Convex. */
export function firstRunAt(schedule: Schedule, now: number): number {
  return nextSlot(checkSchedule(schedule), now);
}

// --------------------------------------------------------------------------- broadcasts

export type BroadcastArgs = { broadcastId: string; text: string; requestedBy: string; agents?: string[] };

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function enabledAgents(db: DatabaseReader, only: string[] | undefined): Promise<string[]> {
  const docs = await db.query("factoryAgents").withIndex("by_agentKey").take(1000);
  const keys = new Set(docs.filter((d) => d.enabled).map((d) => d.agentKey));
  if (!docs.some((d) => d.agentKey === DEFAULT_AGENT.agentKey)) keys.add(DEFAULT_AGENT.agentKey);
  return [...keys].filter((k) => only === undefined || only.includes(k)).sort();
}

async function broadcastView(db: DatabaseReader, b: Doc<"factoryBroadcasts">, fresh: boolean) {
  const recipients = await db
    .query("factoryBroadcastRecipients")
    .withIndex("by_broadcast", (q) => q.eq("broadcastId", b.broadcastId))
    .take(10_000);
  recipients.sort((x, y) =>
    x.agentKey === y.agentKey ? (x.conversationId < y.conversationId ? -1 : 1) : x.agentKey < y.agentKey ? -1 : 1,
  );
  return {
    broadcastId: b.broadcastId,
    requestedBy: b.requestedBy,
    requestedAt: b.requestedAt,
    textSha256: b.textSha256,
    ...(b.agents ? { agents: b.agents } : {}),
    status: b.status === "failed" ? "failed" : "done",
    recipients: recipients.map((r) => ({
      conversationId: r.conversationId,
      agentKey: r.agentKey,
      status: r.status,
      ...(r.messageId ? { messageId: r.messageId } : {}),
      ...(r.error ? { error: r.error } : {}),
    })),
    fresh,
  };
}

/** One batch of a broadcast: the client calls again while `hasMore`; a finished id is not re-sent. */
export async function broadcast(db: DatabaseWriter, a: BroadcastArgs, now: number) {
  checkId("broadcastId", a.broadcastId);
  nonEmpty("text", a.text);
  maxBytes("text", a.text, MAX_MESSAGE_BYTES);
  let b = await db
    .query("factoryBroadcasts")
    .withIndex("by_broadcastId", (q) => q.eq("broadcastId", a.broadcastId))
    .unique();
  if (b !== null && b.status !== "running") return { hasMore: false, broadcast: await broadcastView(db, b, false) };
  if (b === null) {
    const id = await db.insert("factoryBroadcasts", {
      broadcastId: a.broadcastId,
      requestedBy: a.requestedBy,
      requestedAt: now,
      textSha256: await sha256(a.text),
      text: a.text,
      ...(a.agents ? { agents: a.agents } : {}),
      status: "running",
    });
    b = (await db.get(id))!;
  }
  // The cursor: [agent, phase, after]. Phase "c" walks the agent's conversations by id; phase "b"
  // its active bindings whose conversation has no document yet (a user who paired but never wrote).
  const [fromAgent, fromPhase, fromAfter] = b.cursor
    ? (JSON.parse(b.cursor) as [string, "c" | "b", string])
    : ["", "c" as const, ""];
  let budget = BROADCAST_BATCH;
  const send = async (conversationId: string, agentKey: string, user?: string, chat?: string) => {
    const key = `broadcast:${b!.broadcastId}:${conversationId}`;
    let status: "enqueued" | "failed" = "enqueued";
    let messageId: string | undefined;
    let error: string | undefined;
    try {
      messageId = await enqueuePush(
        db,
        {
          conversationId,
          agentKey,
          text: b!.text,
          key,
          ...(user !== undefined ? { user } : {}),
          ...(chat !== undefined ? { chat } : {}),
          metadata: { broadcastId: b!.broadcastId, runKey: key, pushMode: "broadcast" },
        },
        now,
      );
    } catch (err) {
      status = "failed";
      error = failure(err);
    }
    await db.insert("factoryBroadcastRecipients", {
      broadcastId: b!.broadcastId,
      conversationId,
      agentKey,
      status,
      ...(messageId ? { messageId } : {}),
      ...(error ? { error } : {}),
    });
    budget--;
  };
  const pause = async (cursor: [string, "c" | "b", string]) => {
    await db.patch(b!._id, { cursor: JSON.stringify(cursor) });
    return { hasMore: true as const };
  };
  for (const agentKey of await enabledAgents(db, b.agents)) {
    if (agentKey < fromAgent) continue;
    const resuming = agentKey === fromAgent;
    if (!(resuming && fromPhase === "b")) {
      const after = resuming ? fromAfter : "";
      const conversations = await db
        .query("factoryConversations")
        .withIndex("by_agent", (q) => q.eq("agentKey", agentKey).gt("conversationId", after))
        .take(budget + 1);
      for (const conv of conversations.slice(0, budget)) {
        const bound = await db
          .query("factoryBindings")
          .withIndex("by_conversation", (q) => q.eq("conversationId", conv.conversationId).eq("status", "active"))
          .first();
        await send(
          conv.conversationId,
          agentKey,
          bound?.telegramUserId,
          bound ? (bound.telegramChatId ?? bound.telegramUserId) : undefined,
        );
        if (budget === 0) return await pause([agentKey, "c", conv.conversationId]);
      }
    }
    const bindings = await db
      .query("factoryBindings")
      .withIndex("by_agent", (q) => q.eq("agentKey", agentKey).eq("status", "active"))
      .take(1000);
    for (const bound of bindings) {
      const known = await findConversation(db, bound.conversationId);
      const sent = await db
        .query("factoryBroadcastRecipients")
        .withIndex("by_broadcast", (q) =>
          q.eq("broadcastId", b!.broadcastId).eq("conversationId", bound.conversationId),
        )
        .first();
      if (known !== null || sent !== null) continue;
      await send(bound.conversationId, agentKey, bound.telegramUserId, bound.telegramChatId ?? bound.telegramUserId);
      if (budget === 0) return await pause([agentKey, "b", bound.bindingId]);
    }
  }
  const anyFailed = await db
    .query("factoryBroadcastRecipients")
    .withIndex("by_broadcast", (q) => q.eq("broadcastId", b!.broadcastId))
    .filter((q) => q.eq(q.field("status"), "failed"))
    .first();
  await db.patch(b._id, { status: anyFailed === null ? "done" : "failed", cursor: undefined });
  return { hasMore: false, broadcast: await broadcastView(db, (await db.get(b._id))!, true) };
}

export async function broadcasts(db: DatabaseReader, limit: number) {
  const rows = await db
    .query("factoryBroadcasts")
    .withIndex("by_requested")
    .order("desc")
    .take(Math.min(Math.max(limit, 1), 200));
  return await Promise.all(rows.filter((b) => b.status !== "running").map((b) => broadcastView(db, b, true)));
}
