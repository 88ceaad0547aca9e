/** SHOW answers of several worker threads combined into the whole proxy's (src/proxy/admin/merge.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeShowRows } from '../../src/proxy/admin/merge.js';

describe('SHOW across workers', () => {
  it('POOLS: one row per pool, counts added, the oldest waiter kept whole, pools of one worker only kept', () => {
    const w0 = [['app', 'alice', 3, 1, 0, 0, 2, 0, 0, 1, 0, 0, 0, 2, 900_000, 'transaction']];
    const w1 = [
      ['app', 'alice', 4, 2, 0, 0, 3, 0, 0, 0, 0, 0, 1, 3, 100, 'transaction'],
      ['app', 'bob', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 'session'],
    ];
    assert.deepEqual(mergeShowRows('POOLS', [w0, w1]), [
      ['app', 'alice', 7, 3, 0, 0, 5, 0, 0, 1, 0, 0, 1, 3, 100, 'transaction'],
      ['app', 'bob', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 'session'],
    ]);
  });

  it('STATS: totals and per-second rates added, mean durations weighted by their counts', () => {
    const w0 = [['app', 100, 300, 1000, 2000, 5000, 6000, 70, 10, 30, 100, 200, 400, 100, 7, 300]];
    const w1 = [['app', 50, 100, 500, 1000, 2500, 1000, 30, 30, 10, 50, 100, 800, 300, 3, 100]];
    const [row] = mergeShowRows('STATS', [w0, w1]);
    assert.deepEqual(row, ['app', 150, 400, 1500, 3000, 7500, 7000, 100, 40, 40, 150, 300, Math.floor((400 * 10 + 800 * 30) / 40), Math.floor((100 * 30 + 300 * 10) / 40), 10, 400]);
    // No transactions in the period anywhere: a mean of nothing is 0, not NaN.
    const idle = [['app', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]];
    assert.equal(mergeShowRows('STATS', [idle, idle])[0]![12], 0);
  });

  it('STATS_AVERAGES weights durations; STATS_TOTALS adds everything', () => {
    assert.deepEqual(mergeShowRows('STATS_AVERAGES', [[['db', 1, 2, 3, 4, 1000, 100, 5]], [['db', 3, 2, 3, 4, 2000, 300, 5]]]), [['db', 4, 4, 6, 8, 1750, 200, 10]]);
    assert.deepEqual(mergeShowRows('STATS_TOTALS', [[['db', 1, 2, 3, 4, 5, 6, 7]], [['db', 1, 1, 1, 1, 1, 1, 1]]]), [['db', 2, 3, 4, 5, 6, 7, 8]]);
  });

  it('SERVERS and CLIENTS are every worker\'s rows; CONFIG and VERSION the asking worker\'s', () => {
    const a = [['S', 'u', 'db', 'idle']];
    const b = [['S', 'u', 'db', 'active'], ['S', 'u', 'db', 'new']];
    assert.equal(mergeShowRows('SERVERS', [a, b]).length, 3);
    assert.equal(mergeShowRows('CLIENTS', [b, a]).length, 3);
    assert.deepEqual(mergeShowRows('VERSION', [[['PgBouncer 1.18.0']], [['PgBouncer 1.18.0']]]), [['PgBouncer 1.18.0']]);
    assert.deepEqual(mergeShowRows('CONFIG', [[['k', 'v1', 'd', 'yes']], [['k', 'v2', 'd', 'yes']]]), [['k', 'v1', 'd', 'yes']]);
  });

  it('DATABASES adds current connections and is paused if any worker is; LISTS adds connections, not names', () => {
    const d0 = [['app', '10.0.0.1', 5432, 'app', null, 20, 0, 0, 'transaction', 0, 3, 0, 0]];
    const d1 = [['app', '10.0.0.1', 5432, 'app', null, 20, 0, 0, 'transaction', 0, 4, 1, 0]];
    assert.deepEqual(mergeShowRows('DATABASES', [d0, d1]), [['app', '10.0.0.1', 5432, 'app', null, 20, 0, 0, 'transaction', 0, 7, 1, 0]]);
    const l0 = [['databases', 2], ['users', 1], ['pools', 1], ['used_clients', 5], ['used_servers', 3]];
    const l1 = [['databases', 2], ['users', 2], ['pools', 2], ['used_clients', 6], ['used_servers', 2]];
    assert.deepEqual(mergeShowRows('LISTS', [l0, l1]), [['databases', 2], ['users', 2], ['pools', 2], ['used_clients', 11], ['used_servers', 5]]);
  });
});
