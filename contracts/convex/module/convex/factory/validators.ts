// Argument and document shapes shared by the schema and the functions. They mirror the wire
// models in contracts/models.py (camelCase). Optional keys are omitted, never null.
import { v, type Infer } from "convex/values";

export const attachment = v.object({
  kind: v.union(
    v.literal("photo"),
    v.literal("video"),
    v.literal("audio"),
    v.literal("voice"),
    v.literal("document"),
  ),
  status: v.optional(v.union(v.literal("ready"), v.literal("expired"))),
  storageId: v.optional(v.string()),
  telegramFileId: v.optional(v.string()),
  fileName: v.optional(v.string()),
  mimeType: v.optional(v.string()),
  sizeBytes: v.optional(v.number()),
  expiresAt: v.optional(v.number()),
  downloadUrl: v.optional(v.string()),
});

export const payload = v.object({
  provider: v.string(),
  providerUserId: v.string(),
  messageText: v.string(),
  externalMessageId: v.optional(v.string()),
  rawUpdateJson: v.optional(v.string()),
  metadata: v.optional(v.record(v.string(), v.string())),
  attachments: v.optional(v.array(attachment)),
});
export type Payload = Infer<typeof payload>;

export const messageStatus = v.union(
  v.literal("queued"),
  v.literal("processing"),
  v.literal("done"),
  v.literal("dead_letter"),
);
export type MessageStatus = Infer<typeof messageStatus>;

// A conversation's head: its processing message, else its earliest queued one, else none.
export const headStatus = v.union(v.literal("idle"), v.literal("queued"), v.literal("processing"));

export const workerStatus = v.union(
  v.literal("active"),
  v.literal("draining"),
  v.literal("stopping"),
  v.literal("stopped"),
);
export type WorkerStatus = Infer<typeof workerStatus>;

export const machineRef = v.object({
  machineId: v.string(),
  appName: v.optional(v.string()),
  region: v.optional(v.string()),
});

export const historyRole = v.union(
  v.literal("system"),
  v.literal("user"),
  v.literal("assistant"),
  v.literal("tool"),
);

export const historyMessage = v.object({
  role: historyRole,
  content: v.string(),
  at: v.optional(v.number()),
});

export const bridgeConfig = v.object({
  enabled: v.optional(v.boolean()),
  baseUrl: v.optional(v.string()),
  serviceId: v.optional(v.string()),
  appKey: v.optional(v.string()),
  serviceKeySecretRef: v.optional(v.string()),
  appBaseUrlMapJsonSecretRef: v.optional(v.string()),
  allowedHosts: v.optional(v.array(v.string())),
});
export type BridgeConfigInput = Infer<typeof bridgeConfig>;

export const agentProfile = v.object({
  agentKey: v.string(),
  version: v.optional(v.string()),
  enabled: v.optional(v.boolean()),
  secretsRef: v.optional(v.array(v.string())),
  botIdentity: v.optional(v.string()),
  openclawAgentId: v.optional(v.string()),
  bridgeConfig: v.optional(bridgeConfig),
  // Workspace files written into the agent's OpenClaw workspace at boot (path → text).
  workspaceFiles: v.optional(v.record(v.string(), v.string())),
  // The skills the agent may see; absent: every skill the gateway finds.
  skills: v.optional(v.array(v.string())),
});
export type AgentProfileInput = Infer<typeof agentProfile>;

export const snapshotReason = v.union(v.literal("drain"), v.literal("signal"), v.literal("idle"), v.literal("manual"));
export const snapshotStatus = v.union(
  v.literal("uploading"),
  v.literal("ready"),
  v.literal("failed"),
  v.literal("expired"),
);

export const launchState = v.union(
  v.literal("requested"),
  v.literal("running"),
  v.literal("parked"), // the machine exists, stopped, kept for a fast start (warm pool)
  v.literal("gone"),
  v.literal("failed"),
);
export type LaunchState = Infer<typeof launchState>;

// ---- push schedules and broadcasts (contracts/push.py)

export const schedule = v.object({
  kind: v.union(v.literal("daily"), v.literal("weekly"), v.literal("monthly")),
  at: v.string(),
  tz: v.optional(v.string()),
  weekdays: v.optional(v.array(v.number())),
  day: v.optional(v.union(v.number(), v.literal("last"))),
});

export const pushTemplate = v.object({
  templateId: v.string(),
  agentKey: v.string(),
  text: v.string(),
  title: v.optional(v.string()),
  createdAt: v.optional(v.number()),
  updatedAt: v.optional(v.number()),
});
export type PushTemplate = Infer<typeof pushTemplate>;

export const catchUp = v.union(v.literal("latest"), v.literal("skip"));

export const pushJob = v.object({
  jobId: v.string(),
  templateId: v.string(),
  conversationId: v.optional(v.string()),
  telegramUserId: v.optional(v.string()),
  botId: v.optional(v.string()),
  schedule,
  providerUserId: v.optional(v.string()),
  variables: v.optional(v.record(v.string(), v.string())),
  catchUp: v.optional(catchUp),
  skipAfterS: v.optional(v.number()),
  enabled: v.optional(v.boolean()),
  nextRunAt: v.optional(v.number()),
  lastRunAt: v.optional(v.number()),
  lastRunKey: v.optional(v.string()),
  createdAt: v.optional(v.number()),
  updatedAt: v.optional(v.number()),
});
export type PushJob = Infer<typeof pushJob>;

export const dispatchStatus = v.union(v.literal("enqueued"), v.literal("skipped"), v.literal("failed"));
export const pairingStatus = v.union(v.literal("pending"), v.literal("used"), v.literal("expired"));
export type PairingStatus = Infer<typeof pairingStatus>;

export const telegramWebhook = v.object({
  agentKey: v.string(),
  botId: v.string(),
  secretHash: v.string(),
  botUsername: v.optional(v.string()),
  url: v.optional(v.string()),
  configuredAt: v.optional(v.number()),
});

export const enqueueRequest = v.object({
  conversationId: v.string(),
  agentKey: v.string(),
  payload,
  priority: v.optional(v.number()),
  scheduledFor: v.optional(v.number()),
  maxAttempts: v.optional(v.number()),
});

export const operatorRole = v.union(v.literal("admin"), v.literal("read_only"));

export const reconcileRecord = v.object({
  at: v.number(),
  provider: v.string(),
  dryRun: v.boolean(),
  summary: v.string(),
  desired: v.number(),
  current: v.number(),
  launching: v.number(),
  steps: v.optional(
    v.array(
      v.object({
        action: v.string(),
        target: v.string(),
        reason: v.string(),
        ok: v.optional(v.boolean()),
        detail: v.optional(v.string()),
      }),
    ),
  ),
});
export type ReconcileRecord = Infer<typeof reconcileRecord>;

// Mission Control accounts (runtime.ts).
export const runtimeStatus = v.union(v.literal("online"), v.literal("degraded"), v.literal("offline"));
export type RuntimeStatus = Infer<typeof runtimeStatus>;
