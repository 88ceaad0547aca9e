/**
 * `pgwarden proxy --config proxy.yml [--primary host:port] [--replica host:port …]`, or without a file
 * `pgwarden proxy --primary host:port [--replica host:port …] --auth-file userlist.txt [--listen …]`: the pooler
 * in the foreground until SIGTERM/SIGINT, which stop accepting, let running transactions finish briefly, and exit.
 * SIGHUP re-reads the config file (as RELOAD on the admin console does).
 * With `etcd:` in the config it follows the cluster (EtcdTopology) and registers itself under `proxies/<id>`;
 * otherwise it is the static-mode pooler. Following etcd, it also probes every member's PostgreSQL
 * (MemberReachability) and publishes the members it cannot reach with its registration.
 */
import { loadEtcdTls } from '../dcs/etcd-tls.js';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type ProxyConfig, parseProxyConfig } from '../config/proxy.js';
import { EtcdDcs } from '../dcs/etcd.js';
import { EtcdTopology } from './etcd-topology.js';
import { loadProxyConfig } from '../config/proxy.js';
import { formatHostPort, parseHostPort } from '../config/schema.js';
import { PgwardenError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { attachAdminConsole } from './admin/console.js';
import { createProxyMetricsRegistry, ProxyMetricsServer } from './metrics.js';
import { MemberReachability } from './reachability.js';
import { ProxyRegistrar, type RegisteredProxy } from './registration.js';
import { ProxyServer } from './server.js';
import { type Endpoint, StaticTopology, type Topology } from './topology.js';
import { nativeIoStatus } from './wire/native-wire.js';
import { WorkerGroup } from './workers/group.js';

export interface RunProxyOptions {
  /** The config file; absent: the settings below, each with the file's default. */
  config?: string;
  primary?: string;
  replica?: string[];
  /** Without a config file only: the userlist, listen addresses, pool mode and admin console users. */
  authFile?: string;
  listen?: string;
  listenRo?: string;
  poolMode?: 'transaction' | 'session';
  adminUser?: string[];
  logLevel?: string;
}

/** The options that stand for config file settings: given with --config, they would be ignored, so they are refused. */
const FILE_SETTINGS: readonly [keyof RunProxyOptions, string, string][] = [
  ['authFile', '--auth-file', 'auth_file'],
  ['listen', '--listen', 'listen'],
  ['listenRo', '--listen-ro', 'listen_ro'],
  ['poolMode', '--pool-mode', 'pool_mode'],
  ['adminUser', '--admin-user', 'admin_users'],
];

/**
 * The running config: the file's, or without one the command line's settings (relative --auth-file against the
 * current directory). Never trust: without a userlist there is no way in, so --auth-file is required.
 */
export function proxyConfigFromOptions(options: RunProxyOptions, cwd = process.cwd()): ProxyConfig {
  const given = FILE_SETTINGS.filter(([key]) => {
    const value = options[key];
    return value !== undefined && !(Array.isArray(value) && value.length === 0);
  });
  if (options.config !== undefined) {
    if (given.length > 0) {
      const [, flag, setting] = given[0];
      throw new PgwardenError('CONFIG_INVALID', `${flag} cannot be combined with --config: set ${setting} in ${options.config} instead (or drop --config)`);
    }
    return loadProxyConfig(options.config);
  }
  if (options.primary === undefined) {
    throw new PgwardenError('CONFIG_INVALID', 'pgwarden proxy needs --primary host:port (and --auth-file FILE), or --config proxy.yml: see pgwarden proxy --help');
  }
  if (options.authFile === undefined) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      'pgwarden proxy without --config needs --auth-file FILE: the users clients log in as, one "user" "password" line each (PgBouncer\'s userlist; a SCRAM secret from pg_authid works too)',
    );
  }
  const listen = options.listen === undefined ? { host: '127.0.0.1', port: 6432 } : endpoint(options.listen, '--listen', true);
  const replicas = options.replica ?? [];
  let listenRo: string | undefined;
  if (options.listenRo !== undefined) {
    const ro = endpoint(options.listenRo, '--listen-ro', true);
    listenRo = formatHostPort(ro.host, ro.port);
  }
  else if (replicas.length > 0) listenRo = formatHostPort(listen.host, listen.port === 0 ? 0 : listen.port + 1);
  return parseProxyConfig(
    {
      listen: formatHostPort(listen.host, listen.port),
      ...(listenRo === undefined ? {} : { listen_ro: listenRo }),
      auth_file: options.authFile,
      ...(options.poolMode === undefined ? {} : { pool_mode: options.poolMode }),
      ...(options.adminUser === undefined || options.adminUser.length === 0 ? {} : { admin_users: options.adminUser }),
    },
    { source: 'the command line', baseDir: cwd },
  );
}

