import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { syncSteps } from '../../src/ha/rules/sync.js';
import { cluster } from './cluster-builder.js';

describe('rules/sync', () => {
  it('synchronous mode off: clears synchronous_standby_names, no notes', () => {
    assert.deepEqual(syncSteps(cluster().primary('a').replica('b').input('a', { pg: { synchronousStandbyNames: ['b'] } })), {
      actions: [{ type: 'setSynchronousStandbys', names: [] }],
      notes: [],
    });
    assert.deepEqual(syncSteps(cluster().primary('a').replica('b').input('a')), { actions: [], notes: [] });
  });

  it('adds a standby to synchronous_standby_names before it appears in sync', () => {
    const out = syncSteps(cluster().config({ synchronous_mode: true }).primary('a').replica('b').input('a', { pg: { synchronousStandbyNames: [] } }));
    assert.deepEqual(out.actions, [{ type: 'writeSync', members: [] }, { type: 'setSynchronousStandbys', names: ['b'] }]);
  });

  it('adds it to sync once synchronous and flushed past where it was added', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a', { wal: 5000 }).replica('b', { wal: 4000 }).sync('a', []);
    const row = { name: 'b', state: 'streaming', syncState: 'sync', flushLsn: 4600, replayLsn: 4600 };
    const out = syncSteps(c.input('a', { pg: { synchronousStandbyNames: ['b'], replication: [row] }, memory: { syncAddedAt: { b: 4500 } } }));
    assert.deepEqual(out, { actions: [{ type: 'writeSync', members: ['b'] }], notes: ['synchronous standbys in sync: [b]'] });
  });

  it('strict mode without a standby blocks writes, and says so', () => {
    const out = syncSteps(cluster().config({ synchronous_mode: true, synchronous_mode_strict: true }).primary('a').sync('a', []).input('a', { pg: { synchronousStandbyNames: [] } }));
    assert.deepEqual(out.actions, [{ type: 'setSynchronousStandbys', names: ['*'] }]);
    assert.ok(out.notes.includes('no synchronous standby: writes block (strict mode)'), out.notes.join('; '));
  });
});
