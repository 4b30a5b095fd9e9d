// The queue's rules as pure functions of their inputs and `now`: the same rules as
// contracts/rules.py, so every binding leases, retries and dead-letters alike.

export const MIN_PRIORITY = 0;
export const MAX_PRIORITY = 100;
export const DEFAULT_PRIORITY = 50;
export const DEFAULT_MAX_ATTEMPTS = 5;
export const MAX_ATTEMPTS_LIMIT = 1000;
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const ERROR_CHARS = 4000;
export const HISTORY_WINDOW = 64;

export type Policy = {
  leaseTtlMs: number;
  backoffBaseMs: number;
  backoffFactor: number;
  backoffCapMs: number;
  jitterRatio: number;
};

export const DEFAULT_POLICY: Policy = {
  leaseTtlMs: 60_000,
  backoffBaseMs: 1_000,
  backoffFactor: 2,
  backoffCapMs: 120_000,
  jitterRatio: 0.1,
};

/** The policy in force: the defaults, with the lease TTL overridable by FACTORY_LEASE_TTL_MS.
 * The lease length is the deployment's alone (the same variable the SQLite store records in its
 * file): a worker paces its heartbeats from the leaseExpiresAt and now it is answered with. */
export function currentPolicy(): Policy {
  const ttl = Number(process.env.FACTORY_LEASE_TTL_MS ?? "");
  return Number.isInteger(ttl) && ttl >= 1_000 ? { ...DEFAULT_POLICY, leaseTtlMs: ttl } : DEFAULT_POLICY;
}

/** A lease is live strictly before its expiry; at the expiry instant it is already dead. */
export function leaseIsLive(leaseExpiresAt: number | undefined, now: number): boolean {
  return leaseExpiresAt !== undefined && now < leaseExpiresAt;
}

/** A worker's recorded heartbeat is rewritten only once it is this old: liveness is judged in
 * tens of seconds, so a busy worker's document is written about once a second, not per call. */
export const HEARTBEAT_REFRESH_MS = 1_000;

export function heartbeatDue(heartbeatAt: number, now: number): boolean {
  return now - heartbeatAt >= HEARTBEAT_REFRESH_MS;
}

/** A worker pinned to a conversation holds it (no unpinned claim takes it: the agent's memory is
 * on its machine) while it is active and was heard from within this long. Silent for longer
 * (suspended, in an outage, dead) it gives the conversation to anyone. contracts/rules.py HOLD_MS. */
export const HOLD_MS = 30_000;

export function holds(status: string, heartbeatAt: number, now: number): boolean {
  return status === "active" && now - heartbeatAt < HOLD_MS;
}

/** A worker that said it exited stays in the demand snapshot, as stopped, for this long: the
 * reconciler parks or destroys its machine at once instead of waiting for the provider to list it
 * stopped. contracts/rules.py EXITED_VISIBLE_MS. */
export const EXITED_VISIBLE_MS = 600_000;

/** Why a worker must stop (undefined: it may carry on): any status but active, with its reason. */
export function stopReason(status: string, reason: string | undefined): string | undefined {
  if (status === "active") return undefined;
  return `status ${status}` + (reason ? `: ${reason}` : "");
}

/** How long an active worker may go without a heartbeat before the views call it stale (as
 * contracts/rules.py stale_after_ms): killed, or its machine lost, without saying so. */
export function staleAfterMs(leaseTtlMs: number): number {
  return Math.max(2 * leaseTtlMs, 60_000);
}

/** Attempts are counted at claim: the delivery numbered maxAttempts is the last one. */
export function outOfAttempts(attempts: number, maxAttempts: number): boolean {
  return attempts >= maxAttempts;
}

/** A released message was not at fault: the attempt its claim counted is given back. */
export function attemptsAfterRelease(attempts: number): number {
  return Math.max(0, attempts - 1);
}

/** Delay before delivery attempt+1: exponential from the base, capped, plus up to
 * jitterRatio of it; the cap holds after the jitter. `random` returns [0, 1). */
export function backoffMs(attempt: number, random: () => number, policy: Policy = DEFAULT_POLICY): number {
  const exponent = Math.max(0, attempt - 1);
  const bounded = Math.min(policy.backoffCapMs, policy.backoffBaseMs * policy.backoffFactor ** exponent);
  const jitter = bounded * policy.jitterRatio * random();
  return Math.trunc(Math.min(policy.backoffCapMs, bounded + jitter));
}

/** Claim order is priority descending; indexes sort ascending, so store 100 - priority. */
export function claimRank(priority: number): number {
  return MAX_PRIORITY - priority;
}

/** Truncate to at most `limit` code points (as Python slicing does). */
export function truncate(text: string, limit: number = ERROR_CHARS): string {
  const points = Array.from(text);
  return points.length <= limit ? text : points.slice(0, limit).join("");
}

/** An unguessable token: a lease id is a fencing token. 128 random bits, base64url. */
export function newToken(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
