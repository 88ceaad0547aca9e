/**
 * The server connections of one (database, user, port kind): at most `size` of them, idle ones reused most
 * recently used first, clients waiting in a bounded FIFO for at most `queryWaitTimeoutMs`. Where connections go
 * comes from a Topology: `rw` pools use only its primary, `ro` pools its replicas (least busy first; the primary
 * only with `roFallbackPrimary`). A topology change closes every connection that no longer goes to a target at
 * once: idle ones quietly, busy rw ones by dropping them, so their client gets 08006 for the transaction in
 * flight and its next one runs on the new primary. While there is no target (no primary, etcd stale) or the
 * target refuses connections, waiters keep waiting (bounded by queryWaitTimeoutMs) and opening is retried.
 */
import { serverCredentials } from '../auth/credentials.js';
import type { ScramKeys } from '../../protocol/scram.js';
import type { ServerTls } from '../server-tls.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import { TransactionStatusByte } from '../protocol/constants.js';
import type { Endpoint, Topology } from '../topology.js';
import { PoolCounters } from './counters.js';
import { type Clock, realClock } from '../clock.js';
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
  /** How clients of this pool hold server connections; default transaction. */
  mode?: 'session' | 'transaction';
  size: number;
  maxWaiters: number;
  queryWaitTimeoutMs: number;
  serverIdleTimeoutMs: number;
  serverLifetimeMs: number;
  connectTimeoutMs: number;
  topology: Topology;
  /** Which servers this pool uses; default rw. */
  role?: 'rw' | 'ro';
  /** ro pools: use the primary while no replica qualifies. */
  roFallbackPrimary?: boolean;
  /** The user's entry in auth_file (password, SCRAM or md5 secret), or null. */
  secret: string | null;
  /** server_tls_*: TLS to PostgreSQL, or null/absent for plaintext. */
  serverTls?: ServerTls | null;
  /** Logged-in plain TCP connections move to a NativeWire (native_io and the module is there). */
  nativeIo?: boolean;
  /** min_pool_size: connections kept open (capped at `size`), refilled by housekeeping; default 0. */
  minSize?: number;
  /** reserve_pool_size: extra connections allowed while the oldest waiter has waited reserveTimeoutMs; default 0. */
  reserveSize?: number;
  /** reserve_pool_timeout; 0 disables the reserve (as in PgBouncer). */
  reserveTimeoutMs?: number;
  /** max_db_connections, shared with the other pools of the same database; absent: no limit. */
  databaseLimit?: DatabaseLimit;
  /**
   * With worker threads: the count of this pool's server connections over all of them, so that the pool's limits
   * hold for the whole proxy. Absent: this pool's own connections are all there is.
   */
  budget?: ConnectionBudget;
  /** Time for waits, idle and lifetime checks, retries and housekeeping; default realClock. */
  clock?: Clock;
  /** Makes a connection to `endpoint` (login() follows), created at `now` (ms since the epoch); default a ServerConn. */
  connect?: (endpoint: Endpoint, now: number) => ServerConn;
}

/**
 * Server connections of one pool counted across the proxy's worker threads (see workers/shared-counters.ts).
 * Every connection in a pool's set holds one unit, taken before it opens and given back when it leaves the set.
 */
export interface ConnectionBudget {
  /** Counts one more connection if fewer than `limit` are counted now. */
  tryTake(limit: number): boolean;
  give(): void;
  /** Connections counted over all workers. */
  readonly count: number;
  /** Worker threads sharing the pool's limit: a worker's fair share of `limit` is limit / workers. */
  readonly workers: number;
  /**
   * This worker's pool has clients waiting and no room, holding less than its fair share (`belowShare`) or not:
   * the other workers are asked to close an idle connection of the pool.
   */
  lacking(belowShare: boolean): void;
  /** Its clients no longer wait. */
  satisfied(): void;
  /** The pool lacks room in another worker: an idle connection here is better closed after a moment. */
  readonly othersLacking: boolean;
  /** The pool lacks room in another worker that holds less than its share: connections here beyond it go back. */
  readonly othersStarving: boolean;
}

