// The contract's functions, defined once: arguments (validators) and handlers. The namespace
// modules (agentFactory.ts, agentFactoryAdmin.ts) register them as public or internal functions.
//
// Every handler reads the clock once (`Date.now()`, frozen per function in Convex) and passes
// it down, so a transaction sees one instant. Views that depend on time take an optional `now`:
// Convex caches query results by their reads, not by the clock, so a caller that needs a fresh
// answer passes the store's time (from storeNow) explicitly.
import { v, type ObjectType, type PropertyValidators } from "convex/values";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import * as agents from "./agents";
import * as claim from "./claim";
import * as console from "./console";
import * as fleet from "./fleet";
import * as ingress from "./ingress";
import { currentPolicy } from "./policy";
import * as push from "./push";
import * as queue from "./queue";
import * as runtime from "./runtime";
import * as snapshots from "./snapshots";
import * as secrets from "./secrets";
import { nextSlot, type Schedule } from "./slots";
import {
  agentProfile,
  enqueueRequest,
  historyMessage,
  launchState,
  machineRef,
  operatorRole,
  payload,
  pushJob,
  pushTemplate,
  reconcileRecord,
  runtimeStatus,
  schedule,
  snapshotReason,
  telegramWebhook,
} from "./validators";

type Spec<Ctx, Args extends PropertyValidators, R> = {
  args: Args;
  handler: (ctx: Ctx, args: ObjectType<Args>) => Promise<R>;
};

const mutationSpec = <Args extends PropertyValidators, R>(args: Args, handler: Spec<MutationCtx, Args, R>["handler"]) => ({
  args,
  handler,
});
const querySpec = <Args extends PropertyValidators, R>(args: Args, handler: Spec<QueryCtx, Args, R>["handler"]) => ({
  args,
  handler,
});

/** The same spec with an authorization check in front (for the public namespace). */
export function guarded<Ctx extends { auth: QueryCtx["auth"] }, Args extends PropertyValidators, R>(
  spec: Spec<Ctx, Args, R>,
  check: (ctx: Ctx) => Promise<void>,
): Spec<Ctx, Args, R> {
  return {
    args: spec.args,
    handler: async (ctx, args) => {
      await check(ctx);
      return await spec.handler(ctx, args);
    },
  };
}

const lease = { workerId: v.string(), messageId: v.string(), leaseId: v.string() };
const cursor = { cursor: v.optional(v.string()), numItems: v.optional(v.number()) };
const page = (a: { cursor?: string; numItems?: number }) => ({
  cursor: a.cursor ?? null,
  numItems: Math.min(Math.max(a.numItems ?? 500, 1), 1000),
});

// ---------------------------------------------------------------- queue

export const enqueue = mutationSpec(
  {
    conversationId: v.string(),
    agentKey: v.string(),
    payload,
    priority: v.optional(v.number()),
    scheduledFor: v.optional(v.number()),
    maxAttempts: v.optional(v.number()),
  },
  async (ctx, a) => await queue.enqueue(ctx.db, a, Date.now()),
);

/** `withBundle: true` answers {control, now, job?, bundle?} (an idle poll, a claim and its
 * hydration in one call); without it, the job or null, as upstream's workerClaim does. */
export const workerClaim = mutationSpec(
  { workerId: v.string(), conversationId: v.optional(v.string()), withBundle: v.optional(v.boolean()) },
  async (ctx, a) =>
    a.withBundle === true
      ? await claim.claimWithBundle(ctx.db, a.workerId, a.conversationId, Date.now(), currentPolicy())
      : await claim.claim(ctx.db, a.workerId, a.conversationId, Date.now(), currentPolicy()),
);

export const workerHeartbeat = mutationSpec(
  lease,
  async (ctx, a) => await claim.heartbeat(ctx.db, a, Date.now(), currentPolicy()),
);

/** `history`: turns appended in the same transaction (once per message); `claimNext`: also claim
 * the worker's next job, answered in `next`. */
export const workerComplete = mutationSpec(
  {
    ...lease,
    history: v.optional(v.array(historyMessage)),
    claimNext: v.optional(v.object({ conversationId: v.optional(v.string()), withBundle: v.optional(v.boolean()) })),
  },
  async (ctx, a) => await claim.complete(ctx.db, a, Date.now(), currentPolicy()),
);

