/**
 * PgBouncer's admin console on database `pgwarden` (alias `pgbouncer`): SHOW answers with PgBouncer 1.18's
 * columns so exporters and scripts written for PgBouncer work unchanged, and PAUSE/RESUME/RELOAD/RECONNECT/KILL/
 * WAIT_CLOSE/SHUTDOWN with PgBouncer's meaning.
 *
 * A console is attached to a ProxyServer from outside (attachAdminConsole): the server hands its logins to the
 * console (ConsoleDoor) and shares its PauseGate with it, through which PAUSE/RESUME/KILL hold and release clients.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { type ProxyConfig, loadProxyConfig, poolModeFor } from '../../config/proxy.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import { MessageFramer, frontendLimits } from '../protocol/framer.js';
import * as m from '../protocol/messages.js';
import { MessageWriter } from '../protocol/writer.js';
import { closeConnection } from '../closing.js';
import type { ProxyClient } from '../client.js';
import type { ConsoleDoor } from './door.js';
import type { PauseGate } from '../pause-gate.js';
import type { ProxyServer } from '../server.js';
import type { Endpoint, Topology } from '../topology.js';
import * as clock from '../clock.js';
import type { Wire } from '../wire/wire.js';
import { type AdminCommand, COLUMNS, NUMERIC_COLUMNS, PGBOUNCER_VERSION, PORT_COLUMNS, type ShowSubject, parseAdminCommand, validCommandsHint } from './commands.js';
import { LOCAL_SUBJECTS, type ShowRow, mergeShowRows } from './merge.js';
import { type ReloadPlan, planReload } from './reload.js';
import { StatsPeriods, type StatsTotals, addTotals, zeroTotals } from './stats.js';

export const CONSOLE_DATABASES: ReadonlySet<string> = new Set(['pgwarden', 'pgbouncer']);

export interface AdminConsoleOptions {
  config: ProxyConfig;
  topology: Topology;
  /** The config file RELOAD re-reads; without it RELOAD answers an error. */
  configPath?: string;
  /** Applies a reloaded config beyond the proxy server and the console (called after both took it). */
  onReload?: (config: ProxyConfig) => void;
  /** What SHUTDOWN does; default proxy.stop(). */
  onShutdown?: () => void;
  /** Where RELOAD's warnings (settings that need a restart) and PAUSE/KILL/RECONNECT go. */
  logger?: Logger;
  /** With worker threads: the consoles of the other workers, so that a session sees and commands the whole proxy. */
  peers?: ConsolePeers;
}

/** The other workers' consoles (workers/worker.ts), asked through the main thread. */
export interface ConsolePeers {
  /** Every other worker's rows of SHOW `subject`. */
  show(subject: ShowSubject): Promise<ShowRow[][]>;
  /** Runs a control command (not SHUTDOWN or RELOAD) in every other worker; rejects with the first error one answered. */
  control(verb: string, database: string | null): Promise<void>;
  /**
   * RELOAD for the whole proxy: the main thread re-reads the config file once and applies it to itself (it
   * accepts, and refuses past max_client_conn) and to every worker, as SIGHUP does; rejects as reload() throws.
   */
  reload(): Promise<ReloadResult>;
}

/** One pool's numbers as SHOW POOLS and /metrics report them. */
export interface PoolRow {
  database: string;
  user: string;
  clActive: number;
  clWaiting: number;
  svActive: number;
  svIdle: number;
  svLogin: number;
  maxwaitUs: number;
}

/** What RELOAD did: settings applied, and changed settings kept until a restart. */
export interface ReloadResult {
  applied: string[];
  needRestart: string[];
}

/** What the console needs of the proxy: read-only views, RELOAD/RECONNECT hooks and stop(). */
export type ConsoleProxy = Pick<ProxyServer, 'poolStats' | 'poolCounters' | 'serverPools' | 'applyConfig' | 'reconnect' | 'closeNeededCount' | 'stop' | 'address' | 'pauseGate'> & {
  clientList(): readonly ProxyClient[];
};

/** Attaches a console to `proxy`: it takes the logins to database pgwarden/pgbouncer, and commands the pause gate. */
export function attachAdminConsole(proxy: ConsoleProxy & Pick<ProxyServer, 'openConsoleDoor'>, options: AdminConsoleOptions): AdminConsole {
  const console = new AdminConsole(proxy, options);
  proxy.openConsoleDoor(console);
  return console;
}

