// A loopback stand-in for a Convex deployment, for tests and local runs: it serves Convex's
// HTTP API (POST /api/query | /api/mutation | /api/action) by running this module's real
// functions, schema and validators under convex-test's in-memory backend.
//
//   node --import tsx standin/server.ts [--port 3210] [--ready-file path] [--exit-with-stdin]
//
// What it answers like Convex does: the {status: "success"|"error"} envelopes with errorData for
// ConvexError, 400 BadJsonBody / BadFormat, "Could not find public function", the wrong-kind
// error, internal functions only for an admin key (`Authorization: Convex <STANDIN_ADMIN_KEY>`),
// and a Bearer JWT's claims as the caller's identity (NOT verified: a stand-in, not a gate).
// Floats are written the way the Rust backend writes them ("1.0").
//
// File storage as Convex serves it: `ctx.storage.generateUploadUrl()` answers a URL on this
// server; POST the file's bytes there (Content-Type kept) → {"storageId"}; a
// `ctx.storage.getUrl(id)` URL answers the bytes with GET. An upload URL works once.
// Any other POST path goes to the module's HTTP actions (convex/http.ts: the Telegram webhook), as a
// deployment's .convex.site origin would serve them.
//
// Test-only endpoints (never on a real deployment):
//   POST /_standin/reset  {env?: {NAME: value}, frozenAtMs?: number}   fresh state; env for the module;
//                          the module's clock frozen at frozenAtMs, else the real clock
//   POST /_standin/clock  {advanceMs: number}                            move the module's clock forward
//   GET  /_standin/clock                                                 {now, frozen}
//   GET  /_standin/calls                                                 function executions since the reset:
//                          {query, mutation, action, subscription} (what a deployment bills)
//   POST /_standin/faults {count, status?: 503, afterRun?: false}        answer the next `count` API calls
//                          with `status` and Convex's error body, before running them; afterRun: run
//                          them, then drop the connection without a reply (a reply lost after commit)
//
// The sync WebSocket (/api/sync, reference/convex.md §2.8) serves subscriptions: Connect,
// Authenticate, ModifyQuerySet (Add/Remove) → Transition with QueryUpdated/QueryFailed/QueryRemoved,
// and a Ping every 15 s. After every mutation (and reset) each subscribed query is run again and
// a Transition carries the values that changed. A pending fault answers the upgrade instead.
//
// Production's per-transaction limits are enforced. Gaps (see reference/convex.md §6.3): calls
// run one at a time (no OCC conflicts or retries), no mutations or actions over the WebSocket,
// no query caching, Date.now() is not frozen per call unless the clock is frozen.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath, pathToFileURL } from "node:url";
import { convexTest } from "convex-test";
import { makeFunctionReference } from "convex/server";
import { convexToJson, jsonToConvex, type JSONValue, type Value } from "convex/values";
import { WebSocketServer, type WebSocket } from "ws";

type Kind = "query" | "mutation" | "action";
type Loader = () => Promise<Record<string, unknown>>;
type Registered = { isQuery?: boolean; isMutation?: boolean; isAction?: boolean; isInternal?: boolean };

const ADMIN_KEY = process.env.STANDIN_ADMIN_KEY ?? "standin-admin-key";
const here = path.dirname(fileURLToPath(import.meta.url));
const convexDir = path.resolve(here, "..", "convex");

function option(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

// ---------------------------------------------------------------- the module under test

/** The module map convex-test expects (the shape of import.meta.glob), built without Vite.
 * Like the Convex CLI, files with more than one dot (tests, .d.ts) are not modules. */
function loadModules(): Record<string, Loader> {
  const found: Record<string, Loader> = {};
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/^[^.]+\.(ts|js)$/.test(entry.name)) {
        const key = "./" + path.relative(convexDir, full).split(path.sep).join("/");
        found[key] = () => import(pathToFileURL(full).href);
      }
    }
  };
  walk(convexDir);
  return found;
}

