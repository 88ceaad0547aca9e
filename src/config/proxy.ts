/**
 * The proxy's YAML file (`pgwarden proxy --config proxy.yml`): PgBouncer's settings under PgBouncer's names, so
 * that a pgbouncer.ini translates line for line. Also the userlist (auth_file) reader.
 */
import { type EtcdTlsFiles, etcdTlsProblems, hasEtcdTls } from '../dcs/etcd-tls.js';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { PgwardenError } from '../errors.js';
import { parseOrThrow } from './issues.js';
import { describeValue, expecting } from '../cluster/schema-messages.js';
import { type HostPort, parseHostPort } from './schema.js';
import { readYamlFile } from './yaml-file.js';
import { HbaParseError, type HbaRules, parseHba } from '../postgres/hba.js';

export type PoolMode = 'session' | 'transaction';
export type ProxyAuthType = 'scram-sha-256' | 'md5' | 'trust' | 'hba';

const hostPort = z.string(expecting('"host:port", e.g. "127.0.0.1:6432"')).transform((value, ctx): HostPort => {
  const parsed = parseHostPort(value, { allowPortZero: true });
  if (parsed === null) {
    ctx.addIssue({ code: 'custom', message: `expected "host:port" with a port from 0 to 65535, got ${describeValue(value)}` });
    return z.NEVER;
  }
  return parsed;
});

const seconds = (fallback: number) => z.number(expecting('a number of seconds')).min(0).default(fallback);
const count = (fallback: number) => z.number(expecting('a whole number')).int().min(1).default(fallback);
const whole = (fallback: number) => z.number(expecting('a whole number')).int().min(0).default(fallback);