/** A console connection as SHOW CLIENTS lists it. */
interface ConsoleSessionEntry {
  user: string;
  socket: Socket;
  pid: number;
  /** ms since the epoch: when it logged in, and when its last command arrived. */
  connectedAt: number;
  requestAt: number;
}

/** The pool key's database as SHOW POOLS/STATS name it: "dbname", or "dbname@ro" for the read-only listener's pools. */
export function poolDatabaseLabel(key: string): { database: string; user: string } {
  const [dbname, user, role] = key.split('/');
  return { database: role === undefined ? dbname : `${dbname}@${role}`, user };
}

const POLL_MS = 20;

export class AdminConsole implements ConsoleDoor {
  private config: ProxyConfig;
  /** The proxy's: PAUSE/KILL close it for a database (or all), RESUME opens it. */
  private readonly gate: PauseGate;
  /** Console connections open now (SHOW CLIENTS and LISTS count them, as PgBouncer does). */
  readonly sessions = new Set<ConsoleSessionEntry>();
  private readonly startedAt = Date.now();
  private readonly statsPeriods = new StatsPeriods();
  private statsTimer: NodeJS.Timeout | null = null;
  /** The console's own traffic, reported as database "pgbouncer" in SHOW STATS as PgBouncer does. */
  readonly ownTotals: StatsTotals = zeroTotals();

  constructor(
    private readonly proxy: ConsoleProxy,
    private readonly options: AdminConsoleOptions,
  ) {
    this.config = options.config;
    this.gate = proxy.pauseGate;
    this.startStatsTimer();
  }

  /** New transactions wait (at the proxy's pause gate) while any database is paused. */
  get paused(): boolean {
    return this.gate.paused;
  }

  /** Stops the stats_period timer (proxy shutdown). */
  close(): void {
    if (this.statsTimer !== null) clearInterval(this.statsTimer);
    this.statsTimer = null;
  }

  get peers(): ConsolePeers | null {
    return this.options.peers ?? null;
  }

  /** The running config (after RELOADs). */
  get currentConfig(): ProxyConfig {
    return this.config;
  }

  /** True for the console's database names. */
  serves(database: string): boolean {
    return CONSOLE_DATABASES.has(database);
  }

  /** Takes over an authenticated connection to the console database. */
  openSession(socket: Socket, user: string, saslFinal: Buffer | null, pid: number, secretKey: number): void {
    new AdminSession(this, socket, user, saslFinal, pid, secretKey);
  }

  role(user: string): 'admin' | 'stats' | null {
    if (this.config.admin_users.includes(user)) return 'admin';
    if (this.config.stats_users.includes(user)) return 'stats';
    return null;
  }

  private dbnameOf(database: string): string {
    return this.config.databases?.[database]?.dbname ?? database;
  }

  /** Per pool numbers: servers from the pool's counters, clients from the proxy's client list. */
  poolRows(): PoolRow[] {
    const rows = new Map<string, PoolRow>();
    const now = Date.now();
    const row = (database: string, user: string): PoolRow => {
      const key = `${this.dbnameOf(database)}/${user}`;
      let r = rows.get(key);
      if (r === undefined) {
        r = { database, user, clActive: 0, clWaiting: 0, svActive: 0, svIdle: 0, svLogin: 0, maxwaitUs: 0 };
        rows.set(key, r);
      }
      return r;
    };
    for (const [key, stats] of this.proxy.poolStats()) {
      const label = poolDatabaseLabel(key);
      const r = row(label.database, label.user);
      r.svActive = stats.active - stats.opening;
      r.svIdle = stats.idle;
      r.svLogin = stats.opening;
      r.clWaiting = stats.waiting;
    }
    for (const client of this.proxy.clientList()) {
      if (this.serves(client.database)) continue;
      row(client.database, client.user).clActive++;
    }
    for (const h of this.gate.heldClients()) {
      const c = h.client as ProxyClient;
      if (c.state === 'closed') continue;
      const r = row(c.database, c.user);
      r.clWaiting++;
      r.maxwaitUs = Math.max(r.maxwaitUs, (now - h.since) * 1000);
    }
    for (const r of rows.values()) r.clActive = Math.max(0, r.clActive - r.clWaiting);
    return [...rows.values()];
  }

