/**
 * PAUSE and KILL on the admin console: which databases are paused, and the clients held until RESUME because they
 * wanted a server connection meanwhile. The proxy server owns one gate and hands it to its clients (who ask it
 * before taking a connection) and to its admin console (which pauses and resumes): neither reaches into the other.
 */
import type { PoolWaiter, ServerPool } from './pool/server-pool.js';

/** A client that may be held at the gate. */
export interface GateWaiter extends PoolWaiter {
  readonly state: string;
  /** The database as the client named it. */
  readonly database: string;
}

/** A client held at the gate: since when (ms since the epoch), and the pool it waits for. */
export interface HeldClient {
  readonly client: GateWaiter;
  readonly pool: ServerPool;
  readonly since: number;
}

export class PauseGate {
  /** PAUSE without a database: every database waits. */
  private pauseAll = false;
  /** Databases paused by PAUSE db or KILL db (names as given, matched against alias and dbname). */
  private readonly pausedDatabases = new Set<string>();
  private held: HeldClient[] = [];

  constructor(
    /** The dbname a database alias stands for (the running config, which RELOAD changes): pausing either holds it. */
    private readonly dbnameOf: (database: string) => string = (database) => database,
  ) {}

  /** True while any database is paused: a client asks `isPaused`/`hold` only then (one field read otherwise). */
  get paused(): boolean {
    return this.pauseAll || this.pausedDatabases.size > 0;
  }

  get pausedAll(): boolean {
    return this.pauseAll;
  }

  /** Paused by its own name (PAUSE db / KILL db as given), not counting PAUSE of all. */
  pausedByName(database: string): boolean {
    return this.pausedDatabases.has(database);
  }

  isPaused(database: string): boolean {
    if (this.pauseAll) return true;
    if (this.pausedDatabases.size === 0) return false;
    return this.pausedDatabases.has(database) || this.pausedDatabases.has(this.dbnameOf(database));
  }

  /** Pauses `database` (null: all). */
  pause(database: string | null): void {
    if (database === null) this.pauseAll = true;
    else this.pausedDatabases.add(database);
  }

  /** Resumes `database` (null: all, including every database paused by name) and lets go whom it held. */
  resume(database: string | null): void {
    if (database === null) {
      this.pauseAll = false;
      this.pausedDatabases.clear();
    } else {
      this.pausedDatabases.delete(database);
    }
    this.release();
  }

  /** A client that wants a server connection while paused: kept until RESUME, unless its own database runs. */
  hold(client: GateWaiter, pool: ServerPool): void {
    if (!this.isPaused(client.database)) {
      // Another database is paused, not this one; hand over outside the client's own pump.
      queueMicrotask(() => acquireFor(client, pool));
      return;
    }
    this.held.push({ client, pool, since: Date.now() });
  }

  /** The clients held now (closed ones may still be listed until the next RESUME). */
  heldClients(): readonly HeldClient[] {
    return this.held;
  }

  /** Hands a server connection (or a place in the pool's queue) to each held client whose database runs again. */
  private release(): void {
    const still: HeldClient[] = [];
    for (const h of this.held.splice(0)) {
      if (h.client.state === 'closed') continue;
      if (this.isPaused(h.client.database)) still.push(h);
      else acquireFor(h.client, h.pool);
    }
    this.held = still;
  }
}

function acquireFor(client: GateWaiter, pool: ServerPool): void {
  if (client.state === 'closed') return;
  const conn = pool.tryAcquire();
  if (conn !== null) client.onServerAcquired(conn);
  else pool.wait(client);
}