export const proxyConfigSchema = z.strictObject({
  listen: hostPort.default({ host: '127.0.0.1', port: 6432 }),
  pool_mode: z.enum(['session', 'transaction'], expecting('"session" or "transaction"')).default('transaction'),
  default_pool_size: count(20),
  /** Server connections each pool keeps open even without clients asking (refilled by housekeeping). */
  min_pool_size: whole(0),
  /** Extra connections a pool may open once a client has waited longer than reserve_pool_timeout. */
  reserve_pool_size: whole(0),
  reserve_pool_timeout: seconds(5),
  /** Server connections per database across all its users' pools (rw and ro counted apart); 0: no limit. */
  max_db_connections: whole(0),
  max_client_conn: count(1000),
  query_wait_timeout: seconds(120),
  server_idle_timeout: seconds(600),
  server_lifetime: seconds(3600),
  /** A client idle inside a transaction longer than this is disconnected; 0: never. */
  idle_transaction_timeout: seconds(0),
  /** A client idle (nothing sent or owed) longer than this is disconnected; 0: never. */
  client_idle_timeout: seconds(0),
  /**
   * PgBouncer's client_login_timeout: a client that has not finished its startup and authentication this many
   * seconds after it connected is disconnected (PostgreSQL's authentication_timeout, also 60 s); 0: never.
   */
  client_login_timeout: seconds(60),
  server_reset_query: z.string(expecting('an SQL statement, e.g. "DISCARD ALL"')).default('DISCARD ALL'),
  /** hba: the method comes from auth_hba_file, line by line (setting auth_hba_file alone implies it). */
  auth_type: z.enum(['scram-sha-256', 'md5', 'trust', 'hba'], expecting('"scram-sha-256", "md5", "trust" or "hba"')).default('scram-sha-256'),
  /**
   * PgBouncer's auth_hba_file: rules in pg_hba.conf's format deciding per connection type, database, user and
   * address how a client logs in (trust, reject, md5, scram-sha-256, cert); relative to the config file's directory.
   */
  auth_hba_file: z.string(expecting('the path of a pg_hba.conf-style file')).min(1).optional(),
  /**
   * PgBouncer's unix_socket_dir: also listen on the Unix-domain socket <dir>/.s.PGSQL.<port of listen>, named as
   * PostgreSQL names it, so that `psql -h <dir>` connects; absent or empty: no Unix socket.
   */
  unix_socket_dir: z.string(expecting('a directory, e.g. "/var/run/pgwarden"')).optional(),
  /** Permissions of the socket file, octal in quotes (PgBouncer's default "0777"): who may connect. */
  unix_socket_mode: z
    .string(expecting('an octal mode in quotes, e.g. "0777" or "0770" (unquoted, YAML reads 0777 as the decimal number 777)'))
    .regex(/^0?[0-7]{3}$/, 'expected an octal mode of three digits with an optional leading 0, e.g. "0777" or "0770"')
    .default('0777'),
  /** Group owning the socket file (a name from /etc/group or a numeric gid); absent: the proxy's own group. */
  unix_socket_group: z.string(expecting('a group name or numeric gid')).min(1).optional(),
  /** Path of the userlist; relative to the config file's directory. Required unless auth_type is trust. */
  auth_file: z.string(expecting('the path of a userlist file')).optional(),
  /** PgBouncer's auth_user: the role the proxy logs in as to run auth_query; its password must be in auth_file. */
  auth_user: z.string(expecting('a user name')).min(1).optional(),
  /**
   * PgBouncer's auth_query, run on the primary for users missing from auth_file with $1 = the user name: returns
   * (name, secret) and optionally a third column, the password's expiry (VALID UNTIL; NULL: never).
   */
  auth_query: z.string(expecting('an SQL query with $1 for the user name')).min(1).optional(),
  /** PgBouncer's auth_dbname: the database auth_query runs in; absent: the database the client asked for. */
  auth_dbname: z.string(expecting('a database name')).min(1).optional(),
  /** Seconds an auth_query answer (also "no such user") is reused, so that a storm of logins asks the primary once. */
  auth_query_cache_ttl: seconds(5),
  databases: z
    .record(
      z.string(),
      z
        .strictObject({
          dbname: z.string(expecting('a database name')).optional(),
          /** Per-database overrides of default_pool_size, min_pool_size, reserve_pool_size, max_db_connections. */
          pool_size: z.number(expecting('a whole number')).int().min(1).optional(),
          min_pool_size: z.number(expecting('a whole number')).int().min(0).optional(),
          reserve_pool: z.number(expecting('a whole number')).int().min(0).optional(),
          max_db_connections: z.number(expecting('a whole number')).int().min(0).optional(),
          /** This database's pool mode (a user's own pool_mode wins over it, as in PgBouncer). */
          pool_mode: z.enum(['session', 'transaction'], expecting('"session" or "transaction"')).optional(),
        })
        .nullable()
        .default(null),
    )
    .optional(),
  /** PgBouncer's [users] section: per-user settings; pool_mode wins over the database's and the global one. */
  user_settings: z
    .record(z.string(), z.strictObject({ pool_mode: z.enum(['session', 'transaction'], expecting('"session" or "transaction"')).optional() }))
    .optional(),
  /**
   * Plain TCP connections are read and written by the proxy's C module once logged in (dist/native/wire.node,
   * built by `npm run build`); false keeps Node sockets. Without the module the proxy uses Node sockets and warns.
   */
  native_io: z.boolean(expecting('true or false')).default(true),
  /**
   * Threads that serve clients, each with its own event loop and share of the connections, so that the proxy uses
   * more than one core (PgBouncer uses one). Pool limits hold for the whole proxy. Needs native_io. "auto": one per
   * CPU (at most 8), or 1 where more cannot be used (native_io: false).
   */
  workers: z
    .union([z.literal('auto'), z.number().int().min(1).max(64)], expecting('a whole number of threads from 1 to 64, or "auto"'))
    .default('auto'),
  max_message_length: z.number(expecting('a number of bytes')).int().min(1024).max(0x3fffffff).default(0x3fffffff),
  /** Static mode: the primary as "host:port" (the --primary option overrides it). */
  primary: hostPort.optional(),
  replicas: z.array(hostPort).default([]),
  /** Users allowed every admin console command (database pgwarden or pgbouncer), as PgBouncer's admin_users. */
  admin_users: z.array(z.string(expecting('a user name'))).default([]),
  /** Users allowed only SHOW on the admin console, as PgBouncer's stats_users. */
  stats_users: z.array(z.string(expecting('a user name'))).default([]),
  /** Seconds between the refreshes of SHOW STATS' averages, as PgBouncer's stats_period. */
  stats_period: z.number(expecting('a number of seconds')).int().min(1).default(60),
  /** Prometheus /metrics of the proxy as "host:port"; absent: no metrics listener. */
  metrics_listen: hostPort.optional(),
  /** The read-only listener (replicas); absent: no ro port. */
  listen_ro: hostPort.optional(),
  /** ro port: replicas further behind the primary than this many bytes get no new transactions. */
  max_replica_lag: z.number(expecting('a number of bytes')).int().min(0).default(16 * 1024 * 1024),
  /** ro port: use the primary while no replica qualifies (else ro transactions wait). */
  ro_fallback_primary: z.boolean(expecting('true or false')).default(false),
  /** etcd mode: follow the cluster's leader instead of a fixed primary. */
  etcd: z
    .strictObject({
      endpoints: z.array(z.string(expecting('an etcd URL, e.g. "http://127.0.0.1:2379"'))).min(1),
      cluster: z.string(expecting('the cluster name')),
      /** TLS towards etcd (https:// endpoints), as the agent's etcd.cacert, cert and key. */
      cacert: z.string(expecting('the path of the CA certificate (PEM) etcd\'s certificate is signed by')).min(1).optional(),
      cert: z.string(expecting('the path of the client certificate (PEM) etcd checks')).min(1).optional(),
      key: z.string(expecting('the path of the client certificate\'s key (PEM)')).min(1).optional(),
    })
    .optional(),
  /** This proxy's name under proxies/<id> in etcd (default: hostname-pid). */
  id: z.string(expecting('a proxy name')).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/).optional(),
  /** TLS for clients: PEM certificate and key (relative to the config file's directory); both or neither. */
  client_tls_cert_file: z.string(expecting('the path of a PEM certificate file')).optional(),
  client_tls_key_file: z.string(expecting('the path of a PEM private key file')).optional(),
  /** CA that client certificates must verify against when a client presents one. */
  client_tls_ca_file: z.string(expecting('the path of a PEM CA certificate file')).optional(),
  /** disable: answer SSLRequest with N; allow (default with a certificate): TLS or plaintext; require: TLS only. */
  client_tls_sslmode: z.enum(['disable', 'allow', 'require'], expecting('"disable", "allow" or "require"')).optional(),
  /** TLS to PostgreSQL, as PgBouncer's server_tls_sslmode (libpq's meanings); disable: plaintext. */
  server_tls_sslmode: z
    .enum(['disable', 'prefer', 'require', 'verify-ca', 'verify-full'], expecting('"disable", "prefer", "require", "verify-ca" or "verify-full"'))
    .default('disable'),
  /** CA certificates the server's certificate must chain to (verify-ca, verify-full); absent: the system's CAs. */
  server_tls_ca_file: z.string(expecting('the path of a PEM CA certificate file')).optional(),
  /** Client certificate and key the proxy presents to PostgreSQL (both or neither). */
  server_tls_cert_file: z.string(expecting('the path of a PEM certificate file')).optional(),
  server_tls_key_file: z.string(expecting('the path of a PEM private key file')).optional(),
});