  /** Traffic totals per database (summed over its users' pools), plus the console's own as "pgbouncer". */
  statsTotals(): Map<string, StatsTotals> {
    const totals = new Map<string, StatsTotals>();
    for (const [key, counters] of this.proxy.poolCounters()) {
      const { database } = poolDatabaseLabel(key);
      let t = totals.get(database);
      if (t === undefined) totals.set(database, (t = zeroTotals()));
      addTotals(t, counters.snapshot());
    }
    totals.set('pgbouncer', { ...this.ownTotals });
    return totals;
  }

  private startStatsTimer(): void {
    this.close();
    this.statsPeriods.tick(this.statsTotals(), nowUs());
    this.statsTimer = setInterval(() => this.statsPeriods.tick(this.statsTotals(), nowUs()), this.config.stats_period * 1000);
    this.statsTimer.unref();
  }

  /** The rows of one SHOW, as text/number values in COLUMNS order. */
  show(subject: ShowSubject): (string | number | null)[][] {
    const cfg = this.config;
    const primary = this.options.topology.primary();
    switch (subject) {
      case 'POOLS':
        return this.poolRows().map((r) => [r.database, r.user, r.clActive, r.clWaiting, 0, 0, r.svActive, 0, 0, r.svIdle, 0, 0, r.svLogin, Math.floor(r.maxwaitUs / 1e6), r.maxwaitUs % 1e6, poolModeFor(cfg, r.database, r.user)]);
      case 'STATS':
        return [...this.statsTotals()].map(([db, t]) => {
          const a = this.statsPeriods.averagesFor(db);
          return [db, t.xactCount, t.queryCount, t.bytesReceived, t.bytesSent, t.xactTimeUs, t.queryTimeUs, t.waitTimeUs, a.xactCount, a.queryCount, a.bytesReceived, a.bytesSent, a.xactTimeUs, a.queryTimeUs, a.waitTimeUs, t.queryCount];
        });
      case 'STATS_TOTALS':
        return [...this.statsTotals()].map(([db, t]) => [db, t.xactCount, t.queryCount, t.bytesReceived, t.bytesSent, t.xactTimeUs, t.queryTimeUs, t.waitTimeUs]);
      case 'STATS_AVERAGES':
        return [...this.statsTotals().keys()].map((db) => {
          const a = this.statsPeriods.averagesFor(db);
          return [db, a.xactCount, a.queryCount, a.bytesReceived, a.bytesSent, a.xactTimeUs, a.queryTimeUs, a.waitTimeUs];
        });
      case 'SERVERS':
        return this.serverRows();
      case 'CLIENTS': {
        const heldPids = new Set(this.gate.heldClients().map((h) => (h.client as ProxyClient).pid));
        // connect_time: accepted; request_time: the start of its last request (PgBouncer's: connect_time until one).
        const rows = this.proxy.clientList().map((c) => [
          'C', c.user, c.database, heldPids.has(c.pid) ? 'waiting' : 'active', ...clientAddress(c, this.proxy.address.port),
          c.socket.localAddress ?? null, c.socket.localPort ?? null, pgTime(c.connectedAt), pgTime(c.requestStartedAt === 0 ? c.connectedAt : wallTime(c.requestStartedAt)),
          0, 0, 0, ptr(c.pid), c.server === null ? null : ptr(c.server.id), 0, tlsInfo(c.socket), '',
        ]);
        for (const s of this.sessions) {
          rows.push(['C', s.user, 'pgbouncer', 'active', s.socket.remoteAddress ?? null, s.socket.remotePort ?? null, s.socket.localAddress ?? null, s.socket.localPort ?? null, pgTime(s.connectedAt), pgTime(s.requestAt), 0, 0, 0, ptr(s.pid), null, 0, tlsInfo(s.socket), '']);
        }
        return rows;
      }
      case 'DATABASES': {
        const current = new Map<string, number>();
        for (const r of this.poolRows()) current.set(r.database, (current.get(r.database) ?? 0) + r.svActive + r.svIdle + r.svLogin);
        const rows = this.databaseNames().map((db) => {
          // "<db>@ro": the read-only listener's pools, which connect to the replicas (or the primary as fallback).
          const ro = db.endsWith('@ro') ? this.roServers(db.slice(0, -3)) : null;
          const name = ro === null ? db : db.slice(0, -3);
          const host = ro === null ? primary?.host ?? null : ro.host;
          const port = ro === null ? primary?.port ?? null : ro.port;
          return [db, host, port, this.dbnameOf(name), null, cfg.default_pool_size, 0, 0, poolModeFor(cfg, name, null), 0, current.get(db) ?? 0, this.gate.isPaused(name) ? 1 : 0, 0];
        });
        rows.push(['pgbouncer', null, this.proxy.address.port, 'pgbouncer', 'pgbouncer', 2, 0, 0, 'statement', 0, 0, 0, 0]);
        return rows;
      }
      case 'LISTS': {
        const pools = this.poolRows();
        const clients = this.proxy.clientList();
        const used = pools.reduce((n, r) => n + r.svActive + r.svIdle, 0);
        return [
          ['databases', this.databaseNames().length + 1],
          ['users', new Set(pools.map((r) => r.user)).size],
          ['pools', pools.length],
          ['free_clients', 0],
          ['used_clients', clients.length + this.sessions.size],
          ['login_clients', 0],
          ['free_servers', 0],
          ['used_servers', used],
          ['dns_names', 0],
          ['dns_zones', 0],
          ['dns_queries', 0],
          ['dns_pending', 0],
        ];
      }
      case 'CONFIG':
        return this.configRows();
      case 'VERSION':
        return [[PGBOUNCER_VERSION]];
      case 'USERS':
        return [...new Set(this.poolRows().map((r) => r.user))].map((u) => [u, cfg.user_settings?.[u]?.pool_mode ?? null]);
    }
  }

