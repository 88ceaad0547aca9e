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
  private readonly listener: Server;
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
    this.listener = createServer((socket) => this.accept(socket));
  }

  async start(): Promise<void> {
    this.listener.listen(this.config.listen.port, this.config.listen.host);
    await Promise.race([
      once(this.listener, 'listening'),
      once(this.listener, 'error').then(([e]) => {
        throw e;
      }),
    ]);
    this.listener.on('error', (e) => this.options.logger?.error({ err: e.message }, 'proxy listener error'));
    this.options.logger?.info({ listen: this.address, pool_mode: this.poolMode }, 'proxy listening');
  }

  get address(): { host: string; port: number } {
    const a = this.listener.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Pool counters per "database/user", for tests and (later) SHOW POOLS. */
  poolStats(): Map<string, PoolStats> {
    return new Map([...this.pools].map(([key, pool]) => [key, pool.stats]));
  }

  /**
   * Stops accepting, gives clients `graceMs` to finish what runs (idle ones are closed at once), then closes the rest.
   */
  async stop(graceMs = 2000): Promise<void> {
    this.listener.close();
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

  poolFor(database: string, user: string): ServerPool {
    let dbname = database;
    const databases = this.config.databases;
    if (databases !== undefined) {
      if (!Object.hasOwn(databases, database)) {
        throw new PgProtocolError('3D000', `database "${database}" does not exist`, { hint: 'The proxy serves only the databases listed under databases in its config.' });
      }
      dbname = databases[database]?.dbname ?? database;
    }
    const key = `${dbname}/${user}`;
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

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    if (this.sockets.size > this.config.max_client_conn + 16) {
      socket.on('error', () => undefined);
      socket.end(m.errorResponse({ code: SQLSTATE.PROGRAM_LIMIT_EXCEEDED, message: 'no more connections allowed (max_client_conn)' }));
      return;
    }
    new ProxyClient(socket, this);
  }
}
