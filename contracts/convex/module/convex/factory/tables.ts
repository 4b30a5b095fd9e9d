// Tables of the factory queue contract. Every table name starts with "factory" so the module
// can live next to an application's own tables: spread `factoryTables` into its schema.
//
// Why conversations carry their head: a claim must find, across all conversations, the best
// *due head* without a scan window. Each conversation keeps its head (the processing message,
// else the earliest queued one) denormalised next to two indexes, so a claim reads one index
// entry per priority in use instead of the message table (see queue.ts).
import { defineTable } from "convex/server";
import { v } from "convex/values";
import {
  agentProfile,
  dispatchStatus,
  headStatus,
  historyRole,
  launchState,
  machineRef,
  messageStatus,
  operatorRole,
  pairingStatus,
  payload,
  pushJob,
  pushTemplate,
  snapshotReason,
  snapshotStatus,
  reconcileRecord,
  runtimeStatus,
  workerStatus,
} from "./validators";

const counts = v.object({
  queued: v.number(),
  processing: v.number(),
  done: v.number(),
  deadLetter: v.number(),
});

export const factoryTables = {
  factoryMessages: defineTable({
    conversationId: v.string(),
    agentKey: v.string(),
    payload,
    externalMessageId: v.optional(v.string()),
    status: messageStatus,
    priority: v.number(),
    scheduledFor: v.number(), // next delivery time (moves on retry)
    arrivalAt: v.number(), // max(first scheduledFor, enqueue time): the FIFO key with seq
    enqueuedAt: v.number(),
    seq: v.number(), // enqueue order, from the "seq" counter
    attempts: v.number(), // counted at claim
    maxAttempts: v.number(),
    leaseId: v.optional(v.string()), // kept after settling, so a replayed call is recognised
    leaseExpiresAt: v.optional(v.number()),
    claimedBy: v.optional(v.string()),
    // The last lease that expired rather than ended (taken over by a claim or swept): its worker
    // may still give it back late, when the store answers again, and so gets its attempt back.
    supersededLeaseId: v.optional(v.string()),
    lastError: v.optional(v.string()),
    finishedAt: v.optional(v.number()),
    // The message a complete of this one claimed next for the same worker: a replayed complete
    // hands that job back instead of claiming another.
    chainedTo: v.optional(v.id("factoryMessages")),
  })
    .index("by_conversation_status", ["conversationId", "status", "arrivalAt", "seq"])
    .index("by_dedupe", ["conversationId", "externalMessageId"])
    .index("by_status_finished", ["status", "finishedAt", "seq"]),

  factoryConversations: defineTable({
    conversationId: v.string(),
    agentKey: v.string(),
    createdAt: v.number(),
    historyCount: v.number(),
    counts, // messages of this conversation by status (operator views without scans)
    headStatus,
    headMessageId: v.optional(v.id("factoryMessages")),
    claimRank: v.optional(v.number()), // 100 - priority: indexes only sort ascending
    headScheduledFor: v.optional(v.number()),
    headSeq: v.optional(v.number()),
    headAttempts: v.optional(v.number()),
    availableAt: v.optional(v.number()), // queued head: scheduledFor; processing head: lease expiry
    lockWorker: v.optional(v.string()), // the worker holding the processing head
    userId: v.optional(v.string()), // the provider user of its first message (who started it)
    // Keep-warm evidence: when a message last arrived (not one scheduled for later), and the
    // gaps between its latest arrivals, newest first (at most RECENT_GAPS).
    lastArrivalAt: v.optional(v.number()),
    arrivalGaps: v.optional(v.array(v.number())),
  })
    .index("by_conversationId", ["conversationId"])
    .index("by_agent", ["agentKey", "conversationId"])
    .index("by_agent_created", ["agentKey", "createdAt"])
    .index("by_user", ["userId", "createdAt"])
    .index("by_created", ["createdAt"])
    // Claim order within a head status: priority, then claimable longest (availableAt), then seq.
    .index("by_claim", ["headStatus", "claimRank", "availableAt", "headSeq"])
    .index("by_available", ["headStatus", "availableAt"])
    .index("by_last_arrival", ["lastArrivalAt"]),

  factoryHistory: defineTable({
    conversationId: v.string(),
    idx: v.number(),
    role: historyRole,
    content: v.string(),
    at: v.number(),
    sourceMessageId: v.optional(v.string()),
  })
    .index("by_conversation", ["conversationId", "idx"])
    .index("by_source", ["conversationId", "sourceMessageId"]),

  factoryWorkers: defineTable({
    workerId: v.string(),
    provider: v.string(),
    status: workerStatus,
    statusReason: v.optional(v.string()),
    statusSince: v.optional(v.number()),
    machineRef: v.optional(machineRef),
    launchId: v.optional(v.string()),
    capabilities: v.array(v.string()),
    registeredAt: v.number(),
    heartbeatAt: v.number(),
    lastClaimAt: v.optional(v.number()),
    busySince: v.optional(v.number()),
    idleSince: v.optional(v.number()),
    conversationId: v.optional(v.string()), // the conversation it last claimed from
    pinnedConversationId: v.optional(v.string()), // the one it serves (affinity)
  })
    .index("by_workerId", ["workerId"])
    .index("by_registered", ["registeredAt", "workerId"])
    .index("by_status", ["status", "registeredAt", "workerId"])
    .index("by_idleSince", ["idleSince"])
    // Recent exits: the demand snapshot keeps a stopped worker for a while (policy.ts EXITED_VISIBLE_MS).
    .index("by_status_since", ["status", "statusSince"])
    // The workers pinned to a conversation: the claim's hold and the boot bundle.
    .index("by_pinned", ["pinnedConversationId", "status"]),

  factoryAgents: defineTable({
    agentKey: v.string(),
    profile: agentProfile,
    enabled: v.boolean(),
    updatedAt: v.number(),
  }).index("by_agentKey", ["agentKey"]),

  // `value` is ciphertext sealed by the Python side (AES-256-GCM) under the key `keyId` names; the
  // key never reaches the deployment. No keyId: a value stored before encryption, sealed by the
  // next `factory serve` / `factory secrets rotate-key` that has a key.
  factorySecrets: defineTable({
    secretRef: v.string(),
    version: v.number(),
    value: v.string(),
    keyId: v.optional(v.string()),
    active: v.boolean(),
    createdAt: v.number(),
  })
    .index("by_ref_version", ["secretRef", "version"])
    .index("by_ref_active", ["secretRef", "active"]),

  factoryLocks: defineTable({
    name: v.string(),
    holder: v.string(),
    expiresAt: v.number(),
  }).index("by_name", ["name"]),

  factoryLaunches: defineTable({
    launchId: v.string(),
    provider: v.string(),
    requestedAt: v.number(),
    state: launchState,
    machineId: v.optional(v.string()),
    updatedAt: v.optional(v.number()),
    detail: v.optional(v.string()),
    conversationId: v.optional(v.string()), // the conversation the launched worker is pinned to
  })
    .index("by_launchId", ["launchId"])
    .index("by_requested", ["requestedAt", "launchId"])
    .index("by_state", ["state", "requestedAt", "launchId"]),

  // Snapshots of agents' OpenClaw state; the archive is a file in Convex storage.
  factorySnapshots: defineTable({
    workspaceId: v.string(),
    agentKey: v.string(),
    conversationId: v.string(),
    workerId: v.string(),
    reason: snapshotReason,
    status: snapshotStatus,
    formatVersion: v.number(),
    createdAt: v.number(),
    seq: v.number(), // creation order, from the "seq" counter: ties on createdAt break by it
    completedAt: v.optional(v.number()),
    storageId: v.optional(v.id("_storage")),
    sha256: v.optional(v.string()),
    sizeBytes: v.optional(v.number()),
    error: v.optional(v.string()),
  })
    .index("by_conversation", ["workspaceId", "agentKey", "conversationId", "seq"])
    .index("by_conversation_only", ["conversationId", "seq"])
    .index("by_seq", ["seq"])
    .index("by_status_worker", ["status", "workerId"]),
  factoryPushTemplates: defineTable({
    templateId: v.string(),
    template: pushTemplate,
  }).index("by_templateId", ["templateId"]),

  factoryPushJobs: defineTable({
    jobId: v.string(),
    templateId: v.string(),
    job: pushJob,
    enabled: v.boolean(),
    nextRunAt: v.optional(v.number()),
  })
    .index("by_jobId", ["jobId"])
    .index("by_templateId", ["templateId"])
    .index("by_due", ["enabled", "nextRunAt"]),

  factoryPushDispatches: defineTable({
    jobId: v.string(),
    runKey: v.string(), // job:<jobId>:<slotMs> or manual:<jobId>:<ms>: unique per job
    slotAt: v.number(),
    status: dispatchStatus,
    messageId: v.optional(v.string()),
    error: v.optional(v.string()),
    createdAt: v.number(),
  })
    .index("by_job_runKey", ["jobId", "runKey"])
    .index("by_job_created", ["jobId", "createdAt"]),

  factoryBroadcasts: defineTable({
    broadcastId: v.string(),
    requestedBy: v.string(),
    requestedAt: v.number(),
    textSha256: v.string(),
    text: v.string(),
    agents: v.optional(v.array(v.string())),
    status: v.union(v.literal("running"), v.literal("done"), v.literal("failed")),
    cursor: v.optional(v.string()), // where the next batch of recipients starts
  })
    .index("by_broadcastId", ["broadcastId"])
    .index("by_requested", ["requestedAt"]),

  factoryBroadcastRecipients: defineTable({
    broadcastId: v.string(),
    conversationId: v.string(),
    agentKey: v.string(),
    status: dispatchStatus,
    messageId: v.optional(v.string()),
    error: v.optional(v.string()),
  }).index("by_broadcast", ["broadcastId", "conversationId"]),
  // ---- the front door: Telegram update ids seen, webhooks, pairing, bindings, app tokens.
  factoryTelegramUpdates: defineTable({
    botId: v.string(),
    updateId: v.number(),
    messageId: v.optional(v.string()),
    receivedAt: v.number(),
  })
    .index("by_update", ["botId", "updateId"])
    .index("by_received", ["receivedAt"]),

  factoryTelegramWebhooks: defineTable({
    agentKey: v.string(),
    botId: v.string(),
    secretHash: v.string(), // SHA-256 hex of the secret token: the token itself is never stored
    botUsername: v.optional(v.string()),
    url: v.optional(v.string()),
    configuredAt: v.number(),
  })
    .index("by_agentKey", ["agentKey"])
    .index("by_secretHash", ["secretHash"]),

  factoryPairingCodes: defineTable({
    code: v.string(),
    agentKey: v.string(),
    status: pairingStatus,
    createdAt: v.number(),
    expiresAt: v.number(),
    consumerUserId: v.optional(v.string()),
    usedAt: v.optional(v.number()),
    telegramUserId: v.optional(v.string()),
    telegramChatId: v.optional(v.string()),
  })
    .index("by_code", ["code"])
    .index("by_consumer", ["consumerUserId", "agentKey", "status"])
    .index("by_created", ["createdAt"]),

  factoryPairingFailures: defineTable({
    botId: v.string(),
    telegramUserId: v.string(),
    windowStartedAt: v.number(),
    failures: v.number(),
  }).index("by_user", ["botId", "telegramUserId"]),

  factoryBindings: defineTable({
    bindingId: v.string(),
    agentKey: v.string(),
    botId: v.string(),
    telegramUserId: v.string(),
    telegramChatId: v.optional(v.string()),
    consumerUserId: v.optional(v.string()),
    conversationId: v.string(),
    status: v.union(v.literal("active"), v.literal("revoked")),
    source: v.union(v.literal("telegram_pairing"), v.literal("manual"), v.literal("api")),
    boundAt: v.number(),
    revokedAt: v.optional(v.number()),
  })
    .index("by_bindingId", ["bindingId"])
    .index("by_user", ["botId", "telegramUserId", "status"])
    .index("by_conversation", ["conversationId", "status"])
    .index("by_agent", ["agentKey", "status", "boundAt"])
    .index("by_status", ["status", "boundAt"]),

  factoryAppTokens: defineTable({
    tokenId: v.string(),
    name: v.string(),
    tokenHash: v.string(),
    createdAt: v.number(),
    revokedAt: v.optional(v.number()),
  })
    .index("by_tokenId", ["tokenId"])
    .index("by_hash", ["tokenHash"])
    .index("by_created", ["createdAt"]),

  // ---- the operator console: sign-in (hashes only) and the latest reconcile tick.
  factoryOperatorTokens: defineTable({
    tokenId: v.string(),
    name: v.string(),
    role: operatorRole,
    tokenHash: v.string(), // SHA-256 hex of the operator token: the token itself is never stored
    createdAt: v.number(),
    revokedAt: v.optional(v.number()),
  })
    .index("by_tokenId", ["tokenId"])
    .index("by_hash", ["tokenHash"])
    .index("by_created", ["createdAt"]),

  factoryConsoleSessions: defineTable({
    sessionHash: v.string(), // SHA-256 hex of the session id (the cookie)
    operator: v.string(),
    role: operatorRole,
    tokenId: v.optional(v.string()),
    createdAt: v.number(),
    expiresAt: v.number(),
    endedAt: v.optional(v.number()),
  })
    .index("by_hash", ["sessionHash"])
    .index("by_token", ["tokenId"])
    .index("by_expires", ["expiresAt"]),

  factoryReconciles: defineTable({
    slot: v.literal("last"),
    record: reconcileRecord,
  }).index("by_slot", ["slot"]),

  factoryCounters: defineTable({
    name: v.string(),
    value: v.number(),
  }).index("by_name", ["name"]),

  // Mission Control accounts (runtime.ts): the service token is kept as its sha256 only.
  factoryRtAccounts: defineTable({
    accountId: v.string(),
    name: v.string(),
    active: v.boolean(),
    tokenHash: v.optional(v.string()),
    status: runtimeStatus,
    dropletId: v.optional(v.string()),
    ipAddress: v.optional(v.string()),
    lastHealthCheck: v.optional(v.number()),
    version: v.optional(v.string()),
    createdAt: v.number(),
  }).index("by_account", ["accountId"]),

  factoryRtAgents: defineTable({
    agentId: v.string(),
    accountId: v.string(),
    name: v.string(),
    slug: v.string(),
    heartbeatInterval: v.number(),
    openclawAgentId: v.string(),
    workspaceFiles: v.record(v.string(), v.string()),
    heartbeatStatus: v.optional(runtimeStatus),
    lastHeartbeatAt: v.optional(v.number()),
  })
    .index("by_agent", ["agentId"])
    .index("by_account", ["accountId", "slug"]),

  factoryRtTasks: defineTable({
    taskId: v.string(),
    accountId: v.string(),
    title: v.string(),
    status: v.string(),
    createdAt: v.number(),
  })
    .index("by_task", ["taskId"])
    .index("by_account", ["accountId", "taskId"]),

  factoryRtNotifications: defineTable({
    notificationId: v.string(),
    accountId: v.string(),
    agentId: v.string(),
    type: v.string(),
    title: v.string(),
    body: v.string(),
    taskId: v.optional(v.string()),
    createdAt: v.number(),
    deliveredAt: v.optional(v.number()),
  })
    .index("by_notification", ["notificationId"])
    .index("by_account_delivered", ["accountId", "deliveredAt"]),

  factoryRtAgentMessages: defineTable({
    messageId: v.string(),
    accountId: v.string(),
    agentId: v.string(),
    taskId: v.string(),
    content: v.string(),
    createdAt: v.number(),
  })
    .index("by_message", ["messageId"])
    .index("by_account", ["accountId"]),
};

