/**
 * The per-agent YAML file (`AgentConfig`) with its defaults and validation, and the changes to the dynamic settings
 * kept in etcd (`edit-config --set`, PATCH and PUT /config), checked with their schema in src/cluster/dynamic-config.ts.
 */
import { z } from 'zod';
import { PgwardenError } from '../errors.js';
import {
  DEFAULT_DYNAMIC_CONFIG,
  DYNAMIC_CONFIG_FIELDS,
  dynamicConfigSchema,
  partialDynamicConfigSchema,
  type DynamicConfig,
  type PartialDynamicConfig,
} from '../cluster/dynamic-config.js';
import { pgParametersSchema } from '../cluster/pg-parameters.js';
import { DEFAULT_TAGS, type Tags } from '../cluster/types.js';
import { readFileSync } from 'node:fs';
import { resolve as resolvePathFrom } from 'node:path';
import { parseOrThrow } from './issues.js';
import { describeValue, expecting } from '../cluster/schema-messages.js';
import { PG_SSL_MODES, type PgClientSsl } from '../postgres/conf.js';
import { VERIFY_CLIENT_MODES, type ApiTlsFiles } from './api-tls.js';
import { etcdTlsProblems, type EtcdTlsFiles } from '../dcs/etcd-tls.js';
import { closest } from './suggest.js';

// ---------------------------------------------------------------------------------------------------------
// Small shared pieces
// ---------------------------------------------------------------------------------------------------------

export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses "host:port" or "[v6]:port"; null when malformed or the port is outside 1..65535 (0..65535 with
 * `allowPortZero`, for servers asked to pick a free port).
 */
export function parseHostPort(value: string, options: { allowPortZero?: boolean } = {}): HostPort | null {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  if (!match) return null;
  const port = Number(match[3]);
  if (port < (options.allowPortZero ? 0 : 1) || port > 65535) return null;
  return { host: match[1] ?? match[2], port };
}

/** "host:port" for a URL or an address shown to users (brackets around IPv6). */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '*';
}

const hostPort = (example: string) =>
  z.string(expecting(`"host:port" like ${example}`)).refine((v) => parseHostPort(v) !== null, {
    error: (issue) =>
      `expected "host:port" with a port from 1 to 65535, like ${example}; got ${describeValue(issue.input)}`,
  });

const nonEmpty = (what: string) =>
  z.string(expecting(what)).min(1, { error: `must not be empty: set it to ${what}` });

const CLUSTER_NAME = /^[a-z0-9_-]+$/;
const MEMBER_NAME = /^[a-z0-9_.-]+$/;

export const clusterNameSchema = z
  .string(expecting('a cluster name like "main" (lower-case letters, digits, "-" and "_")'))
  .regex(CLUSTER_NAME, {
    error: (issue) =>
      `expected lower-case letters, digits, "-" and "_" only (it becomes part of etcd keys), like "main"; got ${describeValue(issue.input)}`,
  });

export const memberNameSchema = z
  .string(expecting('a member name like "pg1" (lower-case letters, digits, "-", "_" and ".")'))
  .regex(MEMBER_NAME, {
    error: (issue) =>
      `expected lower-case letters, digits, "-", "_" and "." only (it names etcd keys and replication connections), like "pg1"; got ${describeValue(issue.input)}`,
  });

// ---------------------------------------------------------------------------------------------------------
// DynamicConfig (etcd key `config`; its schema is the model's)
// ---------------------------------------------------------------------------------------------------------

/** Validates (and completes with defaults) a dynamic configuration; throws CONFIG_INVALID naming each bad field. */
export function validateDynamicConfig(input: unknown, source = 'the dynamic configuration'): DynamicConfig {
  return parseOrThrow(dynamicConfigSchema, input, source);
}

// ---------------------------------------------------------------------------------------------------------
// edit-config --set key=value, and JSON merge patches (PATCH /config)
// ---------------------------------------------------------------------------------------------------------

const PARAMETERS_PREFIX = 'postgresql.parameters.';
const BACKUP_PREFIX = 'backup.';

