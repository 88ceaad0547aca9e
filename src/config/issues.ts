/**
 * Turns zod issues into one message a user can act on: the dotted field path, what was wrong, and the fix.
 * Unknown keys get a "did you mean" drawn from the keys the schema really has at that place.
 */
import type { z } from 'zod';
import { PgwardenError } from '../errors.js';
import { closest } from './suggest.js';
import { describeValue } from '../cluster/schema-messages.js';

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(top level)' : out;
}

/**
 * Keys people bring from Patroni or guess; a pure edit distance would not find these. Offered only when the
 * suggested key exists at that place.
 */
const FAMILIAR_KEYS: Record<string, string> = {
  scope: 'cluster',
  restapi: 'api',
  etcd3: 'etcd',
  hosts: 'endpoints',
  host: 'endpoints',
  port: 'listen',
  connect_address: 'connect_url',
  data_directory: 'data_dir',
  bin_directory: 'bin_dir',
  pg_hba: 'pg_hba_extra',
  authentication: 'superuser',
  user: 'username',
  loglevel: 'level',
};

// The zod internals walked below are stable in zod 4 (`_zod.def`); only used to list valid keys for a suggestion.
interface SchemaDef {
  type: string;
  shape?: Record<string, unknown>;
  innerType?: unknown;
  in?: unknown;
  valueType?: unknown;
  element?: unknown;
}
function defOf(schema: unknown): SchemaDef | null {
  const internals = (schema as { _zod?: { def?: SchemaDef } } | null)?._zod;
  return internals?.def ?? null;
}
function unwrap(schema: unknown): unknown {
  let current = schema;
  for (let i = 0; i < 20; i++) {
    const def = defOf(current);
    if (!def) return current;
    if (def.type === 'optional' || def.type === 'default' || def.type === 'prefault' || def.type === 'nullable') {
      current = def.innerType;
    } else if (def.type === 'pipe') {
      current = def.in;
    } else {
      return current;
    }
  }
  return current;
}

/** The keys an object schema accepts at `path` (empty when the place is not an object with fixed keys). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let current: unknown = unwrap(schema);
  for (const part of path) {
    const def = defOf(current);
    if (!def) return [];
    if (def.type === 'object' && def.shape) current = unwrap(def.shape[String(part)]);
    else if (def.type === 'record') current = unwrap(def.valueType);
    else if (def.type === 'array') current = unwrap(def.element);
    else return [];
  }
  const def = defOf(current);
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

/** What the suggested key takes, when the mistake suggests a different shape was expected. */
const FAMILIAR_NOTES: Record<string, string> = {
  port: 'it takes "host:port", like 127.0.0.1:5432',
  connect_address: 'it takes a URL, like http://10.0.0.5:8008',
  authentication: 'give superuser, replication and rewind each {username, password}',
};

export function suggestKey(unknownKey: string, known: readonly string[]): string | null {
  const familiar = FAMILIAR_KEYS[unknownKey.toLowerCase()];
  if (familiar !== undefined && known.includes(familiar)) return familiar;
  return closest(unknownKey, known);
}

export interface FormatContext {
  /** Prepended to every path, e.g. ['bootstrap', 'dcs'] when validating a nested part on its own. */
  pathPrefix?: readonly PropertyKey[];
  /** Where a value came from when it was not the file (e.g. an environment variable), by dotted path. */
  originOf?: (dottedPath: string) => string | undefined;
}

function describeIssue(schema: z.ZodType, issue: z.core.$ZodIssue, context: FormatContext): string[] {
  const fullPath = [...(context.pathPrefix ?? []), ...issue.path];
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(schema, issue.path);
    return issue.keys.map((key) => {
      const suggestion = suggestKey(key, known);
      const note = suggestion !== null ? FAMILIAR_NOTES[key.toLowerCase()] : undefined;
      const hint =
        suggestion !== null
          ? `did you mean "${suggestion}"?${note !== undefined && FAMILIAR_KEYS[key.toLowerCase()] === suggestion ? ` (${note})` : ''}`
          : known.length > 0
            ? `valid keys here: ${known.join(', ')}`
            : 'remove it';
      return `${formatPath([...fullPath, key])}: unknown key; ${hint}`;
    });
  }
  if (issue.code === 'invalid_key') {
    const inner = issue.issues[0]?.message ?? 'not allowed';
    return [`${formatPath(fullPath)}: invalid name ${describeValue(issue.input)}: ${inner}`];
  }
  return [`${formatPath(fullPath)}: ${issue.message}`];
}

/** One readable message for all issues of a failed parse. */
export function formatIssues(
  source: string,
  schema: z.ZodType,
  issues: readonly z.core.$ZodIssue[],
  context: FormatContext = {},
): string {
  const lines: string[] = [];
  for (const issue of issues) {
    for (const line of describeIssue(schema, issue, context)) {
      const dotted = formatPath([...(context.pathPrefix ?? []), ...issue.path]);
      const origin = context.originOf?.(dotted);
      lines.push(origin === undefined ? line : `${line} (value from ${origin})`);
    }
  }
  if (lines.length === 1) return `${source} is invalid: ${lines[0]}`;
  return `${source} is invalid (${lines.length} problems):\n${lines.map((l) => `  - ${l}`).join('\n')}`;
}

/** Parses or throws CONFIG_INVALID with the formatted issues. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  input: unknown,
  source: string,
  context: FormatContext = {},
): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  throw new PgwardenError('CONFIG_INVALID', formatIssues(source, schema, result.error.issues, context));
}