  /** SHOW SERVERS: every server connection of every pool, with PgBouncer's states and close_needed. */
  private serverRows(): (string | number | null)[][] {
    const linkOf = new Map<number, number>();
    for (const c of this.proxy.clientList()) if (c.server !== null) linkOf.set(c.server.id, c.pid);
    const rows: (string | number | null)[][] = [];
    for (const [key, pool] of this.proxy.serverPools()) {
      const { user } = poolDatabaseLabel(key);
      const dbname = key.split('/')[0];
      const { all, idle } = pool.connectionsNow();
      const idleSet = new Set(idle);
      for (const s of all) {
        if (s.closed) continue;
        const state = idleSet.has(s) ? 'idle' : s.peer !== null ? 'active' : 'new';
        const link = linkOf.get(s.id);
        rows.push([
          'S', user, dbname, state, s.endpoint.host, s.endpoint.port, s.socket.localAddress ?? null, s.socket.localPort ?? null,
          pgTime(s.createdAt), pgTime(s.requestStartedAt === 0 ? s.createdAt : wallTime(s.requestStartedAt)), 0, 0, pool.isCloseNeeded(s) ? 1 : 0, ptr(s.id), link === undefined ? null : ptr(link), s.backendPid, tlsInfo(s.socket), '',
        ]);
      }
    }
    return rows;
  }

