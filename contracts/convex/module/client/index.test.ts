// The component as a host installs it: the example app (example/convex: app.use(factory),
// exposeApi in agentFactory.ts, registerRoutes in http.ts) runs against the component's own
// functions and tables, registered with convex-test's registerComponent.
import { convexTest } from "convex-test";
import { anyApi } from "convex/server";
import { afterEach, describe, expect, test, vi } from "vitest";
import * as lib from "../component/lib";
import componentSchema from "../component/schema";
import * as adminNamespace from "../convex/agentFactoryAdmin";
import * as publicNamespace from "../convex/agentFactory";
import { MUTATIONS, QUERIES } from "../convex/factory/catalog";
import { sha256Hex } from "../convex/factory/telegram";
import * as hostNamespace from "../example/convex/agentFactory";

const componentModules = import.meta.glob(["../component/**/*.ts", "!../component/**/*.*.ts"]);
const hostModules = import.meta.glob(["../example/convex/**/*.ts", "../example/convex/**/*.js", "!../example/convex/**/*.*.ts"]);

const api = anyApi.agentFactory;
const T0 = 1_700_000_000_000;

function host(env: Record<string, string> = { FACTORY_AUTH: "open" }) {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(T0);
  delete process.env.FACTORY_AUTH;
  Object.assign(process.env, env);
  const t = convexTest({ modules: hostModules });
  t.registerComponent("agentFactory", componentSchema, componentModules);
  return t;
}

afterEach(() => {
  vi.useRealTimers();
  delete process.env.FACTORY_AUTH;
});

const kinds = (module: Record<string, unknown>) => {
  const found: Record<string, string> = {};
  for (const [name, fn] of Object.entries(module)) {
    const f = fn as { isMutation?: boolean; isQuery?: boolean; isPublic?: boolean; isInternal?: boolean };
    if (f.isMutation) found[name] = f.isPublic ? "mutation" : "internalMutation";
    if (f.isQuery) found[name] = f.isPublic ? "query" : "internalQuery";
  }
  return found;
};

describe("one catalog for every way in", () => {
  test("the component, the host wrappers and both namespaces register the same functions", () => {
    const expected = Object.fromEntries([...MUTATIONS.map((n) => [n, "mutation"]), ...QUERIES.map((n) => [n, "query"])]);
    const internal = Object.fromEntries(Object.entries(expected).map(([n, k]) => [n, k === "mutation" ? "internalMutation" : "internalQuery"]));
    expect(kinds(publicNamespace)).toEqual(expected);
    expect(kinds(adminNamespace)).toEqual(internal);
    expect(kinds(lib)).toEqual(expected); // public inside the component: the host reaches them
    expect(kinds(hostNamespace)).toEqual(expected);
  });
});

describe("exposeApi: the host's agentFactory:* functions call the component", () => {
  test("a message goes through enqueue, claim, hydrate, complete; the rows live in the component", async () => {
    const t = host();
    const messageId = await t.mutation(api.enqueue, {
      conversationId: "c1",
      agentKey: "default",
      payload: { provider: "telegram", providerUserId: "u1", messageText: "hello" },
    });
    await t.mutation(api.workerRegister, { workerId: "w1", provider: "local" });
    const job = (await t.mutation(api.workerClaim, { workerId: "w1" })) as { messageId: string; leaseId: string; attempt: number };
    expect(job).toMatchObject({ messageId, conversationId: "c1", agentKey: "default", attempt: 1, payload: { messageText: "hello" } });
    const bundle = await t.query(api.workerHydrationBundle, { messageId });
    expect(bundle).toMatchObject({ profile: { agentKey: "default" } });
    const stale = { workerId: "w1", messageId, leaseId: "not-the-lease" };
    expect(await t.mutation(api.workerHeartbeat, stale)).toMatchObject({ ok: false, refused: "lease_lost" });
    expect(await t.mutation(api.workerComplete, { workerId: "w1", messageId, leaseId: job.leaseId })).toMatchObject({ ok: true });
    expect(await t.query(api.getMessage, { messageId })).toMatchObject({ status: "done", attempts: 1 });
    // The host's own database holds no factory rows: the state is the component's.
    expect(await t.run(async (ctx) => await ctx.db.query("factoryMessages" as never).collect())).toEqual([]);
  });

  test("the component's errors reach the host's caller with their data", async () => {
    const t = host();
    const bad = { conversationId: " ", agentKey: "default", payload: { provider: "t", providerUserId: "u", messageText: "x" } };
    await expect(t.mutation(api.enqueue, bad)).rejects.toMatchObject({ data: { code: "INVALID_INPUT", field: "conversationId" } });
    const ghost = { ...bad, conversationId: "c", agentKey: "ghost" };
    await expect(t.mutation(api.enqueue, ghost)).rejects.toMatchObject({ data: { code: "AGENT_UNAVAILABLE", agentKey: "ghost" } });
  });

  test("who may call is the host's decision (FACTORY_AUTH by default)", async () => {
    const t = host({ FACTORY_AUTH: "identity" });
    await expect(t.query(api.queueStats, {})).rejects.toMatchObject({ data: { code: "UNAUTHORIZED" } });
    const signedIn = t.withIdentity({ subject: "worker-1" });
    expect(await signedIn.query(api.queueStats, {})).toMatchObject({});
  });
});

describe("registerRoutes: the Telegram webhook on the host's router", () => {
  const SECRET = "a-webhook-secret-token-of-enough-length";
  const post = (t: ReturnType<typeof host>, path: string, body: unknown, secret = SECRET) =>
    t.fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret },
      body: JSON.stringify(body),
    });
  const update = (id: number, text: string) => ({ update_id: id, message: { message_id: id, from: { id: 42 }, chat: { id: 42 }, text } });

  test("enqueues into the component once per update id; a wrong secret stores nothing", async () => {
    const t = host();
    await t.mutation(api.setTelegramWebhook, { webhook: { agentKey: "default", botId: "9001", secretHash: await sha256Hex(SECRET) } });
    expect((await post(t, "/agent-factory/telegram/webhook/default", update(1, "hi"), "wrong")).status).toBe(401);
    const first = await (await post(t, "/agent-factory/telegram/webhook/default", update(1, "hi"))).json();
    const again = await (await post(t, "/agent-factory/telegram/webhook", update(1, "hi"))).json();
    expect(first).toMatchObject({ ok: true, duplicate: false });
    expect(again).toEqual({ ok: true, duplicate: true, messageId: first.messageId });
    expect(await t.query(api.conversationMessages, { conversationId: "telegram:9001:42" })).toMatchObject([
      { messageId: first.messageId, status: "queued", text: "hi" },
    ]);
  });

  test("/start CODE pairs through the component", async () => {
    const t = host();
    await t.mutation(api.setTelegramWebhook, { webhook: { agentKey: "default", botId: "9001", secretHash: await sha256Hex(SECRET) } });
    await t.mutation(api.upsertAgentProfile, { profile: { agentKey: "alpha" } });
    await t.mutation(api.createPairingCode, { code: "abcd2345", agentKey: "alpha" });
    const paired = await (await post(t, "/agent-factory/telegram/webhook/default", update(5, "/start abcd2345"))).json();
    expect(paired).toMatchObject({ method: "sendMessage", chat_id: 42 });
    expect(await t.query(api.resolveBinding, { botId: "9001", telegramUserId: "42" })).toMatchObject({ agentKey: "alpha" });
  });
});
