/**
 * SHOW across the worker threads of a proxy with `workers: N`, pure: every worker answers a SHOW for its own
 * clients, server connections and counters, and the console that was asked combines the answers into the one
 * answer PgBouncer would give for the whole proxy. Rows of the same pool (or database, list, user) become one:
 * counts and per-second rates add up, mean durations are weighted by the counts they are means of, the oldest
 * waiter and the paused flag are the largest, and settings (the same in every worker) are taken from the first.
 * Per-connection lists (SERVERS, CLIENTS) are concatenated; CONFIG and VERSION need no other worker.
 */
import { COLUMNS, type ShowSubject } from './commands.js';

export type ShowRow = (string | number | null)[];

/** Subjects every worker answers the same: the asking console's rows alone. */
export const LOCAL_SUBJECTS: ReadonlySet<ShowSubject> = new Set(['CONFIG', 'VERSION']);

type Rule = 'key' | 'sum' | 'max' | 'first' | { weightedBy: string };

const KEYS: Partial<Record<ShowSubject, readonly string[]>> = {
  POOLS: ['database', 'user'],
  STATS: ['database'],
  STATS_TOTALS: ['database'],
  STATS_AVERAGES: ['database'],
  DATABASES: ['name'],
  LISTS: ['list'],
  USERS: ['name'],
};

/** LISTS items counted per worker (added up); the others are names every worker may know (largest count). */
const SUMMED_LIST_ITEMS = new Set(['free_clients', 'used_clients', 'login_clients', 'free_servers', 'used_servers']);

function rule(subject: ShowSubject, column: string): Rule {
  if (KEYS[subject]?.includes(column)) return 'key';
  switch (subject) {
    case 'POOLS':
      return column === 'pool_mode' ? 'first' : column === 'maxwait' || column === 'maxwait_us' ? 'max' : 'sum';
    case 'STATS':
      if (column === 'avg_xact_time') return { weightedBy: 'avg_xact_count' };
      if (column === 'avg_query_time') return { weightedBy: 'avg_query_count' };
      return 'sum';
    case 'STATS_AVERAGES':
      if (column === 'xact_time') return { weightedBy: 'xact_count' };
      if (column === 'query_time') return { weightedBy: 'query_count' };
      return 'sum';
    case 'STATS_TOTALS':
      return 'sum';
    case 'DATABASES':
      return column === 'current_connections' ? 'sum' : column === 'paused' ? 'max' : 'first';
    default:
      return 'first';
  }
}

/** The one answer to SHOW `subject` from each worker's rows (the asking worker's first). */
export function mergeShowRows(subject: ShowSubject, perWorker: readonly (readonly ShowRow[])[]): ShowRow[] {
  if (LOCAL_SUBJECTS.has(subject)) return [...(perWorker[0] ?? [])];
  const keyColumns = KEYS[subject];
  if (keyColumns === undefined) return perWorker.flat();
  const columns = COLUMNS[subject];
  const keyAt = keyColumns.map((k) => columns.indexOf(k));
  const groups = new Map<string, ShowRow[]>();
  for (const rows of perWorker) {
    for (const row of rows) {
      const key = JSON.stringify(keyAt.map((i) => row[i]));
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [row]);
      else group.push(row);
    }
  }
  return [...groups.values()].map((rows) => combine(subject, columns, rows));
}

function combine(subject: ShowSubject, columns: readonly string[], rows: ShowRow[]): ShowRow {
  const first = rows[0]!;
  const num = (row: ShowRow, column: string): number => Number(row[columns.indexOf(column)] ?? 0);
  const out: ShowRow = columns.map((column, i) => {
    let r = rule(subject, column);
    if (subject === 'LISTS' && column === 'items') r = SUMMED_LIST_ITEMS.has(String(first[0])) ? 'sum' : 'max';
    if (r === 'key' || r === 'first') return first[i] ?? null;
    if (r === 'sum') return rows.reduce((n, row) => n + num(row, column), 0);
    if (r === 'max') return rows.reduce((n, row) => Math.max(n, num(row, column)), 0);
    const weights = rows.map((row) => num(row, r.weightedBy));
    const total = weights.reduce((a, b) => a + b, 0);
    return total === 0 ? 0 : Math.floor(rows.reduce((n, row, k) => n + num(row, column) * weights[k]!, 0) / total);
  });
  if (subject === 'POOLS') {
    // The oldest waiter is one client: its seconds and microseconds come from the same worker.
    const s = columns.indexOf('maxwait');
    const us = columns.indexOf('maxwait_us');
    const oldest = rows.reduce((best, row) => (num(row, 'maxwait') * 1e6 + num(row, 'maxwait_us') > num(best, 'maxwait') * 1e6 + num(best, 'maxwait_us') ? row : best));
    out[s] = oldest[s] ?? 0;
    out[us] = oldest[us] ?? 0;
  }
  return out;
}