const modules = loadModules();
const schema = (await import(pathToFileURL(path.join(convexDir, "schema.ts")).href)).default;
// Production's per-transaction limits (documents read and written, index ranges, bytes), enforced.
const fresh = () => convexTest({ schema, modules, transactionLimits: true });
let backend = fresh();

async function lookup(udfPath: string): Promise<{ name: string; kind: Kind; internal: boolean } | null> {
  const [file, exported = "default"] = udfPath.split(":");
  const moduleName = (file ?? "").replace(/\.(js|ts)$/, "");
  const loader = modules[`./${moduleName}.ts`] ?? modules[`./${moduleName}.js`];
  if (loader === undefined) return null;
  const fn = (await loader())[exported] as Registered | undefined;
  if (fn === undefined || fn === null) return null;
  const kind: Kind | null = fn.isQuery ? "query" : fn.isMutation ? "mutation" : fn.isAction ? "action" : null;
  return kind === null ? null : { name: `${moduleName}:${exported}`, kind, internal: fn.isInternal === true };
}

// ---------------------------------------------------------------- clock, environment, faults

const realNow = Date.now.bind(Date);
let frozenAt: number | null = null;
let offsetMs = 0;
Date.now = () => (frozenAt !== null ? frozenAt : realNow() + offsetMs);

const launchEnv = { ...process.env };
let appliedEnv: string[] = [];
function applyEnv(env: Record<string, string>) {
  for (const key of appliedEnv) {
    if (launchEnv[key] === undefined) delete process.env[key];
    else process.env[key] = launchEnv[key];
  }
  Object.assign(process.env, env);
  appliedEnv = Object.keys(env);
}

let faults = { count: 0, status: 503, afterRun: false };
const FAULT_BODIES: Record<number, { code: string; message: string }> = {
  408: { code: "ClientDisconnect", message: "The client disconnected" },
  429: { code: "RateLimited", message: "Too many concurrent requests" },
  500: { code: "OperationalInternalServerError", message: "Internal server error" },
  503: { code: "Overloaded", message: "The deployment is overloaded; try again" },
};

const calls = { query: 0, mutation: 0, action: 0, subscription: 0 };
const resetCalls = () => Object.assign(calls, { query: 0, mutation: 0, action: 0, subscription: 0 });

function takeFault(afterRun: boolean): number | null {
  if (faults.count <= 0 || faults.afterRun !== afterRun) return null;
  faults.count--;
  return faults.status;
}

// ---------------------------------------------------------------- encoding

/** Convex's "json" format (clean JSON): int64 as a decimal string, bytes as base64. */
function cleanJson(value: Value): JSONValue {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof ArrayBuffer) return Buffer.from(value).toString("base64");
  if (typeof value === "number" && !Number.isFinite(value)) {
    return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  }
  if (Array.isArray(value)) return value.map(cleanJson);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([, x]) => x !== undefined).map(([k, x]) => [k, cleanJson(x)]));
  }
  return value;
}

const FORMATS = new Set(["json", "convex_clean_json", "convex_encoded_json", "convex_json"]);
const encode = (value: Value, format: string): JSONValue =>
  format === "convex_encoded_json" || format === "convex_json" ? convexToJson(value) : cleanJson(value);