/** The pool's connections; with budgets (workers), each one leaving the set gives its units back. */
class ConnectionSet extends Set<ServerConn> {
  constructor(
    private readonly budget: ConnectionBudget | undefined,
    private readonly databaseLimit: DatabaseLimit | undefined,
  ) {
    super();
  }

  override delete(conn: ServerConn): boolean {
    if (!super.delete(conn)) return false;
    this.budget?.give();
    this.databaseLimit?.giveBack();
    return true;
  }
}

export interface PoolStats {
  total: number;
  idle: number;
  active: number;
  waiting: number;
  opening: number;
}

/**
 * max_db_connections: one per (database, port kind), shared by the pools of all users of that database. A pool
 * at the limit with clients waiting closes an idle connection of another pool of the database to make room
 * (PgBouncer waits for server_idle_timeout instead; a waiting client should not pay for someone else's idle
 * connection), and every connection that closes lets the waiting pools try again.
 *
 * With worker threads the count is a ConnectionBudget over all of them: every connection of the database's pools
 * holds one unit, taken before it opens and given back when it leaves its pool (ConnectionSet). A pool finding no
 * room once it closed what it could here asks the other workers, which close idle connections of the database.
 */
export class DatabaseLimit {
  private readonly pools = new Set<ServerPool>();
  /** Pools of this worker with clients waiting for room in the database (with a budget). */
  private readonly lackingPools = new Set<ServerPool>();
  private wakeQueued = false;

  constructor(
    readonly max: number,
    private readonly budget?: ConnectionBudget,
  ) {}

  join(pool: ServerPool): void {
    this.pools.add(pool);
  }

  leave(pool: ServerPool): void {
    this.pools.delete(pool);
    this.satisfied(pool);
  }

  /** Server connections of the database, opening ones included (with workers: in every worker). */
  get total(): number {
    if (this.budget !== undefined) return this.budget.count;
    let n = 0;
    for (const pool of this.pools) n += pool.stats.total;
    return n;
  }

  /** Takes room for one connection without closing any: a unit of the budget with workers; false at the limit. */
  take(): boolean {
    if (this.max === 0) return true;
    return this.budget === undefined ? this.total < this.max : this.budget.tryTake(this.max);
  }

  /** Room taken by take() or makeRoom() for a connection that did not join its pool, or one that left it. */
  giveBack(): void {
    if (this.max !== 0) this.budget?.give();
  }

  /**
   * Takes room for one more connection of `pool`, after closing another pool's idle one if need be. With workers,
   * failing that, `pool` is counted as lacking room and the other workers are asked to close idle connections.
   */
  makeRoom(pool: ServerPool): boolean {
    if (this.take()) return true;
    for (const other of this.pools) if (other !== pool && other.closeOneIdle() && this.take()) return true;
    if (this.budget !== undefined) {
      this.lackingPools.add(pool);
      this.budget.lacking(false);
    }
    return false;
  }

  /** `pool` has no more clients waiting: the other workers stop closing connections for this one once none has. */
  satisfied(pool: ServerPool): void {
    if (this.lackingPools.delete(pool) && this.lackingPools.size === 0) this.budget?.satisfied();
  }

  /** The database lacks room in another worker: idle connections of its pools here are better closed after a moment. */
  get othersLacking(): boolean {
    return this.budget?.othersLacking === true;
  }

  /** Another worker asks for room: closes one connection idle a while (ServerPool.shedIdle) in one of the pools. */
  shedIdle(): boolean {
    for (const pool of this.pools) if (pool.shedIdle()) return true;
    return false;
  }

  /** A connection of the database closed or went idle: pools with waiters may open one now (later, not inside the caller). */
  connectionClosed(): void {
    if (this.max === 0 || this.wakeQueued) return;
    this.wakeQueued = true;
    queueMicrotask(() => {
      this.wakeQueued = false;
      for (const pool of this.pools) pool.wake();
    });
  }
}

