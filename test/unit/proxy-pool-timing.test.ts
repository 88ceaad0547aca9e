/**
 * ServerPool's timing with a fake clock and fake connections: query_wait_timeout, reserve_pool_timeout,
 * server_idle_timeout (min_pool_size kept), server_lifetime, and the housekeeping timer's end at close().
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Clock } from '../../src/proxy/clock.js';
import type { PgProtocolError } from '../../src/proxy/protocol/errors.js';
import type { ServerConn } from '../../src/proxy/pool/server-conn.js';
import { type PoolWaiter, ServerPool, type ServerPoolOptions } from '../../src/proxy/pool/server-pool.js';
import type { Endpoint, Topology } from '../../src/proxy/topology.js';

/** Time moves only when the test says so; timers fire in order of their due time. */
class FakeClock implements Clock {
  now = 1_700_000_000_000;
  private timers: { due: number; every: number; fn: () => void; live: boolean }[] = [];

  wallNow(): number {
    return this.now;
  }

  every(ms: number, fn: () => void): () => void {
    const timer = { due: this.now + ms, every: ms, fn, live: true };
    this.timers.push(timer);
    return () => void (timer.live = false);
  }

  after(ms: number, fn: () => void): () => void {
    const timer = { due: this.now + ms, every: 0, fn, live: true };
    this.timers.push(timer);
    return () => void (timer.live = false);
  }

  get pendingTimers(): number {
    return this.timers.filter((t) => t.live).length;
  }

  /** Moves time forward by `ms`, running each timer due on the way (and what it starts, after a settle). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => t.live);
      const next = this.timers.reduce<(typeof this.timers)[number] | null>((a, t) => (t.due <= end && (a === null || t.due < a.due) ? t : a), null);
      if (next === null) break;
      this.now = next.due;
      if (next.every > 0) next.due += next.every;
      else next.live = false;
      next.fn();
      await settle();
    }
    this.now = end;
  }
}

/** What the pool uses of a server connection; login succeeds at once. */
class FakeConn {
  closed = false;
  peer: unknown = null;
  outstanding = 0;
  status = 0x49;
  readonly params = new Map([['server_version', '15.0']]);
  idleSince: number;

  constructor(
    readonly endpoint: Endpoint,
    readonly createdAt: number,
  ) {
    this.idleSince = createdAt;
  }

  login(): Promise<void> {
    return Promise.resolve();
  }

  setIdleCloseHandler(): void {}

  detach(now: number): void {
    this.peer = null;
    this.idleSince = now;
  }

  close(): void {
    this.closed = true;
  }

