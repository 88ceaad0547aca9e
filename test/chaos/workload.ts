/**
 * The chaos suite's workload: clients that keep writing while faults are injected, each write an INSERT of a
 * unique id, recorded with when it was sent, when and how it was answered, and which member's PostgreSQL
 * acknowledged it (the row's RETURNING names the server, so a write that reached the wrong server says so).
 *  - proxy writers: one connection each through a proxy's rw port, as applications use pgwarden;
 *  - direct writers: one per member, writing to that member whatever its role, so that a server accepting a
 *    write while it does not hold the leader key is caught even when no proxy would send it one;
 *  - readers on the proxies' ro ports, which must never see an id no client wrote.
 * The records go to checker.ts.
 */
import pg from 'pg';
import type { WriteOp } from './checker.js';

export const TABLE = 'chaos_writes';

export interface WorkloadEndpoint {
  /** Who this client is ('proxy1-w1', 'direct-pg1'). */
  name: string;
  /** 'proxy1', 'proxy2' … or 'direct'. */
  via: string;
  connectionString: string;
}

export interface ReadOp {
  client: string;
  /** When the answer arrived (a row it shows may have been written while the query ran). */
  at: number;
  ok: boolean;
  /** The largest id the replica showed. */
  maxId: number | null;
  error?: string;
}

export interface WorkloadOptions {
  writers: WorkloadEndpoint[];
  readers?: WorkloadEndpoint[];
  /** Pause between two writes of one client; default 25 ms. */
  intervalMs?: number;
  /** A write without an answer after this long counts as unknown and its connection is replaced; default 8 s. */
  timeoutMs?: number;
  /** The harness clock, shared with the leader watch and the fault log. */
  now: () => number;
}

/** SQLSTATEs that prove a write was not committed. Anything else (connection lost, shutdown) leaves it unknown. */
const NOT_COMMITTED = new Set([
  '25006', // read-only transaction: a replica or a demoted primary refused it
  '08P01', // the proxy's query_wait_timeout: never sent to a server
  '57014', // canceled before it committed
  '42P01',
]);

/** Creates the table on the primary; no primary key on id, so that a duplicate would show. */
export async function createTable(primaryUrl: string): Promise<void> {
  const c = new pg.Client({ connectionString: primaryUrl });
  await c.connect();
  try {
    await c.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (id bigint NOT NULL, client text NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
  } finally {
    await c.end();
  }
}

/** Every id in the table of `url` (one entry per row). */
export async function readIds(url: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ id: string }>(`SELECT id::text FROM ${TABLE}`);
    return r.rows.map((x) => Number(x.id));
  } finally {
    await c.end();
  }
}

export class Workload {
  readonly writes: WriteOp[] = [];
  readonly reads: ReadOp[] = [];
  private nextId = 1;
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: WorkloadOptions) {}

  start(): void {
    this.running = true;
    this.loops = [...this.options.writers.map((e) => this.writeLoop(e)), ...(this.options.readers ?? []).map((e) => this.readLoop(e))];
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** The largest id handed out so far (readers must never see more). */
  get highestId(): number {
    return this.nextId - 1;
  }

  private async writeLoop(endpoint: WorkloadEndpoint): Promise<void> {
    const interval = this.options.intervalMs ?? 25;
    const timeout = this.options.timeoutMs ?? 8000;
    let client: pg.Client | null = null;
    while (this.running) {
      const started = this.options.now();
      if (client === null) client = await connect(endpoint.connectionString, timeout);
      if (client === null) {
        await sleep(interval);
        continue;
      }
      const id = this.nextId++;
      const op: WriteOp = { id, client: endpoint.name, via: endpoint.via, sentAt: this.options.now(), doneAt: null, outcome: 'unknown', server: null };
      this.writes.push(op);
      try {
        const r = await withTimeout(
          client.query<{ server: string; lsn: string }>({
            text: `INSERT INTO ${TABLE} (id, client) VALUES ($1, $2) RETURNING current_setting('cluster_name') AS server, (pg_current_wal_lsn() - '0/0'::pg_lsn)::text AS lsn`,
            values: [id, endpoint.name],
          }),
          timeout,
        );
        op.doneAt = this.options.now();
        op.outcome = 'ok';
        op.server = r.rows[0]!.server;
        op.lsn = Number(r.rows[0]!.lsn);
      } catch (e) {
        op.doneAt = this.options.now();
        const code = (e as { code?: string }).code;
        op.error = code === undefined ? (e as Error).message : `${code} ${(e as Error).message}`;
        op.outcome = code !== undefined && NOT_COMMITTED.has(code) ? 'failed' : 'unknown';
        if (op.outcome === 'unknown' || (endpoint.via === 'direct' && code !== '25006')) {
          // The connection may be broken (or stuck): a fresh one for the next write.
          const old = client;
          client = null;
          void old.end().catch(() => undefined);
        }
      }
      const wait = interval - (this.options.now() - started);
      if (wait > 0) await sleep(wait);
    }
    await client?.end().catch(() => undefined);
  }

  private async readLoop(endpoint: WorkloadEndpoint): Promise<void> {
    const interval = (this.options.intervalMs ?? 25) * 4;
    const timeout = this.options.timeoutMs ?? 8000;
    let client: pg.Client | null = null;
    while (this.running) {
      if (client === null) client = await connect(endpoint.connectionString, timeout);
      if (client !== null) {
        try {
          const r = await withTimeout(client.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM ${TABLE}`), timeout);
          this.reads.push({ client: endpoint.name, at: this.options.now(), ok: true, maxId: r.rows[0]!.max === null ? null : Number(r.rows[0]!.max) });
        } catch (e) {
          this.reads.push({ client: endpoint.name, at: this.options.now(), ok: false, maxId: null, error: (e as Error).message });
          const old = client;
          client = null;
          void old.end().catch(() => undefined);
        }
      }
      await sleep(interval);
    }
    await client?.end().catch(() => undefined);
  }
}

async function connect(url: string, timeoutMs: number): Promise<pg.Client | null> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: Math.min(timeoutMs, 3000) });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return c;
  } catch {
    await c.end().catch(() => undefined);
    return null;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