/** client_tls_* resolved: absolute paths; null when clients get no TLS. */
export interface ClientTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string | null;
  sslmode: 'allow' | 'require';
}

export type ProxyConfig = z.output<typeof proxyConfigSchema> & {
  /** `workers` resolved: the number of threads that serve clients (1: the main thread alone). */
  workerThreads: number;
  /** auth_file resolved against the config file's directory. */
  authFilePath: string | null;
  /** user → password, SCRAM secret or md5 secret, from auth_file. */
  users: Map<string, string>;
  /** client_tls_* resolved, or null when TLS for clients is off. */
  clientTls: ClientTlsFiles | null;
  /** auth_user/auth_query resolved, or null when users come only from auth_file. */
  authQuery: AuthQuerySettings | null;
  /** server_tls_* resolved, or null when the proxy talks plaintext to PostgreSQL. */
  serverTls: ServerTlsFiles | null;
  /** etcd.cacert, cert and key resolved against the config file's directory, or null without TLS to etcd. */
  etcdTls: EtcdTlsFiles | null;
  /** auth_hba_file's rules (auth_type is then hba), or null. */
  hba: HbaRules | null;
  /** unix_socket_* resolved, or null without a Unix-domain socket. */
  unixSocket: UnixSocketSettings | null;
};

/** unix_socket_* resolved. */
export interface UnixSocketSettings {
  /** Absolute directory of the socket file. */
  dir: string;
  /** Permission bits of the socket file. */
  mode: number;
  /** unix_socket_group as written (resolved to a gid when the socket is made), or null. */
  group: string | null;
}

/** PgBouncer's default auth_query plus pg_shadow's valuntil, so that VALID UNTIL is honoured. */
export const DEFAULT_AUTH_QUERY = 'SELECT usename, passwd, valuntil FROM pg_catalog.pg_shadow WHERE usename=$1';