export const workerFail = mutationSpec(
  { ...lease, errorMessage: v.string(), retryable: v.optional(v.boolean()) },
  async (ctx, a) => await queue.fail(ctx.db, a, Date.now(), currentPolicy(), Math.random),
);

export const workerRelease = mutationSpec(
  { ...lease, reason: v.string() },
  async (ctx, a) => await queue.release(ctx.db, a, Date.now()),
);

export const workerHydrationBundle = querySpec(
  { messageId: v.string(), workspaceId: v.optional(v.string()) },
  async (ctx, a) => await agents.hydrationBundle(ctx.db, a.messageId),
);

export const workerAppendConversationMessages = mutationSpec(
  {
    conversationId: v.string(),
    messages: v.array(historyMessage),
    messageId: v.optional(v.string()),
    workspaceId: v.optional(v.string()),
  },
  async (ctx, a) => await agents.appendHistory(ctx.db, a, Date.now()),
);

// ---------------------------------------------------------------- workers

export const workerRegister = mutationSpec(
  {
    workerId: v.string(),
    provider: v.string(),
    machineRef: v.optional(machineRef),
    launchId: v.optional(v.string()),
    capabilities: v.optional(v.array(v.string())),
    conversationId: v.optional(v.string()),
  },
  async (ctx, a) => await fleet.register(ctx.db, a, Date.now()),
);

export const workerControlState = mutationSpec(
  { workerId: v.string() },
  async (ctx, a) => await fleet.controlState(ctx.db, a.workerId, Date.now()),
);

export const fleetSetWorkerStatus = mutationSpec(
  {
    workerId: v.string(),
    status: v.union(v.literal("draining"), v.literal("stopping"), v.literal("stopped")),
    reason: v.string(),
  },
  async (ctx, a) => await fleet.setStatus(ctx.db, a, Date.now()),
);

export const fleetDemand = querySpec(
  { now: v.optional(v.number()) },
  async (ctx, a) => await fleet.demand(ctx.db, a.now ?? Date.now()),
);

export const listWorkers = querySpec(cursor, async (ctx, a) => await fleet.listWorkers(ctx.db, page(a)));

// ---------------------------------------------------------------- operator views and actions

export const queueStats = querySpec(
  { now: v.optional(v.number()) },
  async (ctx, a) => await fleet.stats(ctx.db, a.now ?? Date.now(), currentPolicy().leaseTtlMs),
);

export const queueTotals = querySpec({ cursor: v.string() }, async (ctx, a) => await fleet.queueTotals(ctx.db, a.cursor));

export const queueReadiness = querySpec(
  { now: v.optional(v.number()) },
  async (ctx, a) => await fleet.queueReadiness(ctx.db, a.now ?? Date.now()),
);

/** An idle worker's subscription (see fleet.queueSignal). */
export const queueSignal = querySpec(
  { conversationId: v.optional(v.string()) },
  async (ctx, a) => await fleet.queueSignal(ctx.db, a.conversationId),
);

/** The reconciler's watch subscription (see fleet.fleetSignal). */
export const fleetSignal = querySpec({}, async (ctx) => await fleet.fleetSignal(ctx.db));

export const listDeadLetters = querySpec(
  { limit: v.optional(v.number()) },
  async (ctx, a) => await fleet.deadLetters(ctx.db, a.limit ?? 100),
);

export const redrive = mutationSpec(
  { messageId: v.optional(v.string()) },
  async (ctx, a) => await queue.redrive(ctx.db, a.messageId, Date.now()),
);

export const releaseExpired = mutationSpec({}, async (ctx) => await queue.releaseExpired(ctx.db, Date.now()));

export const getMessage = querySpec(
  { messageId: v.string() },
  async (ctx, a) => await agents.messageView(ctx.db, a.messageId),
);

export const getConversation = querySpec(
  { conversationId: v.string(), historyLimit: v.optional(v.number()) },
  async (ctx, a) => await agents.conversationView(ctx.db, a.conversationId, a.historyLimit ?? 50),
);

// ---------------------------------------------------------------- agents and secrets

export const upsertAgentProfile = mutationSpec(
  { profile: agentProfile },
  async (ctx, a) => await agents.upsertProfile(ctx.db, a.profile, Date.now()),
);