/** The value each `backup.*` setting takes on a command line; the schema checks it after. */
type SettingValueType = 'text' | 'number' | 'boolean';
const BACKUP_SETTING_TYPES: Readonly<Record<string, SettingValueType>> = {
  'repository.type': 'text',
  'repository.path': 'text',
  'repository.endpoint': 'text',
  'repository.bucket': 'text',
  'repository.region': 'text',
  'repository.key_file': 'text',
  'repository.secret_file': 'text',
  'repository.path_style': 'text',
  'repository.verify_tls': 'boolean',
  'repository.ca_file': 'text',
  'retention.full': 'number',
  'retention.window_days': 'number',
  'retention.diff': 'number',
  compression: 'text',
  cipher_pass_file: 'text',
  'schedule.full': 'text',
  'schedule.diff': 'text',
  'schedule.incr': 'text',
  'schedule.verify': 'text',
  'schedule.timezone': 'text',
  stanza: 'text',
};

const BACKUP_SETTING_KEYS = Object.keys(BACKUP_SETTING_TYPES).map((key) => BACKUP_PREFIX + key);

/** Every key `applyConfigSetting` accepts (parameters as a pattern). */
export const DYNAMIC_CONFIG_SETTING_KEYS: readonly string[] = [
  ...DYNAMIC_CONFIG_FIELDS.filter((k) => k !== 'postgresql'),
  `${PARAMETERS_PREFIX}<name>`,
  ...BACKUP_SETTING_KEYS,
];

/** Splits "key=value" (the value may contain "="). */
export function splitConfigSetting(setting: string): { key: string; value: string } {
  const at = setting.indexOf('=');
  if (at <= 0) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `setting ${JSON.stringify(setting)} is not of the form key=value: write it like ttl=10 or postgresql.parameters.work_mem=64MB`,
    );
  }
  return { key: setting.slice(0, at).trim(), value: setting.slice(at + 1).trim() };
}

function parseBoolean(value: string): boolean | null {
  const v = value.toLowerCase();
  if (['true', 'on', 'yes', '1'].includes(v)) return true;
  if (['false', 'off', 'no', '0'].includes(v)) return false;
  return null;
}

const NUMBER_TEXT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** A PostgreSQL parameter value as typed on a command line: numbers and true/false become typed, the rest text. */
function parseParameterValue(value: string): string | number | boolean {
  if (NUMBER_TEXT.test(value)) return Number(value);
  if (value === 'true') return true;
  if (value === 'false') return false;
  return value;
}

