// Secrets (ciphertext and key ids: the module never holds a key or a plaintext) and app tokens
// (SHA-256 hashes only). Sealing and opening happen in Python (contracts/secrets.py).
import type { Doc } from "../_generated/dataModel";
import type { DatabaseReader, DatabaseWriter } from "../_generated/server";
import { nonEmpty } from "./validate";

type SecretRow = Doc<"factorySecrets">;
export type SealedSecret = { secretRef: string; value: string; keyId?: string };

const sealed = (r: SecretRow): SealedSecret => ({
  secretRef: r.secretRef,
  value: r.value,
  ...(r.keyId !== undefined ? { keyId: r.keyId } : {}),
});

/** Store a new active version; earlier versions stay for audit but stop resolving. */
export async function importSecret(
  db: DatabaseWriter,
  secretRef: string,
  value: string,
  keyId: string | undefined,
  now: number,
): Promise<number> {
  nonEmpty("secretRef", secretRef);
  nonEmpty("value", value); // sealed text is never blank; a blank one is a caller's mistake
  const latest = await db
    .query("factorySecrets")
    .withIndex("by_ref_version", (q) => q.eq("secretRef", secretRef))
    .order("desc")
    .first();
  const active = await db
    .query("factorySecrets")
    .withIndex("by_ref_active", (q) => q.eq("secretRef", secretRef).eq("active", true))
    .collect(); // at most one row: only this function activates a version
  for (const row of active) await db.patch(row._id, { active: false });
  const version = (latest?.version ?? 0) + 1;
  await db.insert("factorySecrets", { secretRef, version, value, keyId, active: true, createdAt: now });
  return version;
}

/** The active versions of `refs` that exist, still sealed. */
export async function resolveSecrets(db: DatabaseReader, refs: string[]): Promise<SealedSecret[]> {
  const out: SealedSecret[] = [];
  for (const ref of new Set(refs)) {
    const row = await db
      .query("factorySecrets")
      .withIndex("by_ref_active", (q) => q.eq("secretRef", ref).eq("active", true))
      .first();
    if (row !== null) out.push(sealed(row));
  }
  return out;
}

/** Name, version, updated-at and key id of every active secret; never a value. */
export async function secretStatus(db: DatabaseReader) {
  const rows = await db.query("factorySecrets").take(5000);
  return rows
    .filter((r) => r.active)
    .sort((a, b) => a.secretRef.localeCompare(b.secretRef))
    .map((r) => ({
      secretRef: r.secretRef,
      version: r.version,
      updatedAt: r.createdAt,
      ...(r.keyId !== undefined ? { keyId: r.keyId } : {}),
    }));
}

/** Every stored version as kept, for re-sealing under a new key (at most 5,000 rows). */
export async function sealedSecrets(db: DatabaseReader) {
  const rows = await db.query("factorySecrets").take(5000);
  return rows.map((r) => ({ ...sealed(r), version: r.version }));
}

/** Swap one version's ciphertext, only if it still carries `expectKeyId` (none: plain text). */
export async function resealSecret(
  db: DatabaseWriter,
  a: { secretRef: string; version: number; expectKeyId?: string; value: string; keyId: string },
): Promise<boolean> {
  const row = await db
    .query("factorySecrets")
    .withIndex("by_ref_version", (q) => q.eq("secretRef", a.secretRef).eq("version", a.version))
    .unique();
  if (row === null || row.keyId !== a.expectKeyId) return false;
  await db.patch(row._id, { value: a.value, keyId: a.keyId });
  return true;
}

// --------------------------------------------------------------------------- app tokens

type TokenRow = Doc<"factoryAppTokens">;
const tokenView = (t: TokenRow) => ({
  tokenId: t.tokenId,
  name: t.name,
  tokenHash: t.tokenHash,
  createdAt: t.createdAt,
  ...(t.revokedAt !== undefined ? { revokedAt: t.revokedAt } : {}),
});

export async function createAppToken(
  db: DatabaseWriter,
  a: { tokenId: string; name: string; tokenHash: string; createdAt: number },
) {
  nonEmpty("name", a.name);
  const existing = await db
    .query("factoryAppTokens")
    .withIndex("by_tokenId", (q) => q.eq("tokenId", a.tokenId))
    .unique();
  if (existing !== null) return tokenView(existing); // a retried create
  await db.insert("factoryAppTokens", a);
  return tokenView({ ...a } as TokenRow);
}

export async function findAppToken(db: DatabaseReader, tokenHash: string) {
  const row = await db
    .query("factoryAppTokens")
    .withIndex("by_hash", (q) => q.eq("tokenHash", tokenHash))
    .first();
  return row === null || row.revokedAt !== undefined ? null : tokenView(row);
}

export async function revokeAppToken(db: DatabaseWriter, tokenId: string, now: number): Promise<boolean> {
  const row = await db
    .query("factoryAppTokens")
    .withIndex("by_tokenId", (q) => q.eq("tokenId", tokenId))
    .unique();
  if (row === null || row.revokedAt !== undefined) return false;
  await db.patch(row._id, { revokedAt: now });
  return true;
}

export async function listAppTokens(db: DatabaseReader) {
  return (await db.query("factoryAppTokens").withIndex("by_created").take(1000)).map(tokenView);
}