export const getAgentProfile = querySpec(
  { agentKey: v.string() },
  async (ctx, a) => await agents.loadProfile(ctx.db, a.agentKey),
);

// ---------------------------------------------------------------- secrets (ciphertext only) and app tokens

export const importSecret = mutationSpec(
  { secretRef: v.string(), value: v.string(), keyId: v.optional(v.string()) },
  async (ctx, a) => await secrets.importSecret(ctx.db, a.secretRef, a.value, a.keyId, Date.now()),
);

export const resolveSecrets = querySpec(
  { refs: v.array(v.string()) },
  async (ctx, a) => await secrets.resolveSecrets(ctx.db, a.refs),
);

export const secretStatus = querySpec({}, async (ctx) => await secrets.secretStatus(ctx.db));

export const sealedSecrets = querySpec({}, async (ctx) => await secrets.sealedSecrets(ctx.db));

export const resealSecret = mutationSpec(
  { secretRef: v.string(), version: v.number(), expectKeyId: v.optional(v.string()), value: v.string(), keyId: v.string() },
  async (ctx, a) => await secrets.resealSecret(ctx.db, a),
);

export const createAppToken = mutationSpec(
  { tokenId: v.string(), name: v.string(), tokenHash: v.string(), createdAt: v.number(), revokedAt: v.optional(v.number()) },
  async (ctx, a) => await secrets.createAppToken(ctx.db, a),
);

export const findAppToken = querySpec(
  { tokenHash: v.string() },
  async (ctx, a) => await secrets.findAppToken(ctx.db, a.tokenHash),
);

export const revokeAppToken = mutationSpec(
  { tokenId: v.string() },
  async (ctx, a) => await secrets.revokeAppToken(ctx.db, a.tokenId, Date.now()),
);

export const listAppTokens = querySpec({}, async (ctx) => await secrets.listAppTokens(ctx.db));

// ---------------------------------------------------------------- the front door

export const ingestTelegramUpdate = mutationSpec(
  { botId: v.string(), updateId: v.number(), request: v.optional(enqueueRequest) },
  async (ctx, a) => await ingress.ingestUpdate(ctx.db, a, Date.now()),
);

export const setTelegramWebhook = mutationSpec(
  { webhook: telegramWebhook },
  async (ctx, a) => {
    const { configuredAt: _ignored, ...webhook } = a.webhook;
    return await ingress.setWebhook(ctx.db, webhook, Date.now());
  },
);

export const getTelegramWebhook = querySpec(
  { agentKey: v.string() },
  async (ctx, a) => await ingress.getWebhook(ctx.db, a.agentKey),
);

export const findTelegramWebhook = querySpec(
  { secretHash: v.string() },
  async (ctx, a) => await ingress.findWebhook(ctx.db, a.secretHash),
);

export const createPairingCode = mutationSpec(
  { code: v.string(), agentKey: v.string(), ttlMs: v.optional(v.number()), consumerUserId: v.optional(v.string()) },
  async (ctx, a) => await ingress.createPairingCode(ctx.db, a, Date.now()),
);

export const getPairingCode = querySpec(
  { code: v.string(), now: v.optional(v.number()) },
  async (ctx, a) => await ingress.getPairingCode(ctx.db, a.code, a.now ?? Date.now()),
);

export const consumePairingCode = mutationSpec(
  { code: v.string(), botId: v.string(), telegramUserId: v.string(), telegramChatId: v.string() },
  async (ctx, a) => await ingress.consumePairingCode(ctx.db, a, Date.now()),
);

export const resolveBinding = querySpec(
  { botId: v.string(), telegramUserId: v.string() },
  async (ctx, a) => await ingress.resolveBinding(ctx.db, a.botId, a.telegramUserId),
);

export const listBindings = querySpec(
  { agentKey: v.optional(v.string()), includeRevoked: v.optional(v.boolean()) },
  async (ctx, a) => await ingress.listBindings(ctx.db, a.agentKey, a.includeRevoked ?? false),
);

export const revokeBinding = mutationSpec(
  { bindingId: v.string() },
  async (ctx, a) => await ingress.revokeBinding(ctx.db, a.bindingId, Date.now()),
);

