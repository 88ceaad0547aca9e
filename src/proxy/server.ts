/**
 * The proxy's listener: accepts clients, authenticates them against the userlist, and hands each to the pool
 * of its (database, user). One process, any number of clients; a hostile or broken client only ever closes
 * itself (every error path ends in ProxyClient.fail).
 */
import { once } from 'node:events';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import type { Logger } from 'pino';
import { type ProxyConfig, poolModeFor } from '../config/proxy.js';
import { PgProtocolError, SQLSTATE } from './protocol/errors.js';
import * as m from './protocol/messages.js';
import { type ClientHost, ProxyClient } from './client.js';
import type { PoolCounters } from './pool/counters.js';
import { ReconnectablePool } from './pool/reconnectable-pool.js';
import { DatabaseLimit, type PoolStats, type ServerPool } from './pool/server-pool.js';
import type { Topology } from './topology.js';
import { type ClientTls, loadClientTls } from './tls.js';
import { AuthQuery } from './auth/auth-query.js';
import { type ServerTls, loadServerTls } from './server-tls.js';
import type { Wire } from './wire/wire.js';
import { nativeIoStatus } from './wire/native-wire.js';
import type { ConnectionBudget } from './pool/server-pool.js';
import type { SharedCounters } from './workers/shared-counters.js';
import { ClientFailures } from './client-failures.js';
import type { HbaRules } from '../postgres/hba.js';
import { closeUnix, listenUnix } from './unix-listener.js';
import { closeConnection } from './closing.js';
import { PauseGate } from './pause-gate.js';
import type { ConsoleDoor } from './admin/door.js';

export interface ProxyServerOptions {
  config: ProxyConfig;
  topology: Topology;
  logger?: Logger;
  /** Time allowed to log in to PostgreSQL; default 10 s. */
  connectTimeoutMs?: number;
  /** Set when this server is one of the proxy's worker threads (workers/worker.ts): it has no listener of its own. */
  worker?: WorkerLink;
}

/** A worker thread's ties to the rest of the proxy (workers/group.ts runs the main thread's side). */
export interface WorkerLink {
  readonly counters: SharedCounters;
  /** Where the proxy listens (the main thread does). */
  readonly address: { host: string; port: number };
  readonly roAddress: { host: string; port: number } | null;
  /**
   * The count of pool `name`'s server connections over every worker, or with databaseBudgetName() those of a
   * database under max_db_connections.
   */
  budget(name: string): ConnectionBudget;
  /** A cancel request for a client that is not in this worker. */
  cancelElsewhere(pid: number, secretKey: number): void;
}

/**
 * The budget name of a database's max_db_connections count: NUL cannot be in a database or user name, so it never
 * equals a pool's ("dbname/user", "dbname/user/ro").
 */
function databaseBudgetName(limitKey: string): string {
  return `\0db/${limitKey}`;
}

function databaseKeyOf(name: string): string | null {
  return name.startsWith('\0db/') ? name.slice(4) : null;
}

