import { afterEach, describe, expect, test, vi } from "vitest";
import { admin, api, claim, leaseOf, send, setup, T0 } from "./test.setup";

afterEach(() => {
  vi.useRealTimers();
});

describe("agents and secrets", () => {
  test("the default profile exists until replaced; upserts fill defaults", async () => {
    const h = setup();
    expect(await h.t.query(api.getAgentProfile, { agentKey: "default" })).toEqual({
      agentKey: "default",
      version: "1.0.0",
      enabled: true,
      secretsRef: ["telegram.botToken.default"],
      openclawAgentId: "main",
    });
    expect(await h.t.query(api.getAgentProfile, { agentKey: "nobody" })).toBeNull();
    const stored = await h.t.mutation(api.upsertAgentProfile, {
      profile: { agentKey: "sales", secretsRef: ["telegram.botToken.sales"], bridgeConfig: { baseUrl: "https://x" } },
    });
    expect(stored).toEqual({
      agentKey: "sales",
      version: "1.0.0",
      enabled: true,
      secretsRef: ["telegram.botToken.sales"],
      openclawAgentId: "main",
      bridgeConfig: { baseUrl: "https://x" },
    });
    await h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "default", enabled: false } });
    expect(await h.t.query(api.getAgentProfile, { agentKey: "default" })).toMatchObject({ enabled: false, secretsRef: [] });
  });

  test("an empty secret or ref is refused, as the SQLite store refuses it", async () => {
    const h = setup();
    await expect(h.t.mutation(api.importSecret, { secretRef: "telegram.botToken.default", value: " " })).rejects.toMatchObject({
      data: { code: "INVALID_INPUT", field: "value" },
    });
    await expect(h.t.mutation(api.importSecret, { secretRef: "", value: "x" })).rejects.toMatchObject({
      data: { code: "INVALID_INPUT", field: "secretRef" },
    });
  });

  test("secrets get a new version on every import; hydration carries the active one, still sealed", async () => {
    const h = setup();
    const ref = "telegram.botToken.default";
    expect(await h.t.mutation(api.importSecret, { secretRef: ref, value: "v1.old", keyId: "k1" })).toBe(1);
    expect(await h.t.mutation(api.importSecret, { secretRef: ref, value: "v1.new", keyId: "k1" })).toBe(2);
    const m = await send(h, "c1", "hello");
    expect(await h.t.query(api.workerHydrationBundle, { messageId: m, workspaceId: "default" })).toBeNull(); // not claimed
    await claim(h);
    const bundle = await h.t.query(api.workerHydrationBundle, { messageId: m, workspaceId: "default" });
    expect(bundle).toMatchObject({
      messageId: m,
      conversationId: "c1",
      agentKey: "default",
      payload: { messageText: "hello" },
      profile: { agentKey: "default" },
      history: [],
      sealedSecrets: [{ secretRef: "telegram.botToken.default", value: "v1.new", keyId: "k1" }],
    });
    expect(bundle).not.toHaveProperty("telegramBotToken"); // only the worker, holding the key, opens it
  });
});

describe("history", () => {
  test("appends are idempotent per messageId and the bundle carries the last 64 turns", async () => {
    const h = setup();
    expect(
      await h.t.mutation(api.workerAppendConversationMessages, { conversationId: "nope", messages: [{ role: "user", content: "x" }] }),
    ).toEqual({ updated: false, messageCount: 0 });
    const m = await send(h, "c1", "hi");
    const turns = [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello", at: T0 + 1 },
    ];
    const append = () => h.t.mutation(api.workerAppendConversationMessages, { conversationId: "c1", messages: turns, messageId: m });
    expect(await append()).toEqual({ updated: true, messageCount: 2 });
    expect(await append()).toEqual({ updated: false, messageCount: 2 });
    for (let i = 0; i < 70; i++) {
      await h.t.mutation(api.workerAppendConversationMessages, { conversationId: "c1", messages: [{ role: "user", content: `n${i}` }] });
    }
    const job = (await claim(h))!;
    const bundle = (await h.t.query(api.workerHydrationBundle, { messageId: job.messageId })) as { history: { content: string }[] };
    expect(bundle.history).toHaveLength(64);
    expect(bundle.history.at(-1)!.content).toBe("n69");
    const conv = (await h.t.query(api.getConversation, { conversationId: "c1", historyLimit: 2 })) as Record<string, unknown>;
    expect(conv).toMatchObject({ messageCount: 72, queued: 0, processing: 1, done: 0, deadLetters: 0 });
    expect(conv.history).toEqual([
      { role: "user", content: "n68", at: T0 },
      { role: "user", content: "n69", at: T0 },
    ]);
    await h.t.mutation(api.workerComplete, leaseOf(job));
    expect(await h.t.query(api.getConversation, { conversationId: "c1", historyLimit: 0 })).toMatchObject({ history: [], done: 1 });
  });
});

describe("authorization", () => {
  const enqueue = { conversationId: "c1", agentKey: "default", payload: { provider: "t", providerUserId: "u", messageText: "x" } };

  test("by default a caller needs an identity", async () => {
    const h = setup({});
    await expect(h.t.mutation(api.enqueue, enqueue)).rejects.toMatchObject({ data: { code: "UNAUTHORIZED" } });
    const worker = h.t.withIdentity({ subject: "worker-1", issuer: "https://issuer.example" });
    expect(typeof (await worker.mutation(api.enqueue, enqueue))).toBe("string");
  });

  test("issuer and subject allow-lists narrow identity mode", async () => {
    const h = setup({ FACTORY_AUTH: "identity", FACTORY_AUTH_ISSUER: "https://good", FACTORY_AUTH_SUBJECTS: "w1, w2" });
    const as = (issuer: string, subject: string) => h.t.withIdentity({ issuer, subject });
    await expect(as("https://evil", "w1").mutation(api.storeNow, {})).rejects.toMatchObject({ data: { code: "UNAUTHORIZED" } });
    await expect(as("https://good", "w3").mutation(api.storeNow, {})).rejects.toMatchObject({ data: { code: "UNAUTHORIZED" } });
    expect(await as("https://good", "w2").mutation(api.storeNow, {})).toBe(T0);
  });

  test("admin mode closes the public namespace; the admin namespace stays reachable", async () => {
    const h = setup({ FACTORY_AUTH: "admin" });
    await expect(h.t.withIdentity({ subject: "w" }).mutation(api.enqueue, enqueue)).rejects.toMatchObject({
      data: { code: "UNAUTHORIZED" },
    });
    expect(typeof (await h.t.mutation(admin.enqueue, enqueue))).toBe("string");
    expect(await h.t.query(admin.queueStats, {})).toMatchObject({ queued: 1 });
  });
});