/** JSON as the Rust backend writes it: every float64 with a fractional part ("1.0", not "1"). */
function writeJson(value: unknown): string {
  if (typeof value === "number") {
    return Number.isInteger(value) && Math.abs(value) < 1e21 ? value.toFixed(1) : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(writeJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value).filter(([, x]) => x !== undefined);
    return `{${fields.map(([k, x]) => `${JSON.stringify(k)}:${writeJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------- function calls

type Caller = { admin: boolean; identity?: Record<string, JSONValue> };
type Reply = { status: number; body: unknown; drop?: boolean; contentType?: string };

function caller(header: string | undefined): Caller | Reply {
  if (header === undefined || header === "") return { admin: false };
  if (header.startsWith("Convex ")) {
    if (header.slice(7) === ADMIN_KEY) return { admin: true };
    return { status: 401, body: { code: "BadAdminKey", message: "The provided admin key was invalid for this instance" } };
  }
  if (header.startsWith("Bearer ")) {
    try {
      const claims = JSON.parse(Buffer.from(header.slice(7).split(".")[1] ?? "", "base64url").toString("utf8"));
      if (claims === null || typeof claims !== "object") throw new Error("claims are not an object");
      return { admin: false, identity: { ...claims, subject: claims.sub, issuer: claims.iss } };
    } catch {
      return { status: 401, body: { code: "Unauthenticated", message: "Could not parse the JWT in the Authorization header" } };
    }
  }
  return { status: 401, body: { code: "InvalidAuthHeader", message: "Authorization must be 'Bearer <token>' or 'Convex <key>'" } };
}

// ---------------------------------------------------------------- file storage

// convex-test hands out URLs on a made-up deployment; they are rewritten to this server's origin.
const FAKE_STORAGE = "https://some-deployment.convex.cloud/api/storage/";
const uploadTokens = new Set<string>();

function rewriteStorageUrls(value: unknown, origin: string): unknown {
  if (typeof value === "string" && value.startsWith(FAKE_STORAGE)) {
    const rest = value.slice(FAKE_STORAGE.length);
    if (rest.startsWith("upload?token=")) {
      const token = randomBytes(12).toString("hex");
      uploadTokens.add(token);
      return `${origin}/api/storage/upload?token=${token}`;
    }
    return `${origin}/api/storage/${encodeURIComponent(rest)}`; // convex-test names files by base64 sha256
  }
  if (Array.isArray(value)) return value.map((item) => rewriteStorageUrls(item, origin));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, rewriteStorageUrls(x, origin)]));
  }
  return value;
}

