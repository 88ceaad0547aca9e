/**
 * The proxy's listener: accepts clients, authenticates them against the userlist, and hands each to the pool
 * of its (database, user). One process, any number of clients; a hostile or broken client only ever closes
 * itself (every error path ends in ProxyClient.fail).
 */
import { once } from 'node:events';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/proxy.js';
import { PgProtocolError, SQLSTATE } from './protocol/errors.js';
import * as m from './protocol/messages.js';
import { type ClientHost, ProxyClient } from './client.js';
import { type PoolStats, ServerPool } from './pool/server-pool.js';
import type { Topology } from './topology.js';
import { type ClientTls, loadClientTls } from './tls.js';

export interface ProxyServerOptions {
  config: ProxyConfig;
  topology: Topology;
  logger?: Logger;
  /** Time allowed to log in to PostgreSQL; default 10 s. */
  connectTimeoutMs?: number;
}

export class ProxyServer implements ClientHost {
  readonly poolMode: 'session' | 'transaction';
  readonly authType: 'scram-sha-256' | 'md5' | 'trust';
  readonly maxMessageLength: number;
  readonly serverResetQuery: string;
  readonly clientTls: ClientTls | null;
  private readonly listener: Server;
  /** The read-only listener (listen_ro), or null. */
  private readonly roListener: Server | null;
  private readonly roHost: ClientHost;
  private readonly pools = new Map<string, ServerPool>();
  private readonly clients = new Map<number, ProxyClient>();
  private readonly sockets = new Set<Socket>();
  private readonly config: ProxyConfig;

  constructor(private readonly options: ProxyServerOptions) {
    this.config = options.config;
    this.poolMode = this.config.pool_mode;
    this.authType = this.config.auth_type;
    this.maxMessageLength = this.config.max_message_length;
    this.serverResetQuery = this.config.server_reset_query;
    this.clientTls = loadClientTls(this.config.clientTls);
    this.listener = createServer((socket) => this.accept(socket, this));
    this.roHost = readOnlyHost(this);
    this.roListener = this.config.listen_ro === undefined ? null : createServer((socket) => this.accept(socket, this.roHost));
  }

  async start(): Promise<void> {
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
    this.options.logger?.info({ listen: this.address, listen_ro: this.roAddress, pool_mode: this.poolMode, client_tls: this.clientTls?.sslmode ?? 'disable' }, 'proxy listening');
  }

  get address(): { host: string; port: number } {
    const a = this.listener.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** The read-only listener's address, or null without listen_ro. */
  get roAddress(): { host: string; port: number } | null {
    const a = this.roListener?.address() as AddressInfo | null | undefined;
    return a === null || a === undefined ? null : { host: a.address, port: a.port };
  }

  /** Pool counters per "database/user", for tests and (later) SHOW POOLS. */
  poolStats(): Map<string, PoolStats> {
    return new Map([...this.pools].map(([key, pool]) => [key, pool.stats]));
  }

  /** The logged-in clients, read-only, for the admin console's SHOW CLIENTS/POOLS. */
  clientList(): readonly ProxyClient[] {
    return [...this.clients.values()];
  }

  /**
   * Stops accepting, gives clients `graceMs` to finish what runs (idle ones are closed at once), then closes the rest.
   */
  async stop(graceMs = 2000): Promise<void> {
    this.listener.close();
    this.roListener?.close();
    const deadline = Date.now() + graceMs;
    for (;;) {
      for (const client of this.clients.values()) if (client.server === null) client.fail(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
      if (this.clients.size === 0 || Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const client of [...this.clients.values()]) client.fail(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
    for (const pool of this.pools.values()) pool.close();
    for (const socket of this.sockets) socket.destroy();
  }

  // ClientHost ---------------------------------------------------------------------------------------------------

  secretFor(user: string): string | null {
    return this.config.users.get(user) ?? null;
  }

  poolFor(database: string, user: string, role: 'rw' | 'ro' = 'rw'): ServerPool {
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
      pool = new ServerPool({
        database: dbname,
        user,
        size: this.config.default_pool_size,
        maxWaiters: this.config.max_client_conn,
        queryWaitTimeoutMs: this.config.query_wait_timeout * 1000,
        serverIdleTimeoutMs: this.config.server_idle_timeout * 1000,
        serverLifetimeMs: this.config.server_lifetime * 1000,
        connectTimeoutMs: this.options.connectTimeoutMs ?? 10_000,
        topology: this.options.topology,
        role,
        roFallbackPrimary: this.config.ro_fallback_primary,
        secret: this.secretFor(user),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  register(client: ProxyClient): void {
    this.clients.set(client.pid, client);
  }

  unregister(client: ProxyClient): void {
    if (this.clients.get(client.pid) === client) this.clients.delete(client.pid);
  }

  cancel(pid: number, secretKey: number): void {
    const client = this.clients.get(pid);
    if (client !== undefined && client.secretKey === secretKey) client.cancelRunning();
  }

  private accept(socket: Socket, host: ClientHost): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    if (this.sockets.size > this.config.max_client_conn + 16) {
      socket.on('error', () => undefined);
      socket.end(m.errorResponse({ code: SQLSTATE.PROGRAM_LIMIT_EXCEEDED, message: 'no more connections allowed (max_client_conn)' }));
      return;
    }
    new ProxyClient(socket, host);
  }
}

/** The same server seen from the ro listener: only the pools differ. */
function readOnlyHost(server: ProxyServer): ClientHost {
  return {
    poolMode: server.poolMode,
    authType: server.authType,
    maxMessageLength: server.maxMessageLength,
    serverResetQuery: server.serverResetQuery,
    clientTls: server.clientTls,
    secretFor: (user) => server.secretFor(user),
    poolFor: (database, user) => server.poolFor(database, user, 'ro'),
    register: (client) => server.register(client),
    unregister: (client) => server.unregister(client),
    cancel: (pid, secretKey) => server.cancel(pid, secretKey),
  };
}

async function listen(server: Server, address: { host: string; port: number }): Promise<void> {
  server.listen(address.port, address.host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([e]) => {
      throw e;
    }),
  ]);
}