/** A command-line value as the type a setting takes; throws naming the setting and an example. */
function typedValue(key: string, value: string, type: SettingValueType, example: unknown): string | number | boolean {
  if (type === 'boolean') {
    const parsed = parseBoolean(value);
    if (parsed === null) throw new PgwardenError('CONFIG_INVALID', `setting ${key}: expected true or false, got ${JSON.stringify(value)}`);
    return parsed;
  }
  if (type === 'number') {
    if (!NUMBER_TEXT.test(value)) {
      throw new PgwardenError('CONFIG_INVALID', `setting ${key}: expected a number like ${String(example)}, got ${JSON.stringify(value)}`);
    }
    return Number(value);
  }
  // A cron expression or a path may be quoted on the command line; the quotes are not part of the value.
  const quoted = /^(['"])(.*)\1$/.exec(value);
  return quoted ? quoted[2] : value;
}

/**
 * Sets one `backup.*` setting in `next` (modified). Setting anything while backups are off starts a new section;
 * `null` removes the setting (it goes back to its default). A new repository type starts a new repository mapping,
 * since the other type's keys mean nothing to it.
 */
function assignBackupSetting(next: DynamicConfig, key: string, value: string): void {
  const path = key.slice(BACKUP_PREFIX.length);
  const type = BACKUP_SETTING_TYPES[path];
  if (type === undefined) throw unknownSetting(key);
  const isNull = value === 'null';
  if (next.backup === null && isNull) return;
  const section = (next.backup ?? {}) as unknown as Record<string, unknown>;
  const [group, leaf] = path.includes('.') ? path.split('.') : [null, path];
  let holder = section;
  if (group !== null) {
    const current = section[group];
    holder = isPlainObject(current) ? current : {};
    if (group === 'repository' && leaf === 'type' && !isNull && holder.type !== value) holder = {};
    section[group] = holder;
  }
  if (isNull) delete holder[leaf];
  else holder[leaf] = typedValue(key, value, type, path.startsWith('retention.') ? 2 : undefined);
  next.backup = section as unknown as DynamicConfig['backup'];
}

function unknownSetting(key: string): PgwardenError {
  const candidates: string[] = [...DYNAMIC_CONFIG_FIELDS.filter((k) => k !== 'postgresql'), ...BACKUP_SETTING_KEYS];
  const parts = key.split('.');
  if (parts[0] !== 'backup') {
    if (parts.length >= 3) candidates.push(PARAMETERS_PREFIX + parts.slice(2).join('.'));
    else if (parts.length === 2) candidates.push(PARAMETERS_PREFIX + parts[1]);
  }
  const suggestion = closest(key, candidates);
  const hint =
    key === 'postgresql' || key === 'postgresql.parameters'
      ? `set one parameter at a time, like ${PARAMETERS_PREFIX}work_mem=64MB`
      : suggestion !== null
        ? `did you mean "${suggestion}"?`
        : key.startsWith(BACKUP_PREFIX)
          ? `valid backup keys: ${BACKUP_SETTING_KEYS.join(', ')}`
          : `valid keys: ${DYNAMIC_CONFIG_SETTING_KEYS.join(', ')}`;
  return new PgwardenError('CONFIG_INVALID', `unknown setting "${key}": ${hint}`);
}

/** Applies one setting to `next` (modified), typed but not yet validated. */
function assignSetting(next: DynamicConfig, key: string, value: string): void {
  const isNull = value === 'null';
  if (key.startsWith(PARAMETERS_PREFIX) && key.length > PARAMETERS_PREFIX.length) {
    const name = key.slice(PARAMETERS_PREFIX.length);
    if (isNull) delete next.postgresql.parameters[name];
    else next.postgresql.parameters[name] = parseParameterValue(value);
    return;
  }
  if (key.startsWith(BACKUP_PREFIX)) {
    assignBackupSetting(next, key, value);
    return;
  }
  if (key === 'backup') {
    if (!isNull) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `setting backup: only null (backups off) is set as a whole; set its keys one by one, like ` +
          `backup.repository.type=posix backup.repository.path=/var/lib/pgwarden/backups`,
      );
    }
    next.backup = null;
    return;
  }
  if (!(DYNAMIC_CONFIG_FIELDS as string[]).includes(key) || key === 'postgresql') throw unknownSetting(key);
  const field = key as Exclude<keyof DynamicConfig, 'postgresql' | 'backup'>;
  const record = next as unknown as Record<string, unknown>;
  const fallback = DEFAULT_DYNAMIC_CONFIG[field];
  record[field] = isNull ? fallback : typedValue(key, value, typeof fallback === 'boolean' ? 'boolean' : 'number', fallback);
}

/**
 * Applies `edit-config --set key=value` settings in order and returns the new configuration, validated once they
 * are all applied (so that settings which only make sense together, like a repository's type and path, can be
 * given together); `config` is not modified. Dotted keys reach PostgreSQL parameters
 * (`postgresql.parameters.work_mem=64MB`) and the backup section (`backup.schedule.full='0 3 * * 0'`); the value
 * `null` deletes the key (a setting goes back to its default, a parameter is removed, `backup=null` turns backups
 * off).
 */
export function applyConfigSettings(config: DynamicConfig, settings: readonly { key: string; value: string }[]): DynamicConfig {
  const next = structuredClone(config);
  for (const { key, value } of settings) assignSetting(next, key, value);
  const source = settings.length === 1 ? 'setting' : 'settings';
  return validateDynamicConfig(next, `${source} ${settings.map(({ key, value }) => `${key}=${value}`).join(', ')}`);
}

