// Input checks beyond what argument validators express; each failure names its field.
import { invalidInput } from "./errors";

export function nonEmpty(field: string, value: string): string {
  if (value.trim() === "") invalidInput(field, "must not be empty");
  return value;
}

// The same bounds as contracts/models.py: ids are short, printable names.
export const MAX_ID_CHARS = 256;
// 9999-12-31T23:59:59.999Z, as contracts.models.MAX_EPOCH_MS.
export const MAX_EPOCH_MS = 253_402_300_799_999;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** An id: not blank, at most MAX_ID_CHARS characters (code points, as Python counts), no control characters. */
export function id(field: string, value: string): string {
  nonEmpty(field, value);
  const chars = [...value].length;
  if (chars > MAX_ID_CHARS) invalidInput(field, `is ${chars} characters long; the limit is ${MAX_ID_CHARS}`);
  if (CONTROL.test(value)) invalidInput(field, "must not contain control characters (newlines, tabs, escapes)");
  return value;
}

export function integer(field: string, value: number, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value)) invalidInput(field, `must be a whole number, got ${value}`);
  if (value < min || value > max) {
    invalidInput(field, max === Number.MAX_SAFE_INTEGER ? `must be at least ${min}` : `must be between ${min} and ${max}`);
  }
  return value;
}

export function maxBytes(field: string, value: string, limit: number): string {
  const size = new TextEncoder().encode(value).length;
  if (size > limit) {
    invalidInput(field, `is ${size} bytes; the limit is ${limit} bytes (64 KiB): split the message or send a file`);
  }
  return value;
}
