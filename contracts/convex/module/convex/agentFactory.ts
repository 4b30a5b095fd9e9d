// The factory queue contract as public Convex functions: `agentFactory:<function>` over the
// HTTP API. The file name is the namespace; to serve another one, copy this file under the new
// name (e.g. convex/factoryQueue.ts → `factoryQueue:workerClaim`) and point the Python binding's
// `namespace` at it. Who may call is decided by FACTORY_AUTH (see factory/auth.ts).
import { mutation, query } from "./_generated/server";
import * as api from "./factory/api";
import { authorize } from "./factory/auth";

// ---- mutations
export const enqueue = mutation(api.guarded(api.enqueue, authorize));
export const workerClaim = mutation(api.guarded(api.workerClaim, authorize));
export const workerHeartbeat = mutation(api.guarded(api.workerHeartbeat, authorize));
export const workerComplete = mutation(api.guarded(api.workerComplete, authorize));
export const workerFail = mutation(api.guarded(api.workerFail, authorize));
export const workerRelease = mutation(api.guarded(api.workerRelease, authorize));
export const workerAppendConversationMessages = mutation(api.guarded(api.workerAppendConversationMessages, authorize));
export const workerRegister = mutation(api.guarded(api.workerRegister, authorize));
export const workerControlState = mutation(api.guarded(api.workerControlState, authorize));
export const fleetSetWorkerStatus = mutation(api.guarded(api.fleetSetWorkerStatus, authorize));
export const redrive = mutation(api.guarded(api.redrive, authorize));
export const releaseExpired = mutation(api.guarded(api.releaseExpired, authorize));
export const upsertAgentProfile = mutation(api.guarded(api.upsertAgentProfile, authorize));
export const importSecret = mutation(api.guarded(api.importSecret, authorize));
export const acquireReconcileLock = mutation(api.guarded(api.acquireReconcileLock, authorize));
export const releaseReconcileLock = mutation(api.guarded(api.releaseReconcileLock, authorize));
export const ledgerRecord = mutation(api.guarded(api.ledgerRecord, authorize));
export const ledgerUpdate = mutation(api.guarded(api.ledgerUpdate, authorize));
export const storeNow = mutation(api.guarded(api.storeNow, authorize));
export const snapshotPrepare = mutation(api.guarded(api.snapshotPrepare, authorize));
export const snapshotFinalize = mutation(api.guarded(api.snapshotFinalize, authorize));
export const snapshotFail = mutation(api.guarded(api.snapshotFail, authorize));
export const snapshotPrune = mutation(api.guarded(api.snapshotPrune, authorize));
export const pushTemplatePut = mutation(api.guarded(api.pushTemplatePut, authorize));
export const pushTemplateDelete = mutation(api.guarded(api.pushTemplateDelete, authorize));
export const pushJobPut = mutation(api.guarded(api.pushJobPut, authorize));
export const pushJobDelete = mutation(api.guarded(api.pushJobDelete, authorize));
export const pushDispatch = mutation(api.guarded(api.pushDispatch, authorize));
export const pushDispatchDue = mutation(api.guarded(api.pushDispatchDue, authorize));
export const broadcast = mutation(api.guarded(api.broadcast, authorize));

// ---- the front door and secrets (mutations)
export const resealSecret = mutation(api.guarded(api.resealSecret, authorize));
export const createAppToken = mutation(api.guarded(api.createAppToken, authorize));
export const revokeAppToken = mutation(api.guarded(api.revokeAppToken, authorize));
export const ingestTelegramUpdate = mutation(api.guarded(api.ingestTelegramUpdate, authorize));
export const setTelegramWebhook = mutation(api.guarded(api.setTelegramWebhook, authorize));
export const createPairingCode = mutation(api.guarded(api.createPairingCode, authorize));
export const consumePairingCode = mutation(api.guarded(api.consumePairingCode, authorize));
export const revokeBinding = mutation(api.guarded(api.revokeBinding, authorize));

