import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { electionRefusal, electionRule } from '../../src/ha/rules/election.js';
import { cluster, NOW } from './cluster-builder.js';

const base = () => cluster().primary('a', { wal: 1000 }).replica('b', { wal: 1000 }).replica('c', { wal: 900 }).leaderGone();

describe('rules/election: electionRefusal, the one answer to "may this replica take the free key?"', () => {
  it('null for the most advanced healthy replica', () => {
    assert.equal(electionRefusal(base().input('b')), null);
  });

  it('each refusal carries its own id', () => {
    const rule = (c: ReturnType<typeof base>, name: string, o: Parameters<ReturnType<typeof base>['input']>[1] = {}) => electionRefusal(c.input(name, o))?.rule;
    assert.equal(rule(base(), 'c'), 'election.refuse-peer-ahead');
    assert.equal(rule(base(), 'b', { tags: { nofailover: true } }), 'election.refuse-nofailover');
    assert.equal(rule(base(), 'b', { pg: { accepting: false } }), 'election.refuse-not-accepting');
    assert.equal(rule(base().failover({ to: 'c' }), 'b'), 'election.refuse-requested-elsewhere');
    assert.equal(rule(base().config({ synchronous_mode: true }).sync('a', ['c']), 'b'), 'election.refuse-not-sync');
    assert.equal(rule(base().optime(5_000_000).config({ maximum_lag_on_failover: 1000 }), 'b'), 'election.refuse-lag');
    assert.equal(rule(base().shutdown('a', 1000), 'b', { memory: { shutdownHoldSince: NOW.mono } }), 'election.refuse-shutdown-hold');
  });

  it('a request naming this member waives the peer and shutdown checks, a forced failover the lag limit too', () => {
    const c = base().optime(5_000_000).config({ maximum_lag_on_failover: 1000 });
    assert.equal(electionRefusal(c.failover({ kind: 'switchover', to: 'c' }).input('c'))?.rule, 'election.refuse-lag');
    assert.equal(electionRefusal(c.failover({ kind: 'failover', to: 'c' }).input('c')), null);
  });
});

describe('rules/election: electionRule', () => {
  it('takes the key and promotes when nothing refuses', () => {
    const d = electionRule(base().input('b'));
    assert.equal(d.rule, 'election.take-leader');
    assert.deepEqual(d.actions.map((a) => a.type), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
  });

  it('a refusal becomes the decision, with its id', () => {
    const d = electionRule(base().input('c'));
    assert.equal(d.rule, 'election.refuse-peer-ahead');
    assert.deepEqual(d.actions, []);
    assert.match(d.reason, /^not taking the free leader key: b is more advanced/);
  });

  it('a stopped replica starts first; a server that may be a primary but does not answer waits', () => {
    assert.equal(electionRule(base().input('b', { pg: { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery' } })).rule, 'election.start-replica');
    assert.equal(electionRule(base().input('b', { pg: { inRecovery: null, accepting: false } })).rule, 'election.wait-accepting');
  });
});
