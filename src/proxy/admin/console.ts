/**
 * PgBouncer's admin console on database `pgwarden` (alias `pgbouncer`): SHOW answers with PgBouncer 1.18's
 * columns so exporters and scripts written for PgBouncer work unchanged, and PAUSE/RESUME/RELOAD/KILL/SHUTDOWN.
 *
 * A console is attached to a ProxyServer from outside (attachAdminConsole) and found by the client through
 * consoleFor(): the proxy server itself needs no field for it, and a proxy without a console behaves as before.
 */
import type { Socket } from 'node:net';
import { type ProxyConfig, loadProxyConfig } from '../../config/proxy.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import { MessageFramer, frontendLimits } from '../protocol/framer.js';
import * as m from '../protocol/messages.js';
import { MessageWriter } from '../protocol/writer.js';
import type { ProxyClient } from '../client.js';
import type { PoolWaiter, ServerPool } from '../pool/server-pool.js';
import type { ProxyServer } from '../server.js';
import type { Topology } from '../topology.js';
import { type AdminCommand, COLUMNS, NUMERIC_COLUMNS, PGBOUNCER_VERSION, PORT_COLUMNS, type ShowSubject, parseAdminCommand, validCommandsHint } from './commands.js';

export const CONSOLE_DATABASES: ReadonlySet<string> = new Set(['pgwarden', 'pgbouncer']);

export interface AdminConsoleOptions {
  config: ProxyConfig;
  topology: Topology;
  /** The config file RELOAD re-reads; without it RELOAD answers an error. */
  configPath?: string;
  /** Applies a reloaded config beyond the console's own settings (admin_users, stats_users). */
  onReload?: (config: ProxyConfig) => void;
  /** What SHUTDOWN does; default proxy.stop(). */
  onShutdown?: () => void;
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

/** What the console needs of the proxy: read-only views plus stop(). */
export type ConsoleProxy = Pick<ProxyServer, 'poolStats' | 'stop' | 'address'> & { clientList(): readonly ProxyClient[] };

const consoles = new WeakMap<object, AdminConsole>();

/** The console attached to a proxy server (the ClientHost a client has), or null. */
export function consoleFor(host: object): AdminConsole | null {
  return consoles.get(host) ?? null;
}

export function attachAdminConsole(proxy: ConsoleProxy, options: AdminConsoleOptions): AdminConsole {
  const console = new AdminConsole(proxy, options);
  consoles.set(proxy, console);
  return console;
}

interface Held {
  client: PoolWaiter & { readonly state: string };
  pool: ServerPool;
  since: number;
}

export class AdminConsole {
  private config: ProxyConfig;
  /** New transactions wait while paused (PAUSE); RESUME lets them go in order. */
  paused = false;
  private held: Held[] = [];
  private readonly startedAt = Date.now();

  constructor(
    private readonly proxy: ConsoleProxy,
    private readonly options: AdminConsoleOptions,
  ) {
    this.config = options.config;
  }

  /** True for the console's database names. */
  serves(database: string): boolean {
    return CONSOLE_DATABASES.has(database);
  }

  /** A client that wants a server connection while paused: kept until RESUME. */
  hold(client: Held['client'], pool: ServerPool): void {
    this.held.push({ client, pool, since: Date.now() });
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
      // Keys are "dbname/user" or "dbname/user/ro" (the read-only listener's pools).
      const [dbname, user, role] = key.split('/');
      const r = row(role === undefined ? dbname : `${dbname}@${role}`, user);
      r.svActive = stats.active - stats.opening;
      r.svIdle = stats.idle;
      r.svLogin = stats.opening;
      r.clWaiting = stats.waiting;
    }
    for (const client of this.proxy.clientList()) {
      if (this.serves(client.database)) continue;
      row(client.database, client.user).clActive++;
    }
    for (const h of this.held) {
      const c = h.client as unknown as ProxyClient;
      if (c.state === 'closed') continue;
      const r = row(c.database, c.user);
      r.clWaiting++;
      r.maxwaitUs = Math.max(r.maxwaitUs, (now - h.since) * 1000);
    }
    for (const r of rows.values()) r.clActive = Math.max(0, r.clActive - r.clWaiting);
    return [...rows.values()];
  }