async function readBytes(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function storage(req: http.IncomingMessage, url: URL): Promise<Reply> {
  const name = decodeURIComponent(url.pathname.slice("/api/storage/".length));
  if (req.method === "POST" && name === "upload") {
    const token = url.searchParams.get("token") ?? "";
    if (!uploadTokens.delete(token)) {
      return { status: 400, body: { code: "InvalidUploadToken", message: "the upload URL is invalid or was used already" } };
    }
    const bytes = await readBytes(req);
    const type = req.headers["content-type"] ?? "application/octet-stream";
    const storageId = await backend.run(async (ctx) => await ctx.storage.store(new Blob([new Uint8Array(bytes)], { type })));
    return { status: 200, body: { storageId } };
  }
  if (req.method === "GET") {
    // Bytes, not a Blob, cross convex-test's run(): its results are Convex values.
    const file = await backend.run(async (ctx) => {
      const files = await ctx.db.system.query("_storage").collect();
      const hit = files.find((f) => f.sha256 === name);
      const blob = hit === undefined ? null : await ctx.storage.get(hit._id);
      return blob === null ? null : { bytes: await blob.arrayBuffer(), type: blob.type };
    });
    if (file === null) return { status: 404, body: { code: "NotFound", message: "no such file" } };
    return { status: 200, body: Buffer.from(file.bytes), contentType: file.type };
  }
  return { status: 405, body: { code: "MethodNotAllowed", message: `${req.method} ${url.pathname}` } };
}

async function call(kind: Kind, body: { path: string; args?: unknown; format?: string }, who: Caller): Promise<unknown> {
  const format = body.format ?? "json";
  const requestId = randomBytes(8).toString("hex");
  const failure = (message: string, errorData?: Value) => ({
    status: "error",
    errorMessage: `[Request ID: ${requestId}] Server Error\n${message}`,
    ...(errorData === undefined ? {} : { errorData: encode(errorData, format) }),
  });
  const found = await lookup(body.path);
  if (found === null || (found.internal && !who.admin)) return failure(`Could not find public function for '${body.path}'.`);
  if (found.kind !== kind) {
    const title = (k: string) => k[0]!.toUpperCase() + k.slice(1);
    return failure(`Trying to execute ${found.name} as ${title(kind)}, but it is defined as ${title(found.kind)}.`);
  }
  let args = body.args ?? {};
  if (Array.isArray(args)) args = args[0] ?? {}; // the legacy positional form [argsObject]
  try {
    const accessor = who.identity ? backend.withIdentity(who.identity) : backend;
    const run = accessor[kind] as (ref: unknown, args: unknown) => Promise<Value | undefined>;
    const value = await run(makeFunctionReference(found.name), jsonToConvex(args as JSONValue));
    return { status: "success", value: encode(value ?? null, format) };
  } catch (error) {
    const e = error as { name?: string; message?: string; data?: Value };
    if (e?.name === "ConvexError" && e.data !== undefined) {
      const shown = typeof e.data === "string" ? e.data : JSON.stringify(convexToJson(e.data));
      return failure(`Uncaught ConvexError: ${shown}`, e.data);
    }
    return failure(`Uncaught ${e?.name ?? "Error"}: ${e?.message ?? String(error)}`);
  }
}

// ---------------------------------------------------------------- HTTP

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function handle(req: http.IncomingMessage): Promise<Reply> {
  const url = new URL(req.url ?? "/", "http://standin");
  const route = url.pathname;
  if (route.startsWith("/api/storage/")) return await storage(req, url);
  if (req.method === "GET" && route === "/version") return { status: 200, body: "standin" };
  if (req.method === "GET" && route === "/_standin/clock") return { status: 200, body: { now: Date.now(), frozen: frozenAt !== null } };
  if (req.method === "GET" && route === "/_standin/calls") return { status: 200, body: { ...calls } };
  if (req.method !== "POST") return { status: 404, body: { code: "NotFound", message: `No route ${req.method} ${route}` } };
  const rawBody = await readBody(req);
  if (!route.startsWith("/api/") && !route.startsWith("/_standin/")) {
    const reply = await backend.fetch(route + url.search, { method: "POST", headers: headersOf(req), body: rawBody });
    await refreshSubscriptions(); // an HTTP action may have enqueued (the Telegram webhook does)
    return { status: reply.status, body: await reply.text(), contentType: reply.headers.get("content-type") ?? "text/plain" };
  }
  let body: Record<string, unknown>;
  try {
    const raw = rawBody;
    body = raw.trim() === "" ? {} : JSON.parse(raw);
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw new Error("not an object");
  } catch {
    return { status: 400, body: { code: "BadJsonBody", message: "Failed to deserialize the JSON body" } };
  }
  switch (route) {
    case "/_standin/reset": {
      backend = fresh();
      uploadTokens.clear();
      applyEnv((body.env as Record<string, string> | undefined) ?? {});
      frozenAt = typeof body.frozenAtMs === "number" ? body.frozenAtMs : null;
      offsetMs = 0;
      faults = { count: 0, status: 503, afterRun: false };
      await refreshSubscriptions();
      resetCalls();
      return { status: 200, body: { now: Date.now() } };
    }
    case "/_standin/clock": {
      const ms = Number(body.advanceMs ?? 0);
      if (!Number.isFinite(ms) || ms < 0) return { status: 400, body: { code: "BadRequest", message: "advanceMs: a clock only moves forward" } };
      if (frozenAt !== null) frozenAt += ms;
      else offsetMs += ms;
      return { status: 200, body: { now: Date.now() } };
    }
    case "/_standin/faults": {
      faults = { count: Number(body.count ?? 1), status: Number(body.status ?? 503), afterRun: body.afterRun === true };
      return { status: 200, body: faults };
    }
    case "/api/query":
    case "/api/mutation":
    case "/api/action": {
      const early = takeFault(false);
      if (early !== null) return { status: early, body: FAULT_BODIES[early] ?? { code: "Injected", message: "injected fault" } };
      const format = body.format ?? "json";
      if (typeof format !== "string" || !FORMATS.has(format)) {
        return { status: 400, body: { code: "BadFormat", message: `format param must be one of [\`json\`]. Got ${String(format)}` } };
      }
      if (typeof body.path !== "string") return { status: 400, body: { code: "BadJsonBody", message: "missing field `path`" } };
      const who = caller(req.headers.authorization);
      if ("status" in who) return who;
      calls[route.slice(5) as Kind]++;
      const result = await call(route.slice(5) as Kind, body as { path: string }, who);
      if (route !== "/api/query") await refreshSubscriptions();
      if (takeFault(true) !== null) return { status: 0, body: null, drop: true };
      return { status: 200, body: rewriteStorageUrls(result, `http://${req.headers.host ?? "127.0.0.1"}`) };
    }
    default:
      return { status: 404, body: { code: "NotFound", message: `No route ${route}` } };
  }
}

// ---------------------------------------------------------------- the sync WebSocket

type Subscriber = {
  ws: WebSocket;
  who: Caller;
  querySet: number;
  identity: number;
  ts: bigint;
  queries: Map<number, { udfPath: string; args: Record<string, unknown>; last?: string }>;
};
const subscribers = new Set<Subscriber>();
let syncTs = BigInt(Date.now()) * 1_000_000n;
const b64ts = (n: bigint) => {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(n);
  return bytes.toString("base64");
};

/** The query's modification for a Transition, or null when its value did not change. */
async function evaluate(sub: Subscriber, queryId: number, force: boolean): Promise<Record<string, unknown> | null> {
  const q = sub.queries.get(queryId)!;
  calls.subscription++;
  const r = (await call("query", { path: q.udfPath, args: q.args, format: "convex_encoded_json" }, sub.who)) as {
    status: string;
    value?: unknown;
    errorMessage?: string;
    errorData?: unknown;
  };
  const change =
    r.status === "success"
      ? { type: "QueryUpdated", queryId, value: r.value, logLines: [], journal: null }
      : { type: "QueryFailed", queryId, errorMessage: r.errorMessage, logLines: [], journal: null, ...(r.errorData === undefined ? {} : { errorData: r.errorData }) };
  const text = JSON.stringify(change);
  if (!force && text === q.last) return null;
  q.last = text;
  return change;
}

function transition(sub: Subscriber, modifications: unknown[], querySet = sub.querySet, identity = sub.identity) {
  const startVersion = { querySet: sub.querySet, identity: sub.identity, ts: b64ts(sub.ts) };
  sub.querySet = querySet;
  sub.identity = identity;
  sub.ts = syncTs;
  const endVersion = { querySet, identity, ts: b64ts(syncTs) };
  sub.ws.send(JSON.stringify({ type: "Transition", startVersion, endVersion, modifications }));
}

/** After a write: run every subscribed query again; send each subscriber what changed. */
async function refreshSubscriptions() {
  if (subscribers.size === 0) return;
  const now = BigInt(Date.now()) * 1_000_000n;
  syncTs = now > syncTs ? now : syncTs + 1n;
  for (const sub of subscribers) {
    const changes = [];
    for (const queryId of sub.queries.keys()) {
      const change = await evaluate(sub, queryId, false);
      if (change !== null) changes.push(change);
    }
    if (changes.length > 0) transition(sub, changes);
  }
}

async function onSync(sub: Subscriber, frame: Record<string, unknown>) {
  switch (frame.type) {
    case "Authenticate": {
      const header = frame.tokenType === "Admin" ? `Convex ${frame.value}` : frame.tokenType === "User" ? `Bearer ${frame.value}` : undefined;
      const who = caller(header);
      if ("status" in who) {
        sub.ws.send(JSON.stringify({ type: "AuthError", error: (who.body as { message: string }).message, baseVersion: frame.baseVersion }));
        return sub.ws.close();
      }
      sub.who = who;
      const changes = [];
      for (const queryId of sub.queries.keys()) changes.push(await evaluate(sub, queryId, true));
      return transition(sub, changes, sub.querySet, Number(frame.baseVersion ?? 0) + 1);
    }
    case "ModifyQuerySet": {
      const changes = [];
      for (const mod of (frame.modifications as Record<string, unknown>[]) ?? []) {
        const queryId = Number(mod.queryId);
        if (mod.type === "Add") {
          const args = Array.isArray(mod.args) ? (mod.args[0] ?? {}) : (mod.args ?? {});
          sub.queries.set(queryId, { udfPath: String(mod.udfPath), args: args as Record<string, unknown> });
          changes.push(await evaluate(sub, queryId, true));
        } else if (mod.type === "Remove") {
          sub.queries.delete(queryId);
          changes.push({ type: "QueryRemoved", queryId });
        }
      }
      return transition(sub, changes, Number(frame.newVersion));
    }
    case "Mutation":
    case "Action":
      sub.ws.send(JSON.stringify({ type: "FatalError", error: "the stand-in's /api/sync serves subscriptions only; call functions over HTTP" }));
      return sub.ws.close();
    default:
      return; // Connect, Event: nothing to answer
  }
}

const sockets = new WebSocketServer({ noServer: true });
function attach(ws: WebSocket) {
  const sub: Subscriber = { ws, who: { admin: false }, querySet: 0, identity: 0, ts: syncTs, queries: new Map() };
  subscribers.add(sub);
  const ping = setInterval(() => ws.send(JSON.stringify({ type: "Ping" })), 15_000);
  ws.on("close", () => {
    subscribers.delete(sub);
    clearInterval(ping);
  });
  ws.on("message", (data: unknown) => {
    const turn = queue.then(() => onSync(sub, JSON.parse(String(data)) as Record<string, unknown>));
    queue = turn.catch(() => undefined);
    turn.catch((error: unknown) => {
      ws.send(JSON.stringify({ type: "FatalError", error: String(error) }));
      ws.close();
    });
  });
}

function headersOf(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") out[k] = v;
  return out;
}

// One request at a time, like convex-test's own transaction lock: faults and resets apply in order.
let queue: Promise<unknown> = Promise.resolve();
const server = http.createServer((req, res) => {
  const turn = queue.then(() => handle(req));
  queue = turn.catch(() => undefined);
  turn
    .then(({ status, body, drop, contentType }) => {
      if (drop) return void req.socket.destroy();
      if (Buffer.isBuffer(body)) {
        res.writeHead(status, { "content-type": contentType || "application/octet-stream" });
        return void res.end(body);
      }
      const text = typeof body === "string" ? body : writeJson(body);
      res.writeHead(status, { "content-type": contentType ?? (typeof body === "string" ? "text/plain" : "application/json") });
      res.end(text);
    })
    .catch((error: unknown) => {
      console.error(error);
      res.writeHead(500, { "content-type": "application/json" });
      res.end(writeJson({ code: "InternalServerError", message: String(error) }));
    });
});

server.on("upgrade", (req: http.IncomingMessage, socket: import("node:stream").Duplex, head: Buffer) => {
  const route = new URL(req.url ?? "/", "http://standin").pathname;
  if (!/^\/api\/(?:[^/]+\/)?sync$/.test(route)) return void socket.destroy();
  const fault = takeFault(false);
  if (fault !== null) return void socket.end(`HTTP/1.1 ${fault} Injected\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  sockets.handleUpgrade(req, socket, head, attach);
});

server.listen(Number(option("--port") ?? 3210), "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  console.log(`convex stand-in serving ${convexDir} at ${url} (pid ${process.pid})`);
  const ready = option("--ready-file");
  if (ready !== undefined) {
    fs.writeFileSync(`${ready}.tmp`, JSON.stringify({ url, pid: process.pid }));
    fs.renameSync(`${ready}.tmp`, ready);
  }
});

// Started by a parent that holds our stdin: when the parent goes away, so do we.
if (process.argv.includes("--exit-with-stdin")) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    server.closeAllConnections();
    process.exit(0);
  });
}
