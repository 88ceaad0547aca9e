/**
 * The chaos checker on hand-made histories: each promise it judges is shown kept and shown broken.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { check, faultTable, leaderSpans, summarize, unavailability, type WriteOp } from '../chaos/checker.js';

const SYNC = { synchronous: true, maximumLagOnFailover: 1024 * 1024 };

function ok(id: number, server: string, sentAt: number, doneAt = sentAt + 5, via = 'proxy1', lsn?: number): WriteOp {
  return { id, client: 'w1', via, sentAt, doneAt, outcome: 'ok', server, ...(lsn === undefined ? {} : { lsn }) };
}

function failed(id: number, sentAt: number, via = 'proxy1'): WriteOp {
  return { id, client: 'w1', via, sentAt, doneAt: sentAt + 5, outcome: 'failed', server: null, error: '08006' };
}

// a holds the key until 1000, nobody until 1500, b from then on.
const leaders = leaderSpans([
  { at: 0, holder: 'a' },
  { at: 1000, holder: null },
  { at: 1500, holder: 'b' },
]);

describe('chaos checker', () => {
  it('a clean failover passes: every acknowledged write present, each acknowledged by the key holder', () => {
    const writes = [ok(1, 'a', 100), ok(2, 'a', 900), failed(3, 1100), ok(4, 'b', 1600), ok(5, 'b', 1700)];
    const r = check(writes, leaders, [{ round: 1, kind: 'host crash', target: 'a', at: 950, until: 2000 }], { ids: [1, 2, 4, 5] }, [], SYNC);
    assert.equal(r.ok, true, r.problems.join('\n'));
    assert.equal(r.acknowledged, 4);
    assert.deepEqual(r.faults, [{ round: 1, kind: 'host crash', target: 'a', recoveryMs: 700, failedWrites: 1, lost: 0, dualPrimary: 0, rewinds: 0, rewindFailures: 0, reclones: 0 }]);
  });

  it('a re-clone fails the run and is counted per fault kind; rewinds, even failed ones, do not', () => {
    const writes = [ok(1, 'a', 100), ok(2, 'b', 1600)];
    const faults = [
      { round: 1, kind: 'host crash', target: 'a', at: 950, until: 2000, rejoins: { rewinds: 2, rewindFailures: 1, reclones: 0 } },
      { round: 2, kind: 'host crash', target: 'b', at: 2000, until: 3000, rejoins: { rewinds: 1, rewindFailures: 1, reclones: 1 } },
    ];
    const r = check(writes, leaders, faults, { ids: [1, 2] }, [], SYNC);
    assert.equal(r.ok, false);
    assert.deepEqual(r.problems, ['round 2 (host crash on b): 1 re-clone where pg_rewind must be enough (1 rewinds, 1 failed)']);
    const [row] = faultTable(r);
    assert.deepEqual([row!.rewinds, row!.rewindFailures, row!.reclones], [3, 2, 1]);
    assert.equal(check(writes, leaders, faults.slice(0, 1), { ids: [1, 2] }, [], SYNC).ok, true);
  });

  it('an acknowledged write missing at the end is lost (synchronous mode)', () => {
    const r = check([ok(1, 'a', 100), ok(2, 'a', 900)], leaders, [], { ids: [1] }, [], SYNC);
    assert.equal(r.ok, false);
    assert.deepEqual(r.lost, [2]);
    assert.match(r.problems[0]!, /1 acknowledged writes lost/);
  });

  it('a write acknowledged by a member while another held the key is a dual-primary window', () => {
    const r = check([ok(1, 'a', 1600, 1610), ok(2, 'b', 1620)], leaders, [], { ids: [1, 2] }, [], SYNC);
    assert.equal(r.ok, false);
    assert.deepEqual(r.dualPrimary, [{ server: 'a', holder: 'b', id: 1, sentAt: 1600, doneAt: 1610 }]);
    const nobody = check([ok(1, 'a', 1200)], leaders, [], { ids: [1] }, [], SYNC);
    assert.equal(nobody.dualPrimary[0]?.holder, null, 'acknowledged while nobody held the key');
  });

  it('a write whose round trip straddles a key change is not held against anyone (the watch lags)', () => {
    const r = check([ok(1, 'a', 990, 1010)], leaders, [], { ids: [1] }, [], SYNC);
    assert.equal(r.dualPrimary.length, 0);
    assert.equal(r.ok, true);
  });

  it('duplicates, phantoms and "failed" writes that are present are reported', () => {
    const r = check([ok(1, 'a', 100), failed(2, 200)], leaders, [], { ids: [1, 1, 2, 99] }, [], SYNC);
    assert.equal(r.ok, false);
    assert.deepEqual(r.duplicates, [1]);
    assert.deepEqual(r.phantoms, [99]);
    assert.ok(r.problems.some((p) => /reported as failed are present: ids 2/.test(p)));
  });

  it('asynchronous mode counts lost writes and checks them against maximum_lag_on_failover of the promotion point', () => {
    const writes = [ok(1, 'a', 100, 105, 'proxy1', 1000), ok(2, 'a', 900, 905, 'proxy1', 5000), ok(3, 'a', 950, 955, 'proxy1', 3_000_000)];
    const r = check(writes, leaders, [], { ids: [1] }, [{ timeline: 2, lsn: 2000, leader: 'b' }], { synchronous: false, maximumLagOnFailover: 1024 * 1024 });
    assert.deepEqual(r.lost, [2, 3]);
    assert.deepEqual(r.lostBeyondLagLimit, [3], 'write 3 was 3 MB past the fork point');
    assert.equal(r.ok, false);
    const within = check(writes.slice(0, 2), leaders, [], { ids: [1] }, [{ timeline: 2, lsn: 2000, leader: 'b' }], { synchronous: false, maximumLagOnFailover: 1024 * 1024 });
    assert.equal(within.ok, true, 'losing writes within the limit is what asynchronous mode allows');
  });

  it('unavailability is the longest stretch without an acknowledgement around the fault, to the round end', () => {
    const w = [ok(1, 'a', 0, 100), ok(2, 'a', 100, 200), ok(3, 'b', 1000, 1500), ok(4, 'b', 1500, 1600)];
    assert.equal(unavailability(w, 250, 2000), 1300, 'last ack at 200, next at 1500');
    assert.equal(unavailability(w.slice(0, 2), 250, 2000), 1800, 'never recovered: counts to the round end');
    assert.equal(unavailability([], 0, 10), null);
  });

  it('summarize and faultTable give median, p95 and max per fault kind', () => {
    assert.deepEqual(summarize([3, 1, 2, null]), { median: 2, p95: 3, max: 3 });
    assert.deepEqual(summarize([]), { median: null, p95: null, max: null });
    const writes = [ok(1, 'a', 0, 10), ok(2, 'a', 500, 510), ok(3, 'b', 1700, 1710)];
    const r = check(writes, leaders, [
      { round: 1, kind: 'pg crash', target: 'a', at: 20, until: 600 },
      { round: 2, kind: 'pg crash', target: 'a', at: 520, until: 2000 },
    ], { ids: [1, 2, 3] }, [], SYNC);
    const table = faultTable(r);
    assert.equal(table.length, 1);
    assert.equal(table[0]!.rounds, 2);
    assert.equal(table[0]!.recoveryMaxMs, 1200);
  });
});

describe('chaos schedule', () => {
  it('is a pure function of (seed, round): a round replays alone', async () => {
    const { schedule, stepFor, CHAOS_FAULTS } = await import('../chaos/schedule.js');
    const all = schedule(42, 30);
    assert.deepEqual(schedule(42, 30), all);
    assert.deepEqual(stepFor(42, 17), all[16]);
    assert.notDeepEqual(schedule(43, 30), all);
    const kinds = new Set(schedule(7, 400).map((s) => s.fault));
    assert.equal(kinds.size, CHAOS_FAULTS.length, 'every fault kind comes up');
  });

  it('holds a frozen primary longer than ttl, and cycles kinds on request', async () => {
    const { schedule } = await import('../chaos/schedule.js');
    for (const s of schedule(1, 50, ['primary-freeze'], 5000)) assert.ok(s.holdMs > 5000, `${s.holdMs}`);
    assert.deepEqual(schedule(1, 4, ['pg-kill', 'switchover'], 5000, true).map((s) => s.fault), ['pg-kill', 'switchover', 'pg-kill', 'switchover']);
  });
});

describe('chaos readers', () => {
  it('a read showing an id before it was sent, or one never written, is impossible', async () => {
    const { impossibleReads } = await import('../chaos/checker.js');
    const writes = [ok(1, 'a', 100), ok(2, 'a', 200)];
    assert.deepEqual(impossibleReads([{ client: 'r1', at: 250, ok: true, maxId: 2 }, { client: 'r1', at: 150, ok: true, maxId: null }], writes), []);
    assert.equal(impossibleReads([{ client: 'r1', at: 150, ok: true, maxId: 2 }], writes).length, 1);
    assert.match(impossibleReads([{ client: 'r1', at: 900, ok: true, maxId: 7 }], writes)[0]!, /no client wrote/);
  });
});