  /** SHOW CONFIG: PgBouncer's keys for what this proxy has, sorted by key as PgBouncer sorts them. */
  private configRows(): (string | number | null)[][] {
    const cfg = this.config;
    const rows: [string, string, string, 'yes' | 'no'][] = [
      ['listen_addr', cfg.listen.host, '127.0.0.1', 'no'],
      ['listen_port', String(cfg.listen.port), '6432', 'no'],
      ['pool_mode', cfg.pool_mode, 'transaction', 'no'],
      ['default_pool_size', String(cfg.default_pool_size), '20', 'yes'],
      ['max_client_conn', String(cfg.max_client_conn), '1000', 'yes'],
      ['query_wait_timeout', String(cfg.query_wait_timeout), '120', 'yes'],
      ['server_idle_timeout', String(cfg.server_idle_timeout), '600', 'yes'],
      ['server_lifetime', String(cfg.server_lifetime), '3600', 'yes'],
      ['server_reset_query', cfg.server_reset_query, 'DISCARD ALL', 'yes'],
      ['auth_type', cfg.auth_type, 'scram-sha-256', 'yes'],
      ['auth_file', cfg.authFilePath ?? '', '', 'yes'],
      ['admin_users', cfg.admin_users.join(','), '', 'yes'],
      ['stats_users', cfg.stats_users.join(','), '', 'yes'],
      ['stats_period', String(cfg.stats_period), '60', 'yes'],
      ['max_packet_size', String(cfg.max_message_length), String(0x3fffffff), 'yes'],
      ['client_tls_sslmode', cfg.clientTls?.sslmode ?? 'disable', 'disable', 'yes'],
      ['client_tls_cert_file', cfg.clientTls?.certFile ?? '', '', 'yes'],
      ['client_tls_key_file', cfg.clientTls?.keyFile ?? '', '', 'yes'],
      ['client_tls_ca_file', cfg.clientTls?.caFile ?? '', '', 'yes'],
      ['client_login_timeout', String(cfg.client_login_timeout), '60', 'yes'],
      ['conffile', this.options.configPath ?? '', '', 'yes'],
    ];
    return rows.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }

  /**
   * Where the read-only pools of `dbname` send transactions now: one server as is; several as a comma-separated
   * host list (PgBouncer's multi-host form) with their common port, or "host:port,…" and no port when ports differ.
   */
  private roServers(dbname: string): { host: string | null; port: number | null } {
    let targets: readonly Endpoint[] = [];
    for (const [key, pool] of this.proxy.serverPools()) {
      const [db, , role] = key.split('/');
      if (db === dbname && role === 'ro') {
        targets = pool.targets();
        break;
      }
    }
    if (targets.length === 0) return { host: null, port: null };
    if (targets.every((t) => t.port === targets[0].port)) return { host: [...new Set(targets.map((t) => t.host))].join(','), port: targets[0].port };
    return { host: targets.map((t) => `${t.host}:${t.port}`).join(','), port: null };
  }

  private databaseNames(): string[] {
    const names = new Set<string>(this.config.databases === undefined ? [] : Object.keys(this.config.databases));
    for (const r of this.poolRows()) names.add(r.database);
    return [...names];
  }

  /** Names PAUSE/RESUME/KILL/RECONNECT accept: the configured databases, else any served one. */
  private checkDatabase(database: string, verb: string): void {
    if (this.serves(database)) throw consoleError('55000', `cannot ${verb} the admin console database "${database}"`);
    const configured = this.config.databases;
    if (configured !== undefined && !Object.hasOwn(configured, database) && !Object.values(configured).some((d) => d?.dbname === database)) {
      throw consoleError('3D000', `no such database: ${database}`, 'SHOW DATABASES lists the databases this proxy serves.');
    }
  }