export const conversationMessages = querySpec(
  { conversationId: v.string(), limit: v.optional(v.number()) },
  async (ctx, a) => await ingress.conversationMessages(ctx.db, a.conversationId, Math.min(Math.max(a.limit ?? 100, 1), 500)),
);

// ---------------------------------------------------------------- autoscaler bookkeeping

export const acquireReconcileLock = mutationSpec(
  { holder: v.string(), ttlMs: v.number() },
  async (ctx, a) => await fleet.acquireLock(ctx.db, a.holder, a.ttlMs, Date.now()),
);

export const releaseReconcileLock = mutationSpec(
  { holder: v.string() },
  async (ctx, a) => await fleet.releaseLock(ctx.db, a.holder),
);

export const ledgerRecord = mutationSpec(
  {
    launchId: v.string(),
    provider: v.string(),
    requestedAt: v.number(),
    state: v.optional(launchState),
    machineId: v.optional(v.string()),
    updatedAt: v.optional(v.number()),
    detail: v.optional(v.string()),
    conversationId: v.optional(v.string()),
  },
  async (ctx, a) => await fleet.ledgerRecord(ctx.db, a),
);

export const ledgerUpdate = mutationSpec(
  { launchId: v.string(), state: launchState, machineId: v.optional(v.string()), detail: v.optional(v.string()) },
  async (ctx, a) => await fleet.ledgerUpdate(ctx.db, a, Date.now()),
);

export const ledgerList = querySpec(
  { includeClosed: v.optional(v.boolean()), ...cursor },
  async (ctx, a) => await fleet.ledgerList(ctx.db, a.includeClosed ?? false, page(a)),
);

// ---------------------------------------------------------------- snapshots

export const snapshotBoot = querySpec(
  { workspaceId: v.string(), conversationId: v.string() },
  async (ctx, a) => await snapshots.boot(ctx, a),
);

export const snapshotPrepare = mutationSpec(
  { workerId: v.string(), workspaceId: v.string(), agentKey: v.string(), conversationId: v.string(), reason: snapshotReason },
  async (ctx, a) => await snapshots.prepare(ctx, a, Date.now()),
);

export const snapshotFinalize = mutationSpec(
  { workerId: v.string(), snapshotId: v.string(), storageId: v.string(), sha256: v.string(), sizeBytes: v.number() },
  async (ctx, a) => await snapshots.finalize(ctx, a, Date.now()),
);

export const snapshotFail = mutationSpec(
  { workerId: v.string(), snapshotId: v.string(), error: v.string() },
  async (ctx, a) => await snapshots.fail(ctx.db, a, Date.now()),
);

export const snapshotLatest = querySpec(
  { workspaceId: v.string(), agentKey: v.string(), conversationId: v.string() },
  async (ctx, a) => await snapshots.latest(ctx, a),
);

export const snapshotList = querySpec(
  { conversationId: v.optional(v.string()), limit: v.optional(v.number()) },
  async (ctx, a) => await snapshots.list(ctx.db, { conversationId: a.conversationId, limit: a.limit ?? 100 }),
);

export const snapshotPrune = mutationSpec(
  { keep: v.number(), conversationId: v.optional(v.string()) },
  async (ctx, a) => await snapshots.prune(ctx, a, Date.now()),
);

// ---------------------------------------------------------------- push schedules and broadcasts

export const pushTemplatePut = mutationSpec(
  { template: pushTemplate },
  async (ctx, a) => await push.templatePut(ctx.db, a.template, Date.now()),
);

export const pushTemplateDelete = mutationSpec(
  { templateId: v.string() },
  async (ctx, a) => await push.templateDelete(ctx.db, a.templateId),
);

export const pushTemplates = querySpec({}, async (ctx) => await push.templates(ctx.db));

export const pushJobPut = mutationSpec({ job: pushJob }, async (ctx, a) => await push.jobPut(ctx.db, a.job, Date.now()));

export const pushJobDelete = mutationSpec({ jobId: v.string() }, async (ctx, a) => await push.jobDelete(ctx.db, a.jobId));

export const pushJobs = querySpec(
  { dueAt: v.optional(v.number()), limit: v.optional(v.number()) },
  async (ctx, a) => await push.jobs(ctx.db, a.dueAt, a.limit ?? 500),
);

