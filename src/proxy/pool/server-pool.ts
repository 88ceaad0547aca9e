/**
 * The server connections of one (database, user): at most `size` of them, idle ones reused most recently
 * used first, clients waiting in a bounded FIFO for at most `queryWaitTimeoutMs`. Where connections go comes
 * from a Topology (static now, etcd later): a change closes idle connections to the old primary at once.
 */
import type { ScramKeys } from '../auth/scram.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import type { Topology } from '../topology.js';
import { type ServerCredentials, ServerConn } from './server-conn.js';

export interface PoolWaiter {
  /** Gives the waiter a connection; it must call release() when done. */
  onServerAcquired(conn: ServerConn): void;
  /** The wait failed (timeout, no server): the waiter tells its client. */
  onAcquireFailed(error: PgProtocolError): void;
}

export interface ServerPoolOptions {
  database: string;
  user: string;
  size: number;
  maxWaiters: number;
  queryWaitTimeoutMs: number;
  serverIdleTimeoutMs: number;
  serverLifetimeMs: number;
  connectTimeoutMs: number;
  topology: Topology;
  /** The user's entry in auth_file (password, SCRAM or md5 secret), or null. */
  secret: string | null;
}

export interface PoolStats {
  total: number;
  idle: number;
  active: number;
  waiting: number;
  opening: number;
}

export class ServerPool {
  private readonly idle: ServerConn[] = [];
  private readonly all = new Set<ServerConn>();
  private opening = 0;
  private readonly waiters: PoolWaiter[] = [];
  private readonly waitingSince: number[] = [];
  private scramKeys: ScramKeys | null = null;
  private templateParams: Map<string, string> | null = null;
  private templatePromise: Promise<Map<string, string>> | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private readonly onTopologyChange = (): void => this.closeIdle();

  constructor(private readonly options: ServerPoolOptions) {
    this.timer = setInterval(() => this.housekeeping(), 250);
    this.timer.unref();
    options.topology.on('change', this.onTopologyChange);
  }

  get stats(): PoolStats {
    return { total: this.all.size, idle: this.idle.length, active: this.all.size - this.idle.length, waiting: this.waiters.length, opening: this.opening };
  }

  /** Keys from a client's SCRAM exchange, for logging in when auth_file holds only a SCRAM secret. */
  rememberScramKeys(keys: ScramKeys): void {
    this.scramKeys = keys;
  }

  /** The ParameterStatus set a server connection reports (opens one the first time). */
  parameters(): Promise<Map<string, string>> {
    if (this.templateParams !== null) return Promise.resolve(this.templateParams);
    this.templatePromise ??= this.open().then(
      (conn) => {
        this.templatePromise = null;
        this.templateParams = new Map(conn.params);
        this.release(conn);
        return this.templateParams;
      },
      (e: unknown) => {
        this.templatePromise = null;
        throw e;
      },
    );
    return this.templatePromise;
  }

  /** An idle connection now, or null (then call wait()). */
  tryAcquire(): ServerConn | null {
    for (;;) {
      const conn = this.idle.pop();
      if (conn === undefined) return null;
      if (!conn.closed) return conn;
    }
  }

  /** Queues the waiter; it gets onServerAcquired or onAcquireFailed later (never synchronously). */
  wait(waiter: PoolWaiter): void {
    if (this.waiters.length >= this.options.maxWaiters) {
      queueMicrotask(() => waiter.onAcquireFailed(new PgProtocolError(SQLSTATE.PROGRAM_LIMIT_EXCEEDED, 'no more connections allowed (max_client_conn)')));
      return;
    }
    this.waiters.push(waiter);
    this.waitingSince.push(Date.now());
    this.grow();
  }

  /** Takes a waiter out of the queue (its client went away). */
  cancelWait(waiter: PoolWaiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) {
      this.waiters.splice(i, 1);
      this.waitingSince.splice(i, 1);
    }
  }

  /** Gives a clean, idle connection back. */
  release(conn: ServerConn): void {
    conn.detach();
    if (conn.closed) return;
    if (this.closed || this.options.topology.primary() === null || !sameEndpoint(conn, this.options.topology)) {
      this.discard(conn);
      return;
    }
    if (Date.now() - conn.createdAt > this.options.serverLifetimeMs && this.waiters.length === 0) {
      this.discard(conn);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.waitingSince.shift();
      waiter.onServerAcquired(conn);
      return;
    }
    this.idle.push(conn);
  }

  /** Closes a connection that cannot be reused (mid-transaction, broken). */
  discard(conn: ServerConn): void {
    conn.detach();
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    conn.close();
    this.grow();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.options.topology.off('change', this.onTopologyChange);
    for (const waiter of this.waiters.splice(0)) waiter.onAcquireFailed(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
    this.waitingSince.length = 0;
    this.closeIdle();
  }

  /** Connections in use. */
  get activeCount(): number {
    return this.all.size - this.idle.length;
  }

  private closeIdle(): void {
    for (const conn of this.idle.splice(0)) {
      this.all.delete(conn);
      conn.close();
    }
  }

  private credentials(): ServerCredentials {
    const secret = this.options.secret;
    if (secret === null) return {};
    if (secret.startsWith('SCRAM-SHA-256$')) return this.scramKeys === null ? {} : { scramKeys: this.scramKeys };
    if (/^md5[0-9a-f]{32}$/.test(secret)) return { md5Secret: secret };
    return { password: secret };
  }

  private async open(): Promise<ServerConn> {
    const endpoint = this.options.topology.primary();
    if (endpoint === null) throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'no primary server is known');
    const conn = new ServerConn(endpoint);
    this.all.add(conn);
    this.opening++;
    try {
      await conn.login({ user: this.options.user, database: this.options.database, credentials: this.credentials(), connectTimeoutMs: this.options.connectTimeoutMs });
    } catch (e) {
      this.all.delete(conn);
      throw e;
    } finally {
      this.opening--;
    }
    conn.setIdleCloseHandler((c) => this.forget(c));
    return conn;
  }

  private forget(conn: ServerConn): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.grow();
  }

  /** Opens connections for waiters while below the pool size. */
  private grow(): void {
    while (!this.closed && this.waiters.length > this.opening && this.all.size < this.options.size) {
      this.open().then(
        (conn) => this.release(conn),
        (e: unknown) => {
          const waiter = this.waiters.shift();
          this.waitingSince.shift();
          waiter?.onAcquireFailed(e instanceof PgProtocolError ? e : new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, String(e)));
        },
      );
    }
  }

  private housekeeping(): void {
    const now = Date.now();
    while (this.waiters.length > 0 && now - this.waitingSince[0] > this.options.queryWaitTimeoutMs) {
      const waiter = this.waiters.shift()!;
      this.waitingSince.shift();
      // PgBouncer's words; 08P01 as PgBouncer sends, so drivers treat it as a connection-level failure.
      waiter.onAcquireFailed(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'query_wait_timeout', {
        detail: `No server connection became free within ${Math.round(this.options.queryWaitTimeoutMs / 1000)} s (pool size ${this.options.size}).`,
      }));
    }
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      if (now - conn.idleSince > this.options.serverIdleTimeoutMs || now - conn.createdAt > this.options.serverLifetimeMs) {
        this.idle.splice(i, 1);
        this.all.delete(conn);
        conn.close();
      }
    }
  }
}

function sameEndpoint(conn: ServerConn, topology: Topology): boolean {
  const p = topology.primary();
  return p !== null && p.host === conn.endpoint.host && p.port === conn.endpoint.port;
}