/**
 * SIGHUP does what RELOAD on the console does, as for PgBouncer: `reload` re-reads the file (one thread's console,
 * or the worker group); a bad file is logged and changes nothing. Without a config file there is nothing to re-read.
 */
function sighupHandler(configPath: string | undefined, log: Logger, reload: () => void): () => void {
  return () => {
    if (configPath === undefined) {
      log.warn('SIGHUP: nothing to re-read, the proxy was started without --config; its settings are unchanged');
      return;
    }
    log.info({ config: configPath }, 'SIGHUP: re-reading the config file');
    try {
      reload();
    } catch (e) {
      log.error({ err: (e as Error).message }, 'SIGHUP: reload failed; the proxy keeps running with its previous config');
    }
  };
}

/**
 * The operations side of a running proxy: the admin console (database `pgwarden`/`pgbouncer`) and, when
 * `metrics_listen` is set, the Prometheus endpoint. Returns what must be stopped at shutdown.
 */
async function startOperations(
  proxy: ProxyServer,
  config: ProxyConfig,
  topology: Topology,
  configPath: string | undefined,
  log: Logger,
): Promise<{ stop: () => Promise<void>; metrics: { host: string; port: number } | null }> {
  const console = attachAdminConsole(proxy, { config, topology, configPath, logger: log });
  const onSighup = sighupHandler(configPath, log, () => console.reload());
  process.on('SIGHUP', onSighup);
  const stopConsole = (): void => {
    process.off('SIGHUP', onSighup);
    console.close();
  };
  if (!config.metrics_listen) return { stop: async () => stopConsole(), metrics: null };
  const metrics = new ProxyMetricsServer(createProxyMetricsRegistry({ console, topology, proxy }));
  const listen = config.metrics_listen;
  await metrics.start(listen);
  log.info({ metrics: `http://${listen.host}:${metrics.address.port}/metrics` }, 'metrics endpoint started');
  return {
    stop: async () => {
      stopConsole();
      await metrics.stop();
    },
    metrics: { host: listen.host, port: metrics.address.port },
  };
}

/** Worker threads need the native module (connections move between threads as descriptors): without it, one. */
function withUsableWorkers(config: ProxyConfig, logLevel: string | undefined): ProxyConfig {
  if (config.workerThreads === 1) return config;
  const native = nativeIoStatus();
  if (native.active) return config;
  createLogger(logLevel ?? 'info', { component: 'proxy' }).warn({ why: native.why, workers: config.workers }, 'worker threads need the native I/O module: the proxy runs on one thread');
  return { ...config, workerThreads: 1 };
}

function endpoint(value: string, flag: string, allowPortZero = false): Endpoint {
  const parsed = parseHostPort(value, { allowPortZero });
  if (parsed === null) throw new PgwardenError('CONFIG_INVALID', `${flag} ${JSON.stringify(value)} is invalid: expected host:port, e.g. 127.0.0.1:5432`);
  return parsed;
}

export async function runProxy(options: RunProxyOptions): Promise<void> {
  const config = withUsableWorkers(proxyConfigFromOptions(options), options.logLevel);
  if (config.etcd !== undefined && options.primary === undefined) return runEtcdProxy(config, options);
  const primary = options.primary !== undefined ? endpoint(options.primary, '--primary') : (config.primary ?? null);
  if (primary === null) {
    throw new PgwardenError('CONFIG_INVALID', 'no primary: pass --primary host:port or set primary: "host:port" in the proxy config');
  }
  const replicas = (options.replica ?? []).map((r) => endpoint(r, '--replica'));
  const log = createLogger(options.logLevel ?? 'info', { component: 'proxy' });
  if (config.workerThreads > 1) return runWorkers(config, options, primary, replicas.length > 0 ? replicas : config.replicas, log);
  const topology = new StaticTopology(primary, replicas.length > 0 ? replicas : config.replicas);
  const proxy = new ProxyServer({ config, topology, logger: log });
  await proxy.start();
  const operations = await startOperations(proxy, config, topology, options.config, log);
  exitOnSignals(log, async () => {
    await Promise.all([proxy.stop(5000), operations.stop()]);
  });
}