  /** The rows of one SHOW, as text/number values in COLUMNS order. */
  show(subject: ShowSubject): (string | number | null)[][] {
    const cfg = this.config;
    const primary = this.options.topology.primary();
    switch (subject) {
      case 'POOLS':
        return this.poolRows().map((r) => [r.database, r.user, r.clActive, r.clWaiting, 0, 0, r.svActive, 0, 0, r.svIdle, 0, 0, r.svLogin, Math.floor(r.maxwaitUs / 1e6), r.maxwaitUs % 1e6, cfg.pool_mode]);
      case 'STATS':
        // Traffic and timing counters are not kept by the pool yet: zeros, with PgBouncer's columns.
        return this.databaseNames().map((db) => [db, ...new Array<number>(14).fill(0)]);
      case 'STATS_TOTALS':
      case 'STATS_AVERAGES':
        return this.databaseNames().map((db) => [db, ...new Array<number>(7).fill(0)]);
      case 'SERVERS': {
        const rows: (string | number | null)[][] = [];
        for (const client of this.proxy.clientList()) {
          const s = client.server;
          if (s === null) continue;
          rows.push(['S', client.user, this.dbnameOf(client.database), 'active', s.endpoint.host, s.endpoint.port, s.socket.localAddress ?? null, s.socket.localPort ?? null, iso(s.createdAt), iso(Date.now()), 0, 0, 0, ptr(s.socket.localPort ?? 0), ptr(client.pid), 0, null, '']);
        }
        for (const r of this.poolRows()) {
          for (let i = 0; i < r.svIdle; i++) rows.push(['S', r.user, this.dbnameOf(r.database), 'idle', primary?.host ?? null, primary?.port ?? null, null, null, null, null, 0, 0, 0, null, null, 0, null, '']);
        }
        return rows;
      }
      case 'CLIENTS': {
        const heldPids = new Set(this.held.map((h) => (h.client as unknown as ProxyClient).pid));
        return this.proxy.clientList().map((c) => [
          'C', c.user, c.database, heldPids.has(c.pid) ? 'waiting' : 'active', c.socket.remoteAddress ?? null, c.socket.remotePort ?? null,
          c.socket.localAddress ?? null, c.socket.localPort ?? null, null, null, 0, 0, 0, ptr(c.pid), c.server === null ? null : ptr(c.server.socket.localPort ?? 0), 0, null, '',
        ]);
      }
      case 'DATABASES': {
        const current = new Map<string, number>();
        for (const r of this.poolRows()) current.set(r.database, (current.get(r.database) ?? 0) + r.svActive + r.svIdle + r.svLogin);
        const rows = this.databaseNames().map((db) => [db, primary?.host ?? null, primary?.port ?? null, this.dbnameOf(db), null, cfg.default_pool_size, 0, 0, cfg.pool_mode, 0, current.get(db) ?? 0, this.paused ? 1 : 0, 0]);
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
          ['used_clients', clients.length],
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
        return [
          ['listen_addr', cfg.listen.host, '127.0.0.1', 'no'],
          ['listen_port', String(cfg.listen.port), '6432', 'no'],
          ['pool_mode', cfg.pool_mode, 'transaction', 'yes'],
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
          ['max_packet_size', String(cfg.max_message_length), String(0x3fffffff), 'yes'],
        ];
      case 'VERSION':
        return [[PGBOUNCER_VERSION]];
      case 'USERS':
        return [...new Set(this.poolRows().map((r) => r.user))].map((u) => [u, cfg.pool_mode]);
    }
  }

  private databaseNames(): string[] {
    const names = new Set<string>(this.config.databases === undefined ? [] : Object.keys(this.config.databases));
    for (const r of this.poolRows()) names.add(r.database);
    return [...names];
  }

  /** Runs a control command; resolves with the CommandComplete tag. */
  async control(verb: string, database: string | null): Promise<string> {
    switch (verb) {
      case 'PAUSE':
        this.paused = true;
        // PgBouncer answers PAUSE once running transactions are done; new ones already wait.
        while (this.paused && this.poolRows().some((r) => r.svActive > 0)) await new Promise((resolve) => setTimeout(resolve, 20));
        return 'PAUSE';
      case 'RESUME':
        this.resume();
        return 'RESUME';
      case 'RELOAD':
        this.reload();
        return 'RELOAD';
      case 'KILL': {
        for (const client of this.proxy.clientList()) {
          if (client.database === database || this.dbnameOf(client.database) === database) {
            client.fail(new PgProtocolError('57P01', 'terminating connection due to administrator command', { detail: `KILL ${database} on the admin console` }));
          }
        }
        return 'KILL';
      }
      case 'WAIT_CLOSE':
        // No server connection is ever marked for closing (RECONNECT is not supported), so nothing to wait for.
        return 'WAIT_CLOSE';
      case 'SHUTDOWN':
        setImmediate(() => (this.options.onShutdown ?? (() => void this.proxy.stop()))());
        return 'SHUTDOWN';
      default:
        throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, `${verb} is not supported by this proxy yet`, {
          severity: 'ERROR',
          hint: 'Close idle server connections with KILL db, or restart the proxy.',
        });
    }
  }