export interface AuthQuerySettings {
  user: string;
  /** auth_user's entry in auth_file: its password or md5 secret. */
  secret: string;
  query: string;
  /** null: the database the client asked for. */
  dbname: string | null;
  cacheTtlMs: number;
}

/** server_tls_* with absolute paths. */
export interface ServerTlsFiles {
  sslmode: 'prefer' | 'require' | 'verify-ca' | 'verify-full';
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
}

/** Parses PgBouncer's userlist format: `"user" "secret"` per line; `""` inside quotes is one quote. */
export function parseUserlist(text: string, source: string): Map<string, string> {
  const users = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    const fields: string[] = [];
    let pos = 0;
    while (pos < line.length && fields.length < 2) {
      while (line[pos] === ' ' || line[pos] === '\t') pos++;
      if (line[pos] !== '"') break;
      let value = '';
      pos++;
      for (;;) {
        if (pos >= line.length) throw userlistError(source, i + 1, 'a quoted field is not closed');
        if (line[pos] === '"') {
          if (line[pos + 1] === '"') {
            value += '"';
            pos += 2;
            continue;
          }
          pos++;
          break;
        }
        value += line[pos++];
      }
      fields.push(value);
    }
    if (fields.length !== 2 || fields[0] === '') throw userlistError(source, i + 1, 'expected "user" "password-or-secret"');
    users.set(fields[0], fields[1]);
  }
  return users;
}

function userlistError(source: string, line: number, what: string): PgwardenError {
  return new PgwardenError('CONFIG_INVALID', `${source} line ${line} is invalid: ${what}; each line is "user" "password" (PgBouncer's userlist format)`);
}

export interface ParseProxyConfigOptions {
  source: string;
  baseDir: string;
  readFile?: (path: string) => string;
}