export class ServerPool {
  /** Totals for SHOW STATS and /metrics; the client and server connections of this pool add to them. */
  readonly counters = new PoolCounters();
  private readonly idle: ServerConn[] = [];
  private readonly all: ConnectionSet;
  private readonly budget: ConnectionBudget | undefined;
  /** With a budget: clients wait here while the other workers hold all the room (ConnectionBudget.lacking). */
  private lacking = false;
  private opening = 0;
  private readonly waiters: PoolWaiter[] = [];
  private readonly waitingSince: number[] = [];
  private scramKeys: ScramKeys | null = null;
  private templateParams: Map<string, string> | null = null;
  private templatePromise: Promise<Map<string, string>> | null = null;
  /** parameters() callers waiting for a connection being opened to log in (see parameters()). */
  private parametersWanted: { resolve: (params: Map<string, string>) => void; reject: (e: unknown) => void }[] = [];
  private readonly clock: Clock;
  /** Stops the housekeeping timer. */
  private readonly stopHousekeeping: () => void;
  private closed = false;
  /** Cancels the pending retry of grow() after a failed open; null: none pending. */
  private cancelRetry: (() => void) | null = null;
  private readonly role: 'rw' | 'ro';
  private readonly onTopologyChange = (): void => this.followTopology();

  constructor(private readonly options: ServerPoolOptions) {
    this.role = options.role ?? 'rw';
    this.budget = options.budget;
    this.all = new ConnectionSet(this.budget, options.databaseLimit);
    this.clock = options.clock ?? realClock;
    this.stopHousekeeping = this.clock.every(HOUSEKEEPING_MS, () => this.housekeeping());
    options.topology.on('change', this.onTopologyChange);
    options.databaseLimit?.join(this);
  }

  get stats(): PoolStats {
    return { total: this.all.size, idle: this.idle.length, active: this.all.size - this.idle.length, waiting: this.waiters.length, opening: this.opening };
  }

  /** Keys from a client's SCRAM exchange, for logging in when auth_file holds only a SCRAM secret. */
  rememberScramKeys(keys: ScramKeys): void {
    this.scramKeys = keys;
  }

  /** The secret a client was just checked against (auth_query users have none in auth_file): used for new logins. */
  rememberSecret(secret: string | null): void {
    if (secret !== null) this.options.secret = secret;
  }