/** Applies one `edit-config --set key=value` setting (see applyConfigSettings). */
export function applyConfigSetting(config: DynamicConfig, key: string, value: string): DynamicConfig {
  return applyConfigSettings(config, [{ key, value }]);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? structuredClone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/**
 * Applies a JSON merge patch to the dynamic configuration (PATCH /config); a key patched to null goes back to its
 * default. Throws CONFIG_INVALID naming each bad field.
 */
export function applyConfigPatch(config: DynamicConfig, patch: unknown, source = 'the patched configuration'): DynamicConfig {
  if (!isPlainObject(patch)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${source} is invalid: a patch must be a JSON object like {"ttl": 10}, got ${describeValue(patch)}`,
    );
  }
  return validateDynamicConfig(mergePatch(config, patch), source);
}

// ---------------------------------------------------------------------------------------------------------
// AgentConfig (the per-agent YAML file)
// ---------------------------------------------------------------------------------------------------------

const credentials = (defaultUser: string) =>
  z
    .strictObject(
      {
        username: nonEmpty(`a user name like "${defaultUser}"`).default(defaultUser),
        password: nonEmpty('a password').optional(),
        password_file: nonEmpty('the path of a file holding the password').optional(),
      },
      expecting(`a mapping like {username: ${defaultUser}, password_file: /etc/pgwarden/${defaultUser}.pass}`),
    )
    .prefault({});

function normalizeEndpoint(endpoint: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`;
}

/**
 * A member role that connects to other members (replication, rewind): its credentials plus libpq's ssl* settings,
 * as Patroni writes them under postgresql.authentication.<role>.
 */
const memberRoleCredentials = (defaultUser: string) =>
  z
    .strictObject(
      {
        username: nonEmpty(`a user name like "${defaultUser}"`).default(defaultUser),
        password: nonEmpty('a password').optional(),
        password_file: nonEmpty('the path of a file holding the password').optional(),
        sslmode: z
          .enum(PG_SSL_MODES, {
            error: (i) => `expected one of libpq's sslmode values ${PG_SSL_MODES.join(', ')}; got ${describeValue(i.input)}`,
          })
          .optional(),
        sslrootcert: nonEmpty('the path of the CA certificate file (PEM) the other members\' certificates are signed by').optional(),
        sslcert: nonEmpty('the path of a client certificate file (PEM)').optional(),
        sslkey: nonEmpty('the path of the client certificate\'s key file (PEM)').optional(),
      },
      expecting(
        `a mapping like {username: ${defaultUser}, password_file: /etc/pgwarden/${defaultUser}.pass, sslmode: verify-full, sslrootcert: /etc/pgwarden/ca.crt}`,
      ),
    )
    .superRefine((role, ctx) => {
      if ((role.sslmode === 'verify-ca' || role.sslmode === 'verify-full') && role.sslrootcert === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['sslrootcert'],
          message: `is required with sslmode ${role.sslmode} (the other members' certificates are checked against it): set it to the CA certificate file, like /etc/pgwarden/ca.crt`,
        });
      }
      if ((role.sslcert === undefined) !== (role.sslkey === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [role.sslcert === undefined ? 'sslcert' : 'sslkey'],
          message: 'sslcert and sslkey go together (a client certificate and its key): set both, or neither',
        });
      }
    })
    .prefault({});

/** PostgreSQL's own boolean spellings (on/off, true/false, yes/no, 1/0). */
function pgBooleanOn(value: string | number | boolean | undefined): boolean {
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  return ['on', 'true', 'yes', '1', 't', 'y'].includes(String(value).trim().toLowerCase());
}

