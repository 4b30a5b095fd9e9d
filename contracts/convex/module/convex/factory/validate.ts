// Input checks beyond what argument validators express; each failure names its field.
import { invalidInput } from "./errors";

export function nonEmpty(field: string, value: string): string {
  if (value.trim() === "") invalidInput(field, "must not be empty");
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
