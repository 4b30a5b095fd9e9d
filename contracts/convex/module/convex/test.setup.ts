// Shared set-up for the vitest suite (two dots in the name: the Convex CLI never deploys it).
import { convexTest } from "convex-test";
import { anyApi } from "convex/server";
import { vi } from "vitest";
import schema from "./schema";

// Every module except tests and this file: the shape convex-test expects from import.meta.glob.
export const modules = import.meta.glob(["./**/*.ts", "./**/*.js", "!./**/*.*.ts"]);

export const api = anyApi.agentFactory;
export const admin = anyApi.agentFactoryAdmin;
export const T0 = 1_700_000_000_000;

/** A fresh in-memory deployment with the module's clock frozen at T0 and anonymous callers allowed. */
export function setup(
  env: Record<string, string> = { FACTORY_AUTH: "open" },
  transactionLimits: Record<string, number> | boolean = true,
) {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(T0);
  delete process.env.FACTORY_AUTH;
  delete process.env.FACTORY_AUTH_ISSUER;
  delete process.env.FACTORY_AUTH_SUBJECTS;
  delete process.env.FACTORY_LEASE_TTL_MS;
  Object.assign(process.env, env);
  const t = convexTest({ schema, modules, transactionLimits });
  return {
    t,
    /** Move the module's clock forward. */
    advance: (ms: number) => vi.setSystemTime(Date.now() + ms),
    now: () => Date.now(),
  };
}

export type Harness = ReturnType<typeof setup>;

export function message(text: string, extra: Record<string, unknown> = {}) {
  return { provider: "telegram", providerUserId: "u1", messageText: text, ...extra };
}

/** Enqueue a message to conversation `conv` of the default agent; returns its id. */
export async function send(h: Harness, conv: string, text: string, extra: Record<string, unknown> = {}) {
  const { payload = {}, ...rest } = extra as { payload?: Record<string, unknown> };
  return (await h.t.mutation(api.enqueue, {
    conversationId: conv,
    agentKey: "default",
    payload: message(text, payload),
    ...rest,
  })) as string;
}

export type Claimed = {
  messageId: string;
  conversationId: string;
  agentKey: string;
  leaseId: string;
  leaseExpiresAt: number;
  attempt: number;
  payload: { messageText: string };
  now: number;
};

export async function claim(h: Harness, workerId = "w1", conversationId?: string): Promise<Claimed | null> {
  return (await h.t.mutation(api.workerClaim, { workerId, ...(conversationId ? { conversationId } : {}) })) as Claimed | null;
}

export const leaseOf = (job: Claimed, workerId = "w1") => ({ workerId, messageId: job.messageId, leaseId: job.leaseId });