// ---- queries
export const workerHydrationBundle = query(api.guarded(api.workerHydrationBundle, authorize));
export const fleetDemand = query(api.guarded(api.fleetDemand, authorize));
export const listWorkers = query(api.guarded(api.listWorkers, authorize));
export const queueStats = query(api.guarded(api.queueStats, authorize));
export const queueTotals = query(api.guarded(api.queueTotals, authorize));
export const queueReadiness = query(api.guarded(api.queueReadiness, authorize));
export const queueSignal = query(api.guarded(api.queueSignal, authorize));
export const fleetSignal = query(api.guarded(api.fleetSignal, authorize));
export const listDeadLetters = query(api.guarded(api.listDeadLetters, authorize));
export const getMessage = query(api.guarded(api.getMessage, authorize));
export const getConversation = query(api.guarded(api.getConversation, authorize));
export const getAgentProfile = query(api.guarded(api.getAgentProfile, authorize));
export const ledgerList = query(api.guarded(api.ledgerList, authorize));
export const snapshotBoot = query(api.guarded(api.snapshotBoot, authorize));
export const snapshotLatest = query(api.guarded(api.snapshotLatest, authorize));
export const snapshotList = query(api.guarded(api.snapshotList, authorize));
export const pushTemplates = query(api.guarded(api.pushTemplates, authorize));
export const pushJobs = query(api.guarded(api.pushJobs, authorize));
export const pushDispatches = query(api.guarded(api.pushDispatches, authorize));
export const pushNextSlot = query(api.guarded(api.pushNextSlot, authorize));
export const broadcasts = query(api.guarded(api.broadcasts, authorize));

// ---- the front door and secrets (queries)
export const resolveSecrets = query(api.guarded(api.resolveSecrets, authorize));
export const secretStatus = query(api.guarded(api.secretStatus, authorize));
export const sealedSecrets = query(api.guarded(api.sealedSecrets, authorize));
export const findAppToken = query(api.guarded(api.findAppToken, authorize));
export const listAppTokens = query(api.guarded(api.listAppTokens, authorize));
export const getTelegramWebhook = query(api.guarded(api.getTelegramWebhook, authorize));
export const findTelegramWebhook = query(api.guarded(api.findTelegramWebhook, authorize));
export const getPairingCode = query(api.guarded(api.getPairingCode, authorize));
export const resolveBinding = query(api.guarded(api.resolveBinding, authorize));
export const listBindings = query(api.guarded(api.listBindings, authorize));
export const conversationMessages = query(api.guarded(api.conversationMessages, authorize));

// ---- the operator console (mutations)
export const recordReconcile = mutation(api.guarded(api.recordReconcile, authorize));
export const createOperatorToken = mutation(api.guarded(api.createOperatorToken, authorize));
export const revokeOperatorToken = mutation(api.guarded(api.revokeOperatorToken, authorize));
export const createConsoleSession = mutation(api.guarded(api.createConsoleSession, authorize));
export const endConsoleSession = mutation(api.guarded(api.endConsoleSession, authorize));

// ---- the operator console (queries)
export const searchConversations = query(api.guarded(api.searchConversations, authorize));
export const conversationRecords = query(api.guarded(api.conversationRecords, authorize));
export const settledPage = query(api.guarded(api.settledPage, authorize));
export const listAgentProfiles = query(api.guarded(api.listAgentProfiles, authorize));
export const listPairingCodes = query(api.guarded(api.listPairingCodes, authorize));
export const lastReconcile = query(api.guarded(api.lastReconcile, authorize));
export const findOperatorToken = query(api.guarded(api.findOperatorToken, authorize));
export const listOperatorTokens = query(api.guarded(api.listOperatorTokens, authorize));
export const findConsoleSession = query(api.guarded(api.findConsoleSession, authorize));

// ---- Mission Control accounts
export const accountPut = mutation(api.guarded(api.accountPut, authorize));
export const accountToken = mutation(api.guarded(api.accountToken, authorize));
export const runtimeAgentPut = mutation(api.guarded(api.runtimeAgentPut, authorize));
export const taskPut = mutation(api.guarded(api.taskPut, authorize));
export const notificationPost = mutation(api.guarded(api.notificationPost, authorize));
export const runtimeMarkDelivered = mutation(api.guarded(api.runtimeMarkDelivered, authorize));
export const runtimeUpsertHeartbeat = mutation(api.guarded(api.runtimeUpsertHeartbeat, authorize));
export const runtimeCreateFromAgent = mutation(api.guarded(api.runtimeCreateFromAgent, authorize));
export const runtimeUpdateStatus = mutation(api.guarded(api.runtimeUpdateStatus, authorize));
export const accounts = query(api.guarded(api.accounts, authorize));
export const accountView = query(api.guarded(api.accountView, authorize));
export const accountOpen = query(api.guarded(api.accountOpen, authorize));
export const runtimeAgents = query(api.guarded(api.runtimeAgents, authorize));
export const runtimeUndelivered = query(api.guarded(api.runtimeUndelivered, authorize));
export const runtimeForDelivery = query(api.guarded(api.runtimeForDelivery, authorize));
