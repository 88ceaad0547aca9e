/**
 * Option parsers shared by the commands; kept apart from the command modules so that parsing the command line
 * does not load the etcd client or the agent (`pgwarden --help` stays fast).
 */
import { closest } from '../config/suggest.js';
import { PgwardenError } from '../errors.js';

export type OutputFormat = 'table' | 'json';

/** Where `pgwarden up` keeps a local cluster unless --dir says otherwise (relative to the working directory). */
export const DEFAULT_DIR = '.pgwarden';

export function parseFormat(value: string): OutputFormat {
  if (value === 'table' || value === 'json') return value;
  const suggestion = closest(value, ['table', 'json']);
  throw new PgwardenError(
    'CONFIG_INVALID',
    `--format ${JSON.stringify(value)} is not known: use "table" or "json"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`,
  );
}

export function parseSeconds(value: string, option: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    throw new PgwardenError('CONFIG_INVALID', `${option} ${JSON.stringify(value)} is not a positive number of seconds: write it like ${option} 60`);
  }
  return n;
}