  /**
   * Runs a control command; resolves with the CommandComplete tag and notices for the console client.
   * `wanted()` turns false when the console client went away (waiting commands stop waiting).
   */
  async control(verb: string, database: string | null, wanted: () => boolean = () => true): Promise<{ tag: string; notices: string[] }> {
    const dbname = database === null ? null : this.dbnameOf(database);
    if (database !== null && verb !== 'WAIT_CLOSE') this.checkDatabase(database, verb);
    switch (verb) {
      case 'PAUSE': {
        if (this.gate.pausedAll || (database !== null && this.gate.pausedByName(database))) throw consoleError('55000', database === null ? 'already suspended/paused' : `database ${database} is already paused`, 'Run RESUME first.');
        this.gate.pause(database);
        // PgBouncer's PAUSE: new transactions wait, and each server connection is closed once released; the answer
        // comes when none is left, so PostgreSQL can then be restarted without breaking a transaction.
        const marked = this.proxy.reconnect(dbname);
        this.options.logger?.info({ database: database ?? '(all)', serverConnections: marked }, 'PAUSE: waiting for server connections to be released');
        while (this.gate.isPaused(database ?? '') && this.proxy.closeNeededCount(dbname) > 0 && wanted()) await sleep(POLL_MS);
        return { tag: 'PAUSE', notices: [] };
      }
      case 'RESUME':
        if (database === null) {
          if (!this.gate.paused) throw consoleError('55000', 'pooler is not paused/suspended');
        } else if (!this.gate.pausedByName(database)) {
          throw consoleError('55000', `database ${database} is not paused`);
        }
        this.gate.resume(database);
        return { tag: 'RESUME', notices: [] };
      case 'RELOAD': {
        const result = this.options.peers === undefined ? this.reload() : await this.options.peers.reload();
        return { tag: 'RELOAD', notices: result.needRestart.length === 0 ? [] : [restartNotice(result.needRestart)] };
      }
      case 'RECONNECT': {
        const marked = this.proxy.reconnect(dbname);
        this.options.logger?.info({ database: database ?? '(all)', serverConnections: marked }, 'RECONNECT: server connections are replaced as they are released');
        return { tag: 'RECONNECT', notices: [] };
      }
      case 'KILL': {
        // PgBouncer's KILL: the database's clients and server connections go at once, and it stays paused (new
        // clients wait) until RESUME.
        this.gate.pause(database!);
        for (const client of this.proxy.clientList()) {
          if (client.database === database || this.dbnameOf(client.database) === dbname) {
            client.fail(new PgProtocolError('57P01', 'terminating connection due to administrator command', { detail: `KILL ${database} on the admin console` }));
          }
        }
        this.proxy.reconnect(dbname);
        this.options.logger?.info({ database }, 'KILL: clients dropped; the database is paused until RESUME');
        return { tag: 'KILL', notices: [] };
      }
      case 'WAIT_CLOSE':
        while (this.proxy.closeNeededCount(dbname) > 0 && wanted()) await sleep(POLL_MS);
        return { tag: 'WAIT_CLOSE', notices: [] };
      case 'SHUTDOWN':
        setImmediate(() => (this.options.onShutdown ?? (() => void this.proxy.stop()))());
        return { tag: 'SHUTDOWN', notices: [] };
      default:
        throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, `${verb} is not supported by this proxy`, { severity: 'ERROR', hint: validCommandsHint() });
    }
  }

  /**
   * RELOAD and SIGHUP: re-reads the config file and applies what can change live (pool sizes, timeouts, users,
   * auth file, TLS files, limits); changed settings that need a restart keep their running value and are logged.
   * Throws (PgProtocolError, nothing changed) when the file is missing or invalid.
   */
  reload(): ReloadResult {
    const path = this.options.configPath;
    if (path === undefined) {
      throw consoleError('55000', 'RELOAD is not available: this proxy was started without a config file', 'Start the proxy with --config to use RELOAD.');
    }
    let plan: ReturnType<typeof planReload>;
    try {
      plan = planReload(this.config, loadProxyConfig(path));
      this.proxy.applyConfig(plan.config);
    } catch (e) {
      throw consoleError('F0000', `RELOAD failed, the running config is unchanged: ${(e as Error).message}`, 'Fix the config file and run RELOAD (or send SIGHUP) again.');
    }
    this.configApplied(plan.config);
    this.options.onReload?.(plan.config);
    if (this.options.logger !== undefined) logReload(this.options.logger, plan, path);
    return { applied: plan.applied, needRestart: plan.needRestart };
  }

  /** The proxy runs with `config` now (RELOAD here, or in a worker thread the main thread's reload). */
  configApplied(config: ProxyConfig): void {
    const periodChanged = config.stats_period !== this.config.stats_period;
    this.config = config;
    if (periodChanged) this.startStatsTimer();
  }

  get uptimeMs(): number {
    return Date.now() - this.startedAt;
  }
}

/** The log lines of a RELOAD (SIGHUP): what applied, and a warning naming what waits for a restart. */
export function logReload(logger: Logger, plan: ReloadPlan, path: string): void {
  if (plan.needRestart.length > 0) logger.warn({ settings: plan.needRestart, config: path }, `RELOAD: ${restartNotice(plan.needRestart)}`);
  logger.info({ applied: plan.applied, config: path }, 'RELOAD: config file re-read');
}

function restartNotice(settings: readonly string[]): string {
  return `${settings.join(', ')} changed in the config file but can only change at a restart: the running value${settings.length === 1 ? ' is' : 's are'} kept until the proxy is restarted`;
}