  abort(): void {
    this.closed = true;
  }
}

class FixedTopology extends EventEmitter implements Topology {
  readonly endpoint: Endpoint = { host: '127.0.0.1', port: 5432 };
  primary(): Endpoint | null {
    return this.endpoint;
  }
  replicas(): readonly Endpoint[] {
    return [];
  }
}

class Waiter implements PoolWaiter {
  conn: ServerConn | null = null;
  error: PgProtocolError | null = null;
  onServerAcquired(conn: ServerConn): void {
    this.conn = conn;
  }
  onAcquireFailed(error: PgProtocolError): void {
    this.error = error;
  }
}

/** Lets the pool's promise chains (open, login) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

function makePool(clock: FakeClock, options: Partial<ServerPoolOptions> = {}): { pool: ServerPool; conns: FakeConn[] } {
  const conns: FakeConn[] = [];
  const pool = new ServerPool({
    database: 'db',
    user: 'u',
    size: 1,
    maxWaiters: 100,
    queryWaitTimeoutMs: 0,
    serverIdleTimeoutMs: 0,
    serverLifetimeMs: 3_600_000,
    connectTimeoutMs: 1000,
    topology: new FixedTopology(),
    secret: 'pw',
    clock,
    connect: (endpoint, now) => {
      const conn = new FakeConn(endpoint, now);
      conns.push(conn);
      return conn as unknown as ServerConn;
    },
    ...options,
  });
  return { pool, conns };
}

/** A waiter that got a connection (opened for it). */
async function acquired(pool: ServerPool): Promise<Waiter> {
  const w = new Waiter();
  pool.wait(w);
  await settle();
  assert.ok(w.conn !== null, 'the waiter got a connection');
  return w;
}

describe('ServerPool timing (fake clock)', () => {
  it('fails a waiter with query_wait_timeout (08P01) only once the timeout has passed', async () => {
    const clock = new FakeClock();
    const { pool } = makePool(clock, { queryWaitTimeoutMs: 2000 });
    try {
      await acquired(pool);
      const late = new Waiter();
      pool.wait(late);
      await clock.advance(2000);
      assert.equal(late.error, null, 'not failed at the timeout itself');
      assert.equal(pool.stats.waiting, 1);
      await clock.advance(250);
      const error = late.error as PgProtocolError | null;
      assert.equal(error?.sqlstate, '08P01');
      assert.match(error!.message, /query_wait_timeout/);
      assert.equal(late.conn, null);
      assert.equal(pool.stats.waiting, 0);
    } finally {
      pool.close();
    }
  });

  it('opens reserve_pool_size connections more once the oldest waiter has waited reserve_pool_timeout', async () => {
    const clock = new FakeClock();
    const { pool, conns } = makePool(clock, { size: 1, reserveSize: 1, reserveTimeoutMs: 1000 });
    try {
      await acquired(pool);
      const second = new Waiter();
      pool.wait(second);
      await clock.advance(750);
      assert.equal(conns.length, 1, 'no reserve connection before reserve_pool_timeout');
      assert.equal(second.conn, null);
      await clock.advance(250);
      assert.equal(conns.length, 2, 'a reserve connection at reserve_pool_timeout');
      assert.equal(second.conn as unknown, conns[1]);
      // Only reserve_pool_size more: a third waiter waits for a release.
      const third = new Waiter();
      pool.wait(third);
      await clock.advance(5000);
      assert.equal(conns.length, 2);
      assert.equal(third.conn, null);
      pool.release(second.conn!);
      assert.equal(third.conn as unknown, conns[1]);
    } finally {
      pool.close();
    }
  });

  it('closes connections idle longer than server_idle_timeout, keeping min_pool_size', async () => {
    const clock = new FakeClock();
    const { pool, conns } = makePool(clock, { size: 3, minSize: 1, serverIdleTimeoutMs: 10_000 });
    try {
      // min_pool_size is filled by housekeeping.
      await clock.advance(250);
      assert.equal(conns.length, 1);
      const a = await acquired(pool);
      const b = await acquired(pool);
      assert.equal(conns.length, 3);
      pool.release(a.conn!);
      pool.release(b.conn!);
      assert.equal(pool.stats.idle, 3);
      await clock.advance(10_000);
      assert.equal(pool.stats.total, 3, 'not closed at the timeout itself');
      await clock.advance(250);
      assert.equal(pool.stats.total, 1, 'min_pool_size stays');
      assert.equal(conns.filter((c) => c.closed).length, 2);
    } finally {
      pool.close();
    }
  });

  it('renews connections past server_lifetime: on release, and idle ones by housekeeping', async () => {
    const clock = new FakeClock();
    const { pool, conns } = makePool(clock, { size: 2, serverLifetimeMs: 60_000 });
    try {
      const busy = await acquired(pool);
      const idle = await acquired(pool);
      pool.release(idle.conn!);
      await clock.advance(59_750);
      assert.equal(conns.filter((c) => c.closed).length, 0, 'younger than server_lifetime');
      await clock.advance(250);
      assert.equal(conns[1].closed, true, 'the idle one is closed by housekeeping');
      assert.equal(conns[0].closed, false, 'a busy one is left to finish');
      pool.release(busy.conn!);
      assert.equal(conns[0].closed, true, 'closed when released');
      assert.equal(pool.stats.total, 0);
    } finally {
      pool.close();
    }
  });

  it('stops its housekeeping timer when closed', () => {
    const clock = new FakeClock();
    const { pool } = makePool(clock);
    assert.equal(clock.pendingTimers, 1);
    pool.close();
    assert.equal(clock.pendingTimers, 0);
  });
});
