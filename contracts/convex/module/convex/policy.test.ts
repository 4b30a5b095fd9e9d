import { describe, expect, test } from "vitest";
import { backoffMs, claimRank, DEFAULT_POLICY, leaseIsLive, newToken, outOfAttempts, truncate } from "./factory/policy";

describe("rules", () => {
  test("a lease is live strictly before its expiry", () => {
    expect(leaseIsLive(1_000, 999)).toBe(true);
    expect(leaseIsLive(1_000, 1_000)).toBe(false);
    expect(leaseIsLive(undefined, 0)).toBe(false);
  });

  test("the delivery numbered maxAttempts is the last", () => {
    expect(outOfAttempts(4, 5)).toBe(false);
    expect(outOfAttempts(5, 5)).toBe(true);
  });

  test("backoff doubles from one second, jitter only adds, and the cap holds after jitter", () => {
    const none = () => 0;
    const most = () => 0.999999;
    expect([1, 2, 3, 4].map((a) => backoffMs(a, none))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(backoffMs(0, none)).toBe(1_000);
    expect(backoffMs(1, most)).toBe(1_099);
    expect(backoffMs(8, most)).toBe(120_000); // 128 s bounded to 120 s; jitter cannot exceed the cap
    expect(backoffMs(30, none, { ...DEFAULT_POLICY, backoffCapMs: 5_000 })).toBe(5_000);
  });

  test("claim rank turns priority descending into an ascending index key", () => {
    expect(claimRank(100)).toBeLessThan(claimRank(50));
    expect(claimRank(0)).toBe(100);
  });

  test("errors are truncated by code points", () => {
    expect(truncate("é".repeat(5), 3)).toBe("ééé");
    expect(truncate("😀😀", 1)).toBe("😀");
    expect(truncate("short")).toBe("short");
  });

  test("tokens carry 128 random bits", () => {
    const tokens = new Set(Array.from({ length: 100 }, newToken));
    expect(tokens.size).toBe(100);
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});
