/** Pure parts of a proxy client and server: idle timeouts (IdleWatch) and PAUSE/RESUME (PauseGate). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdleWatch } from '../../src/proxy/client-idle.js';
import { type GateWaiter, PauseGate } from '../../src/proxy/pause-gate.js';
import type { PgProtocolError } from '../../src/proxy/protocol/errors.js';
import type { ServerConn } from '../../src/proxy/pool/server-conn.js';
import type { ServerPool } from '../../src/proxy/pool/server-pool.js';

describe('IdleWatch', () => {
  it('counts idle time from the sweep that first saw the bytes unchanged, and only when nothing is owed', () => {
    const watch = new IdleWatch();
    assert.equal(watch.check(0, 100, false, true, 1000, 0), null, 'first sweep: bytes recorded');
    assert.equal(watch.check(900, 100, false, true, 1000, 0), null, 'idle 900 ms of 1000');
    assert.equal(watch.check(1500, 100, true, true, 1000, 0), null, 'an answer is owed: not idle');
    assert.equal(watch.check(1600, 140, false, true, 1000, 0), null, 'bytes moved: idle from now');
    assert.equal(watch.check(2600, 140, false, true, 1000, 0), null, 'exactly the timeout: not yet');
    const error = watch.check(2601, 140, false, true, 1000, 0);
    assert.equal(error?.message, 'idle transaction timeout');
    assert.equal(error?.sqlstate, '08P01');
  });

  it('applies idle_transaction_timeout only inside a transaction, client_idle_timeout always', () => {
    const watch = new IdleWatch();
    watch.check(0, 5, false, false, 1000, 5000);
    assert.equal(watch.check(3000, 5, false, false, 1000, 5000), null, 'outside a transaction: idle_transaction_timeout does not apply');
    assert.equal(watch.check(5001, 5, false, false, 1000, 5000)?.message, 'client_idle_timeout');
    const off = new IdleWatch();
    off.check(0, 5, false, true, 0, 0);
    assert.equal(off.check(1e9, 5, false, true, 0, 0), null, '0: off');
  });
});

class Client implements GateWaiter {
  state = 'ready';
  got: ServerConn | null = null;
  constructor(readonly database: string) {}
  onServerAcquired(conn: ServerConn): void {
    this.got = conn;
  }
  onAcquireFailed(_error: PgProtocolError): void {}
}

function pool(idle: number): ServerPool & { waiting: GateWaiter[] } {
  const waiting: GateWaiter[] = [];
  let left = idle;
  return {
    waiting,
    tryAcquire: () => (left-- > 0 ? ({ id: left } as unknown as ServerConn) : null),
    wait: (w: GateWaiter) => void waiting.push(w),
  } as unknown as ServerPool & { waiting: GateWaiter[] };
}

describe('PauseGate', () => {
  it('holds the clients of a paused database (by alias or dbname) until RESUME, then hands them connections or the queue', () => {
    const gate = new PauseGate((db) => (db === 'app' ? 'appdb' : db));
    assert.equal(gate.paused, false);
    gate.pause('appdb');
    assert.equal(gate.paused, true);
    assert.equal(gate.isPaused('app'), true, 'the alias of a paused dbname');
    assert.equal(gate.pausedByName('app'), false);
    assert.equal(gate.isPaused('other'), false);
    const p = pool(1);
    const [a, b, gone] = [new Client('app'), new Client('app'), new Client('app')];
    for (const c of [a, b, gone]) gate.hold(c, p);
    assert.equal(gate.heldClients().length, 3);
    gone.state = 'closed';
    gate.resume('appdb');
    assert.equal(gate.paused, false);
    assert.ok(a.got !== null, 'the first gets the idle connection');
    assert.deepEqual(p.waiting, [b], 'the next queues in the pool; a closed one is dropped');
    assert.equal(gate.heldClients().length, 0);
  });

  it('PAUSE of all holds every database; a client of a database not paused is handed over outside its own call', async () => {
    const gate = new PauseGate();
    gate.pause('db1');
    const p = pool(1);
    const other = new Client('db2');
    gate.hold(other, p);
    assert.equal(other.got, null, 'not synchronously');
    await Promise.resolve();
    assert.ok(other.got !== null);
    gate.pause(null);
    assert.equal(gate.pausedAll, true);
    const held = new Client('db2');
    gate.hold(held, p);
    gate.resume('db1');
    assert.deepEqual(gate.heldClients().map((h) => h.client), [held], 'still paused: all');
    gate.resume(null);
    assert.deepEqual(p.waiting, [held]);
  });
});
