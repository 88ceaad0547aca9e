/**
 * Loading the agent's YAML file: read, apply environment overrides, validate, read secrets. The only place (with
 * cli-env.ts) that reads environment variables.
 */
import YAML from 'yaml';
import { PgwardenError } from '../errors.js';
import { formatPath, parseOrThrow } from './issues.js';
import { describeValue } from '../cluster/schema-messages.js';
import { agentConfigSchema, resolveSecrets, type AgentConfig } from './schema.js';
import { readYamlFile } from './yaml-file.js';

type Env = Record<string, string | undefined>;

/** Variables with their own name, for the settings most often overridden (containers, systemd drop-ins). */
export const ENV_OVERRIDES: Record<string, { path: string[]; list?: boolean }> = {
  PGWARDEN_CLUSTER: { path: ['cluster'] },
  PGWARDEN_NAME: { path: ['name'] },
  PGWARDEN_ETCD: { path: ['etcd', 'endpoints'], list: true },
  PGWARDEN_API_LISTEN: { path: ['api', 'listen'] },
  PGWARDEN_PG_DATA_DIR: { path: ['postgresql', 'data_dir'] },
  PGWARDEN_PG_LISTEN: { path: ['postgresql', 'listen'] },
  PGWARDEN_LOG_LEVEL: { path: ['log', 'level'] },
};

/** `PGWARDEN__section__key=value`: double underscores separate the levels of any setting. */
export const GENERIC_ENV_PREFIX = 'PGWARDEN__';

function setAt(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const child = node[key];
    if (typeof child !== 'object' || child === null || Array.isArray(child)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

/** A generic override's text typed as YAML would type it (numbers, booleans, [lists]); quote it to keep text. */
function parseEnvValue(name: string, text: string): unknown {
  try {
    return YAML.parse(text);
  } catch (e) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `environment variable ${name} holds ${JSON.stringify(text)}, which is not a valid YAML value: quote it`,
      { cause: e },
    );
  }
}

/**
 * Applies the environment overrides to the raw file contents (a copy is returned) and says which dotted path
 * each variable set, so validation errors can name the variable instead of the file.
 */
export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: Env,
): { config: Record<string, unknown>; origins: Map<string, string> } {
  const config = structuredClone(raw);
  const origins = new Map<string, string>();
  // Generic ones first, so a named variable wins when both set the same field.
  for (const name of Object.keys(env).sort()) {
    const text = env[name];
    if (!name.startsWith(GENERIC_ENV_PREFIX) || text === undefined) continue;
    const path = name.slice(GENERIC_ENV_PREFIX.length).split('__').map((p) => p.toLowerCase());
    if (path.some((p) => p === '')) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `environment variable ${name} has an empty level in its name: write it like PGWARDEN__postgresql__bin_dir`,
      );
    }
    setAt(config, path, parseEnvValue(name, text));
    origins.set(formatPath(path), `environment variable ${name}`);
  }
  for (const [name, override] of Object.entries(ENV_OVERRIDES)) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    const value = override.list
      ? text
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
      : text;
    setAt(config, override.path, value);
    origins.set(formatPath(override.path), `environment variable ${name}`);
    if (override.list) {
      (value as string[]).forEach((_, i) =>
        origins.set(`${formatPath(override.path)}[${i}]`, `environment variable ${name}`),
      );
    }
  }
  return { config, origins };
}

export interface ParseAgentConfigOptions {
  /** Shown in messages, e.g. "config file /etc/pgwarden/pg1.yml". */
  source: string;
  /** Relative paths in the config are taken from here (the file's directory). */
  baseDir: string;
  env?: Env;
  readFile?: (path: string) => string;
}

/** Validates already-read contents (YAML parsed to a value); what `loadAgentConfig` does after reading. */
export function parseAgentConfig(raw: unknown, options: ParseAgentConfigOptions): AgentConfig {
  const contents = raw === null || raw === undefined ? {} : raw;
  if (typeof contents !== 'object' || Array.isArray(contents)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${options.source} is invalid: expected a YAML mapping with at least cluster, name and postgresql.data_dir at the top level, got ${describeValue(contents)}`,
    );
  }
  const { config, origins } = applyEnvOverrides(contents as Record<string, unknown>, options.env ?? {});
  const parsed = parseOrThrow(agentConfigSchema, config, options.source, {
    originOf: (path) => origins.get(path),
  });
  return resolveSecrets(parsed, { baseDir: options.baseDir, source: options.source, readFile: options.readFile });
}

/**
 * Reads and validates the agent's YAML file. Throws CONFIG_NOT_FOUND when the file does not exist and
 * CONFIG_INVALID (naming the file, the dotted field and the fix) when anything in it is wrong.
 */
export function loadAgentConfig(path: string, env: Env = process.env): AgentConfig {
  const { raw, source, baseDir } = readYamlFile(path, 'at least cluster, name and postgresql.data_dir');
  return parseAgentConfig(raw, { source, baseDir, env });
}