/** Static mode with worker threads (workers/group.ts): this thread accepts and relays; the workers serve. */
async function runWorkers(config: ProxyConfig, options: RunProxyOptions, primary: Endpoint, replicas: Endpoint[], log: Logger): Promise<void> {
  const group = await startWorkerGroup(config, options, log, { primary, replicas });
  exitOnSignals(log, () => group.stop(5000));
}

/**
 * The worker threads, started: SIGHUP does what RELOAD does, in every worker (a bad file is logged and changes
 * nothing), and SHUTDOWN on a console ends the process as SIGTERM does.
 */
async function startWorkerGroup(
  config: ProxyConfig,
  options: RunProxyOptions,
  log: Logger,
  routes: { primary: Endpoint; replicas: Endpoint[] } | { topology: EtcdTopology },
): Promise<WorkerGroup> {
  const configPath = options.config;
  const group = new WorkerGroup({ config, configPath, ...routes, logger: log, logLevel: options.logLevel ?? 'info', onShutdown: () => process.kill(process.pid, 'SIGTERM') });
  await group.start();
  process.on('SIGHUP', sighupHandler(configPath, log, () => group.reload()));
  return group;
}

/** SIGTERM/SIGINT run `stop` once (accepting ends, running transactions get a moment), then the process exits. */
function exitOnSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'proxy shutting down');
    stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: describeError(e) }, 'proxy shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

async function runEtcdProxy(config: ProxyConfig, options: RunProxyOptions): Promise<void> {
  const etcd = config.etcd!;
  const log = createLogger(options.logLevel ?? 'info', { component: 'proxy' });
  const dcs = await EtcdDcs.connect({
    endpoints: etcd.endpoints,
    cluster: etcd.cluster,
    tls: config.etcdTls === null ? null : loadEtcdTls(config.etcdTls),
  });
  const topology = new EtcdTopology({
    dcs,
    maxReplicaLagBytes: config.max_replica_lag,
    onError: (e) => log.warn({ err: describeError(e) }, 'could not read the cluster from etcd; retrying'),
  });
  topology.on('change', () => log.info({ primary: topology.primary(), replicas: topology.replicas(), stale: topology.isStale }, 'topology changed'));
  await topology.start();
  let served: { registered: RegisteredProxy; stop: () => Promise<void>; metrics: { host: string; port: number } | null };
  if (config.workerThreads > 1) {
    const group = await startWorkerGroup(config, options, log, { topology });
    served = { registered: group, stop: () => group.stop(5000), metrics: group.metricsAddress };
  } else {
    const proxy = new ProxyServer({ config, topology, logger: log });
    await proxy.start();
    const operations = await startOperations(proxy, config, topology, options.config, log);
    served = { registered: proxy, stop: async () => void (await Promise.all([proxy.stop(5000), operations.stop()])), metrics: operations.metrics };
  }
  const id = config.id ?? `${hostname()}-${process.pid}`;
  const reachability = new MemberReachability(() => topology.members());
  reachability.on('change', () => {
    const unreachable = Object.keys(reachability.unreachable()).sort();
    if (unreachable.length === 0) log.info({ unreachable }, "this proxy reaches every member's PostgreSQL again");
    else log.info({ unreachable }, "this proxy cannot connect to the PostgreSQL of some members (reported in etcd under proxies/<id>)");
  });
  reachability.start();
  const registrar = new ProxyRegistrar(dcs, id, served.registered, topology, log, reachability, { metrics: served.metrics });
  await registrar.start(ttlSeconds(await dcs.load().then((v) => v.config.ttl, () => 5)));
  exitOnSignals(log, async () => {
    registrar.stop();
    reachability.stop();
    await Promise.all([served.stop(), topology.stop()]);
    await dcs.close({ revoke: true });
  });
}

function ttlSeconds(ttl: number): number {
  return Math.max(2, Math.ceil(ttl));
}