export class ProxyServer implements ClientHost {
  readonly poolMode: 'session' | 'transaction';
  // Not readonly: RELOAD replaces them; clients read them at each use.
  authType: 'scram-sha-256' | 'md5' | 'trust' | 'hba';
  /** auth_hba_file's rules (authType hba), or null. */
  hba: HbaRules | null;
  maxMessageLength: number;
  serverResetQuery: string;
  clientTls: ClientTls | null;
  /** Null in a worker thread (the main thread listens). */
  private readonly listener: Server | null;
  /** The read-only listener (listen_ro), or null. */
  private readonly roListener: Server | null;
  private readonly roHost: ClientHost;
  /** unix_socket_dir's listener (its clients are local connections), or null; and its socket file once listening. */
  private readonly unixListener: Server | null;
  private unixPath: string | null = null;
  private readonly pools = new Map<string, ReconnectablePool>();
  /** max_db_connections per "dbname/rw" or "dbname/ro", shared by the pools of that database's users. */
  private readonly databaseLimits = new Map<string, DatabaseLimit>();
  /** idle_transaction_timeout and client_idle_timeout: a sweep over the clients, started by start(). */
  private idleSweep: NodeJS.Timeout | null = null;
  /**
   * Logged-in clients by cancelKey(pid, secret): session-mode clients carry their backend's real pair, which may
   * repeat across servers (primary and replica, or a random pair of a transaction-mode client): the key is both.
   */
  private readonly clients = new Map<string, ProxyClient>();
  /**
   * Clients accepted and not logged in yet, in accept order, with performance.now() at accept: the
   * client_login_timeout sweep closes those that take too long. A client leaves at login (register) or when its
   * connection closes.
   */
  private readonly loggingIn = new Map<ProxyClient, number>();
  /** Every client connection: Node sockets, and the NativeWires that took over some of them (see adopted()). */
  private readonly sockets = new Set<Wire>();
  private config: ProxyConfig;
  /** server_tls_*: TLS to PostgreSQL, or null. */
  private readonly serverTls: ServerTls | null;
  /** native_io, and the module loaded: logged-in plain TCP connections become NativeWires. */
  readonly nativeIo: boolean;
  /** auth_query for users missing from auth_file, or null. */
  private readonly authQuery: AuthQuery | null;
  /** Failed logins and protocol violations: logged (rate-limited) and counted for /metrics. */
  readonly clientFailures: ClientFailures;
  /** PAUSE/KILL on the admin console hold this server's clients here (the read-only listener's are never held). */
  readonly pauseGate = new PauseGate((database) => this.config.databases?.[database]?.dbname ?? database);
  /** The admin console's logins, once a console is attached (attachAdminConsole); null: none. */
  consoleDoor: ConsoleDoor | null = null;

  constructor(private readonly options: ProxyServerOptions) {
    this.config = options.config;
    this.clientFailures = new ClientFailures(options.logger);
    this.poolMode = this.config.pool_mode;
    this.authType = this.config.auth_type;
    this.hba = this.config.hba;
    this.maxMessageLength = this.config.max_message_length;
    this.serverResetQuery = this.config.server_reset_query;
    this.clientTls = loadClientTls(this.config.clientTls);
    this.serverTls = loadServerTls(this.config.serverTls);
    const native = nativeIoStatus();
    this.nativeIo = this.config.native_io && native.active;
    if (this.config.native_io && !native.active) {
      options.logger?.warn({ why: native.why }, 'native I/O unavailable: client and server connections stay Node sockets (same behaviour, more CPU per query)');
    }
    const authQuery = this.config.authQuery;
    this.authQuery =
      authQuery === null
        ? null
        : new AuthQuery({
            settings: authQuery,
            topology: options.topology,
            connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
            serverTls: this.serverTls,
            ...(options.logger === undefined ? {} : { logger: options.logger }),
          });
    const inWorker = options.worker !== undefined;
    this.listener = inWorker ? null : createServer((socket) => this.accept(socket, this));
    this.roHost = readOnlyHost(this);
    this.roListener = inWorker || this.config.listen_ro === undefined ? null : createServer((socket) => this.accept(socket, this.roHost));
    this.unixListener = inWorker || this.config.unixSocket === null ? null : createServer((socket) => this.accept(socket, this, true));
  }

  async start(): Promise<void> {
    if (this.listener === null) {
      this.startIdleSweep();
      return;
    }
    await listen(this.listener, this.config.listen);
    this.listener.on('error', (e) => this.options.logger?.error({ err: e.message }, 'proxy listener error'));
    if (this.roListener !== null && this.config.listen_ro !== undefined) {
      try {
        await listen(this.roListener, this.config.listen_ro);
      } catch (e) {
        this.listener.close();
        throw e;
      }
      this.roListener.on('error', (e) => this.options.logger?.error({ err: e.message }, 'proxy ro listener error'));
    }
    if (this.unixListener !== null) {
      try {
        this.unixPath = await listenUnix(this.unixListener, this.config.unixSocket!, this.address.port, this.options.logger);
      } catch (e) {
        this.listener.close();
        this.roListener?.close();
        throw e;
      }
      this.unixListener.on('error', (e) => this.options.logger?.error({ err: e.message }, 'proxy unix socket listener error'));
    }
    this.startIdleSweep();
    this.options.logger?.info({ listen: this.address, listen_ro: this.roAddress, unix_socket: this.unixPath ?? undefined, pool_mode: this.poolMode, client_tls: this.clientTls?.sslmode ?? 'disable' }, 'proxy listening');
    if (this.authType === 'trust') {
      this.options.logger?.warn('auth_type is trust: every client is let in as the user it names, without a password; use it only on a trusted network');
    }
  }

