import pg from 'pg';

export interface WriterTarget {
  name: string;
  apiUrl: string;
  connectionString: string;
}

export interface Ack {
  id: number;
  member: string;
  /** ms since the writer started (performance.now based). */
  at: number;
}

const TABLE = 'pgwarden_probe';

/**
 * A client that writes every `intervalMs` to whichever member answers 200 on `GET /primary`, and records every
 * acknowledged id with the member that acknowledged it. This is what an application behind an HAProxy
 * configured as for Patroni experiences; the failover benchmark and the HA tests read their figures from it.
 */
export class PrimaryWriter {
  readonly acks: Ack[] = [];
  readonly failures: number[] = [];
  private readonly clients = new Map<string, pg.Client>();
  private nextId = 1;
  private running = false;
  private loopDone: Promise<void> | null = null;
  private readonly t0 = performance.now();

  /** Writes always go to targets[0] (a proxy's rw port) instead of the member answering /primary. */
  private fixedTarget = false;

  constructor(
    private readonly targets: WriterTarget[],
    private readonly intervalMs = 20,
    private readonly writeTimeoutMs = 2000,
  ) {}

  /** A writer that goes through one address (the proxy): what an application behind pgwarden's proxy sees. */
  static through(name: string, connectionString: string, intervalMs = 20, writeTimeoutMs = 2000): PrimaryWriter {
    const writer = new PrimaryWriter([{ name, apiUrl: '', connectionString }], intervalMs, writeTimeoutMs);
    writer.fixedTarget = true;
    return writer;
  }

  now(): number {
    return performance.now() - this.t0;
  }

  /** Creates the probe table through the current primary. */
  async prepare(): Promise<void> {
    const primary = await this.findPrimary();
    if (!primary) throw new Error('no member answers 200 on /primary');
    const c = new pg.Client({ connectionString: primary.connectionString });
    await c.connect();
    try {
      await c.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (id bigint PRIMARY KEY, member text NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
      const r = await c.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM ${TABLE}`);
      this.nextId = Number(r.rows[0]?.max ?? 0) + 1;
    } finally {
      await c.end();
    }
  }

  start(): void {
    this.running = true;
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loopDone;
    for (const c of this.clients.values()) await c.end().catch(() => undefined);
    this.clients.clear();
  }

  /** The write gap around `at`: last acknowledged write before it to first acknowledged write after it. */
  gapAround(at: number): { lastOkBefore: number | null; firstOkAfter: number | null; windowMs: number | null } {
    let lastOkBefore: number | null = null;
    let firstOkAfter: number | null = null;
    for (const a of this.acks) {
      if (a.at <= at) lastOkBefore = a.at;
      else if (firstOkAfter === null) firstOkAfter = a.at;
    }
    const windowMs = lastOkBefore !== null && firstOkAfter !== null ? firstOkAfter - lastOkBefore : null;
    return { lastOkBefore, firstOkAfter, windowMs };
  }

  /**
   * The longest stretch without an acknowledged write from the last write before `from` to the last write
   * before `to` (default: the end): the unavailability window of a fault injected at `from`.
   */
  maxGapAfter(from: number, to = Number.POSITIVE_INFINITY): number | null {
    const times = this.acks.map((a) => a.at);
    let start = -1;
    for (let i = 0; i < times.length; i++) if (times[i]! <= from) start = i;
    if (start < 0) return null;
    let max = 0;
    for (let i = start + 1; i < times.length && times[i - 1]! <= to; i++) max = Math.max(max, times[i]! - times[i - 1]!);
    return max;
  }

  /** Waits until a write acknowledged after `at` exists, or the timeout passes. */
  async waitForAckAfter(at: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.acks.length && this.acks[this.acks.length - 1]!.at > at) return true;
      await sleep(20);
    }
    return false;
  }

  /** Ids acknowledged but absent from the given primary's table. */
  async missingOn(connectionString: string): Promise<number[]> {
    const c = new pg.Client({ connectionString });
    await c.connect();
    try {
      const r = await c.query<{ id: string }>(`SELECT id::text FROM ${TABLE}`);
      const present = new Set(r.rows.map((x) => Number(x.id)));
      return this.acks.filter((a) => !present.has(a.id)).map((a) => a.id);
    } finally {
      await c.end();
    }
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const started = performance.now();
      const primary = await this.findPrimary();
      if (primary) await this.writeOnce(primary);
      else this.failures.push(this.now());
      const wait = this.intervalMs - (performance.now() - started);
      if (wait > 0) await sleep(wait);
    }
  }

  async findPrimary(): Promise<WriterTarget | null> {
    if (this.fixedTarget) return this.targets[0]!;
    const answers = await Promise.all(
      this.targets.map(async (t) => {
        try {
          const res = await fetch(`${t.apiUrl}/primary`, { method: 'OPTIONS', signal: AbortSignal.timeout(300) });
          return res.status === 200 ? t : null;
        } catch {
          return null;
        }
      }),
    );
    return answers.find((t) => t !== null) ?? null;
  }

  private async writeOnce(target: WriterTarget): Promise<void> {
    const id = this.nextId++;
    try {
      const client = await this.client(target);
      await client.query({ text: `INSERT INTO ${TABLE} (id, member) VALUES ($1, $2)`, values: [id, target.name] });
      this.acks.push({ id, member: target.name, at: this.now() });
    } catch {
      this.failures.push(this.now());
      const c = this.clients.get(target.name);
      this.clients.delete(target.name);
      c?.end().catch(() => undefined);
    }
  }

  private async client(target: WriterTarget): Promise<pg.Client> {
    const existing = this.clients.get(target.name);
    if (existing) return existing;
    const c = new pg.Client({
      connectionString: target.connectionString,
      connectionTimeoutMillis: this.writeTimeoutMs,
      query_timeout: this.writeTimeoutMs,
    });
    c.on('error', () => this.clients.delete(target.name));
    await c.connect();
    this.clients.set(target.name, c);
    return c;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