/** postgresql.parameters turn on server TLS (ssl = on): the certificate and key must then be named. */
export function serverSslProblems(parameters: Record<string, string | number | boolean>): Array<{ key: string; message: string }> {
  const lower = new Map(Object.entries(parameters).map(([k, v]) => [k.toLowerCase(), v]));
  if (!pgBooleanOn(lower.get('ssl'))) return [];
  const problems: Array<{ key: string; message: string }> = [];
  for (const [key, what] of [
    ['ssl_cert_file', "the server certificate (PEM), like /etc/pgwarden/pg1.crt"],
    ['ssl_key_file', "its key (PEM, mode 0600 owned by the PostgreSQL user), like /etc/pgwarden/pg1.key"],
  ] as const) {
    const value = lower.get(key);
    if (value === undefined || String(value).trim() === '') {
      problems.push({ key, message: `is required when ssl is on: set postgresql.parameters.${key} to ${what}` });
    } else if (!String(value).startsWith('/')) {
      // PostgreSQL takes a relative path from the data directory, which pg_basebackup and pg_rewind copy over.
      problems.push({ key, message: `must be an absolute path (a relative one is read from the data directory, which clones overwrite); got ${JSON.stringify(value)}` });
    }
  }
  const ca = lower.get('ssl_ca_file');
  if (ca !== undefined && String(ca).trim() !== '' && !String(ca).startsWith('/')) {
    problems.push({ key: 'ssl_ca_file', message: `must be an absolute path; got ${JSON.stringify(ca)}` });
  }
  return problems;
}

const etcdEndpoint = z
  .string(expecting('a URL like http://127.0.0.1:2379'))
  .transform(normalizeEndpoint)
  .refine(
    (v) => {
      try {
        const url = new URL(v);
        return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '' && url.port !== '';
      } catch {
        return false;
      }
    },
    { error: (issue) => `expected a URL with a port like http://127.0.0.1:2379; got ${describeValue(issue.input)}` },
  );

/** etcd endpoints; "host:port" without a scheme is taken as http://host:port. */
export const etcdEndpointsSchema = z
  .array(etcdEndpoint, expecting('a list of URLs like [http://127.0.0.1:2379]'))
  .min(1, { error: 'must list at least one etcd URL, like [http://127.0.0.1:2379]' });