  private startIdleSweep(): void {
    this.idleSweep = setInterval(() => this.sweepIdleClients(), IDLE_SWEEP_MS);
    this.idleSweep.unref();
  }

  get address(): { host: string; port: number } {
    if (this.options.worker !== undefined) return this.options.worker.address;
    const a = this.listener!.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** The Unix-domain socket file listened on (unix_socket_dir), or null. */
  get unixSocketPath(): string | null {
    return this.unixPath;
  }

  /** The read-only listener's address, or null without listen_ro. */
  get roAddress(): { host: string; port: number } | null {
    if (this.options.worker !== undefined) return this.options.worker.roAddress;
    const a = this.roListener?.address() as AddressInfo | null | undefined;
    return a === null || a === undefined ? null : { host: a.address, port: a.port };
  }

  /** Pool counters per "database/user", for tests and (later) SHOW POOLS. */
  /** rw transactions running on a server now, over every pool: a switchover drain is complete at 0. */
  rwTransactionsInFlight(): number {
    let n = 0;
    for (const pool of this.pools.values()) if (pool.isReadWrite) n += pool.transactionsInFlight();
    return n;
  }

  poolStats(): Map<string, PoolStats> {
    return new Map([...this.pools].map(([key, pool]) => [key, pool.stats]));
  }

  /** Clients that name a console database log in to `door` from now on. */
  openConsoleDoor(door: ConsoleDoor): void {
    this.consoleDoor = door;
  }

  /** The logged-in clients, read-only, for the admin console's SHOW CLIENTS/POOLS. */
  clientList(): readonly ProxyClient[] {
    return [...this.clients.values()];
  }

  // Admin console: RELOAD, RECONNECT, WAIT_CLOSE, SHOW STATS -------------------------------------------------------

  /** Traffic totals per pool key ("dbname/user" or "dbname/user/ro"). */
  poolCounters(): Map<string, PoolCounters> {
    return new Map([...this.pools].map(([key, pool]) => [key, pool.counters]));
  }

  /** The pools per key, for the console's per-connection views. */
  serverPools(): ReadonlyMap<string, ReconnectablePool> {
    return this.pools;
  }

  /** With workers: another worker lacks room in the pool or database `name` (a budget's name); true if one closed. */
  shedIdle(name: string): boolean {
    return this.pools.get(name)?.shedIdle() ?? this.databaseLimits.get(databaseKeyOf(name) ?? '')?.shedIdle() ?? false;
  }

  /** With workers: room in the pool or database `name` was given back: its waiting clients may get a connection. */
  wake(name: string): void {
    const pool = this.pools.get(name);
    if (pool !== undefined) pool.wake();
    else this.databaseLimits.get(databaseKeyOf(name) ?? '')?.connectionClosed();
  }

  /**
   * Runs with `config` from now on (RELOAD): new clients see the new auth, TLS and limits; existing pools take the
   * new size, timeouts and secrets. Connected clients are left alone. Settings that need a restart must already
   * carry their running values (planReload). Throws, changing nothing, when the new TLS files cannot be loaded.
   */
  applyConfig(config: ProxyConfig): void {
    const clientTls = loadClientTls(config.clientTls);
    this.config = config;
    this.authType = config.auth_type;
    this.hba = config.hba;
    this.maxMessageLength = config.max_message_length;
    this.serverResetQuery = config.server_reset_query;
    this.clientTls = clientTls;
    for (const [key, pool] of this.pools) {
      const [dbname, user] = key.split('/');
      const entry = Object.entries(config.databases ?? {}).find(([alias, e]) => (e?.dbname ?? alias) === dbname)?.[1] ?? null;
      // Users known only through auth_query keep the secret their pool learnt.
      const secret = this.secretFor(user);
      pool.updateOptions({
        size: entry?.pool_size ?? config.default_pool_size,
        minSize: entry?.min_pool_size ?? config.min_pool_size,
        reserveSize: entry?.reserve_pool ?? config.reserve_pool_size,
        reserveTimeoutMs: config.reserve_pool_timeout * 1000,
        maxWaiters: config.max_client_conn,
        queryWaitTimeoutMs: config.query_wait_timeout * 1000,
        serverIdleTimeoutMs: config.server_idle_timeout * 1000,
        serverLifetimeMs: config.server_lifetime * 1000,
        roFallbackPrimary: config.ro_fallback_primary,
        ...(secret === null ? {} : { secret }),
      });
    }
  }

  /** Pools of `dbname` (all pools for null). */
  private poolsOf(dbname: string | null): ReconnectablePool[] {
    return [...this.pools].filter(([key]) => dbname === null || key.split('/')[0] === dbname).map(([, pool]) => pool);
  }

  /** RECONNECT: every server connection of `dbname` (null: all) is replaced once its client releases it. */
  reconnect(dbname: string | null): number {
    let marked = 0;
    for (const pool of this.poolsOf(dbname)) marked += pool.reconnect();
    return marked;
  }

  /** Server connections of `dbname` (null: all) marked by RECONNECT that are still open. */
  closeNeededCount(dbname: string | null): number {
    return this.poolsOf(dbname).reduce((n, pool) => n + pool.closeNeededCount, 0);
  }

  /**
   * Stops accepting, gives clients `graceMs` to finish what runs (idle ones are closed at once), then closes the rest.
   */
  async stop(graceMs = 2000): Promise<void> {
    if (this.idleSweep !== null) clearInterval(this.idleSweep);
    this.idleSweep = null;
    this.listener?.close();
    this.roListener?.close();
    if (this.unixListener !== null && this.unixPath !== null) await closeUnix(this.unixListener, this.unixPath);
    const deadline = Date.now() + graceMs;
    for (;;) {
      for (const client of this.clients.values()) if (client.server === null) client.fail(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
      if (this.clients.size === 0 || Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const client of [...this.clients.values()]) client.fail(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
    for (const pool of this.pools.values()) pool.close();
    this.authQuery?.close();
    for (const socket of this.sockets) socket.destroy();
    this.clientFailures.close();
  }

  // ClientHost ---------------------------------------------------------------------------------------------------

  secretFor(user: string): string | null {
    return this.config.users.get(user) ?? null;
  }

  /** auth_file's entry for `user`, else (with auth_user) what auth_query says, asked of the primary. */
  lookupSecret(user: string, database: string): string | null | Promise<string | null> {
    const secret = this.secretFor(user);
    if (secret !== null || this.authQuery === null) return secret;
    return this.authQuery.lookup(user, this.config.databases?.[database]?.dbname ?? database);
  }

  poolFor(database: string, user: string, role: 'rw' | 'ro' = 'rw'): ServerPool {
    // PgBouncer's check and words: every open client socket counts (this one too), FATAL 08P01. The admin console
    // never gets here, so it stays reachable when the proxy is full.
    if (this.clientConnections > this.config.max_client_conn) {
      throw new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'no more connections allowed (max_client_conn)');
    }
    let dbname = database;
    const databases = this.config.databases;
    if (databases !== undefined) {
      if (!Object.hasOwn(databases, database)) {
        throw new PgProtocolError('3D000', `database "${database}" does not exist`, { hint: 'The proxy serves only the databases listed under databases in its config.' });
      }
      dbname = databases[database]?.dbname ?? database;
    }
    const key = role === 'rw' ? `${dbname}/${user}` : `${dbname}/${user}/ro`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      const entry = databases?.[database] ?? null;
      const maxDbConnections = entry?.max_db_connections ?? this.config.max_db_connections;
      let databaseLimit: DatabaseLimit | undefined;
      if (maxDbConnections > 0) {
        // rw and ro pools of a database go to different servers: each kind has its own count.
        const limitKey = `${dbname}/${role}`;
        databaseLimit = this.databaseLimits.get(limitKey);
        if (databaseLimit === undefined) {
          databaseLimit = new DatabaseLimit(maxDbConnections, this.options.worker?.budget(databaseBudgetName(limitKey)));
          this.databaseLimits.set(limitKey, databaseLimit);
        }
      }
      pool = new ReconnectablePool({
        database: dbname,
        user,
        mode: poolModeFor(this.config, database, user),
        size: entry?.pool_size ?? this.config.default_pool_size,
        minSize: entry?.min_pool_size ?? this.config.min_pool_size,
        reserveSize: entry?.reserve_pool ?? this.config.reserve_pool_size,
        reserveTimeoutMs: this.config.reserve_pool_timeout * 1000,
        ...(databaseLimit === undefined ? {} : { databaseLimit }),
        maxWaiters: this.config.max_client_conn,
        queryWaitTimeoutMs: this.config.query_wait_timeout * 1000,
        serverIdleTimeoutMs: this.config.server_idle_timeout * 1000,
        serverLifetimeMs: this.config.server_lifetime * 1000,
        connectTimeoutMs: this.options.connectTimeoutMs ?? 10_000,
        topology: this.options.topology,
        role,
        roFallbackPrimary: this.config.ro_fallback_primary,
        secret: this.secretFor(user),
        serverTls: this.serverTls,
        nativeIo: this.nativeIo,
        ...(this.options.worker === undefined ? {} : { budget: this.options.worker.budget(key) }),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /**
   * Disconnects clients idle in a transaction longer than idle_transaction_timeout and clients idle longer than
   * client_idle_timeout (read from the config at each sweep, so RELOAD applies). The resolution is the sweep's period.
   */
  private sweepIdleClients(): void {
    this.sweepLogins();
    const idleInTransactionMs = this.config.idle_transaction_timeout * 1000;
    const clientIdleMs = this.config.client_idle_timeout * 1000;
    if (idleInTransactionMs === 0 && clientIdleMs === 0) return;
    const now = Date.now();
    for (const client of [...this.clients.values()]) client.checkIdle(now, idleInTransactionMs, clientIdleMs);
  }

  /**
   * client_login_timeout (read at each sweep, so RELOAD applies): closes clients that have not finished startup and
   * authentication that long after they connected. One that has not sent its startup packet is closed without a
   * word, as PostgreSQL does (there is no protocol conversation yet: it may be a port scanner or a TLS handshake
   * that stalled); one that has gets PgBouncer's words, "client_login_timeout" (or "client_login_timeout (server
   * down)" while its first server connection is still being opened) as FATAL 08P01, which tells a driver stuck in
   * authentication why it was dropped. The resolution is the sweep's period.
   */
  private sweepLogins(): void {
    const timeoutMs = this.config.client_login_timeout * 1000;
    if (timeoutMs === 0 || this.loggingIn.size === 0) return;
    const now = performance.now();
    for (const [client, acceptedAt] of this.loggingIn) {
      // Accept order with one timeout for all: the first one not due ends the sweep.
      if (now - acceptedAt < timeoutMs) break;
      this.loggingIn.delete(client);
      // Closed already, or handed over to the admin console (logged in there).
      if (client.state === 'closed') continue;
      this.options.logger?.debug({ client: client.socket.remoteAddress, state: client.state, user: client.user || undefined }, 'client_login_timeout: closing a client that did not log in in time');
      if (client.state === 'startup') client.close();
      else client.fail(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, client.state === 'connecting' ? 'client_login_timeout (server down)' : 'client_login_timeout'));
    }
  }

  adopted(socket: Socket, wire: Wire): void {
    if (this.sockets.delete(socket)) this.sockets.add(wire);
  }

  wireClosed(wire: Wire): void {
    this.forgetConnection(wire);
  }

  /** Client connections open: this server's, or with workers the whole proxy's. */
  private get clientConnections(): number {
    return this.options.worker?.counters.clients ?? this.sockets.size;
  }

  private forgetConnection(wire: Wire): void {
    if (this.sockets.delete(wire)) this.options.worker?.counters.clientClosed();
  }

  /** The main thread of a proxy with workers hands this worker a client connection (workers/worker.ts). */
  acceptSocket(socket: Socket, role: 'rw' | 'ro', local = false): void {
    this.accept(socket, role === 'rw' ? this : this.roHost, local);
  }

  /** Whether this server has the client `pid` and cancelled what it runs (a cancel forwarded between workers). */
  cancelHere(pid: number, secretKey: number): boolean {
    const client = this.clients.get(cancelKey(pid, secretKey));
    if (client === undefined) return false;
    client.cancelRunning();
    return true;
  }

  register(client: ProxyClient): void {
    this.loggingIn.delete(client);
    this.clients.set(cancelKey(client.pid, client.secretKey), client);
  }

  unregister(client: ProxyClient): void {
    const key = cancelKey(client.pid, client.secretKey);
    if (this.clients.get(key) === client) this.clients.delete(key);
  }

  cancel(pid: number, secretKey: number): void {
    if (!this.cancelHere(pid, secretKey)) this.options.worker?.cancelElsewhere(pid, secretKey);
  }

  clientFailed(client: ProxyClient, error: PgProtocolError, fromInput: boolean): void {
    this.clientFailures.record(
      { user: client.user, database: client.database, loggedIn: client.state === 'ready', userKnown: client.userKnown, remoteAddress: client.local ? '[local]' : client.socket.remoteAddress, remotePort: client.local ? undefined : client.socket.remotePort },
      error,
      fromInput,
    );
  }

  get logger(): Logger | undefined {
    return this.options.logger;
  }

  onPin(client: ProxyClient, reasons: string): void {
    this.options.logger?.info({ client: client.pid, user: client.user, database: client.database, reasons }, 'client pinned to its server connection by session state');
  }

  /** `local`: accepted on the Unix-domain socket (auth_hba_file's local lines). */
  private accept(socket: Socket, host: ClientHost, local = false): void {
    this.sockets.add(socket);
    this.options.worker?.counters.clientOpened();
    socket.on('close', () => this.forgetConnection(socket));
    // A flood guard before the startup packet; the exact max_client_conn check is in poolFor (the admin console and
    // cancel requests, which never get there, keep a little room).
    if (this.clientConnections > this.config.max_client_conn + 16) {
      closeConnection(socket, m.errorResponse({ code: SQLSTATE.PROTOCOL_VIOLATION, message: 'no more connections allowed (max_client_conn)' }));
      return;
    }
    const client = new ProxyClient(socket, host, local);
    if (client.state === 'closed') return;
    this.loggingIn.set(client, performance.now());
    socket.on('close', () => this.loggingIn.delete(client));
  }
}

/** The clients map's key: pid and secret as unsigned 32-bit numbers (a CancelRequest's form). */
function cancelKey(pid: number, secretKey: number): string {
  return `${pid >>> 0}:${secretKey >>> 0}`;
}

/** Period of the idle_transaction_timeout / client_idle_timeout sweep: their resolution. */
const IDLE_SWEEP_MS = 200;

/** The same server seen from the ro listener: only the pools differ. */
function readOnlyHost(server: ProxyServer): ClientHost {
  return {
    poolMode: server.poolMode,
    // Getters: RELOAD changes these on the server after this host was made.
    get authType() {
      return server.authType;
    },
    get hba() {
      return server.hba;
    },
    get maxMessageLength() {
      return server.maxMessageLength;
    },
    get serverResetQuery() {
      return server.serverResetQuery;
    },
    get clientTls() {
      return server.clientTls;
    },
    nativeIo: server.nativeIo,
    get logger() {
      return server.logger;
    },
    secretFor: (user) => server.secretFor(user),
    lookupSecret: (user, database) => server.lookupSecret(user, database),
    poolFor: (database, user) => server.poolFor(database, user, 'ro'),
    register: (client) => server.register(client),
    unregister: (client) => server.unregister(client),
    adopted: (socket, wire) => server.adopted(socket, wire),
    wireClosed: (wire) => server.wireClosed(wire),
    cancel: (pid, secretKey) => server.cancel(pid, secretKey),
    onPin: (client, reasons) => server.onPin(client, reasons),
    clientFailed: (client, error, fromInput) => server.clientFailed(client, error, fromInput),
  };
}

export async function listen(server: Server, address: { host: string; port: number }): Promise<void> {
  server.listen(address.port, address.host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([e]) => {
      throw e;
    }),
  ]);
}
