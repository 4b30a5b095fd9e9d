// Mission Control accounts: agents, tasks, notifications and what agents post, as the SQLite store
// keeps them (contracts/sqlite/runtime.py is the reference). The runtime's functions take the
// account id and its service token on every call; the token is checked against the stored sha256
// in constant time, and every read and write is filtered by that account, so a token of one
// account finds nothing of another's.
//
// onComplete runs inside workerComplete: a message carrying metadata.notificationId (in its own
// agent's session conversation) marks that notification delivered and posts the agent's reply on
// its task; one carrying metadata.heartbeatAgentId marks the agent online.
import type { Doc } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { accessRefused, invalidInput, notFound } from "./errors";
import type { RuntimeStatus } from "./validators";

const QUIET = new Set(["HEARTBEAT_OK", "NO_REPLY"]);

/** The wire form of a row: its own fields, without Convex's system fields and without ``hidden``. */
function wire(doc: object, hidden: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (key.startsWith("_") || hidden.includes(key) || value === undefined) continue;
    out[key] = value;
  }
  return out;
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Equal hex digests, compared without an early exit (timing tells nothing of how much matched). */
function sameDigest(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

const accountDoc = (db: DatabaseReader, accountId: string) =>
  db.query("factoryRtAccounts").withIndex("by_account", (q) => q.eq("accountId", accountId)).unique();
const agentDoc = (db: DatabaseReader, agentId: string) =>
  db.query("factoryRtAgents").withIndex("by_agent", (q) => q.eq("agentId", agentId)).unique();
const taskDoc = (db: DatabaseReader, taskId: string) =>
  db.query("factoryRtTasks").withIndex("by_task", (q) => q.eq("taskId", taskId)).unique();
const notificationDoc = (db: DatabaseReader, notificationId: string) =>
  db.query("factoryRtNotifications").withIndex("by_notification", (q) => q.eq("notificationId", notificationId)).unique();

const accountWire = (d: Doc<"factoryRtAccounts">) => wire(d, ["tokenHash"]);

/** Raise ACCESS_REFUSED unless ``token`` is the account's service token. */
export async function authenticate(db: DatabaseReader, accountId: string, token: string): Promise<void> {
  const account = await accountDoc(db, accountId);
  const digest = await sha256Hex(token);
  if (account === null || account.tokenHash === undefined || !sameDigest(digest, account.tokenHash)) accessRefused(accountId);
}

// ---------------------------------------------------------------- the operator's side

export async function accountPut(db: DatabaseWriter, a: { accountId: string; name: string; active: boolean }, now: number) {
  const found = await accountDoc(db, a.accountId);
  if (found === null) {
    await db.insert("factoryRtAccounts", { accountId: a.accountId, name: a.name, active: a.active, status: "offline", createdAt: now });
  } else {
    await db.patch(found._id, { name: a.name, active: a.active });
  }
  return accountWire((await accountDoc(db, a.accountId))!);
}

export async function accountToken(db: DatabaseWriter, accountId: string, tokenHash: string): Promise<boolean> {
  const found = await accountDoc(db, accountId);
  if (found === null) return false;
  await db.patch(found._id, { tokenHash });
  return true;
}

export async function accounts(db: DatabaseReader) {
  const rows = await db.query("factoryRtAccounts").withIndex("by_account").collect();
  return rows.map(accountWire);
}

async function requireAccount(db: DatabaseReader, accountId: string) {
  const found = await accountDoc(db, accountId);
  if (found === null) notFound("account", accountId);
  return found;
}

export type AgentArgs = {
  agentId: string;
  accountId: string;
  name: string;
  slug: string;
  heartbeatInterval: number;
  openclawAgentId: string;
  workspaceFiles: Record<string, string>;
};

export async function agentPut(db: DatabaseWriter, a: AgentArgs) {
  await requireAccount(db, a.accountId);
  const taken = await db
    .query("factoryRtAgents")
    .withIndex("by_account", (q) => q.eq("accountId", a.accountId).eq("slug", a.slug))
    .unique();
  if (taken !== null && taken.agentId !== a.agentId) {
    invalidInput("slug", `'${a.slug}' is agent ${taken.agentId}'s in account ${a.accountId}; pick another`);
  }
  const found = await agentDoc(db, a.agentId);
  if (found !== null && found.accountId !== a.accountId) invalidInput("agentId", `${a.agentId} belongs to another account; pick another id`);
  if (found === null) await db.insert("factoryRtAgents", a);
  else await db.patch(found._id, a);
  return wire((await agentDoc(db, a.agentId))!);
}

export async function taskPut(db: DatabaseWriter, a: { taskId: string; accountId: string; title: string; status: string }, now: number) {
  await requireAccount(db, a.accountId);
  const found = await taskDoc(db, a.taskId);
  if (found !== null && found.accountId !== a.accountId) invalidInput("taskId", `${a.taskId} belongs to another account; pick another id`);
  if (found === null) await db.insert("factoryRtTasks", { ...a, createdAt: now });
  else await db.patch(found._id, { title: a.title, status: a.status });
  return wire((await taskDoc(db, a.taskId))!);
}

export type NotificationArgs = {
  notificationId: string;
  accountId: string;
  agentId: string;
  type: string;
  title: string;
  body: string;
  taskId?: string;
};

export async function notificationPost(db: DatabaseWriter, a: NotificationArgs, now: number) {
  await requireAccount(db, a.accountId);
  if ((await ownAgent(db, a.accountId, a.agentId)) === null) notFound(`agent of account ${a.accountId}`, a.agentId);
  if (a.taskId !== undefined && (await ownTask(db, a.accountId, a.taskId)) === null) notFound(`task of account ${a.accountId}`, a.taskId);
  const found = await notificationDoc(db, a.notificationId);
  if (found !== null) {
    if (found.accountId !== a.accountId) invalidInput("notificationId", "is another account's; pick another id");
    return wire(found);
  }
  await db.insert("factoryRtNotifications", { ...a, createdAt: now });
  return wire((await notificationDoc(db, a.notificationId))!);
}

export async function accountView(db: DatabaseReader, accountId: string, limit: number) {
  const account = await accountDoc(db, accountId);
  if (account === null) return null;
  const tasks = await db.query("factoryRtTasks").withIndex("by_account", (q) => q.eq("accountId", accountId)).collect();
  const notes = await db
    .query("factoryRtNotifications")
    .withIndex("by_account_delivered", (q) => q.eq("accountId", accountId))
    .collect();
  notes.sort((x, y) => x._creationTime - y._creationTime);
  const posts = await db.query("factoryRtAgentMessages").withIndex("by_account", (q) => q.eq("accountId", accountId)).order("desc").take(limit);
  return {
    account: accountWire(account),
    agents: await agents(db, accountId),
    tasks: tasks.map((t) => wire(t)),
    notifications: notes.slice(-limit).map((n) => wire(n)),
    messages: posts.reverse().map((m) => wire(m)),
  };
}

// ---------------------------------------------------------------- one account's runtime

async function ownAgent(db: DatabaseReader, accountId: string, agentId: string) {
  const found = await agentDoc(db, agentId);
  return found !== null && found.accountId === accountId ? found : null;
}

async function ownTask(db: DatabaseReader, accountId: string, taskId: string) {
  const found = await taskDoc(db, taskId);
  return found !== null && found.accountId === accountId ? found : null;
}

export async function agents(db: DatabaseReader, accountId: string) {
  const rows = await db.query("factoryRtAgents").withIndex("by_account", (q) => q.eq("accountId", accountId)).collect();
  return rows.map((r) => wire(r));
}

export async function undelivered(db: DatabaseReader, accountId: string, limit: number) {
  const rows = await db
    .query("factoryRtNotifications")
    .withIndex("by_account_delivered", (q) => q.eq("accountId", accountId).eq("deliveredAt", undefined))
    .take(Math.min(Math.max(limit, 1), 1000));
  return rows.map((r) => wire(r));
}

export async function forDelivery(db: DatabaseReader, accountId: string, notificationId: string) {
  const note = await notificationDoc(db, notificationId);
  if (note === null || note.accountId !== accountId) return null;
  const agent = await ownAgent(db, accountId, note.agentId);
  if (agent === null) return null;
  const task = note.taskId === undefined ? null : await ownTask(db, accountId, note.taskId);
  return { notification: wire(note), agent: wire(agent), ...(task === null ? {} : { task: wire(task) }) };
}

export async function markDelivered(db: DatabaseWriter, accountId: string, notificationId: string, now: number): Promise<boolean> {
  const note = await notificationDoc(db, notificationId);
  if (note === null || note.accountId !== accountId || note.deliveredAt !== undefined) return false;
  await db.patch(note._id, { deliveredAt: now });
  return true;
}

export async function upsertHeartbeat(
  db: DatabaseWriter,
  accountId: string,
  agentId: string,
  status: RuntimeStatus,
  now: number,
): Promise<boolean> {
  const agent = await ownAgent(db, accountId, agentId);
  if (agent === null) return false;
  await db.patch(agent._id, { heartbeatStatus: status, lastHeartbeatAt: now });
  return true;
}

export async function createFromAgent(
  db: DatabaseWriter,
  a: { accountId: string; agentId: string; taskId: string; content: string; messageId: string },
  now: number,
) {
  if ((await ownAgent(db, a.accountId, a.agentId)) === null || (await ownTask(db, a.accountId, a.taskId)) === null) return null;
  const seen = await db.query("factoryRtAgentMessages").withIndex("by_message", (q) => q.eq("messageId", a.messageId)).unique();
  if (seen !== null) return seen.accountId === a.accountId ? wire(seen) : null;
  await db.insert("factoryRtAgentMessages", { ...a, createdAt: now });
  return { ...a, createdAt: now };
}

export type StatusDetails = { dropletId?: string; ipAddress?: string; lastHealthCheck?: number; version?: string };

export async function updateStatus(db: DatabaseWriter, accountId: string, status: RuntimeStatus, details: StatusDetails) {
  const account = await requireAccount(db, accountId);
  const kept = Object.fromEntries(Object.entries(details).filter(([, value]) => value !== undefined));
  await db.patch(account._id, { status, ...kept });
  return accountWire((await accountDoc(db, accountId))!);
}

// ---------------------------------------------------------------- the queue's completion hook

export async function onComplete(db: DatabaseWriter, message: Doc<"factoryMessages">, now: number): Promise<void> {
  const metadata = message.payload.metadata;
  if (metadata === undefined) return;
  const heartbeatAgent = metadata.heartbeatAgentId;
  if (heartbeatAgent !== undefined) {
    const agent = await agentIn(db, heartbeatAgent, message.conversationId);
    if (agent !== null) await db.patch(agent._id, { heartbeatStatus: "online", lastHeartbeatAt: now });
  }
  const notificationId = metadata.notificationId;
  if (notificationId === undefined) return;
  const note = await notificationDoc(db, notificationId);
  // Only a message in the notification's own agent's conversation settles it.
  if (note === null || (await agentIn(db, note.agentId, message.conversationId)) === null) return;
  if (!(await markDelivered(db, note.accountId, notificationId, now))) return;
  if (note.taskId === undefined) return;
  const reply = await replyOf(db, message.conversationId, message._id);
  if (reply === null || QUIET.has(reply.trim())) return;
  await createFromAgent(
    db,
    { accountId: note.accountId, agentId: note.agentId, taskId: note.taskId, content: reply, messageId: `am_${message._id}` },
    now,
  );
}

async function agentIn(db: DatabaseReader, agentId: string, conversationId: string) {
  const agent = await agentDoc(db, agentId);
  return agent !== null && `agent:${agent.slug}:${agent.accountId}` === conversationId ? agent : null;
}

async function replyOf(db: DatabaseReader, conversationId: string, messageId: string): Promise<string | null> {
  const turns = await db
    .query("factoryHistory")
    .withIndex("by_source", (q) => q.eq("conversationId", conversationId).eq("sourceMessageId", messageId))
    .collect();
  const answers = turns.filter((t) => t.role === "assistant");
  return answers.length === 0 ? null : answers[answers.length - 1].content;
}
