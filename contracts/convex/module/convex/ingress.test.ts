import { describe, expect, test } from "vitest";
import { sha256Hex } from "./factory/telegram";
import { api, setup } from "./test.setup";

const SECRET = "a-webhook-secret-token-of-enough-length";
const post = (h: ReturnType<typeof setup>, path: string, body: unknown, secret: string | null = SECRET) =>
  h.t.fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(secret !== null ? { "X-Telegram-Bot-Api-Secret-Token": secret } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
const update = (id: number, text: string, user = 42, extra: Record<string, unknown> = {}) => ({
  update_id: id,
  message: { message_id: id, from: { id: user }, chat: { id: user }, text, ...extra },
});

async function configured(h: ReturnType<typeof setup>) {
  await h.t.mutation(api.setTelegramWebhook, {
    webhook: { agentKey: "default", botId: "9001", secretHash: await sha256Hex(SECRET) },
  });
}

describe("the Telegram webhook route", () => {
  test("enqueues once per update id and refuses a wrong secret with nothing stored", async () => {
    const h = setup();
    await configured(h);
    expect((await post(h, "/telegram/webhook/default", update(1, "hi"), "wrong")).status).toBe(401);
    expect((await post(h, "/telegram/webhook/default", update(1, "hi"), null)).status).toBe(401);
    expect((await post(h, "/telegram/webhook/nobody", update(1, "hi"))).status).toBe(404);
    const first = await (await post(h, "/telegram/webhook/default", update(1, "hi"))).json();
    const again = await (await post(h, "/agent-factory/telegram/webhook", update(1, "hi"))).json();
    expect(first).toMatchObject({ ok: true, duplicate: false });
    expect(again).toEqual({ ok: true, duplicate: true, messageId: first.messageId });
    const messages = await h.t.query(api.conversationMessages, { conversationId: "telegram:9001:42" });
    expect(messages).toMatchObject([{ messageId: first.messageId, status: "queued", text: "hi" }]);
  });

  test("malformed and oversized bodies are refused", async () => {
    const h = setup();
    await configured(h);
    expect((await post(h, "/telegram/webhook/default", "{nope")).status).toBe(400);
    expect((await post(h, "/telegram/webhook/default", { message: {} })).status).toBe(400);
    expect((await post(h, "/telegram/webhook/default", update(2, "x".repeat(1_100_000)))).status).toBe(413);
    expect(await h.t.query(api.conversationMessages, { conversationId: "telegram:9001:42" })).toEqual([]);
  });

  test("/start CODE pairs, answers in the response, and routes the user's next message", async () => {
    const h = setup();
    await configured(h);
    await h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "alpha" } });
    await h.t.mutation(api.createPairingCode, { code: "abcd2345", agentKey: "alpha" });
    const paired = await (await post(h, "/telegram/webhook/default", update(3, "/start ABCD2345", 7))).json();
    expect(paired).toEqual({ method: "sendMessage", chat_id: 7, text: "Paired. Your messages here now go to agent alpha." });
    expect(await h.t.query(api.getPairingCode, { code: "ABCD2345" })).toMatchObject({ status: "used", telegramUserId: "7" });
    const binding = await h.t.query(api.resolveBinding, { botId: "9001", telegramUserId: "7" });
    expect(binding).toMatchObject({ agentKey: "alpha", status: "active", source: "telegram_pairing" });
    const sent = await (await post(h, "/telegram/webhook/default", update(4, "hello alpha", 7))).json();
    const view = await h.t.query(api.getMessage, { messageId: sent.messageId });
    expect(view).toMatchObject({ agentKey: "alpha", conversationId: binding.conversationId });
    const reuse = await (await post(h, "/telegram/webhook/default", update(5, "/start ABCD2345", 8))).json();
    expect(reuse.text).toContain("already been used");
  });

  test("failed pairing attempts are rate limited and codes expire", async () => {
    const h = setup();
    await h.t.mutation(api.createPairingCode, { code: "REAL2345", agentKey: "default", ttlMs: 60_000 });
    const attempt = (code: string) =>
      h.t.mutation(api.consumePairingCode, { code, botId: "9001", telegramUserId: "5", telegramChatId: "5" });
    for (let i = 0; i < 5; i++) expect(await attempt(`GUESS${i}`)).toEqual({ outcome: "unknown" });
    expect(await attempt("REAL2345")).toEqual({ outcome: "rate_limited" });
    h.advance(10 * 60_000);
    expect(await attempt("REAL2345")).toEqual({ outcome: "expired" });
  });

  test("media become attachments; app tokens and secrets keep hashes and ciphertext only", async () => {
    const h = setup();
    await configured(h);
    const photo = update(6, "", 42, { text: undefined, caption: "look", photo: [{ file_id: "s", width: 1, height: 1 }, { file_id: "L", width: 9, height: 9 }] });
    const sent = await (await post(h, "/telegram/webhook/default", photo)).json();
    const view = await h.t.query(api.getMessage, { messageId: sent.messageId });
    expect(view.payload.attachments).toEqual([{ kind: "photo", telegramFileId: "L", mimeType: "image/jpeg" }]);
    await h.t.mutation(api.createAppToken, { tokenId: "t1", name: "shop", tokenHash: "h1", createdAt: 1 });
    expect(await h.t.query(api.findAppToken, { tokenHash: "h1" })).toMatchObject({ name: "shop" });
    expect(await h.t.mutation(api.revokeAppToken, { tokenId: "t1" })).toBe(true);
    expect(await h.t.query(api.findAppToken, { tokenHash: "h1" })).toBeNull();
    await h.t.mutation(api.importSecret, { secretRef: "x", value: "plain-legacy" });
    expect(await h.t.query(api.secretStatus, {})).toEqual([{ secretRef: "x", version: 1, updatedAt: expect.any(Number) }]);
    expect(await h.t.mutation(api.resealSecret, { secretRef: "x", version: 1, value: "v1.sealed", keyId: "k2" })).toBe(true);
    expect(await h.t.mutation(api.resealSecret, { secretRef: "x", version: 1, value: "v1.again", keyId: "k3" })).toBe(false);
    expect(await h.t.query(api.resolveSecrets, { refs: ["x"] })).toEqual([{ secretRef: "x", value: "v1.sealed", keyId: "k2" }]);
  });
});