const httpUrl = (example: string) =>
  z.string(expecting(`a URL like ${example}`)).refine(
    (v) => {
      try {
        const url = new URL(v);
        return url.protocol === 'http:' || url.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { error: (issue) => `expected an http(s) URL like ${example}; got ${describeValue(issue.input)}` },
  );

const tagsSchema = z
  .strictObject(
    {
      nofailover: z.boolean(expecting('true or false')).default(DEFAULT_TAGS.nofailover),
      noloadbalance: z.boolean(expecting('true or false')).default(DEFAULT_TAGS.noloadbalance),
      nosync: z.boolean(expecting('true or false')).default(DEFAULT_TAGS.nosync),
      failover_priority: z
        .number(expecting('a whole number like 1'))
        .int({ error: (i) => `must be a whole number like 1; got ${describeValue(i.input)}` })
        .min(0, { error: (i) => `must be 0 (never promote) or more; got ${describeValue(i.input)}` })
        .default(DEFAULT_TAGS.failover_priority),
    },
    expecting('a mapping like {nofailover: false}'),
  )
  .prefault({});

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The per-agent file as parsed: secrets may still be in files (see `resolveSecrets`). */
export const agentConfigSchema = z
  .strictObject(
    {
      cluster: clusterNameSchema,
      name: memberNameSchema,
      etcd: z
        .strictObject(
          {
            endpoints: etcdEndpointsSchema.default(['http://127.0.0.1:2379']),
            username: nonEmpty('an etcd user name').optional(),
            password: nonEmpty('a password').optional(),
            password_file: nonEmpty('the path of a file holding the password').optional(),
            call_timeout_ms: z
              .number(expecting('a number of milliseconds like 1000'))
              .int({ error: (i) => `must be a whole number of milliseconds like 1000; got ${describeValue(i.input)}` })
              .min(50, { error: (i) => `must be at least 50 ms; got ${describeValue(i.input)}` })
              .default(1000),
            cacert: nonEmpty('the path of the CA certificate (PEM) etcd\'s certificate is signed by').optional(),
            cert: nonEmpty('the path of the client certificate (PEM) etcd checks under --client-cert-auth').optional(),
            key: nonEmpty('the path of the client certificate\'s key (PEM)').optional(),
          },
          expecting('a mapping like {endpoints: [http://127.0.0.1:2379]}'),
        )
        .prefault({}),
      api: z
        .strictObject(
          {
            listen: hostPort('127.0.0.1:8008').default('127.0.0.1:8008'),
            connect_url: httpUrl('http://10.0.0.5:8008').optional(),
            username: nonEmpty('a user name like "pgwarden"').optional(),
            password: nonEmpty('a password').optional(),
            password_file: nonEmpty('the path of a file holding the password').optional(),
            certfile: nonEmpty('the path of the API\'s HTTPS certificate (PEM)').optional(),
            keyfile: nonEmpty('the path of the HTTPS certificate\'s key (PEM)').optional(),
            cafile: nonEmpty('the path of the CA certificate (PEM) the agents\' certificates are signed by').optional(),
            verify_client: z
              .enum(VERIFY_CLIENT_MODES, {
                error: (i) => `expected one of ${VERIFY_CLIENT_MODES.join(', ')}; got ${describeValue(i.input)}`,
              })
              .default('none'),
          },
          expecting('a mapping like {listen: 127.0.0.1:8008}'),
        )
        .prefault({}),
      postgresql: z.strictObject(
        {
          data_dir: nonEmpty('a directory like /var/lib/pgwarden/data'),
          bin_dir: nonEmpty('a directory like /usr/lib/postgresql/15/bin').default('/usr/lib/postgresql/15/bin'),
          listen: hostPort('127.0.0.1:5432').default('127.0.0.1:5432'),
          connect_address: hostPort('10.0.0.5:5432').optional(),
          run_as: nonEmpty('an OS user like "postgres"').default('postgres'),
          log_file: nonEmpty('a file path like /var/log/pgwarden/postgresql.log').optional(),
          parameters: pgParametersSchema.default({}),
          pg_hba_extra: z
            .array(
              // Networks only: every rule pgwarden writes is SCRAM-SHA-256, so no extra line can open `trust`.
              z.string(expecting('a network in CIDR form like "10.0.0.0/8" (allowed to connect with SCRAM-SHA-256)')),
              expecting('a list of networks in CIDR form like ["10.0.0.0/8"] (allowed to connect with SCRAM-SHA-256)'),
            )
            .default([]),
          superuser: credentials('postgres'),
          replication: memberRoleCredentials('replicator'),
          rewind: memberRoleCredentials('rewind_user'),
        },
        expecting('a mapping with at least {data_dir: /var/lib/pgwarden/data}'),
      ),
      tags: tagsSchema,
      bootstrap: z
        .strictObject({ dcs: partialDynamicConfigSchema.default({}) }, expecting('a mapping like {dcs: {ttl: 5}}'))
        .prefault({}),
      log: z
        .strictObject(
          {
            level: z
              .enum(LOG_LEVELS, {
                error: (i) => `expected one of ${LOG_LEVELS.join(', ')}; got ${describeValue(i.input)}`,
              })
              .default('info'),
          },
          expecting('a mapping like {level: info}'),
        )
        .prefault({}),
    },
    expecting('a mapping with at least cluster, name and postgresql.data_dir'),
  )
  .superRefine((config, ctx) => {
    // Other members, proxies and the CLI use the advertised addresses; a wildcard address reaches nobody.
    for (const problem of etcdTlsProblems(config.etcd, config.etcd.endpoints)) {
      ctx.addIssue({ code: 'custom', path: ['etcd', problem.key], message: problem.message });
    }
    if ((config.api.certfile === undefined) !== (config.api.keyfile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', config.api.certfile === undefined ? 'certfile' : 'keyfile'],
        message: 'api.certfile and api.keyfile go together (HTTPS needs the certificate and its key): set both, or neither for plain HTTP',
      });
    }
    if (config.api.verify_client !== 'none' && (config.api.cafile === undefined || config.api.certfile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', config.api.cafile === undefined ? 'cafile' : 'certfile'],
        message: `is required with api.verify_client ${config.api.verify_client}: client certificates are checked against api.cafile, over HTTPS (api.certfile and api.keyfile)`,
      });
    }
    if (config.api.connect_url?.startsWith('http://') && config.api.certfile !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', 'connect_url'],
        message: `is http:// but the API serves HTTPS (api.certfile is set): write it as https://${config.api.connect_url.slice('http://'.length)}`,
      });
    }
    const api = parseHostPort(config.api.listen);
    if (api && isWildcardHost(api.host) && config.api.connect_url === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', 'connect_url'],
        message: `is required when api.listen binds every interface (${config.api.listen}): set it to the URL others reach this agent at, like http://10.0.0.5:${api.port}`,
      });
    }
    for (const problem of serverSslProblems(config.postgresql.parameters)) {
      ctx.addIssue({ code: 'custom', path: ['postgresql', 'parameters', problem.key], message: problem.message });
    }
    const pg = parseHostPort(config.postgresql.listen);
    if (pg && isWildcardHost(pg.host) && config.postgresql.connect_address === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['postgresql', 'connect_address'],
        message: `is required when postgresql.listen binds every interface (${config.postgresql.listen}): set it to the "host:port" replicas and clients reach, like 10.0.0.5:${pg.port}`,
      });
    }
  })
  .transform((config) => ({
    ...config,
    api: {
      ...config.api,
      connect_url: config.api.connect_url ?? `${config.api.certfile === undefined ? 'http' : 'https'}://${config.api.listen}`,
    },
    postgresql: {
      ...config.postgresql,
      connect_address: config.postgresql.connect_address ?? config.postgresql.listen,
    },
  }));

