// The contract's function names by kind: one list that the Convex component (component/lib.ts)
// and its host wrappers (client/index.ts: exposeApi) share, so a host exposes exactly what the
// namespace files (agentFactory.ts, agentFactoryAdmin.ts) register. catalog.test.ts keeps the
// three in step.
export const MUTATIONS = [
  "enqueue", "workerClaim", "workerHeartbeat", "workerComplete", "workerFail", "workerRelease",
  "workerAppendConversationMessages", "workerRegister", "workerControlState", "fleetSetWorkerStatus",
  "redrive", "releaseExpired", "upsertAgentProfile", "importSecret", "acquireReconcileLock",
  "releaseReconcileLock", "ledgerRecord", "ledgerUpdate", "storeNow", "pushTemplatePut",
  "pushTemplateDelete", "pushJobPut", "pushJobDelete", "pushDispatch", "pushDispatchDue", "broadcast",
  "resealSecret", "createAppToken", "revokeAppToken", "ingestTelegramUpdate", "setTelegramWebhook",
  "createPairingCode", "consumePairingCode", "revokeBinding", "recordReconcile", "createOperatorToken",
  "revokeOperatorToken", "createConsoleSession", "endConsoleSession", "snapshotPrepare", "snapshotFinalize",
  "snapshotFail", "snapshotPrune", "accountPut", "accountToken", "runtimeAgentPut", "taskPut", "notificationPost",
  "runtimeMarkDelivered", "runtimeUpsertHeartbeat", "runtimeCreateFromAgent", "runtimeUpdateStatus",
] as const;

export const QUERIES = [
  "workerHydrationBundle", "fleetDemand", "listWorkers", "queueStats", "queueTotals", "queueReadiness", "queueSignal",
  "fleetSignal", "listDeadLetters", "getMessage", "getConversation", "getAgentProfile", "ledgerList",
  "pushTemplates", "pushJobs", "pushDispatches", "pushNextSlot", "broadcasts", "resolveSecrets", "secretStatus",
  "sealedSecrets", "findAppToken", "listAppTokens", "getTelegramWebhook", "findTelegramWebhook",
  "getPairingCode", "resolveBinding", "listBindings", "conversationMessages", "searchConversations",
  "conversationRecords", "settledPage", "listAgentProfiles", "listPairingCodes", "lastReconcile",
  "findOperatorToken", "listOperatorTokens", "findConsoleSession", "snapshotBoot", "snapshotLatest", "snapshotList",
  "accounts", "accountView", "accountOpen", "runtimeAgents", "runtimeUndelivered", "runtimeForDelivery",
] as const;

export type MutationName = (typeof MUTATIONS)[number];
export type QueryName = (typeof QUERIES)[number];
export type FunctionName = MutationName | QueryName;
