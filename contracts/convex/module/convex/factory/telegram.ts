// The Telegram webhook as a Convex HTTP action, so a Convex-only deployment takes Telegram traffic
// without `factory serve`. The same behaviour as ingress/webhook.py and ingress/telegram.py:
//
//   no webhook for the agent → 404; missing or wrong X-Telegram-Bot-Api-Secret-Token → 401; a body
//   over 1 MB → 413; not JSON / not an update → 400 (nothing stored in any of these); otherwise 200:
//   `/start CODE` pairs (the confirmation rides in the response as a Bot API call), a message is
//   enqueued once per update id (bound users go to their agent), anything else is ignored.
//
// The secret token is compared by its SHA-256 (the deployment stores only the hash).
import {
  anyApi,
  type FunctionReference,
  type GenericActionCtx,
  type GenericDataModel,
  type HttpRouter,
  httpActionGeneric,
} from "convex/server";
import { telegramConversationId, telegramExternalId } from "./ingress";

export const MAX_BODY_BYTES = 1_000_000;
export const SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token";
const START = /^\/start(?:@\w+)?(?:\s+(\S+))?\s*$/;
const CODE = /^[A-Za-z0-9_-]{4,128}$/;

export const PAIRING_REPLIES: Record<string, string> = {
  paired: "Paired. Your messages here now go to agent {agent}.",
  unknown: "That pairing code is not valid. Ask for a new one.",
  used: "That pairing code has already been used. Ask for a new one.",
  expired: "That pairing code has expired. Ask for a new one.",
  rate_limited: "Too many pairing attempts. Wait a few minutes, then try again.",
};
export const NOT_PAIRED = "This bot only talks to paired users: send /start followed by your pairing code.";
export const START_HELP = "To talk to an agent here, send /start followed by the pairing code you were given.";

type TgFile = { file_id: string; file_name?: string; mime_type?: string; file_size?: number };
type TgMessage = {
  message_id: number;
  from?: { id: number; is_bot?: boolean };
  chat: { id: number };
  text?: string;
  caption?: string;
  photo?: (TgFile & { width?: number; height?: number })[];
  voice?: TgFile;
  audio?: TgFile;
  video?: TgFile;
  document?: TgFile;
};
export type TgUpdate = { update_id: number; message?: TgMessage; edited_message?: TgMessage };

type Attachment = {
  kind: "photo" | "video" | "audio" | "voice" | "document";
  telegramFileId: string;
  fileName?: string;
  mimeType?: string;
  sizeBytes?: number;
};
export type Meaning =
  | { kind: "ignore"; reason: string; reply?: string; chatId?: number }
  | { kind: "pair"; code: string; userId: string; chatId: number }
  | { kind: "inbound"; userId: string; chatId: number; text: string; messageId: number; edited: boolean; attachments: Attachment[] };

/** A body that is a Telegram update, or the one-line reason it is not. */
export function parseUpdate(text: string): TgUpdate | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return `body: not JSON (${(e as Error).message})`;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) return "body: a Telegram update is a JSON object";
  const u = data as Record<string, unknown>;
  if (typeof u.update_id !== "number" || !Number.isInteger(u.update_id) || u.update_id < 0) {
    return "update_id: Field required (a non-negative integer)";
  }
  for (const key of ["message", "edited_message"]) {
    const m = u[key] as Record<string, unknown> | undefined;
    if (m === undefined) continue;
    const chat = m?.chat as Record<string, unknown> | undefined;
    if (typeof m?.message_id !== "number" || typeof chat?.id !== "number") return `${key}: not a Telegram message`;
  }
  return u as unknown as TgUpdate;
}

function attachmentsOf(m: TgMessage): Attachment[] {
  const found: Attachment[] = [];
  const one = (kind: Attachment["kind"], f: TgFile, mime?: string): Attachment => ({
    kind,
    telegramFileId: f.file_id,
    ...(f.file_name !== undefined ? { fileName: f.file_name } : {}),
    ...((f.mime_type ?? mime) !== undefined ? { mimeType: f.mime_type ?? mime } : {}),
    ...(f.file_size !== undefined ? { sizeBytes: f.file_size } : {}),
  });
  if (m.photo && m.photo.length > 0) {
    const area = (p: { width?: number; height?: number; file_size?: number }) => [(p.width ?? 0) * (p.height ?? 0), p.file_size ?? 0];
    const largest = m.photo.reduce((a, b) => {
      const [x, y] = [area(a), area(b)];
      return x[0]! > y[0]! || (x[0] === y[0] && x[1]! >= y[1]!) ? a : b;
    });
    found.push(one("photo", { ...largest, file_name: undefined }, "image/jpeg"));
  }
  for (const kind of ["video", "audio", "voice", "document"] as const) {
    const f = m[kind];
    if (f !== undefined) found.push(one(kind, f));
  }
  return found;
}