export const pushDispatch = mutationSpec(
  {
    jobId: v.string(),
    runKey: v.string(),
    slotAt: v.number(),
    mode: v.optional(v.union(v.literal("scheduled"), v.literal("manual"))),
    expectedNextRunAt: v.optional(v.number()),
    nextRunAt: v.optional(v.number()),
    skipReason: v.optional(v.string()),
  },
  async (ctx, a) => await push.dispatch(ctx.db, a, Date.now()),
);

export const pushDispatches = querySpec(
  { jobId: v.string(), limit: v.optional(v.number()) },
  async (ctx, a) => await push.dispatches(ctx.db, a.jobId, a.limit ?? 50),
);

/** A dispatch pass computed inside Convex: what this module's cron runs (crons.ts). */
export const pushDispatchDue = mutationSpec({}, async (ctx) => await push.dispatchDue(ctx.db, Date.now()));

/** The slot math of this module, for checking it against the Python reference. */
export const pushNextSlot = querySpec(
  { schedule, afterMs: v.number() },
  async (_ctx, a) => nextSlot(push.checkSchedule(a.schedule as Schedule), a.afterMs),
);

export const broadcast = mutationSpec(
  { broadcastId: v.string(), text: v.string(), requestedBy: v.string(), agents: v.optional(v.array(v.string())) },
  async (ctx, a) => await push.broadcast(ctx.db, a, Date.now()),
);

export const broadcasts = querySpec(
  { limit: v.optional(v.number()) },
  async (ctx, a) => await push.broadcasts(ctx.db, a.limit ?? 50),
);

// ---------------------------------------------------------------- the operator console

export const searchConversations = querySpec(
  { query: v.optional(v.string()), limit: v.optional(v.number()) },
  async (ctx, a) => await console.searchConversations(ctx.db, a.query ?? "", a.limit ?? 50),
);

export const conversationRecords = querySpec(
  { conversationId: v.string(), limit: v.optional(v.number()) },
  async (ctx, a) => await console.conversationRecords(ctx.db, a.conversationId, a.limit ?? 100),
);

export const settledPage = querySpec(
  { status: v.union(v.literal("done"), v.literal("dead_letter")), since: v.number(), ...cursor },
  async (ctx, a) => await console.settledPage(ctx.db, a.status, a.since, page(a)),
);

export const listAgentProfiles = querySpec({}, async (ctx) => await console.listAgentProfiles(ctx.db));

export const listPairingCodes = querySpec(
  { limit: v.optional(v.number()), now: v.optional(v.number()) },
  async (ctx, a) => await console.listPairingCodes(ctx.db, a.limit ?? 100, a.now ?? Date.now()),
);

export const recordReconcile = mutationSpec(
  { record: reconcileRecord },
  async (ctx, a) => await console.recordReconcile(ctx.db, a.record),
);

export const lastReconcile = querySpec({}, async (ctx) => await console.lastReconcile(ctx.db));

export const createOperatorToken = mutationSpec(
  { tokenId: v.string(), name: v.string(), role: operatorRole, tokenHash: v.string(), createdAt: v.number() },
  async (ctx, a) => await console.createOperatorToken(ctx.db, a),
);

export const findOperatorToken = querySpec(
  { tokenHash: v.string() },
  async (ctx, a) => await console.findOperatorToken(ctx.db, a.tokenHash),
);

export const listOperatorTokens = querySpec({}, async (ctx) => await console.listOperatorTokens(ctx.db));

export const revokeOperatorToken = mutationSpec(
  { tokenId: v.string() },
  async (ctx, a) => await console.revokeOperatorToken(ctx.db, a.tokenId, Date.now()),
);

export const createConsoleSession = mutationSpec(
  {
    sessionHash: v.string(),
    operator: v.string(),
    role: operatorRole,
    tokenId: v.optional(v.string()),
    createdAt: v.number(),
    expiresAt: v.number(),
  },
  async (ctx, a) => await console.createConsoleSession(ctx.db, a, Date.now()),
);

export const findConsoleSession = querySpec(
  { sessionHash: v.string(), now: v.optional(v.number()) },
  async (ctx, a) => await console.findConsoleSession(ctx.db, a.sessionHash, a.now ?? Date.now()),
);

