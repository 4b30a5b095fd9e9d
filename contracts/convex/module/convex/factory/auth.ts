// Who may call the public functions, chosen per deployment with FACTORY_AUTH
// (`npx convex env set FACTORY_AUTH <mode>`):
//
//   identity (default)  a caller must present a user identity: `Authorization: Bearer <JWT>`
//                       validated by Convex against convex/auth.config.ts. FACTORY_AUTH_ISSUER
//                       and FACTORY_AUTH_SUBJECTS (comma-separated) narrow it further.
//   open                anyone who can reach the deployment (what upstream agent-factory does);
//                       only for trusted networks: hydration hands out bot tokens.
//   admin               the public functions refuse everyone. Call the same functions in the
//                       admin namespace (agentFactoryAdmin:*) with a deploy key:
//                       `Authorization: Convex <deploy key>`. They are internal functions, which
//                       Convex only lets an admin identity reach.
import type { Auth } from "convex/server";
import { unauthorized } from "./errors";

export async function authorize(ctx: { auth: Auth }): Promise<void> {
  const mode = (process.env.FACTORY_AUTH ?? "identity").trim().toLowerCase();
  if (mode === "open") return;
  if (mode === "admin") {
    unauthorized("FACTORY_AUTH=admin: call the agentFactoryAdmin namespace with a deploy key");
  }
  if (mode !== "identity") unauthorized(`FACTORY_AUTH=${mode} is not one of identity, open, admin`);
  const identity = await ctx.auth.getUserIdentity();
  if (identity === null) {
    unauthorized(
      "this deployment requires a signed-in caller (Authorization: Bearer <JWT>); " +
        "set FACTORY_AUTH=open to allow anonymous workers on a trusted network",
    );
  }
  const issuer = process.env.FACTORY_AUTH_ISSUER;
  if (issuer && identity.issuer !== issuer) unauthorized("the token's issuer is not FACTORY_AUTH_ISSUER");
  const subjects = (process.env.FACTORY_AUTH_SUBJECTS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (subjects.length > 0 && !subjects.includes(identity.subject)) {
    unauthorized("the token's subject is not in FACTORY_AUTH_SUBJECTS");
  }
}
