import { describe, expect, test } from "vitest";
import { sha256Hex } from "./factory/runtime";
import { api, setup } from "./test.setup";

async function account(h: ReturnType<typeof setup>, accountId: string, token: string) {
  await h.t.mutation(api.accountPut, { accountId, name: accountId, active: true });
  await h.t.mutation(api.accountToken, { accountId, tokenHash: await sha256Hex(token) });
  const agent = {
    agentId: `${accountId}-jarvis`, accountId, name: "Jarvis", slug: "jarvis", heartbeatInterval: 15,
    openclawAgentId: "main", workspaceFiles: {},
  };
  await h.t.mutation(api.runtimeAgentPut, agent);
  await h.t.mutation(api.taskPut, { taskId: `${accountId}-t1`, accountId, title: "Ship", status: "inbox" });
  await h.t.mutation(api.notificationPost, {
    notificationId: `${accountId}-n1`, accountId, agentId: agent.agentId, type: "mention", title: "Hi", body: "b",
    taskId: `${accountId}-t1`,
  });
}

describe("Mission Control accounts", () => {
  test("a service token opens its own account only, and is never echoed", async () => {
    const h = setup();
    await account(h, "acme", "fst_a");
    await account(h, "globex", "fst_b");
    expect(await h.t.query(api.accountOpen, { accountId: "acme", serviceToken: "fst_a" })).toBe(true);
    await expect(h.t.query(api.runtimeAgents, { accountId: "globex", serviceToken: "fst_a" })).rejects.toThrow(
      /ACCESS_REFUSED|service token was refused/,
    );
    const bound = { accountId: "acme", serviceToken: "fst_a" };
    expect(await h.t.query(api.runtimeForDelivery, { ...bound, notificationId: "globex-n1" })).toBeNull();
    expect(await h.t.mutation(api.runtimeMarkDelivered, { ...bound, notificationId: "globex-n1" })).toBe(false);
    const undelivered = await h.t.query(api.runtimeUndelivered, bound);
    expect(undelivered.map((n: { notificationId: string }) => n.notificationId)).toEqual(["acme-n1"]);
  });

  test("completing a notification's message delivers it and posts the reply on its task, once", async () => {
    const h = setup();
    await account(h, "acme", "fst_a");
    await h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "acme.jarvis" } });
    const payload = {
      provider: "runtime", providerUserId: "acme-jarvis", messageText: "## Notification",
      externalMessageId: "acme-n1", metadata: { notificationId: "acme-n1" },
    };
    const messageId = await h.t.mutation(api.enqueue, { conversationId: "agent:jarvis:acme", agentKey: "acme.jarvis", payload });
    await h.t.mutation(api.workerRegister, { workerId: "w1", provider: "local" });
    const job = (await h.t.mutation(api.workerClaim, { workerId: "w1" })) as { messageId: string; leaseId: string };
    expect(job.messageId).toBe(messageId);
    const history = [
      { role: "user", content: "## Notification" },
      { role: "assistant", content: "On it" },
    ];
    const lease = { workerId: "w1", messageId, leaseId: job.leaseId };
    expect(await h.t.mutation(api.workerComplete, { ...lease, history })).toMatchObject({ ok: true });
    expect(await h.t.mutation(api.workerComplete, { ...lease, history })).toMatchObject({ ok: true });
    const view = await h.t.query(api.accountView, { accountId: "acme" });
    expect(view.notifications[0].deliveredAt).toBeDefined();
    expect(view.messages.map((m: { content: string }) => m.content)).toEqual(["On it"]);
  });
});