  /**
   * The ParameterStatus set a server connection reports: the first connection's that logged in; opens one when
   * none has yet, unless the pool is full of connections being opened (session-mode logins take theirs at once):
   * then the first of those to log in answers, as a template connection would exceed the pool size.
   */
  parameters(): Promise<Map<string, string>> {
    if (this.templateParams !== null) return Promise.resolve(this.templateParams);
    if (this.templatePromise === null && this.opening > 0 && !this.hasRoom(this.limit())) {
      return new Promise((resolve, reject) => this.parametersWanted.push({ resolve, reject }));
    }
    this.templatePromise ??= this.openPatiently().then(
      (conn) => {
        this.templatePromise = null;
        this.learnParameters(conn.params);
        this.release(conn);
        return this.templateParams!;
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
    if (this.role === 'ro') return this.tryAcquireLeastBusy();
    if (this.drainHolds()) return null;
    for (;;) {
      const conn = this.idle.pop();
      if (conn === undefined) return null;
      if (!conn.closed && this.isTarget(conn.endpoint)) return conn;
      if (!conn.closed) this.discard(conn);
    }
  }

  /**
   * After tryAcquire() returned null: whether a waiter queued now would get a connection opened for it rather than
   * wait for one to be released (no client waits beyond those being opened for, and the pool, the budget and the
   * database have room). Conservative: false whenever grow() might not open one at once. Session-mode logins ask it
   * to decide between waiting for their own backend (its real pid and key) and logging in without one.
   */
  opensForNewWaiter(): boolean {
    if (this.closed || this.drainHolds() || this.targets().length === 0) return false;
    if (this.waiters.length > this.opening) return false;
    const limit = this.limit();
    if (!this.hasRoom(limit) || !this.roomInDatabase()) return false;
    return !(this.budget?.othersStarving === true && this.all.size >= this.fairCap());
  }

  /** ro: an idle connection to the replica with the fewest transactions running, or null to open one there. */
  private tryAcquireLeastBusy(): ServerConn | null {
    const target = this.leastBusyTarget();
    if (target === null) return null;
    let fallback = -1;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      if (conn.closed || !this.isTarget(conn.endpoint)) continue;
      if (conn.endpoint.host === target.host && conn.endpoint.port === target.port) {
        this.idle.splice(i, 1);
        return conn;
      }
      if (fallback < 0) fallback = i;
    }
    // Full pool: a connection to a busier replica beats waiting.
    if (fallback >= 0 && (!this.hasRoom(this.limit()) || !this.roomInDatabase())) return this.idle.splice(fallback, 1)[0];
    return null;
  }

  /** Where this pool may send transactions now. */
  targets(): readonly Endpoint[] {
    const topology = this.options.topology;
    const primary = topology.primary();
    if (this.role === 'rw') return primary === null ? [] : [primary];
    const replicas = topology.replicas();
    if (replicas.length > 0) return replicas;
    return this.options.roFallbackPrimary === true && primary !== null ? [primary] : [];
  }

  private isTarget(endpoint: Endpoint): boolean {
    if (this.role === 'rw') {
      // Every transaction asks (tryAcquire, release): the rw answer without building targets()'s array.
      const primary = this.options.topology.primary();
      return primary !== null && primary.host === endpoint.host && primary.port === endpoint.port;
    }
    return this.targets().some((t) => t.host === endpoint.host && t.port === endpoint.port);
  }

  /** Busy (attached or opening) connections per endpoint decide; ties go to the first target. */
  private leastBusyTarget(): Endpoint | null {
    const targets = this.targets();
    if (targets.length <= 1) return targets[0] ?? null;
    let best: Endpoint | null = null;
    let bestBusy = Infinity;
    for (const t of targets) {
      let busy = 0;
      for (const conn of this.all) if (conn.endpoint.host === t.host && conn.endpoint.port === t.port && !this.idle.includes(conn)) busy++;
      if (busy < bestBusy) {
        best = t;
        bestBusy = busy;
      }
    }
    return best;
  }

  /** Queues the waiter; it gets onServerAcquired or onAcquireFailed later (never synchronously). */
  wait(waiter: PoolWaiter): void {
    if (this.waiters.length >= this.options.maxWaiters) {
      queueMicrotask(() => waiter.onAcquireFailed(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'no more connections allowed (max_client_conn)')));
      return;
    }
    this.waiters.push(waiter);
    this.waitingSince.push(this.clock.wallNow());
    this.grow();
  }

