/**
 * The short chaos run of `npm test`: every main fault once (kill -9 of the primary's PostgreSQL, a host crash, a
 * partition of the primary from etcd and the other members, a switchover) on a 3-member etcd, 3 agents and
 * 2 proxies in their own network namespaces, with writers through both proxies and directly to every member.
 * The long run is `npm run chaos -- --rounds 100`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatTable, runChaos } from './runner.js';
import { MAIN_FAULTS } from './schedule.js';

describe('chaos: a short run of the main faults', { timeout: 600_000 }, () => {
  it('synchronous mode: no acknowledged write lost, never two primaries, every fault recovered, rejoins by rewind', async (t) => {
    const result = await runChaos({ seed: 1, rounds: MAIN_FAULTS.length, faults: MAIN_FAULTS, cycle: true, synchronous: true, log: (l) => t.diagnostic(l) });
    for (const line of formatTable(result)) t.diagnostic(line);
    assert.deepEqual(result.report.problems, []);
    assert.equal(result.ok, true);
    assert.deepEqual(result.table.map((r) => r.fault).sort(), [...MAIN_FAULTS].sort(), 'every main fault ran');
    assert.ok(result.writes.viaProxy > 100 && result.writes.direct > 100, `writes flowed: ${JSON.stringify(result.writes)}`);
    for (const row of result.table) {
      assert.equal(row.lost, 0, `${row.fault}: acknowledged writes lost`);
      assert.equal(row.dualPrimary, 0, `${row.fault}: dual-primary windows`);
      assert.ok(row.recoveryMaxMs !== null && row.recoveryMaxMs < 30_000, `${row.fault}: writes through the proxies came back (${row.recoveryMaxMs} ms)`);
    }
    // A former primary rejoins by pg_rewind, never by copying the database again.
    assert.ok(result.table.reduce((n, r) => n + r.rewinds, 0) > 0, 'the old primaries rejoined by pg_rewind');
    for (const row of result.table) assert.equal(row.reclones, 0, `${row.fault}: re-clones`);
    const switchover = result.table.find((r) => r.fault === 'switchover')!;
    assert.equal(switchover.failedWrites, 0, 'a switchover costs clients of the proxies no failed write');
  });
});
