// The component's functions: every contract function, as `components.agentFactory.lib.<name>`.
// Only the host app can call them (component functions are never public on the deployment), so
// there is no auth check here: the host's wrappers decide who may call (client/index.ts:
// exposeApi). The handlers are the copy-the-files layout's own (convex/factory/api.ts).
import { mutation, query } from "./_generated/server";
import * as api from "../convex/factory/api";

// ---- mutations
export const enqueue = mutation(api.enqueue);
export const workerClaim = mutation(api.workerClaim);
export const workerHeartbeat = mutation(api.workerHeartbeat);
export const workerComplete = mutation(api.workerComplete);
export const workerFail = mutation(api.workerFail);
export const workerRelease = mutation(api.workerRelease);
export const workerAppendConversationMessages = mutation(api.workerAppendConversationMessages);
export const workerRegister = mutation(api.workerRegister);
export const workerControlState = mutation(api.workerControlState);
export const fleetSetWorkerStatus = mutation(api.fleetSetWorkerStatus);
export const redrive = mutation(api.redrive);
export const releaseExpired = mutation(api.releaseExpired);
export const upsertAgentProfile = mutation(api.upsertAgentProfile);
export const importSecret = mutation(api.importSecret);
export const acquireReconcileLock = mutation(api.acquireReconcileLock);
export const releaseReconcileLock = mutation(api.releaseReconcileLock);
export const ledgerRecord = mutation(api.ledgerRecord);
export const ledgerUpdate = mutation(api.ledgerUpdate);
export const storeNow = mutation(api.storeNow);
export const pushTemplatePut = mutation(api.pushTemplatePut);
export const pushTemplateDelete = mutation(api.pushTemplateDelete);
export const pushJobPut = mutation(api.pushJobPut);
export const pushJobDelete = mutation(api.pushJobDelete);
export const pushDispatch = mutation(api.pushDispatch);
export const pushDispatchDue = mutation(api.pushDispatchDue);
export const broadcast = mutation(api.broadcast);
export const resealSecret = mutation(api.resealSecret);
export const createAppToken = mutation(api.createAppToken);
export const revokeAppToken = mutation(api.revokeAppToken);
export const ingestTelegramUpdate = mutation(api.ingestTelegramUpdate);
export const setTelegramWebhook = mutation(api.setTelegramWebhook);
export const createPairingCode = mutation(api.createPairingCode);
export const consumePairingCode = mutation(api.consumePairingCode);
export const revokeBinding = mutation(api.revokeBinding);
export const recordReconcile = mutation(api.recordReconcile);
export const createOperatorToken = mutation(api.createOperatorToken);
export const revokeOperatorToken = mutation(api.revokeOperatorToken);
export const createConsoleSession = mutation(api.createConsoleSession);
export const endConsoleSession = mutation(api.endConsoleSession);

// ---- queries
export const workerHydrationBundle = query(api.workerHydrationBundle);
export const fleetDemand = query(api.fleetDemand);
export const listWorkers = query(api.listWorkers);
export const queueStats = query(api.queueStats);
export const queueTotals = query(api.queueTotals);
export const queueReadiness = query(api.queueReadiness);
export const queueSignal = query(api.queueSignal);
export const listDeadLetters = query(api.listDeadLetters);
export const getMessage = query(api.getMessage);
export const getConversation = query(api.getConversation);
export const getAgentProfile = query(api.getAgentProfile);
export const ledgerList = query(api.ledgerList);
export const pushTemplates = query(api.pushTemplates);
export const pushJobs = query(api.pushJobs);
export const pushDispatches = query(api.pushDispatches);
export const pushNextSlot = query(api.pushNextSlot);
export const broadcasts = query(api.broadcasts);
export const resolveSecrets = query(api.resolveSecrets);
export const secretStatus = query(api.secretStatus);
export const sealedSecrets = query(api.sealedSecrets);
export const findAppToken = query(api.findAppToken);
export const listAppTokens = query(api.listAppTokens);
export const getTelegramWebhook = query(api.getTelegramWebhook);
export const findTelegramWebhook = query(api.findTelegramWebhook);
export const getPairingCode = query(api.getPairingCode);
export const resolveBinding = query(api.resolveBinding);
export const listBindings = query(api.listBindings);
export const conversationMessages = query(api.conversationMessages);
export const searchConversations = query(api.searchConversations);
export const conversationRecords = query(api.conversationRecords);
export const settledPage = query(api.settledPage);
export const listAgentProfiles = query(api.listAgentProfiles);
export const listPairingCodes = query(api.listPairingCodes);
export const lastReconcile = query(api.lastReconcile);
export const findOperatorToken = query(api.findOperatorToken);
export const listOperatorTokens = query(api.listOperatorTokens);
export const findConsoleSession = query(api.findConsoleSession);