function consoleError(code: string, message: string, hint?: string): PgProtocolError {
  return new PgProtocolError(code, message, { severity: 'ERROR', hint });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** PgBouncer's timestamp text ("%Y-%m-%d %H:%M:%S %Z"), in UTC as the proxy's console reports TimeZone UTC. */
export function pgTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** A clock.now() reading of this thread as ms since the epoch. */
function wallTime(monotonic: number): number {
  return clock.wallNow() - (clock.now() - monotonic);
}

/**
 * SHOW CLIENTS/SERVERS' tls: PgBouncer's "protocol/cipher" (libusual's tls_get_connection_info), with "/ECDH=curve"
 * or "/DH=bits" where OpenSSL names the key exchange (EC curves and DH groups; not X25519/X448, nor on the server
 * side of TLS 1.3); '' for plaintext.
 */
export function tlsInfo(socket: Wire | Socket): string {
  if (!(socket instanceof TLSSocket)) return '';
  const protocol = socket.getProtocol();
  const cipher = socket.getCipher() as { name?: string } | undefined;
  if (protocol === null || cipher?.name === undefined) return '';
  const key = socket.getEphemeralKeyInfo() as { type?: string; name?: string; size?: number } | null;
  let kx = '';
  if (key?.type === 'DH' && key.size !== undefined) kx = `/DH=${key.size}`;
  else if (key?.type === 'ECDH' && key.name !== undefined && !/^X(25519|448)$/.test(key.name)) kx = `/ECDH=${key.name}`;
  return `${protocol}/${cipher.name}${kx}`;
}

function ptr(n: number): string {
  return `0x${n.toString(16).padStart(12, '0')}`;
}

/** One console connection: simple-protocol statements, answered one by one. */
class AdminSession {
  private readonly framer = new MessageFramer(frontendLimits(1 << 20));
  private readonly writer = new MessageWriter(1024);
  private busy = false;
  private readonly role: 'admin' | 'stats';
  /** When the statement being answered arrived (its time counts in the console's own stats). */
  private startedAt = 0n;
  /** This session in the console's list (SHOW CLIENTS), or null when refused. */
  private entry: ConsoleSessionEntry | null = null;

  constructor(
    private readonly console: AdminConsole,
    private readonly socket: Socket,
    private readonly user: string,
    saslFinal: Buffer | null,
    pid: number,
    secretKey: number,
  ) {
    socket.removeAllListeners('data');
    const role = console.role(user);
    if (role === null) {
      // PgBouncer's words; 42501 so that scripts see a privilege error.
      closeConnection(socket, m.errorResponse({ severity: 'FATAL', code: '42501', message: 'not allowed', hint: `Add "${user}" to admin_users or stats_users in the proxy config.` }));
      this.role = 'stats';
      return;
    }
    this.role = role;
    const entry: ConsoleSessionEntry = { user, socket, pid, connectedAt: Date.now(), requestAt: Date.now() };
    this.entry = entry;
    console.sessions.add(entry);
    socket.once('close', () => console.sessions.delete(entry));
    const w = this.writer;
    if (saslFinal !== null) m.writeAuthenticationSASLFinal(w, saslFinal);
    m.writeAuthenticationOk(w);
    for (const [name, value] of [['server_version', '1.18.0/bouncer'], ['client_encoding', 'UTF8'], ['server_encoding', 'UTF8'], ['DateStyle', 'ISO'], ['TimeZone', 'UTC'], ['integer_datetimes', 'on'], ['standard_conforming_strings', 'on']]) {
      m.writeParameterStatus(w, name, value);
    }
    m.writeBackendKeyData(w, pid, secretKey);
    m.writeReadyForQuery(w, 'I');
    socket.write(w.flush());
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk);
      this.pump();
    });
  }

  private pump(): void {
    try {
      while (!this.busy && this.framer.next()) {
        const f = this.framer;
        if (f.type === m.FrontendType.Terminate) {
          closeConnection(this.socket);
          return;
        }
        if (f.type !== m.FrontendType.Query) {
          throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'the admin console speaks only the simple query protocol', { hint: 'Send commands as plain queries, e.g. psql -c "SHOW POOLS".' });
        }
        const own = this.console.ownTotals;
        own.queryCount++;
        own.xactCount++;
        own.bytesReceived += f.end - f.bodyStart + 5;
        this.startedAt = process.hrtime.bigint();
        if (this.entry !== null) this.entry.requestAt = Date.now();
        this.run(parseAdminCommand(m.decodeQuery(f.buffer, f.bodyStart, f.end)));
      }
    } catch (e) {
      const error = e instanceof PgProtocolError ? e : new PgProtocolError('XX000', `internal proxy error: ${(e as Error).message}`);
      closeConnection(this.socket, m.errorResponse({ ...error.toFields(), severity: 'FATAL' }));
    }
  }

  private run(command: AdminCommand): void {
    const w = this.writer;
    if (command.kind === 'empty') {
      m.writeEmptyQueryResponse(w);
    } else if (command.kind === 'unknown') {
      m.writeErrorResponse(w, { severity: 'ERROR', code: '42601', message: `invalid command "${command.text}" on the admin console`, hint: validCommandsHint() });
    } else if (command.kind === 'control' && this.role !== 'admin') {
      m.writeErrorResponse(w, { severity: 'ERROR', code: '42501', message: 'admin access needed', hint: `"${this.user}" is in stats_users, which may only SHOW; add it to admin_users to run ${command.verb}.` });
    } else if (command.kind === 'show') {
      const subject = command.subject;
      const local = this.console.show(subject);
      const peers = this.console.peers;
      if (peers === null || LOCAL_SUBJECTS.has(subject)) {
        this.writeShow(subject, local);
      } else {
        this.busy = true;
        peers.show(subject).then(
          (others) => this.done(() => this.writeShow(subject, mergeShowRows(subject, [local, ...others]))),
          (e: unknown) => this.done(() => this.writeError(e)),
        );
        return;
      }
    } else {
      this.busy = true;
      const peers = this.console.peers;
      const everywhere = peers === null || command.verb === 'SHUTDOWN' || command.verb === 'RELOAD' ? null : peers.control(command.verb, command.database);
      // Every worker runs it (PAUSE answers once all have let their transactions end); the local error comes first.
      Promise.all([this.console.control(command.verb, command.database, () => !this.socket.destroyed), everywhere]).then(([result]) => result).then(
        ({ tag, notices }) => this.done(() => {
          for (const message of notices) m.writeNoticeResponse(this.writer, { severity: 'WARNING', code: '01000', message });
          m.writeCommandComplete(this.writer, tag);
        }),
        (e: unknown) => this.done(() => this.writeError(e)),
      );
      return;
    }
    m.writeReadyForQuery(w, 'I');
    this.send();
  }

  private writeShow(subject: ShowSubject, rows: readonly ShowRow[]): void {
    const w = this.writer;
    const columns = COLUMNS[subject];
    m.writeRowDescription(w, columns.map((name) => ({ name, typeOid: NUMERIC_COLUMNS.has(name) ? m.TypeOid.int8 : PORT_COLUMNS.has(name) ? m.TypeOid.int4 : m.TypeOid.text })));
    for (const row of rows) m.writeDataRow(w, row);
    m.writeCommandComplete(w, 'SHOW');
  }

  private writeError(e: unknown): void {
    const error = e instanceof PgProtocolError ? e : new PgProtocolError('XX000', (e as Error).message);
    m.writeErrorResponse(this.writer, { ...error.toFields(), severity: 'ERROR' });
  }

  private done(write: () => void): void {
    write();
    m.writeReadyForQuery(this.writer, 'I');
    this.send();
    this.busy = false;
    this.pump();
  }

  private send(): void {
    const out = this.writer.flush();
    const own = this.console.ownTotals;
    own.bytesSent += out.length;
    const us = Number((process.hrtime.bigint() - this.startedAt) / 1000n);
    own.queryTimeUs += us;
    own.xactTimeUs += us;
    if (this.socket.writable) this.socket.write(out);
  }
}

/** SHOW CLIENTS' addr and port: PgBouncer shows a Unix-socket client as `unix` with the port it listens on. */
function clientAddress(c: ProxyClient, listenPort: number): [string | null, number | null] {
  if (c.local) return ['unix', listenPort];
  return [c.socket.remoteAddress ?? null, c.socket.remotePort ?? null];
}