/** What an update means for us: pure, no I/O (the same reading as ingress/telegram.py). */
export function interpret(update: TgUpdate): Meaning {
  const edited = update.message === undefined;
  const m = update.message ?? update.edited_message;
  if (m === undefined) return { kind: "ignore", reason: "not a message" };
  if (m.from === undefined || m.from.is_bot) return { kind: "ignore", reason: "no human sender" };
  const start = START.exec(m.text ?? "");
  if (start !== null && !edited) {
    const code = start[1];
    if (code === undefined || !CODE.test(code)) {
      return { kind: "ignore", reason: "start without a pairing code", reply: START_HELP, chatId: m.chat.id };
    }
    return { kind: "pair", code, userId: String(m.from.id), chatId: m.chat.id };
  }
  const attachments = attachmentsOf(m);
  let text = m.text || m.caption || "";
  if (!text.trim() && attachments.length > 0) text = `[telegram media] ${attachments.map((a) => a.kind).join(" + ")} message`;
  if (!text.trim()) return { kind: "ignore", reason: "no text or media" };
  return { kind: "inbound", userId: String(m.from.id), chatId: m.chat.id, text, messageId: m.message_id, edited, attachments };
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Constant-time equality of two hex digests of the same length. */
function sameDigest(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export type RouteOptions = {
  /** Where the routes live (upstream's default is "/agent-factory"; factory serve's paths have none). */
  pathPrefix?: string;
  /** Refuse (tell to pair) Telegram users without a binding; default: FACTORY_TELEGRAM_REQUIRE_BINDING. */
  requireBindingForTelegram?: boolean;
  /** The agent unbound users talk to; default: FACTORY_TELEGRAM_FALLBACK_AGENT, else the webhook's agent. */
  fallbackAgentKey?: string;
  /** The module file whose internal functions the routes call (default "agentFactoryAdmin"). */
  namespace?: string;
};

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const sendMessage = (chatId: number, text: string) => json({ method: "sendMessage", chat_id: chatId, text });

type Webhook = { agentKey: string; botId: string; secretHash: string };

type Callable<Kind extends "query" | "mutation"> = FunctionReference<Kind, "public" | "internal">;
/** The functions the routes call: a host namespace's (`anyApi.agentFactoryAdmin`) or a component's
 * (`components.agentFactory.lib`, see client/index.ts). */
export type WebhookFunctions = {
  getTelegramWebhook: Callable<"query">;
  findTelegramWebhook: Callable<"query">;
  resolveBinding: Callable<"query">;
  consumePairingCode: Callable<"mutation">;
  ingestTelegramUpdate: Callable<"mutation">;
};

async function accept(
  ctx: GenericActionCtx<GenericDataModel>,
  request: Request,
  webhook: Webhook,
  o: RouteOptions,
  fns: WebhookFunctions,
) {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) return json({ ok: false, error: `body: over ${MAX_BODY_BYTES} bytes` }, 413);
  const body = await request.text();
  if (new TextEncoder().encode(body).length > MAX_BODY_BYTES) {
    return json({ ok: false, error: `body: over ${MAX_BODY_BYTES} bytes` }, 413);
  }
  const update = parseUpdate(body);
  if (typeof update === "string") return json({ ok: false, error: update }, 400);
  const meaning = interpret(update);
  if (meaning.kind === "ignore") {
    return meaning.reply !== undefined && meaning.chatId !== undefined
      ? sendMessage(meaning.chatId, meaning.reply)
      : json({ ok: true, ignored: meaning.reason });
  }
  if (meaning.kind === "pair") {
    const result = (await ctx.runMutation(fns.consumePairingCode, {
      code: meaning.code,
      botId: webhook.botId,
      telegramUserId: meaning.userId,
      telegramChatId: String(meaning.chatId),
    })) as { outcome: string; agentKey?: string };
    return sendMessage(meaning.chatId, PAIRING_REPLIES[result.outcome]!.replace("{agent}", result.agentKey ?? ""));
  }
  const binding = (await ctx.runQuery(fns.resolveBinding, { botId: webhook.botId, telegramUserId: meaning.userId })) as {
    agentKey: string;
    conversationId: string;
  } | null;
  const strict = o.requireBindingForTelegram ?? process.env.FACTORY_TELEGRAM_REQUIRE_BINDING === "true";
  if (binding === null && strict) return sendMessage(meaning.chatId, NOT_PAIRED);
  const fallback = o.fallbackAgentKey ?? (process.env.FACTORY_TELEGRAM_FALLBACK_AGENT || undefined);
  const agentKey = binding?.agentKey ?? fallback ?? webhook.agentKey;
  const metadata: Record<string, string> = {
    telegramBotId: webhook.botId,
    telegramChatId: String(meaning.chatId),
    telegramUserId: meaning.userId,
    telegramMessageId: String(meaning.messageId),
    telegramUpdateId: String(update.update_id),
    ...(meaning.edited ? { telegramEdited: "true" } : {}),
    ...(meaning.attachments.length ? { telegramMediaType: meaning.attachments.map((a) => a.kind).join("+") } : {}),
  };
  const request_ = {
    conversationId: binding?.conversationId ?? telegramConversationId(webhook.botId, String(meaning.chatId)),
    agentKey,
    payload: {
      provider: "telegram",
      providerUserId: meaning.userId,
      messageText: meaning.text,
      externalMessageId: telegramExternalId(update.update_id),
      metadata,
      ...(meaning.attachments.length ? { attachments: meaning.attachments } : {}),
    },
  };
  try {
    const result = await ctx.runMutation(fns.ingestTelegramUpdate, { botId: webhook.botId, updateId: update.update_id, request: request_ });
    return json({ ok: true, ...(result as object) });
  } catch (error) {
    const data = (error as { data?: { code?: string } }).data;
    if (data?.code !== undefined) return json({ ok: false, error: data.code }); // redelivery cannot fix it
    throw error; // anything else: a non-2xx answer, and Telegram redelivers later
  }
}

/** Mount the webhook routes on a host's router (upstream's `registerRoutes`):
 * `POST {prefix}/telegram/webhook/{agentKey}` and upstream's `POST {prefix}/telegram/webhook`. */
export function registerRoutes(http: HttpRouter, options: RouteOptions = {}): void {
  mountWebhookRoutes(http, () => anyApi[options.namespace ?? "agentFactoryAdmin"]! as unknown as WebhookFunctions, options);
}

/** The routes of `registerRoutes`, calling the functions `fns()` names (a namespace or a component). */
export function mountWebhookRoutes(http: HttpRouter, fns: () => WebhookFunctions, options: RouteOptions = {}): void {
  const prefix = (options.pathPrefix ?? "").replace(/\/+$/, "");
  http.route({
    pathPrefix: `${prefix}/telegram/webhook/`,
    method: "POST",
    handler: httpActionGeneric(async (ctx, request) => {
      const agentKey = decodeURIComponent(new URL(request.url).pathname.split("/").pop() ?? "");
      const webhook = (await ctx.runQuery(fns().getTelegramWebhook, { agentKey })) as Webhook | null;
      if (webhook === null) return json({ ok: false, error: `agent '${agentKey}' has no Telegram webhook configured` }, 404);
      const presented = request.headers.get(SECRET_HEADER);
      if (!presented || !sameDigest(await sha256Hex(presented), webhook.secretHash)) {
        return json({ ok: false, error: "secret token missing or wrong" }, 401);
      }
      return await accept(ctx, request, webhook, options, fns());
    }),
  });
  http.route({
    path: `${prefix}/telegram/webhook`,
    method: "POST",
    handler: httpActionGeneric(async (ctx, request) => {
      const presented = request.headers.get(SECRET_HEADER);
      const webhook = presented
        ? ((await ctx.runQuery(fns().findTelegramWebhook, { secretHash: await sha256Hex(presented) })) as Webhook | null)
        : null;
      if (webhook === null) return json({ ok: false, error: "secret token missing or wrong" }, 401);
      return await accept(ctx, request, webhook, options, fns());
    }),
  });
}