export const endConsoleSession = mutationSpec(
  { sessionHash: v.string() },
  async (ctx, a) => await console.endConsoleSession(ctx.db, a.sessionHash, Date.now()),
);

// ---------------------------------------------------------------- time

/** The store's clock. A mutation, so no cache ever answers it. */
export const storeNow = mutationSpec({}, async () => Date.now());

// ---------------------------------------------------------------- Mission Control accounts

export const accountPut = mutationSpec(
  { accountId: v.string(), name: v.string(), active: v.boolean() },
  async (ctx, a) => await runtime.accountPut(ctx.db, a, Date.now()),
);

export const accountToken = mutationSpec(
  { accountId: v.string(), tokenHash: v.string() },
  async (ctx, a) => await runtime.accountToken(ctx.db, a.accountId, a.tokenHash),
);

export const accounts = querySpec({}, async (ctx) => await runtime.accounts(ctx.db));

export const accountView = querySpec(
  { accountId: v.string(), limit: v.optional(v.number()) },
  async (ctx, a) => await runtime.accountView(ctx.db, a.accountId, Math.min(Math.max(a.limit ?? 50, 1), 1000)),
);

export const runtimeAgentPut = mutationSpec(
  {
    agentId: v.string(),
    accountId: v.string(),
    name: v.string(),
    slug: v.string(),
    heartbeatInterval: v.number(),
    openclawAgentId: v.string(),
    workspaceFiles: v.record(v.string(), v.string()),
  },
  async (ctx, a) => await runtime.agentPut(ctx.db, a),
);

export const taskPut = mutationSpec(
  { taskId: v.string(), accountId: v.string(), title: v.string(), status: v.string() },
  async (ctx, a) => await runtime.taskPut(ctx.db, a, Date.now()),
);

export const notificationPost = mutationSpec(
  {
    notificationId: v.string(),
    accountId: v.string(),
    agentId: v.string(),
    type: v.string(),
    title: v.string(),
    body: v.string(),
    taskId: v.optional(v.string()),
  },
  async (ctx, a) => await runtime.notificationPost(ctx.db, a, Date.now()),
);

// The runtime's own calls: every one carries its account and service token, checked first.
const bound = { accountId: v.string(), serviceToken: v.string() };

export const accountOpen = querySpec(bound, async (ctx, a) => {
  await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
  return true;
});

export const runtimeAgents = querySpec(bound, async (ctx, a) => {
  await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
  return await runtime.agents(ctx.db, a.accountId);
});

export const runtimeUndelivered = querySpec({ ...bound, limit: v.optional(v.number()) }, async (ctx, a) => {
  await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
  return await runtime.undelivered(ctx.db, a.accountId, a.limit ?? 50);
});

export const runtimeForDelivery = querySpec({ ...bound, notificationId: v.string() }, async (ctx, a) => {
  await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
  return await runtime.forDelivery(ctx.db, a.accountId, a.notificationId);
});

export const runtimeMarkDelivered = mutationSpec({ ...bound, notificationId: v.string() }, async (ctx, a) => {
  await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
  return await runtime.markDelivered(ctx.db, a.accountId, a.notificationId, Date.now());
});

export const runtimeUpsertHeartbeat = mutationSpec({ ...bound, agentId: v.string(), status: runtimeStatus }, async (ctx, a) => {
  await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
  return await runtime.upsertHeartbeat(ctx.db, a.accountId, a.agentId, a.status, Date.now());
});

export const runtimeCreateFromAgent = mutationSpec(
  { ...bound, agentId: v.string(), taskId: v.string(), content: v.string(), messageId: v.string() },
  async (ctx, a) => {
    await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
    const { serviceToken: _, ...post } = a;
    return await runtime.createFromAgent(ctx.db, post, Date.now());
  },
);

export const runtimeUpdateStatus = mutationSpec(
  {
    ...bound,
    status: runtimeStatus,
    dropletId: v.optional(v.string()),
    ipAddress: v.optional(v.string()),
    lastHealthCheck: v.optional(v.number()),
    version: v.optional(v.string()),
  },
  async (ctx, a) => {
    await runtime.authenticate(ctx.db, a.accountId, a.serviceToken);
    const { serviceToken: _, accountId, status, ...details } = a;
    return await runtime.updateStatus(ctx.db, accountId, status, details);
  },
);