  resume(): void {
    this.paused = false;
    for (const { client, pool } of this.held.splice(0)) {
      if (client.state === 'closed') continue;
      const conn = pool.tryAcquire();
      if (conn !== null) client.onServerAcquired(conn);
      else pool.wait(client);
    }
  }

  private reload(): void {
    const path = this.options.configPath;
    if (path === undefined) {
      throw new PgProtocolError('55000', 'RELOAD is not available: this proxy was started without a config file', { severity: 'ERROR', hint: 'Start the proxy with --config to use RELOAD.' });
    }
    let next: ProxyConfig;
    try {
      next = loadProxyConfig(path);
    } catch (e) {
      throw new PgProtocolError('F0000', `RELOAD failed, the running config is unchanged: ${(e as Error).message}`, { severity: 'ERROR', hint: 'Fix the config file and run RELOAD again.' });
    }
    this.config = next;
    this.options.onReload?.(next);
  }

  get uptimeMs(): number {
    return Date.now() - this.startedAt;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
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
      socket.end(m.errorResponse({ severity: 'FATAL', code: '42501', message: 'not allowed', hint: `Add "${user}" to admin_users or stats_users in the proxy config.` }));
      this.role = 'stats';
      return;
    }
    this.role = role;
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
          this.socket.end();
          return;
        }
        if (f.type !== m.FrontendType.Query) {
          throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'the admin console speaks only the simple query protocol', { hint: 'Send commands as plain queries, e.g. psql -c "SHOW POOLS".' });
        }
        this.run(parseAdminCommand(m.decodeQuery(f.buffer, f.bodyStart, f.end)));
      }
    } catch (e) {
      const error = e instanceof PgProtocolError ? e : new PgProtocolError('XX000', `internal proxy error: ${(e as Error).message}`);
      if (this.socket.writable) this.socket.end(m.errorResponse({ ...error.toFields(), severity: 'FATAL' }));
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
      const columns = COLUMNS[command.subject];
      m.writeRowDescription(w, columns.map((name) => ({ name, typeOid: NUMERIC_COLUMNS.has(name) ? m.TypeOid.int8 : PORT_COLUMNS.has(name) ? m.TypeOid.int4 : m.TypeOid.text })));
      const rows = this.console.show(command.subject);
      for (const row of rows) m.writeDataRow(w, row);
      m.writeCommandComplete(w, 'SHOW');
    } else {
      this.busy = true;
      this.console.control(command.verb, command.database).then(
        (tag) => this.done(() => m.writeCommandComplete(this.writer, tag)),
        (e: unknown) => this.done(() => {
          const error = e instanceof PgProtocolError ? e : new PgProtocolError('XX000', (e as Error).message);
          m.writeErrorResponse(this.writer, { ...error.toFields(), severity: 'ERROR' });
        }),
      );
      return;
    }
    m.writeReadyForQuery(w, 'I');
    this.socket.write(w.flush());
  }

  private done(write: () => void): void {
    write();
    m.writeReadyForQuery(this.writer, 'I');
    if (this.socket.writable) this.socket.write(this.writer.flush());
    this.busy = false;
    this.pump();
  }
}