  /** Takes a waiter out of the queue (its client went away). */
  cancelWait(waiter: PoolWaiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) {
      this.waiters.splice(i, 1);
      this.waitingSince.splice(i, 1);
    }
    if (this.waiters.length === 0) this.noLongerLacking();
  }

  /** Gives a clean, idle connection back. */
  release(conn: ServerConn): void {
    const now = this.clock.wallNow();
    conn.detach(now);
    if (conn.closed) return;
    if (this.closed || !this.isTarget(conn.endpoint)) {
      this.discard(conn);
      return;
    }
    // As PgBouncer: server_lifetime is enforced on release, so a busy pool renews its connections too (0: use once).
    if (now - conn.createdAt >= this.options.serverLifetimeMs) {
      this.discard(conn);
      return;
    }
    if (this.budget?.othersStarving === true && (this.waiters.length === 0 || this.all.size > this.fairCap())) {
      // Another worker's clients wait below their share of the pool: the connection goes back to the budget.
      this.all.delete(conn);
      conn.close();
      return;
    }
    // Draining for a switchover: the transaction that just ended may not be followed by another one here.
    const waiter = this.drainHolds() ? undefined : this.waiters.shift();
    if (waiter !== undefined) {
      this.waitingSince.shift();
      if (this.waiters.length === 0) this.noLongerLacking();
      waiter.onServerAcquired(conn);
      return;
    }
    const limit = this.options.databaseLimit;
    if (limit?.othersLacking === true) {
      // Another worker's clients wait for room in the database: given back now, as an idle one is closed for a pool
      // of this worker (DatabaseLimit.makeRoom).
      this.all.delete(conn);
      conn.close();
      return;
    }
    this.idle.push(conn);
    // Another pool of the database may be waiting for room this idle connection can make.
    limit?.connectionClosed();
  }

  /** Closes a connection that cannot be reused (mid-transaction, broken). */
  discard(conn: ServerConn): void {
    conn.detach(this.clock.wallNow());
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    conn.close();
    this.options.databaseLimit?.connectionClosed();
    this.grow();
  }

  /** Closes the least recently used idle connection (for another pool of the database); false when none is idle. */
  closeOneIdle(): boolean {
    const conn = this.idle.shift();
    if (conn === undefined) return false;
    this.all.delete(conn);
    conn.close();
    return true;
  }

  /**
   * With workers: another worker's clients wait for room in this pool. Closes the least recently used idle
   * connection if it has been idle a while (SHED_IDLE_MS); true if it did.
   */
  shedIdle(): boolean {
    const conn = this.idle[0];
    if (conn === undefined || this.clock.wallNow() - conn.idleSince < SHED_IDLE_MS) return false;
    return this.closeOneIdle();
  }

  /** Opens connections for waiters if there is room now (another pool of the database closed one). */
  wake(): void {
    if (this.waiters.length > 0) this.grow();
  }

  close(): void {
    this.closed = true;
    this.stopHousekeeping();
    if (this.cancelRetry !== null) this.cancelRetry();
    this.options.topology.off('change', this.onTopologyChange);
    this.options.databaseLimit?.leave(this);
    this.noLongerLacking();
    for (const waiter of this.waiters.splice(0)) waiter.onAcquireFailed(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
    for (const w of this.parametersWanted.splice(0)) w.reject(new PgProtocolError('57P01', 'terminating connection due to administrator command'));
    this.waitingSince.length = 0;
    this.closeIdle();
  }

  /** Connections in use. */
  get activeCount(): number {
    return this.all.size - this.idle.length;
  }

  /**
   * Drops every connection that no longer goes to a target. Busy rw ones too: the old primary must not get
   * another statement, and a server that is gone would only make its client wait for a TCP timeout.
   */
  private followTopology(): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      if (this.isTarget(conn.endpoint)) continue;
      this.idle.splice(i, 1);
      this.all.delete(conn);
      conn.close();
    }
    if (this.role === 'rw') {
      for (const conn of [...this.all]) {
        if (conn.peer !== null && !this.isTarget(conn.endpoint)) {
          // Neutral on purpose: a COMMIT in flight may have committed; the client tells its cases apart (lost-transaction.ts).
          conn.abort(`the primary changed (was ${conn.endpoint.host}:${conn.endpoint.port}), its server connection was closed`);
        }
      }
    }
    this.serveWaitersFromIdle();
    this.grow();
  }

  /** After a drain's hold ends, waiters take the idle connections first (the held ones kept theirs). */
  private serveWaitersFromIdle(): void {
    while (this.waiters.length > 0 && this.idle.length > 0) {
      const conn = this.tryAcquire();
      if (conn === null) return;
      this.waitingSince.shift();
      this.waiters.shift()!.onServerAcquired(conn);
    }
  }

  private closeIdle(): void {
    for (const conn of this.idle.splice(0)) {
      this.all.delete(conn);
      conn.close();
    }
    this.options.databaseLimit?.connectionClosed();
  }

  /** default_pool_size, plus reserve_pool_size once the oldest waiter has waited reserve_pool_timeout. */
  private limit(): number {
    const reserve = this.options.reserveSize ?? 0;
    const after = this.options.reserveTimeoutMs ?? 0;
    if (reserve > 0 && after > 0 && this.waitingSince.length > 0 && this.clock.wallNow() - this.waitingSince[0] >= after) return this.options.size + reserve;
    return this.options.size;
  }

  /** Fewer than `limit` connections: this pool's own, or with a budget those of every worker. */
  private hasRoom(limit: number): boolean {
    return this.budget === undefined ? this.all.size < limit : this.budget.count < limit;
  }

  /** Takes room for one more connection under `limit` (a budget unit); open() then adds it to `all`. */
  private takeRoom(limit: number): boolean {
    if (this.budget === undefined) return this.all.size < limit;
    // Room another worker starves for is left to it once this one has its share.
    if (this.budget.othersStarving && this.all.size >= this.fairCap()) return false;
    return this.budget.tryTake(limit);
  }

  /** With workers: the most connections this worker keeps while another one starves (its share, rounded up). */
  private fairCap(): number {
    return this.budget === undefined ? Infinity : Math.ceil(this.limit() / this.budget.workers);
  }

  /** With workers: below this many connections, a worker whose clients wait and finds no room starves. */
  private fairShare(): number {
    return this.budget === undefined ? 0 : Math.max(1, Math.floor(this.limit() / this.budget.workers));
  }

  /** Room taken (takeRoom, and the database's) for a connection that was not opened after all. */
  private returnRoom(): void {
    this.budget?.give();
    this.options.databaseLimit?.giveBack();
  }

  /** Clients wait and the budget has no room: the other workers learn it (and close idle connections). */
  private lackRoom(): void {
    if (this.budget === undefined) return;
    this.lacking = true;
    this.budget.lacking(this.all.size < this.fairShare());
  }

  private noLongerLacking(): void {
    this.options.databaseLimit?.satisfied(this);
    if (!this.lacking) return;
    this.lacking = false;
    this.budget!.satisfied();
  }

  private roomInDatabase(): boolean {
    const limit = this.options.databaseLimit;
    return limit === undefined || limit.max === 0 || limit.total < limit.max;
  }

  private credentials(): ServerCredentials {
    return serverCredentials(this.options.secret, this.scramKeys);
  }


  /** Opens a connection for room the caller took (takeRoom). */
  private async open(): Promise<ServerConn> {
    const endpoint = this.leastBusyTarget();
    if (endpoint === null) this.returnRoom();
    if (endpoint === null) throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, this.role === 'rw' ? 'no primary server is known' : 'no replica is available');
    const now = this.clock.wallNow();
    const conn = this.options.connect === undefined ? new ServerConn(endpoint, now) : this.options.connect(endpoint, now);
    this.all.add(conn);
    this.opening++;
    try {
      await conn.login({
        user: this.options.user,
        database: this.options.database,
        credentials: this.credentials(),
        connectTimeoutMs: this.options.connectTimeoutMs,
        requirePrimary: this.role === 'rw',
        tls: this.options.serverTls ?? null,
        nativeIo: this.options.nativeIo === true,
      });
    } catch (e) {
      this.all.delete(conn);
      this.options.databaseLimit?.connectionClosed();
      throw e;
    } finally {
      this.opening--;
      // None of the connections being opened logged in: parameters() callers waiting for one ask again.
      if (this.opening === 0 && this.templateParams === null && this.parametersWanted.length > 0) queueMicrotask(() => this.askParametersAgain());
    }
    this.learnParameters(conn.params);
    conn.setIdleCloseHandler((c) => this.forget(c));
    if (!this.isTarget(endpoint)) {
      // The topology moved on while we logged in.
      this.all.delete(conn);
      conn.close();
      throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `server ${endpoint.host}:${endpoint.port} stopped being a target during login`);
    }
    return conn;
  }

  /** The first connection to log in tells the pool's parameters (for logins that take no connection of their own). */
  private learnParameters(params: ReadonlyMap<string, string>): void {
    if (this.templateParams !== null) return;
    this.templateParams = new Map(params);
    for (const w of this.parametersWanted.splice(0)) w.resolve(this.templateParams);
  }

  private askParametersAgain(): void {
    if (this.parametersWanted.length === 0) return;
    const wanted = this.parametersWanted.splice(0);
    const answer = this.parameters();
    for (const w of wanted) answer.then(w.resolve, w.reject);
  }

  /** open(), retried while the failure is one a failover explains, until queryWaitTimeoutMs (0: no limit). */
  private async openPatiently(): Promise<ServerConn> {
    const deadline = this.options.queryWaitTimeoutMs > 0 ? this.clock.wallNow() + this.options.queryWaitTimeoutMs : Infinity;
    for (;;) {
      try {
        // Alone, a pool needs no room for its first connection; with workers the others may hold all of it (retried).
        if (this.budget !== undefined && !this.takeRoom(this.limit())) {
          this.lackRoom();
          throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `pool "${this.options.database}/${this.options.user}" is full in the other workers`);
        }
        // max_db_connections holds for this first connection too: the client's login waits, as in PgBouncer.
        if (this.options.databaseLimit?.makeRoom(this) === false) {
          this.budget?.give();
          throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `max_db_connections (${this.options.databaseLimit.max}) reached for database "${this.options.database}"`);
        }
        if (this.waiters.length === 0) this.noLongerLacking();
        return await this.open();
      } catch (e) {
        if (!isRetryable(e) || this.clock.wallNow() + RETRY_MS >= deadline || this.closed) throw e;
        await new Promise<void>((resolve) => this.clock.after(RETRY_MS, resolve));
      }
    }
  }

  private forget(conn: ServerConn): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.options.databaseLimit?.connectionClosed();
    this.grow();
  }

  /** Opens connections for waiters while below the pool size. */
  private grow(): void {
    // No target: waiters wait for the topology's next 'change' (or their query_wait_timeout).
    if (this.targets().length === 0 || this.drainHolds()) return;
    while (!this.closed && this.waiters.length > this.opening) {
      if (!this.takeRoom(this.limit())) {
        // With workers: the others hold the room; they close idle connections for us and wake() this pool.
        this.lackRoom();
        return;
      }
      if (!(this.options.databaseLimit?.makeRoom(this) ?? true)) {
        this.budget?.give();
        break;
      }
      this.open().then(
        (conn) => this.release(conn),
        (e: unknown) => {
          if (isRetryable(e)) {
            // A server that just died or was demoted: etcd will name another one; keep the waiters.
            this.cancelRetry ??= this.clock.after(RETRY_MS, () => {
              this.cancelRetry = null;
              this.grow();
            });
            return;
          }
          const waiter = this.waiters.shift();
          this.waitingSince.shift();
          waiter?.onAcquireFailed(e instanceof PgProtocolError ? e : new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, String(e)));
        },
      );
    }
  }

  private housekeeping(): void {
    const now = this.clock.wallNow();
    while (this.options.queryWaitTimeoutMs > 0 && this.waiters.length > 0 && now - this.waitingSince[0] > this.options.queryWaitTimeoutMs) {
      const waiter = this.waiters.shift()!;
      this.waitingSince.shift();
      // PgBouncer's words; 08P01 as PgBouncer sends, so drivers treat it as a connection-level failure.
      waiter.onAcquireFailed(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'query_wait_timeout', {
        detail: `No server connection became free within ${Math.round(this.options.queryWaitTimeoutMs / 1000)} s (pool size ${this.options.size}).`,
      }));
    }
    if (this.waiters.length === 0) this.noLongerLacking();
    const minSize = Math.min(this.options.minSize ?? 0, this.options.size);
    const idleTimeout = this.options.serverIdleTimeoutMs;
    let closed = false;
    // With workers: connections idle here a while go back to the budget for a worker whose clients wait.
    const shedIdle = this.budget?.othersLacking === true || this.options.databaseLimit?.othersLacking === true;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i];
      // server_idle_timeout keeps min_pool_size connections (as PgBouncer); server_lifetime renews them all.
      const idleTooLong = (idleTimeout > 0 && now - conn.idleSince > idleTimeout && this.all.size > minSize) || (shedIdle && now - conn.idleSince >= SHED_IDLE_MS);
      if (idleTooLong || now - conn.createdAt >= this.options.serverLifetimeMs) {
        this.idle.splice(i, 1);
        this.all.delete(conn);
        conn.close();
        closed = true;
      }
    }
    if (closed) this.options.databaseLimit?.connectionClosed();
    // The oldest waiter may just have passed reserve_pool_timeout.
    if (this.waiters.length > this.opening) this.grow();
    this.fillToMinimum(minSize);
  }

  /** min_pool_size: opens spare connections (within the database's limit) while there is a target. */
  private fillToMinimum(minSize: number): void {
    if (minSize === 0 || this.closed || this.cancelRetry !== null || this.targets().length === 0) return;
    while (this.takeRoom(minSize)) {
      if (!(this.options.databaseLimit?.take() ?? true)) {
        this.budget?.give();
        break;
      }
      const before = this.all.size;
      this.open().then(
        (conn) => this.release(conn),
        // Failures are retried by the next housekeeping round; waiters, if any, are grow()'s business.
        () => undefined,
      );
      if (this.all.size === before) break;
    }
  }

  // Admin console hooks (RECONNECT, RELOAD; see ReconnectablePool) ------------------------------------------------

  /** The connections open or opening now, and the idle ones among them. */
  connectionsNow(): { all: ServerConn[]; idle: ServerConn[] } {
    return { all: [...this.all], idle: [...this.idle] };
  }

  /** Connections open or opening (RELOAD compares it with a new, smaller size). */
  get connectionCount(): number {
    return this.all.size;
  }

  /** The pool size now (default_pool_size, changed by RELOAD). */
  get size(): number {
    return this.options.size;
  }

  /** RELOAD: new limits, timeouts and credentials; they apply from the next acquire, release or housekeeping. */
  updateOptions(
    changes: Partial<Pick<ServerPoolOptions, 'size' | 'minSize' | 'reserveSize' | 'reserveTimeoutMs' | 'maxWaiters' | 'queryWaitTimeoutMs' | 'serverIdleTimeoutMs' | 'serverLifetimeMs' | 'roFallbackPrimary' | 'secret'>>,
  ): void {
    Object.assign(this.options, changes);
    // A bigger pool serves waiting clients at once.
    this.grow();
  }

  /** rw pool while the topology holds writes for a switchover drain. */
  private drainHolds(): boolean {
    return this.role === 'rw' && this.options.topology.holdsWrites?.() === true;
  }

  /** session or transaction pooling for the clients of this pool. */
  get poolMode(): 'session' | 'transaction' {
    return this.options.mode ?? 'transaction';
  }

  /** A rw pool (follows the primary). */
  get isReadWrite(): boolean {
    return this.role === 'rw';
  }

  /**
   * Server connections running a client's transaction now: what a drain waits for. In session mode a client
   * idle outside a transaction does not count (its session would never end by itself).
   */
  transactionsInFlight(): number {
    const sessionMode = this.poolMode === 'session';
    let n = 0;
    for (const conn of this.all) {
      if (conn.peer === null) continue;
      if (!sessionMode || conn.outstanding > 0 || conn.status !== TransactionStatusByte.Idle) n++;
    }
    return n;
  }
}

const RETRY_MS = 100;
/** How often housekeeping runs: query_wait_timeout, server_idle_timeout, server_lifetime, reserve_pool_timeout, min_pool_size. */
const HOUSEKEEPING_MS = 250;
/**
 * With workers: how long a connection stays idle in one worker while the pool lacks room in another before it is
 * closed for it. Not at once: a worker whose clients all happen to be between transactions would hand its
 * connections back and forth with a busy one, a new PostgreSQL backend each time.
 */
const SHED_IDLE_MS = 100;

/** Failures a change of primary explains (refused, reset, in recovery, shutting down, starting up). */
function isRetryable(e: unknown): boolean {
  if (!(e instanceof PgProtocolError)) return false;
  return e.sqlstate === SQLSTATE.CONNECTION_FAILURE || e.sqlstate === '57P01' || e.sqlstate === '57P02' || e.sqlstate === '57P03' || e.sqlstate === '08001';
}
