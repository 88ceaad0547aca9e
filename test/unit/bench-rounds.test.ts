/**
 * bench:proxy's round plan: every pooler twice per round in mirrored order, the order turning with the round, and
 * one figure per target and round as the mean of its runs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { meanOfRuns, median, roundOrder } from '../../bench/rounds.js';

describe('bench rounds', () => {
  it('runs the unpooled target once and each pooler twice, mirrored, turning with the round', () => {
    const poolers = ['pgbouncer', 'pgwarden', 'pgwarden-1w'];
    assert.deepEqual(roundOrder(['direct'], poolers, 1), ['direct', 'pgbouncer', 'pgwarden', 'pgwarden-1w', 'pgwarden-1w', 'pgwarden', 'pgbouncer']);
    assert.deepEqual(roundOrder(['direct'], poolers, 2), ['direct', 'pgwarden', 'pgwarden-1w', 'pgbouncer', 'pgbouncer', 'pgwarden-1w', 'pgwarden']);
    assert.deepEqual(roundOrder(['direct'], poolers, 4), roundOrder(['direct'], poolers, 1));
    for (let round = 1; round <= 6; round++) {
      const order = roundOrder([], poolers, round);
      // Mirrored: the mean position of every pooler is the round's middle, so a linear drift cancels out.
      for (const p of poolers) {
        const positions = order.flatMap((t, i) => (t === p ? [i] : []));
        assert.equal(positions.length, 2);
        assert.equal(positions[0]! + positions[1]!, order.length - 1);
      }
    }
  });

  it('combines runs into their mean, adds the transactions, and keeps a missing figure missing', () => {
    const a = { tps: 3000, latencyMs: 6, transactions: 45_000, poolerCpuUsPerTx: 120, idleUsPerTx: 30 };
    const b = { tps: 3600, latencyMs: 5, transactions: 54_000, poolerCpuUsPerTx: 140, idleUsPerTx: 10 };
    assert.deepEqual(meanOfRuns([a, b]), { tps: 3300, latencyMs: 5.5, transactions: 99_000, poolerCpuUsPerTx: 130, idleUsPerTx: 20 });
    const direct = { tps: 5000, transactions: 75_000, poolerCpuUsPerTx: null as number | null };
    assert.deepEqual(meanOfRuns([direct]), direct);
    assert.equal(meanOfRuns([direct, { tps: 4000, transactions: 60_000, poolerCpuUsPerTx: 1 }]).poolerCpuUsPerTx, null);
    assert.throws(() => meanOfRuns([]), RangeError);
  });

  it('takes the median of odd and even counts', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([0.97]), 0.97);
    assert.throws(() => median([]), RangeError);
  });
});