/** The file after parsing, before secrets are read. */
export type ParsedAgentConfig = z.output<typeof agentConfigSchema>;
/** What may be written in the file. */
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

export interface Credentials {
  username: string;
  password: string;
}

/** A role that connects to other members, with its libpq TLS settings (null: libpq's default). */
export interface MemberRoleCredentials extends Credentials {
  sslmode: NonNullable<PgClientSsl['sslmode']> | null;
  sslrootcert: string | null;
  sslcert: string | null;
  sslkey: string | null;
}

/** The agent's settings, complete and with every secret read: what `loadAgentConfig` returns. */
export interface AgentConfig {
  cluster: string;
  name: string;
  etcd: {
    endpoints: string[];
    /** Both null when etcd runs without authentication. */
    username: string | null;
    password: string | null;
    call_timeout_ms: number;
    /** TLS towards etcd (cacert, client cert and key); paths absolute, null when not set. */
    tls: EtcdTlsFiles;
  };
  api: {
    /** "host:port" the REST API binds. */
    listen: string;
    /** Base URL others reach this API at. */
    connect_url: string;
    username: string;
    password: string;
    /** HTTPS (certfile, keyfile) and the CA of the peers' certificates; paths absolute. */
    tls: ApiTlsFiles;
  };
  postgresql: {
    data_dir: string;
    bin_dir: string;
    /** "host:port" PostgreSQL binds. */
    listen: string;
    /** "host:port" replicas and clients reach PostgreSQL at. */
    connect_address: string;
    /** OS user PostgreSQL runs as when the agent runs as root. */
    run_as: string;
    log_file: string | null;
    parameters: Record<string, string | number | boolean>;
    pg_hba_extra: string[];
    superuser: Credentials;
    replication: MemberRoleCredentials;
    rewind: MemberRoleCredentials;
  };
  tags: Tags;
  bootstrap: { dcs: PartialDynamicConfig };
  log: { level: LogLevel };
}

export interface ResolveOptions {
  /** Where the file was: relative paths (data_dir, log_file, bin_dir, *_file) are taken from there. */
  baseDir: string;
  /** Shown in messages, e.g. "config file /etc/pgwarden/pg1.yml". */
  source: string;
  /** Defaults to reading the file as UTF-8 (tests pass their own). */
  readFile?: (path: string) => string;
}

interface SecretSource {
  password?: string;
  password_file?: string;
}

