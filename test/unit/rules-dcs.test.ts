import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dcsUnreachableRule } from '../../src/ha/rules/dcs.js';
import { cluster, NOW } from './cluster-builder.js';

describe('rules/dcs', () => {
  const c = () => cluster().primary('a').replica('b');

  it('a primary keeps writing while its lease is safe, and stops past the deadline', () => {
    assert.equal(dcsUnreachableRule(c().input('a', { dcsReachable: false, memory: { leaderRefreshSentAt: NOW.mono - 3000 } })).rule, 'dcs.keep-primary');
    const d = dcsUnreachableRule(c().input('a', { dcsReachable: false, memory: { leaderRefreshSentAt: NOW.mono - 3750 } }));
    assert.equal(d.rule, 'dcs.demote');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
  });

  it('a stopped replica is started without an upstream; a running one waits', () => {
    const stopped = { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery' as const };
    assert.deepEqual(dcsUnreachableRule(c().input('b', { dcsReachable: false, pg: stopped })).actions, [{ type: 'start', role: 'replica', follow: null }]);
    assert.equal(dcsUnreachableRule(c().input('b', { dcsReachable: false })).rule, 'dcs.wait');
  });

  it('paused: a stopped replica is not started', () => {
    const stopped = { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery' as const };
    assert.equal(dcsUnreachableRule(c().config({ pause: true }).input('b', { dcsReachable: false, pg: stopped })).rule, 'dcs.wait');
  });
});
