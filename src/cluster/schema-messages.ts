/**
 * The words of validation messages, shared by every zod schema (the model's and the configuration files'): how a
 * value looked and what was expected, so that a message names what is wrong and what to write instead.
 */

/** How a value looked, for "got …" in messages (short; never a whole nested object). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null (empty)';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

/** Error option for a type schema: a missing value says "required", a wrong one says what it got. */
export function expecting(what: string): { error: (issue: { input?: unknown }) => string } {
  return {
    error: (issue) =>
      issue.input === undefined ? `is required: set it to ${what}` : `expected ${what}, got ${describeValue(issue.input)}`,
  };
}
