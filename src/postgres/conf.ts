/**
 * Pure renderers of the files pgwarden owns in a data directory: postgresql.conf, pg_hba.conf, password files
 * and the conninfo strings inside them. No I/O here.
 */
import { PgwardenError } from '../errors.js';

export type ConfValue = string | number | boolean;

/** Renders a value for postgresql.conf: booleans as on/off, numbers bare, strings single-quoted. */
export function quoteConfValue(value: ConfValue): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new PgwardenError('CONFIG_INVALID', `${value} is not a valid PostgreSQL setting value: use a finite number.`);
    return String(value);
  }
  if (/[\r\n\0]/.test(value)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `The PostgreSQL setting value ${JSON.stringify(value)} contains a line break or NUL, which postgresql.conf cannot hold: remove it.`,
    );
  }
  // Inside a quoted postgresql.conf value a backslash starts an escape and '' is a literal quote.
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Renders one value of a libpq key=value connection string. */
export function quoteConninfoValue(value: string | number): string {
  const text = String(value);
  if (text !== '' && /^[^\s'\\]+$/.test(text)) return text;
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Renders a libpq connection string (`host=... port=...`), in the given key order. */
export function renderConninfo(params: Record<string, string | number>): string {
  return Object.entries(params)
    .map(([key, value]) => `${key}=${quoteConninfoValue(value)}`)
    .join(' ');
}

/** libpq's sslmode values. */
export const PG_SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type PgSslMode = (typeof PG_SSL_MODES)[number];

/**
 * TLS of a connection this member makes to another member (replication, pg_basebackup, pg_rewind), in libpq's
 * terms. Absent or null fields are not written, so libpq's defaults apply (sslmode prefer).
 */
export interface PgClientSsl {
  sslmode?: PgSslMode | null;
  /** CA certificate(s) the other member's certificate must chain to (verify-ca, verify-full). */
  sslrootcert?: string | null;
  /** Client certificate and key, for servers that ask for one (pg_hba `cert` or clientcert=verify-*). */
  sslcert?: string | null;
  sslkey?: string | null;
}

/** The conninfo keywords of `ssl`, in a fixed order; empty when nothing is set. */
export function sslConninfoParams(ssl: PgClientSsl | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!ssl) return out;
  for (const key of ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'] as const) {
    const value = ssl[key];
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

/** The same settings as libpq environment variables (PGSSLMODE...), for programs given host and port as flags. */
export function sslEnvironment(ssl: PgClientSsl | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(sslConninfoParams(ssl))) out[`PG${key.toUpperCase()}`] = value;
  return out;
}

export interface PrimaryConninfoOptions {
  host: string;
  port: number;
  user: string;
  /** A password file readable by the PostgreSQL OS user; the password itself never enters postgresql.conf. */
  passfile: string;
  /** The member name: it becomes application_name, which pg_stat_replication and synchronous_standby_names use. */
  applicationName: string;
  connectTimeoutSec?: number;
  /** TLS towards the primary (sslmode verify-full and sslrootcert for a checked, encrypted stream). */
  ssl?: PgClientSsl;
}

/** The primary_conninfo a replica streams with. */
export function renderPrimaryConninfo(o: PrimaryConninfoOptions): string {
  return renderConninfo({
    host: o.host,
    port: o.port,
    user: o.user,
    passfile: o.passfile,
    application_name: o.applicationName,
    dbname: 'postgres',
    connect_timeout: o.connectTimeoutSec ?? 3,
    keepalives_idle: 5,
    keepalives_interval: 2,
    keepalives_count: 3,
    ...sslConninfoParams(o.ssl),
  });
}

const SLOT_NAME_MAX = 63;

/** The physical replication slot name for a member: lowercase, [a-z0-9_], at most 63 characters. */
export function slotNameFor(memberName: string): string {
  const slot = memberName.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, SLOT_NAME_MAX);
  if (slot === '') throw new PgwardenError('CONFIG_INVALID', 'A member name must not be empty: set a name for every member.');
  return slot;
}

/** Double-quotes a standby name as synchronous_standby_names expects (an identifier). */
function quoteStandbyName(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * synchronous_standby_names for the given members: '' for none, '*' for ['*'] (any standby; strict mode with
 * no candidate, so that writes block rather than run unprotected), else `FIRST n ("a","b")` with n = all of them.
 */
export function renderSynchronousStandbyNames(names: readonly string[]): string {
  if (names.length === 0) return '';
  if (names.length === 1 && names[0] === '*') return '*';
  return `FIRST ${names.length} (${names.map(quoteStandbyName).join(',')})`;
}

export interface PgpassEntry {
  host?: string;
  port?: number;
  database?: string;
  user: string;
  password: string;
}

function escapePgpassField(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** Renders a libpq password file (host:port:database:user:password, '*' for any). */
export function renderPgpass(entries: readonly PgpassEntry[]): string {
  return entries
    .map((e) =>
      [e.host ?? '*', e.port === undefined ? '*' : String(e.port), e.database ?? '*', e.user, e.password]
        .map((field, i) => (field === '*' && i < 3 ? field : escapePgpassField(field)))
        .join(':'),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** Settings pgwarden itself keeps right; a user parameter of the same name is ignored (and says so in the file). */
export const OWNED_PARAMETERS: readonly string[] = [
  'listen_addresses',
  'port',
  'unix_socket_directories',
  'primary_conninfo',
  'primary_slot_name',
  'synchronous_standby_names',
  'recovery_target_timeline',
  'hba_file',
  'data_directory',
  'config_file',
];

export interface PostgresqlConfSettings {
  /** Member name: written as cluster_name so `ps` shows whose server a process is. */
  memberName: string;
  listenAddresses: string;
  port: number;
  /** Directory of the Unix socket (owned by the PostgreSQL OS user). */
  socketDir: string;
  /** Set when this server follows a primary (streaming replica). */
  primary: { conninfo: string; slotName: string | null } | null;
  /** Already rendered, see renderSynchronousStandbyNames. */
  synchronousStandbyNames: string;
  /** User parameters, applied over pgwarden's defaults. */
  parameters: Record<string, ConfValue>;
}

/** pgwarden's defaults for an HA member; user parameters override them. */
export const DEFAULT_PARAMETERS: Readonly<Record<string, ConfValue>> = {
  wal_level: 'replica',
  hot_standby: true,
  max_wal_senders: 10,
  max_replication_slots: 10,
  wal_keep_size: '128MB',
  // pg_rewind needs hint-bit changes WAL-logged when checksums are off.
  wal_log_hints: true,
  hot_standby_feedback: true,
  wal_receiver_status_interval: '1s',
  // After a failover a replica reconnects to the new primary within a second instead of five.
  wal_retrieve_retry_interval: '1s',
  password_encryption: 'scram-sha-256',
};

const PARAMETER_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/** Renders the whole postgresql.conf: pgwarden owns the file. */
export function renderPostgresqlConf(s: PostgresqlConfSettings): string {
  const lines = [
    `# Written by pgwarden for member ${JSON.stringify(s.memberName)}. pgwarden rewrites this file whenever it`,
    '# changes the server\'s role: set parameters in pgwarden\'s configuration, not here.',
    '',
  ];
  const put = (name: string, value: ConfValue): void => {
    lines.push(`${name} = ${quoteConfValue(value)}`);
  };
  put('cluster_name', s.memberName);
  const merged = new Map<string, ConfValue>();
  for (const [name, value] of Object.entries(DEFAULT_PARAMETERS)) merged.set(name, value);
  const ignored: string[] = [];
  for (const [rawName, value] of Object.entries(s.parameters)) {
    if (!PARAMETER_NAME.test(rawName)) {
      throw new PgwardenError('CONFIG_INVALID', `"${rawName}" is not a PostgreSQL parameter name: use letters, digits, '_' and '.'.`);
    }
    const name = rawName.toLowerCase();
    if (OWNED_PARAMETERS.includes(name)) ignored.push(name);
    else merged.set(name, value);
  }
  for (const [name, value] of merged) put(name, value);
  lines.push('', '# Managed by pgwarden (connection and replication topology).');
  put('listen_addresses', s.listenAddresses);
  put('port', s.port);
  put('unix_socket_directories', s.socketDir);
  put('recovery_target_timeline', 'latest');
  put('primary_conninfo', s.primary?.conninfo ?? '');
  put('primary_slot_name', s.primary?.slotName ?? '');
  put('synchronous_standby_names', s.synchronousStandbyNames);
  for (const name of ignored) lines.push(`# ignored user parameter ${name}: pgwarden manages it`);
  return `${lines.join('\n')}\n`;
}

export interface PgHbaSettings {
  /** The role that streams WAL and clones (REPLICATION). */
  replicationUser: string;
  /** Networks (CIDR) besides loopback that may connect, e.g. the other members' subnet. */
  extraCidrs: readonly string[];
}

const CIDR = /^(\d{1,3}(\.\d{1,3}){3}\/\d{1,2}|[0-9A-Fa-f:]+:[0-9A-Fa-f:.]*\/\d{1,3})$/;

function hbaUser(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** Renders pg_hba.conf: SCRAM-SHA-256 for everything (never trust), loopback plus the configured networks. */
export function renderPgHba(s: PgHbaSettings): string {
  for (const cidr of s.extraCidrs) {
    if (!CIDR.test(cidr)) {
      throw new PgwardenError('CONFIG_INVALID', `"${cidr}" is not a network in CIDR form (like 10.0.0.0/8 or fd00::/8): fix the allowed networks.`);
    }
  }
  const repl = hbaUser(s.replicationUser);
  const rows: string[][] = [
    ['local', 'all', 'all', '', 'scram-sha-256'],
    ['host', 'all', 'all', '127.0.0.1/32', 'scram-sha-256'],
    ['host', 'all', 'all', '::1/128', 'scram-sha-256'],
    ...s.extraCidrs.map((cidr) => ['host', 'all', 'all', cidr, 'scram-sha-256']),
    ['local', 'replication', repl, '', 'scram-sha-256'],
    ['host', 'replication', repl, '127.0.0.1/32', 'scram-sha-256'],
    ['host', 'replication', repl, '::1/128', 'scram-sha-256'],
    ...s.extraCidrs.map((cidr) => ['host', 'replication', repl, cidr, 'scram-sha-256']),
  ];
  const lines = [
    '# Written by pgwarden; it rewrites this file. Allowed networks are set in pgwarden\'s configuration.',
    '# TYPE  DATABASE     USER                 ADDRESS                  METHOD',
    ...rows.map((r) => `${r[0].padEnd(7)} ${r[1].padEnd(12)} ${r[2].padEnd(20)} ${r[3].padEnd(24)} ${r[4]}`.trimEnd()),
  ];
  return `${lines.join('\n')}\n`;
}
