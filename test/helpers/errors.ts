import assert from 'node:assert/strict';
import { type ErrorCode, PgwardenError } from '../../src/errors.js';

/** Runs `fn`, expects a PgwardenError with `code`, checks every pattern against its message and returns the message. */
export function expectPgwardenError(code: ErrorCode, fn: () => unknown, ...patterns: RegExp[]): string {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof PgwardenError, `expected a PgwardenError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  for (const pattern of patterns) assert.match(error.message, pattern);
  return error.message;
}
