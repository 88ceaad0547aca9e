import { accessSync, constants } from 'node:fs';
/**
 * Settings of the `pgwarden` CLI that come from the environment besides the cluster (cli-env.ts): the REST API
 * credentials used by `restart`, `reload` and `reinit`.
 */
import { PgwardenError } from '../errors.js';

type Env = Record<string, string | undefined>;

export interface CliApiCredentials {
  username: string;
  password: string;
}

/**
 * PGWARDEN_API_USER and PGWARDEN_API_PASSWORD, or null when neither is set. A password without a user name
 * (or the reverse) is refused: the agents would answer 401 and the user would not know why.
 */
export function cliApiCredentialsFromEnv(env: Env = process.env): CliApiCredentials | null {
  const username = env.PGWARDEN_API_USER?.trim() || undefined;
  const password = env.PGWARDEN_API_PASSWORD || undefined;
  if (username === undefined && password === undefined) return null;
  if (username === undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      'PGWARDEN_API_PASSWORD is set but PGWARDEN_API_USER is not: set PGWARDEN_API_USER to the agents\' api.username too',
    );
  }
  if (password === undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      'PGWARDEN_API_USER is set but PGWARDEN_API_PASSWORD is not: set PGWARDEN_API_PASSWORD to the agents\' api.password too',
    );
  }
  return { username, password };
}

/**
 * PGWARDEN_API_CAFILE: the CA the agents' HTTPS certificates are checked against (overrides the --config file's
 * api.cafile); null when unset.
 */
export function cliApiCaFileFromEnv(env: Env = process.env): string | null {
  return env.PGWARDEN_API_CAFILE?.trim() || null;
}

/**
 * PGWARDEN_ETCD_CACERT, PGWARDEN_ETCD_CERT and PGWARDEN_ETCD_KEY: TLS towards etcd for the CLI (over the --config
 * file's etcd.cacert, cert and key); null when none is set.
 */
export function cliEtcdTlsFromEnv(env: Env = process.env): { cacert: string | null; cert: string | null; key: string | null } | null {
  const get = (name: string): string | null => env[name]?.trim() || null;
  const files = { cacert: get('PGWARDEN_ETCD_CACERT'), cert: get('PGWARDEN_ETCD_CERT'), key: get('PGWARDEN_ETCD_KEY') };
  if (files.cacert === null && files.cert === null && files.key === null) return null;
  if ((files.cert === null) !== (files.key === null)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${files.cert === null ? 'PGWARDEN_ETCD_KEY' : 'PGWARDEN_ETCD_CERT'} is set but ${files.cert === null ? 'PGWARDEN_ETCD_CERT' : 'PGWARDEN_ETCD_KEY'} is not: set both (the client certificate and its key), or neither`,
    );
  }
  return files;
}

/**
 * The environment for an agent that `pgwarden up` starts: the caller's, without the PGWARDEN_* settings, which
 * the agent would otherwise apply over its file (a PGWARDEN_CLUSTER exported for the CLI would rename the
 * local cluster's members' cluster, for one).
 */
export function agentChildEnv(env: Env = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !name.startsWith('PGWARDEN')) out[name] = value;
  }
  return out;
}

/** Whether an executable named `name` is on the PATH (to print commands the user can paste as they are). */
export function commandOnPath(name: string, env: NodeJS.ProcessEnv = process.env): boolean {
  for (const dir of (env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      accessSync(`${dir}/${name}`, constants.X_OK);
      return true;
    } catch {
      // Not in this directory.
    }
  }
  return false;
}
