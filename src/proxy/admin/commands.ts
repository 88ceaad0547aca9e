/**
 * The admin console's language, pure: parsing one statement of PgBouncer's console and the column lists of
 * PgBouncer 1.18's SHOW answers (names and order are the contract with exporters and scripts).
 */

export const SHOW_SUBJECTS = ['POOLS', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'SERVERS', 'CLIENTS', 'DATABASES', 'LISTS', 'CONFIG', 'VERSION', 'USERS'] as const;
export type ShowSubject = (typeof SHOW_SUBJECTS)[number];

export const CONTROL_VERBS = ['PAUSE', 'RESUME', 'RELOAD', 'RECONNECT', 'KILL', 'WAIT_CLOSE', 'SHUTDOWN'] as const;
export type ControlVerb = (typeof CONTROL_VERBS)[number];

export type AdminCommand =
  | { kind: 'show'; subject: ShowSubject }
  | { kind: 'control'; verb: ControlVerb; database: string | null }
  | { kind: 'empty' }
  | { kind: 'unknown'; text: string };

/** Columns of PgBouncer 1.18's answers, in its order. */
export const COLUMNS: Record<ShowSubject, readonly string[]> = {
  POOLS: ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode'],
  // PgBouncer 1.18's 15 columns, then total_requests (PgBouncer < 1.8's name for total_query_count): Debian's
  // prometheus-pgbouncer-exporter 1.7 reads it and fails its whole scrape without it; tools that read by name or by
  // position up to avg_wait_time see PgBouncer 1.18 exactly.
  STATS: ['database', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent', 'total_xact_time', 'total_query_time', 'total_wait_time', 'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time', 'total_requests'],
  STATS_TOTALS: ['database', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'],
  STATS_AVERAGES: ['database', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'],
  SERVERS: ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name'],
  CLIENTS: ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name'],
  DATABASES: ['name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool', 'pool_mode', 'max_connections', 'current_connections', 'paused', 'disabled'],
  LISTS: ['list', 'items'],
  CONFIG: ['key', 'value', 'default', 'changeable'],
  VERSION: ['version'],
  USERS: ['name', 'pool_mode'],
};

/** Integer columns (int8 in PgBouncer's answers); everything else is text. */
export const NUMERIC_COLUMNS = new Set([
  'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us',
  'total_xact_count', 'total_query_count', 'total_received', 'total_sent', 'total_xact_time', 'total_query_time', 'total_wait_time', 'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time', 'total_requests',
  'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time',
  'wait', 'wait_us', 'close_needed', 'remote_pid',
  'pool_size', 'min_pool_size', 'reserve_pool', 'max_connections', 'current_connections', 'paused', 'disabled', 'items',
]);

/** Integer columns of SHOW SERVERS/CLIENTS/DATABASES where PgBouncer sends int4. */
export const PORT_COLUMNS = new Set(['port', 'local_port']);

/** The version string SHOW VERSION reports: the PgBouncer release whose console this one mirrors. */
export const PGBOUNCER_VERSION = 'PgBouncer 1.18.0 (pgwarden)';

/** SHOW commands allowed to stats_users; everything else needs admin_users. */
export function isReadOnly(command: AdminCommand): boolean {
  return command.kind === 'show' || command.kind === 'empty';
}

/** Parses one console statement (case-insensitive, optional trailing semicolon, optional quoted database). */
export function parseAdminCommand(sql: string): AdminCommand {
  const text = sql.trim().replace(/;\s*$/, '').trim();
  if (text === '') return { kind: 'empty' };
  const words = text.split(/\s+/);
  const verb = words[0].toUpperCase();
  if (verb === 'SHOW' && words.length === 2) {
    const subject = words[1].toUpperCase();
    if ((SHOW_SUBJECTS as readonly string[]).includes(subject)) return { kind: 'show', subject: subject as ShowSubject };
    return { kind: 'unknown', text };
  }
  if ((CONTROL_VERBS as readonly string[]).includes(verb) && words.length <= 2) {
    const takesDatabase = verb !== 'RELOAD' && verb !== 'SHUTDOWN';
    if (words.length === 2 && !takesDatabase) return { kind: 'unknown', text };
    if (verb === 'KILL' && words.length !== 2) return { kind: 'unknown', text };
    const database = words.length === 2 ? words[1].replace(/^"(.*)"$/, '$1') : null;
    return { kind: 'control', verb: verb as ControlVerb, database };
  }
  return { kind: 'unknown', text };
}

export function validCommandsHint(): string {
  return `Valid commands: ${SHOW_SUBJECTS.map((s) => `SHOW ${s}`).join(', ')}, PAUSE [db], RESUME [db], RELOAD, RECONNECT [db], KILL db, WAIT_CLOSE [db], SHUTDOWN.`;
}
