// The host side of the factory component, in the style of upstream agent-factory's client:
//
//   exposeApi(components.agentFactory, options)       the contract's functions as the host's own,
//                                                      for a host module whose file name is the
//                                                      namespace (convex/agentFactory.ts →
//                                                      `agentFactory:workerClaim`, what workers call)
//   exposeAdminApi(components.agentFactory)           the same as internal functions (deploy keys)
//   registerRoutes(http, components.agentFactory, o)  the Telegram webhook on the host's router
//
// Component functions are never public on a deployment, so the wrappers are the only way in; they
// check the caller (options.auth, by default the host's FACTORY_AUTH) and run the component's
// function as a sub-transaction.
import {
  type Auth,
  type FunctionReference,
  type HttpRouter,
  internalMutationGeneric,
  internalQueryGeneric,
  mutationGeneric,
  queryGeneric,
  type RegisteredMutation,
  type RegisteredQuery,
} from "convex/server";
import type * as lib from "../component/lib";
import * as specs from "../convex/factory/api";
import { authorize } from "../convex/factory/auth";
import { type FunctionName, MUTATIONS, type MutationName, QUERIES, type QueryName } from "../convex/factory/catalog";
import { mountWebhookRoutes, type RouteOptions, type WebhookFunctions } from "../convex/factory/telegram";

export { MUTATIONS, QUERIES, type FunctionName, type MutationName, type QueryName };
export type { RouteOptions };

type Lib = typeof lib;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ArgsOf<F> = F extends RegisteredMutation<any, infer A, any> ? A : F extends RegisteredQuery<any, infer A, any> ? A : never;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ReturnOf<F> = F extends RegisteredMutation<any, any, infer R> ? Awaited<R> : F extends RegisteredQuery<any, any, infer R> ? Awaited<R> : never;

/** What a host sees of an installed component (`components.agentFactory` after `app.use(factory)`). */
export type FactoryComponent = {
  lib: { [K in MutationName]: FunctionReference<"mutation", "internal", ArgsOf<Lib[K]>, ReturnOf<Lib[K]>> } & {
    [K in QueryName]: FunctionReference<"query", "internal", ArgsOf<Lib[K]>, ReturnOf<Lib[K]>>;
  };
};

/** A component reference: typed (`components.agentFactory` after `npx convex dev`) or the untyped
 * stand-in a fresh checkout's offline codegen writes before the first push. */
export type ComponentRef = FactoryComponent | { [module: string]: { [fn: string]: unknown } };

/** The host functions exposeApi returns: one per contract function, same names, args and returns. */
export type ExposedApi<V extends "public" | "internal" = "public"> = {
  [K in MutationName]: RegisteredMutation<V, ArgsOf<Lib[K]>, Promise<ReturnOf<Lib[K]>>>;
} & { [K in QueryName]: RegisteredQuery<V, ArgsOf<Lib[K]>, Promise<ReturnOf<Lib[K]>>> };

/** Which function a caller is about to run (what an `auth` callback may look at). */
export type Call = { kind: "mutation" | "query"; name: FunctionName };

export type ExposeOptions = {
  /** Decide who may call; throw (e.g. a ConvexError) to refuse. The default reads the host's
   * FACTORY_AUTH (identity, open or admin; see the module README). */
  auth?: (ctx: { auth: Auth }, call: Call) => Promise<void>;
};

type Spec = { args: Record<string, never>; handler: unknown };
const specOf = (name: FunctionName) => (specs as unknown as Record<FunctionName, Spec>)[name];

/** The contract's functions as public host functions calling the component. Export them from the
 * host module that names the namespace:
 *
 * ```ts
 * // convex/agentFactory.ts
 * export const { enqueue, workerClaim, ... } = exposeApi(components.agentFactory);
 * ```
 */
export function exposeApi(component: ComponentRef, options: ExposeOptions = {}): ExposedApi {
  const check = options.auth ?? ((ctx: { auth: Auth }) => authorize(ctx));
  return wrap(component, "public", check);
}

/** The same functions as internal host functions: only an admin identity (a deploy key) reaches
 * them, as `agentFactoryAdmin:<name>` when exported from convex/agentFactoryAdmin.ts. */
export function exposeAdminApi(component: ComponentRef): ExposedApi<"internal"> {
  return wrap(component, "internal", async () => {});
}

function wrap<V extends "public" | "internal">(
  component: ComponentRef,
  visibility: V,
  check: (ctx: { auth: Auth }, call: Call) => Promise<void>,
): ExposedApi<V> {
  const fns = component.lib as unknown as Record<FunctionName, FunctionReference<"mutation" | "query", "internal">>;
  const out: Record<string, unknown> = {};
  const mutation = visibility === "public" ? mutationGeneric : internalMutationGeneric;
  const query = visibility === "public" ? queryGeneric : internalQueryGeneric;
  for (const name of MUTATIONS) {
    out[name] = mutation({
      args: specOf(name).args,
      handler: async (ctx, args) => {
        await check(ctx, { kind: "mutation", name });
        return await ctx.runMutation(fns[name] as FunctionReference<"mutation", "internal">, args);
      },
    });
  }
  for (const name of QUERIES) {
    out[name] = query({
      args: specOf(name).args,
      handler: async (ctx, args) => {
        await check(ctx, { kind: "query", name });
        return await ctx.runQuery(fns[name] as FunctionReference<"query", "internal">, args);
      },
    });
  }
  return out as ExposedApi<V>;
}

/** Mount the Telegram webhook on the host's router (upstream's `registerRoutes`):
 * `POST {pathPrefix}/telegram/webhook/{agentKey}` and `POST {pathPrefix}/telegram/webhook`,
 * answered by the component's functions. */
export function registerRoutes(http: HttpRouter, component: ComponentRef, options: RouteOptions = {}): void {
  mountWebhookRoutes(http, () => component.lib as unknown as WebhookFunctions, options);
}