export function parseProxyConfig(raw: unknown, options: ParseProxyConfigOptions): ProxyConfig {
  const contents = raw === null || raw === undefined ? {} : raw;
  if (typeof contents !== 'object' || Array.isArray(contents)) {
    throw new PgwardenError('CONFIG_INVALID', `${options.source} is invalid: expected a YAML mapping of proxy settings, got ${describeValue(contents)}`);
  }
  const parsed = parseOrThrow(proxyConfigSchema, contents, options.source);
  const read = options.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const hba = hbaRules(parsed, contents as Record<string, unknown>, options, read);
  if (hba !== null) parsed.auth_type = 'hba';
  let users = new Map<string, string>();
  let authFilePath: string | null = null;
  if (parsed.auth_file !== undefined) {
    authFilePath = resolve(options.baseDir, parsed.auth_file);
    let text: string;
    try {
      text = read(authFilePath);
    } catch (e) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: auth_file ${authFilePath} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): create it with lines "user" "password"`,
        { cause: e },
      );
    }
    users = parseUserlist(text, `auth_file ${authFilePath}`);
  } else if (hba !== null) {
    const asking = hba.rules.find((r) => r.method === 'md5' || r.method === 'scram-sha-256');
    if (asking !== undefined) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: auth_file is required: auth_hba_file ${asking.where} asks for ${asking.method} passwords; set auth_file to a userlist file ("user" "password" lines)`,
      );
    }
  } else if (parsed.auth_type !== 'trust') {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: auth_file is required when auth_type is ${parsed.auth_type}: set it to a userlist file ("user" "password" lines)`,
    );
  }
  if (parsed.workers !== 'auto' && parsed.workers > 1) checkWorkers(parsed, options.source);
  const clientTls = clientTlsFiles(parsed, options);
  if (hba !== null) checkHbaAgainstTls(hba, clientTls, options.source);
  return {
    ...parsed,
    workerThreads: workerThreads(parsed),
    authFilePath,
    users,
    clientTls,
    authQuery: authQuerySettings(parsed, users, options),
    serverTls: serverTlsFiles(parsed, options),
    etcdTls: etcdTlsFiles(parsed, options),
    hba,
    unixSocket: unixSocketSettings(parsed, options),
  };
}

/** auth_hba_file read and parsed (auth_type must then be absent or hba), or null; a bad line names file:line. */
function hbaRules(parsed: z.output<typeof proxyConfigSchema>, raw: Record<string, unknown>, options: ParseProxyConfigOptions, read: (path: string) => string): HbaRules | null {
  if (parsed.auth_hba_file === undefined) {
    if (parsed.auth_type === 'hba') {
      throw new PgwardenError('CONFIG_INVALID', `${options.source} is invalid: auth_type hba needs auth_hba_file: set it to a pg_hba.conf-style rules file`);
    }
    return null;
  }
  if (raw.auth_type !== undefined && raw.auth_type !== 'hba') {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: auth_type ${String(raw.auth_type)} and auth_hba_file cannot be combined (with auth_hba_file each line names its method): remove auth_type or set it to hba`,
    );
  }
  const path = resolve(options.baseDir, parsed.auth_hba_file);
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: auth_hba_file ${path} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): create it with pg_hba.conf lines, e.g. "host all all 127.0.0.1/32 scram-sha-256"`,
      { cause: e },
    );
  }
  try {
    return parseHba(text, path, { readFile: read });
  } catch (e) {
    if (e instanceof HbaParseError) throw new PgwardenError('CONFIG_INVALID', `${options.source} is invalid: auth_hba_file ${e.message}`, { cause: e });
    throw e;
  }
}

/** hostssl lines need TLS for clients; cert lines also client certificates verified against client_tls_ca_file. */
function checkHbaAgainstTls(hba: HbaRules, clientTls: ClientTlsFiles | null, source: string): void {
  for (const rule of hba.rules) {
    if (rule.type === 'hostssl' && clientTls === null) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${source} is invalid: auth_hba_file ${rule.where}: a hostssl line can never match because clients get no TLS: set client_tls_cert_file and client_tls_key_file, or write host`,
      );
    }
    if (rule.method === 'cert' && (clientTls === null || clientTls.caFile === null)) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${source} is invalid: auth_hba_file ${rule.where}: cert needs client certificates verified by a CA: set client_tls_ca_file to the CA that signs them`,
      );
    }
  }
}

/** The longest socket path Linux accepts (sun_path holds 108 bytes with the final NUL). */
const MAX_SOCKET_PATH = 107;

function unixSocketSettings(parsed: z.output<typeof proxyConfigSchema>, options: ParseProxyConfigOptions): UnixSocketSettings | null {
  const given = parsed.unix_socket_dir;
  if (given === undefined || given === '') {
    if (parsed.unix_socket_group !== undefined) {
      throw new PgwardenError('CONFIG_INVALID', `${options.source} is invalid: unix_socket_group is set but unix_socket_dir is not: set unix_socket_dir or remove unix_socket_group`);
    }
    return null;
  }
  const dir = resolve(options.baseDir, given);
  // The longest name, .s.PGSQL.65535, must fit.
  const longest = Buffer.byteLength(`${dir}/.s.PGSQL.65535`);
  if (longest > MAX_SOCKET_PATH) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: unix_socket_dir ${dir} is too long for a socket path (${longest} bytes with /.s.PGSQL.<port>, the system allows ${MAX_SOCKET_PATH}): choose a shorter directory`,
    );
  }
  return { dir, mode: parseInt(parsed.unix_socket_mode, 8), group: parsed.unix_socket_group ?? null };
}

/** Above this many CPUs, "auto" still starts this many workers: a pooler's share of a big machine. */
export const AUTO_WORKERS_MAX = 8;

function workerThreads(parsed: z.output<typeof proxyConfigSchema>): number {
  if (parsed.workers !== 'auto') return parsed.workers;
  if (unsupportedWithWorkers(parsed).length > 0) return 1;
  return Math.max(1, Math.min(AUTO_WORKERS_MAX, availableParallelism()));
}

function unsupportedWithWorkers(parsed: z.output<typeof proxyConfigSchema>): string[] {
  const unsupported: string[] = [];
  if (!parsed.native_io) unsupported.push('native_io: false');
  return unsupported;
}

/** What does not work with more than one worker thread: named, with the way out. */
function checkWorkers(parsed: z.output<typeof proxyConfigSchema>, source: string): void {
  const unsupported = unsupportedWithWorkers(parsed);
  if (unsupported.length > 0) {
    throw new PgwardenError('CONFIG_INVALID', `${source} is invalid: workers: ${parsed.workers} cannot be combined with ${unsupported.join(', ')} (workers hand connections between threads through the native module): set workers: 1 or leave those out`);
  }
}