function readSecret(
  entry: SecretSource,
  field: string,
  required: boolean,
  options: ResolveOptions,
): string | null {
  if (entry.password !== undefined && entry.password_file !== undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: ${field}.password and ${field}.password_file are both set: keep only one`,
    );
  }
  if (entry.password !== undefined) return entry.password;
  if (entry.password_file !== undefined) {
    const path = resolvePathFrom(options.baseDir, entry.password_file);
    let text: string;
    try {
      text = (options.readFile ?? ((p: string) => readFileSync(p, 'utf8')))(path);
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: ${field}.password_file ${path} could not be read (${reason}): create the file with the password on one line, readable by the agent's user`,
        { cause: e },
      );
    }
    const password = text.trim();
    if (password === '') {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${options.source} is invalid: ${field}.password_file ${path} is empty: write the password into it`,
      );
    }
    return password;
  }
  if (required) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: ${field}.password is required: set ${field}.password, or ${field}.password_file to a file holding it`,
    );
  }
  return null;
}

/**
 * Reads every password (inline or from its `*_file`), checks the ones the agent cannot run without, and makes
 * relative paths absolute. The API password is required because the mutating endpoints are authenticated.
 */
export function resolveSecrets(parsed: ParsedAgentConfig, options: ResolveOptions): AgentConfig {
  const pg = parsed.postgresql;
  const role = (entry: ParsedAgentConfig['postgresql']['superuser'], field: string): Credentials => ({
    username: entry.username,
    password: readSecret(entry, field, true, options) as string,
  });
  const memberRole = (entry: ParsedAgentConfig['postgresql']['replication'], field: string): MemberRoleCredentials => {
    const file = (p: string | undefined) => (p === undefined ? null : resolvePathFrom(options.baseDir, p));
    return {
      ...role(entry, field),
      sslmode: entry.sslmode ?? null,
      sslrootcert: file(entry.sslrootcert),
      sslcert: file(entry.sslcert),
      sslkey: file(entry.sslkey),
    };
  };
  if (parsed.api.username === undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: api.username is required (the API's switchover, restart and config endpoints use HTTP Basic authentication): set api.username and api.password (or api.password_file)`,
    );
  }
  const apiPassword = readSecret(parsed.api, 'api', true, options) as string;
  const etcdPassword = readSecret(parsed.etcd, 'etcd', parsed.etcd.username !== undefined, options);
  if (etcdPassword !== null && parsed.etcd.username === undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: etcd.password is set but etcd.username is not: set etcd.username too, or remove the password`,
    );
  }
  const path = (p: string) => resolvePathFrom(options.baseDir, p);
  return {
    cluster: parsed.cluster,
    name: parsed.name,
    etcd: {
      endpoints: parsed.etcd.endpoints,
      username: parsed.etcd.username ?? null,
      password: etcdPassword,
      call_timeout_ms: parsed.etcd.call_timeout_ms,
      tls: {
        cacert: parsed.etcd.cacert === undefined ? null : path(parsed.etcd.cacert),
        cert: parsed.etcd.cert === undefined ? null : path(parsed.etcd.cert),
        key: parsed.etcd.key === undefined ? null : path(parsed.etcd.key),
      },
    },
    api: {
      listen: parsed.api.listen,
      connect_url: parsed.api.connect_url,
      username: parsed.api.username,
      password: apiPassword,
      tls: {
        certfile: parsed.api.certfile === undefined ? null : path(parsed.api.certfile),
        keyfile: parsed.api.keyfile === undefined ? null : path(parsed.api.keyfile),
        cafile: parsed.api.cafile === undefined ? null : path(parsed.api.cafile),
        verify_client: parsed.api.verify_client,
      },
    },
    postgresql: {
      data_dir: path(pg.data_dir),
      bin_dir: path(pg.bin_dir),
      listen: pg.listen,
      connect_address: pg.connect_address,
      run_as: pg.run_as,
      log_file: pg.log_file === undefined ? null : path(pg.log_file),
      parameters: pg.parameters,
      pg_hba_extra: pg.pg_hba_extra,
      superuser: role(pg.superuser, 'postgresql.superuser'),
      replication: memberRole(pg.replication, 'postgresql.replication'),
      rewind: memberRole(pg.rewind, 'postgresql.rewind'),
    },
    tags: parsed.tags,
    bootstrap: { dcs: parsed.bootstrap.dcs },
    log: parsed.log,
  };
}

