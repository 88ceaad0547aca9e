/**
 * RELOAD / SIGHUP, pure part: which settings of a re-read config file apply to the running proxy and which need
 * a restart (they keep their running value, and the operator gets a warning naming them).
 */
import type { ProxyConfig } from '../../config/proxy.js';

/**
 * Settings a running proxy cannot take over: the sockets it listens on, where it learns the topology, its name
 * in etcd, pool_mode (a client in the middle of a session must not switch to transaction pooling), and what is
 * built once at start: TLS to PostgreSQL, the auth_query connection, the per-database connection limits, native
 * I/O and the worker threads.
 */
export const RESTART_ONLY_SETTINGS = [
  'listen', 'listen_ro', 'metrics_listen', 'etcd', 'id', 'primary', 'replicas', 'max_replica_lag', 'pool_mode',
  'server_tls_sslmode', 'server_tls_ca_file', 'server_tls_cert_file', 'server_tls_key_file',
  'auth_user', 'auth_query', 'auth_dbname', 'auth_query_cache_ttl', 'max_db_connections', 'user_settings', 'native_io',
  'workers', 'unix_socket_dir', 'unix_socket_mode', 'unix_socket_group',
] as const;

/** Values derived from restart-only settings (kept with them, never named to the operator). */
const DERIVED_RESTART_ONLY = ['serverTls', 'etcdTls', 'authQuery', 'workerThreads', 'unixSocket'] as const;
/** Values derived from settings that apply live, reported under the setting's own name. */
const DERIVED_LIVE = new Set(['users', 'authFilePath', 'clientTls', 'hba']);

export interface ReloadPlan {
  /** The config to run with: the new file, restart-only settings kept at their running values. */
  config: ProxyConfig;
  /** Settings whose new values apply now (auth_file contents count as "auth_file"). */
  applied: string[];
  /** Settings changed in the file that keep their running value until a restart. */
  needRestart: string[];
}

export function planReload(running: ProxyConfig, next: ProxyConfig): ReloadPlan {
  const config: ProxyConfig = { ...next };
  const before = running as Record<string, unknown>;
  const after = next as Record<string, unknown>;
  const kept = config as Record<string, unknown>;
  const needRestart: string[] = [];
  const restartOnly = new Set<string>([...RESTART_ONLY_SETTINGS, ...DERIVED_RESTART_ONLY]);
  for (const key of restartOnly) {
    if (same(before[key], after[key])) continue;
    kept[key] = before[key];
    if (!(DERIVED_RESTART_ONLY as readonly string[]).includes(key)) needRestart.push(key);
  }
  const applied: string[] = [];
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]);
  for (const key of [...keys].sort()) {
    if (restartOnly.has(key) || DERIVED_LIVE.has(key)) continue;
    if (!same(before[key], after[key])) applied.push(key);
  }
  if (!applied.includes('auth_file') && !same(running.users, next.users)) applied.push('auth_file');
  // The rules file's contents changed under the same name.
  if (!applied.includes('auth_hba_file') && !same(running.hba, next.hba)) applied.push('auth_hba_file');
  return { config, applied, needRestart };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(normalize(a)) === JSON.stringify(normalize(b));
}

function normalize(v: unknown): unknown {
  if (v instanceof Map) return [...v.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  return v === undefined ? null : v;
}
