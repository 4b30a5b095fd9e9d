// The same functions as agentFactory.ts, registered as internal functions: only an admin
// identity (`Authorization: Convex <deploy key>`) can call them, as `agentFactoryAdmin:<function>`.
// For fleets that authenticate with a deploy key (set FACTORY_AUTH=admin to close the public
// namespace). Delete this file to offer no admin path at all.
import { internalMutation, internalQuery } from "./_generated/server";
import * as api from "./factory/api";

// ---- mutations
export const enqueue = internalMutation(api.enqueue);
export const workerClaim = internalMutation(api.workerClaim);
export const workerHeartbeat = internalMutation(api.workerHeartbeat);
export const workerComplete = internalMutation(api.workerComplete);
export const workerFail = internalMutation(api.workerFail);
export const workerRelease = internalMutation(api.workerRelease);
export const workerAppendConversationMessages = internalMutation(api.workerAppendConversationMessages);
export const workerRegister = internalMutation(api.workerRegister);
export const workerControlState = internalMutation(api.workerControlState);
export const fleetSetWorkerStatus = internalMutation(api.fleetSetWorkerStatus);
export const redrive = internalMutation(api.redrive);
export const releaseExpired = internalMutation(api.releaseExpired);
export const upsertAgentProfile = internalMutation(api.upsertAgentProfile);
export const importSecret = internalMutation(api.importSecret);
export const acquireReconcileLock = internalMutation(api.acquireReconcileLock);
export const releaseReconcileLock = internalMutation(api.releaseReconcileLock);
export const ledgerRecord = internalMutation(api.ledgerRecord);
export const ledgerUpdate = internalMutation(api.ledgerUpdate);
export const storeNow = internalMutation(api.storeNow);
export const snapshotPrepare = internalMutation(api.snapshotPrepare);
export const snapshotFinalize = internalMutation(api.snapshotFinalize);
export const snapshotFail = internalMutation(api.snapshotFail);
export const snapshotPrune = internalMutation(api.snapshotPrune);
export const pushTemplatePut = internalMutation(api.pushTemplatePut);
export const pushTemplateDelete = internalMutation(api.pushTemplateDelete);
export const pushJobPut = internalMutation(api.pushJobPut);
export const pushJobDelete = internalMutation(api.pushJobDelete);
export const pushDispatch = internalMutation(api.pushDispatch);
export const pushDispatchDue = internalMutation(api.pushDispatchDue);
export const broadcast = internalMutation(api.broadcast);

// ---- the front door and secrets (mutations; the webhook route calls these)
export const resealSecret = internalMutation(api.resealSecret);
export const createAppToken = internalMutation(api.createAppToken);
export const revokeAppToken = internalMutation(api.revokeAppToken);
export const ingestTelegramUpdate = internalMutation(api.ingestTelegramUpdate);
export const setTelegramWebhook = internalMutation(api.setTelegramWebhook);
export const createPairingCode = internalMutation(api.createPairingCode);
export const consumePairingCode = internalMutation(api.consumePairingCode);
export const revokeBinding = internalMutation(api.revokeBinding);

// ---- queries
export const workerHydrationBundle = internalQuery(api.workerHydrationBundle);
export const fleetDemand = internalQuery(api.fleetDemand);
export const listWorkers = internalQuery(api.listWorkers);
export const queueStats = internalQuery(api.queueStats);
export const queueTotals = internalQuery(api.queueTotals);
export const queueReadiness = internalQuery(api.queueReadiness);
export const queueSignal = internalQuery(api.queueSignal);
export const fleetSignal = internalQuery(api.fleetSignal);
export const listDeadLetters = internalQuery(api.listDeadLetters);
export const getMessage = internalQuery(api.getMessage);
export const getConversation = internalQuery(api.getConversation);
export const getAgentProfile = internalQuery(api.getAgentProfile);
export const ledgerList = internalQuery(api.ledgerList);
export const snapshotBoot = internalQuery(api.snapshotBoot);
export const snapshotLatest = internalQuery(api.snapshotLatest);
export const snapshotList = internalQuery(api.snapshotList);
export const pushTemplates = internalQuery(api.pushTemplates);
export const pushJobs = internalQuery(api.pushJobs);
export const pushDispatches = internalQuery(api.pushDispatches);
export const pushNextSlot = internalQuery(api.pushNextSlot);
export const broadcasts = internalQuery(api.broadcasts);

// ---- the front door and secrets (queries)
export const resolveSecrets = internalQuery(api.resolveSecrets);
export const secretStatus = internalQuery(api.secretStatus);
export const sealedSecrets = internalQuery(api.sealedSecrets);
export const findAppToken = internalQuery(api.findAppToken);
export const listAppTokens = internalQuery(api.listAppTokens);
export const getTelegramWebhook = internalQuery(api.getTelegramWebhook);
export const findTelegramWebhook = internalQuery(api.findTelegramWebhook);
export const getPairingCode = internalQuery(api.getPairingCode);
export const resolveBinding = internalQuery(api.resolveBinding);
export const listBindings = internalQuery(api.listBindings);
export const conversationMessages = internalQuery(api.conversationMessages);

// ---- the operator console (mutations)
export const recordReconcile = internalMutation(api.recordReconcile);
export const createOperatorToken = internalMutation(api.createOperatorToken);
export const revokeOperatorToken = internalMutation(api.revokeOperatorToken);
export const createConsoleSession = internalMutation(api.createConsoleSession);
export const endConsoleSession = internalMutation(api.endConsoleSession);

// ---- the operator console (queries)
export const searchConversations = internalQuery(api.searchConversations);
export const conversationRecords = internalQuery(api.conversationRecords);
export const settledPage = internalQuery(api.settledPage);
export const listAgentProfiles = internalQuery(api.listAgentProfiles);
export const listPairingCodes = internalQuery(api.listPairingCodes);
export const lastReconcile = internalQuery(api.lastReconcile);
export const findOperatorToken = internalQuery(api.findOperatorToken);
export const listOperatorTokens = internalQuery(api.listOperatorTokens);
export const findConsoleSession = internalQuery(api.findConsoleSession);

// ---- Mission Control accounts
export const accountPut = internalMutation(api.accountPut);
export const accountToken = internalMutation(api.accountToken);
export const runtimeAgentPut = internalMutation(api.runtimeAgentPut);
export const taskPut = internalMutation(api.taskPut);
export const notificationPost = internalMutation(api.notificationPost);
export const runtimeMarkDelivered = internalMutation(api.runtimeMarkDelivered);
export const runtimeUpsertHeartbeat = internalMutation(api.runtimeUpsertHeartbeat);
export const runtimeCreateFromAgent = internalMutation(api.runtimeCreateFromAgent);
export const runtimeUpdateStatus = internalMutation(api.runtimeUpdateStatus);
export const accounts = internalQuery(api.accounts);
export const accountView = internalQuery(api.accountView);
export const accountOpen = internalQuery(api.accountOpen);
export const runtimeAgents = internalQuery(api.runtimeAgents);
export const runtimeUndelivered = internalQuery(api.runtimeUndelivered);
export const runtimeForDelivery = internalQuery(api.runtimeForDelivery);
