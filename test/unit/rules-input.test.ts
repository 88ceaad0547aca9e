import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activeIntent, intentTarget, intentTimeoutMs, keepKey, lagOf, lsnText, pgMaybePrimary, pgRole, pgState } from '../../src/ha/rules/input.js';
import { cluster, NOW } from './cluster-builder.js';

describe('rules/input: facts the rules share', () => {
  const pg = () => cluster().primary('a').replica('b').observe('b').pg;

  it('pgState and pgRole read the observation, and the control file of a stopped server', () => {
    assert.equal(pgState(pg()), 'streaming');
    assert.equal(pgState({ ...pg(), running: false, controlState: 'in production' }), 'crashed');
    assert.equal(pgRole({ ...pg(), running: false, controlState: 'shut down' }), 'primary');
    assert.equal(pgRole({ ...pg(), running: false, controlState: 'shut down in recovery' }), 'replica');
    assert.equal(pgMaybePrimary({ ...pg(), inRecovery: null }), true, 'a server that could not be queried counts as a primary');
  });

  it('activeIntent: due and stale from the wall clock', () => {
    const c = cluster().primary('a').replica('b');
    assert.equal(activeIntent(c.input('a')), null);
    const scheduled = activeIntent(c.failover({ to: 'b', at: NOW.wall + 1 }).input('a'));
    assert.deepEqual([scheduled?.due, scheduled?.stale], [false, false]);
    const stale = activeIntent(c.failover({ to: 'b', requestedAt: NOW.wall - intentTimeoutMs(c.view().config) - 1 }).input('a'));
    assert.deepEqual([stale?.due, stale?.stale], [true, true]);
    assert.equal(intentTarget(stale), null, 'a stale request names nobody');
  });

  it('keepKey rebinds a key the agent does not know it holds; lagOf and lsnText', () => {
    const c = cluster().primary('a', { wal: 1000 });
    assert.deepEqual(keepKey(c.input('a')), { type: 'refreshLeader' });
    assert.deepEqual(keepKey(c.input('a', { memory: { holdsLeader: false } })), { type: 'acquireLeader' });
    assert.equal(lagOf(c.view(), 400), 600);
    assert.equal(lagOf(c.view(), null), null);
    assert.equal(lsnText(50_000_000), '0/2FAF080');
    assert.equal(lsnText(1.5e300), '1.5e+300');
  });
});
