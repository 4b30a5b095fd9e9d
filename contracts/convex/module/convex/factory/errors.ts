// Errors a caller can act on travel as ConvexError data {code, message, ...}: the Python binding
// maps each code to the same typed error the SQLite store raises. Match on data, never on text
// (production deployments redact error messages).
import { ConvexError } from "convex/values";

export type ErrorCode =
  | "INVALID_INPUT"
  | "AGENT_UNAVAILABLE"
  | "CONVERSATION_CONFLICT"
  | "NOT_FOUND"
  | "UNAUTHORIZED"
  | "ACCESS_REFUSED";

export function invalidInput(field: string, problem: string): never {
  throw new ConvexError({ code: "INVALID_INPUT", field, message: `${field}: ${problem}` });
}

export function agentUnavailable(agentKey: string, reason: "not defined" | "disabled"): never {
  throw new ConvexError({
    code: "AGENT_UNAVAILABLE",
    field: "agentKey",
    agentKey,
    reason,
    message: `agentKey: agent profile '${agentKey}' is ${reason}`,
  });
}

export function conversationConflict(conversationId: string, owner: string, requested: string): never {
  throw new ConvexError({
    code: "CONVERSATION_CONFLICT",
    field: "conversationId",
    conversationId,
    owner,
    requested,
    message: `conversationId: '${conversationId}' belongs to agent '${owner}', not '${requested}'`,
  });
}

export function unauthorized(message: string): never {
  throw new ConvexError({ code: "UNAUTHORIZED", message });
}

export function notFound(what: string, key: string): never {
  throw new ConvexError({ code: "NOT_FOUND", what, key, message: `${what} '${key}' not found` });
}

/** A service token that does not open this account (never echoed: only the account is named). */
export function accessRefused(accountId: string): never {
  throw new ConvexError({ code: "ACCESS_REFUSED", accountId, message: `account ${accountId}: the service token was refused` });
}
