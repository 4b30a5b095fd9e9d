import { afterEach, describe, expect, test, vi } from "vitest";
import { api, claim, send, setup } from "./test.setup";

afterEach(() => {
  vi.useRealTimers();
});

const HOUR = 60 * 60 * 1000;

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Buffer.from(digest).toString("hex");
}

/** prepare → store the file (what the upload URL does) → finalize; returns the snapshot id. */
async function snapshot(h: ReturnType<typeof setup>, text: string, conversationId = "c1", workerId = "w1") {
  const { snapshotId, uploadUrl } = (await h.t.mutation(api.snapshotPrepare, {
    workerId,
    workspaceId: "default",
    agentKey: "default",
    conversationId,
    reason: "drain",
  })) as { snapshotId: string; uploadUrl: string };
  expect(uploadUrl).toContain("/api/storage/upload");
  const storageId = await h.t.run(async (ctx) => await ctx.storage.store(new Blob([text])));
  const args = { workerId, snapshotId, storageId, sha256: await sha256(text), sizeBytes: text.length };
  expect(await h.t.mutation(api.snapshotFinalize, { ...args, sizeBytes: text.length + 1 })).toBe(false);
  expect(await h.t.mutation(api.snapshotFinalize, args)).toBe(true);
  return { snapshotId, storageId };
}

describe("snapshots", () => {
  test("boot offers the conversation's agent and newest ready snapshot with a download URL", async () => {
    const h = setup();
    await send(h, "c1", "hello");
    expect(await h.t.query(api.snapshotBoot, { workspaceId: "default", conversationId: "c1" })).toMatchObject({
      agentKey: "default",
      profile: { agentKey: "default" },
    });
    const { snapshotId } = await snapshot(h, "archive");
    const boot = (await h.t.query(api.snapshotBoot, { workspaceId: "default", conversationId: "c1" })) as {
      snapshot: { snapshotId: string; downloadUrl: string; sizeBytes: number };
    };
    expect(boot.snapshot).toMatchObject({ snapshotId, sizeBytes: 7 });
    expect(boot.snapshot.downloadUrl).toContain("/api/storage/");
    expect(await h.t.query(api.snapshotBoot, { workspaceId: "default", conversationId: "nobody" })).toBeNull();
  });

  test("prune expires all but the newest and deletes their files; abandoned uploads fail", async () => {
    const h = setup();
    const first = await snapshot(h, "one");
    h.advance(10);
    await snapshot(h, "two");
    await h.t.mutation(api.snapshotPrepare, {
      workerId: "w2",
      workspaceId: "default",
      agentKey: "default",
      conversationId: "c2",
      reason: "signal",
    });
    h.advance(HOUR + 1);
    expect(await h.t.mutation(api.snapshotPrune, { keep: 1 })).toEqual({ expired: 1, abandoned: 1 });
    expect(await h.t.run(async (ctx) => await ctx.db.system.get(first.storageId))).toBeNull();
    const rows = (await h.t.query(api.snapshotList, {})) as { status: string; conversationId: string }[];
    expect(rows.map((r) => `${r.conversationId}:${r.status}`)).toEqual(["c2:failed", "c1:ready", "c1:expired"]);
  });

  test("a worker pinned to a conversation shows in the demand snapshot, with ready ids in claim order", async () => {
    const h = setup();
    await h.t.mutation(api.workerRegister, { workerId: "w-pin", provider: "local", conversationId: "c-x" });
    await send(h, "c-low", "a", { priority: 10 });
    await send(h, "c-high", "b", { priority: 90 });
    const demand = (await h.t.query(api.fleetDemand, {})) as {
      readyConversationIds: string[];
      workers: { workerId: string; pinned: boolean; conversationId?: string }[];
    };
    expect(demand.readyConversationIds).toEqual(["c-high", "c-low"]);
    expect(demand.workers).toMatchObject([{ workerId: "w-pin", pinned: true, conversationId: "c-x" }]);
  });

  test("profiles refuse workspace files outside the allowed names", async () => {
    const h = setup();
    await expect(
      h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "x", workspaceFiles: { "../secrets": "x" } } }),
    ).rejects.toThrow(/workspaceFiles/);
    await expect(
      h.t.mutation(api.upsertAgentProfile, {
        profile: { agentKey: "x", workspaceFiles: { "skills/agent-bridge/SKILL.md": "x" } },
      }),
    ).rejects.toThrow(/agent-bridge/);
  });

  test("a bridged agent's bundle carries its bridge secrets sealed; others none", async () => {
    const h = setup();
    await h.t.mutation(api.upsertAgentProfile, {
      profile: { agentKey: "default", bridgeConfig: { appKey: "crm", allowedHosts: ["crm.example.com"] } },
    });
    await h.t.mutation(api.upsertAgentProfile, { profile: { agentKey: "plain" } });
    await h.t.mutation(api.importSecret, { secretRef: "agent-bridge.serviceKey.default", value: "sealed-1", keyId: "k" });
    await h.t.mutation(api.importSecret, { secretRef: "agent-bridge.serviceKey", value: "sealed-2", keyId: "k" });
    await h.t.mutation(api.importSecret, { secretRef: "agent-bridge.serviceId", value: "sealed-3", keyId: "k" });
    const bridged = await send(h, "c1", "hi");
    await claim(h);
    const bundle = await h.t.query(api.workerHydrationBundle, { messageId: bridged, workspaceId: "default" });
    // The worker opens them and picks each field (contracts/bridge.py): the module holds no key.
    expect(bundle?.profile.bridgeConfig).toMatchObject({ appKey: "crm", allowedHosts: ["crm.example.com"] });
    expect(bundle?.sealedSecrets.map((s: { secretRef: string }) => s.secretRef)).toEqual([
      "agent-bridge.serviceId",
      "agent-bridge.serviceKey.default",
      "agent-bridge.serviceKey",
    ]);
    const plain = await send(h, "c2", "hi", { agentKey: "plain" });
    await claim(h, "w2");
    const other = await h.t.query(api.workerHydrationBundle, { messageId: plain, workspaceId: "default" });
    expect(other?.sealedSecrets).toEqual([]);
  });
});