function authQuerySettings(parsed: z.output<typeof proxyConfigSchema>, users: Map<string, string>, options: ParseProxyConfigOptions): AuthQuerySettings | null {
  const { auth_user: user, auth_query: query, auth_dbname: dbname } = parsed;
  if (user === undefined) {
    if (query !== undefined || dbname !== undefined) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: ${query !== undefined ? 'auth_query' : 'auth_dbname'} needs auth_user: set auth_user to the role that runs the query (its password in auth_file)`,
      );
    }
    return null;
  }
  const secret = users.get(user);
  if (secret === undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: auth_user "${user}" has no entry in auth_file: add the line "${user}" "<its password>" so the proxy can log in to run auth_query`,
    );
  }
  if (secret.startsWith('SCRAM-SHA-256$')) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: auth_user "${user}" has a SCRAM secret in auth_file, with which the proxy cannot log in by itself: put the password itself (or an md5 secret for an md5 pg_hba) in auth_file`,
    );
  }
  return { user, secret, query: query ?? DEFAULT_AUTH_QUERY, dbname: dbname ?? null, cacheTtlMs: parsed.auth_query_cache_ttl * 1000 };
}

function etcdTlsFiles(parsed: z.output<typeof proxyConfigSchema>, options: ParseProxyConfigOptions): EtcdTlsFiles | null {
  const etcd = parsed.etcd;
  if (etcd === undefined) return null;
  const problem = etcdTlsProblems(etcd, etcd.endpoints)[0];
  if (problem !== undefined) throw new PgwardenError('CONFIG_INVALID', `${options.source} is invalid: etcd.${problem.key}: ${problem.message}`);
  const file = (p: string | undefined): string | null => (p === undefined ? null : resolve(options.baseDir, p));
  const files = { cacert: file(etcd.cacert), cert: file(etcd.cert), key: file(etcd.key) };
  return hasEtcdTls(files) ? files : null;
}

function serverTlsFiles(parsed: z.output<typeof proxyConfigSchema>, options: ParseProxyConfigOptions): ServerTlsFiles | null {
  const { server_tls_sslmode: mode, server_tls_ca_file: ca, server_tls_cert_file: cert, server_tls_key_file: key } = parsed;
  if ((cert === undefined) !== (key === undefined)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: server_tls_cert_file and server_tls_key_file go together: set both (a client certificate for PostgreSQL) or neither`,
    );
  }
  if (mode === 'disable') {
    const set = ca !== undefined ? 'server_tls_ca_file' : cert !== undefined ? 'server_tls_cert_file' : null;
    if (set !== null) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: ${set} is set but server_tls_sslmode is disable (the default): set server_tls_sslmode (verify-full checks the server's certificate and name) or remove ${set}`,
      );
    }
    return null;
  }
  const file = (p: string | undefined): string | null => (p === undefined ? null : resolve(options.baseDir, p));
  return { sslmode: mode, caFile: file(ca), certFile: file(cert), keyFile: file(key) };
}

function clientTlsFiles(parsed: z.output<typeof proxyConfigSchema>, options: ParseProxyConfigOptions): ClientTlsFiles | null {
  const { client_tls_cert_file: cert, client_tls_key_file: key, client_tls_ca_file: ca, client_tls_sslmode: mode } = parsed;
  if ((cert === undefined) !== (key === undefined)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: client_tls_cert_file and client_tls_key_file go together: set both (TLS for clients) or neither`,
    );
  }
  if (cert === undefined || key === undefined) {
    if (mode === 'allow' || mode === 'require') {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: client_tls_sslmode ${mode} needs a certificate: set client_tls_cert_file and client_tls_key_file`,
      );
    }
    return null;
  }
  if (mode === 'disable') return null;
  return {
    certFile: resolve(options.baseDir, cert),
    keyFile: resolve(options.baseDir, key),
    caFile: ca === undefined ? null : resolve(options.baseDir, ca),
    sslmode: mode ?? 'allow',
  };
}

export function loadProxyConfig(path: string): ProxyConfig {
  const { raw, source, baseDir } = readYamlFile(path, 'at least auth_file');
  return parseProxyConfig(raw, { source, baseDir });
}

/** The pool mode of (database as the client named it, user): the user's, else the database's, else pool_mode. */
export function poolModeFor(config: Pick<ProxyConfig, 'pool_mode' | 'databases' | 'user_settings'>, database: string, user: string | null): PoolMode {
  const own = user === null ? undefined : config.user_settings?.[user]?.pool_mode;
  return own ?? config.databases?.[database]?.pool_mode ?? config.pool_mode;
}
