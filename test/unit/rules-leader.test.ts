import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drainIdFor } from '../../src/ha/rules/drain.js';
import { cutOffRule } from '../../src/ha/rules/cutoff.js';
import { handoverRule } from '../../src/ha/rules/handover.js';
import { keepLeadingRule, leaderRule, leaderWithoutPostgresRule } from '../../src/ha/rules/leader.js';
import { MAX_START_FAILURES } from '../../src/ha/rules/input.js';
import { cluster, NOW } from './cluster-builder.js';

const crashed = { running: false, accepting: false, inRecovery: null, controlState: 'in production' as const };

describe('rules/leader: keepLeadingRule', () => {
  it('keeps the key and nothing else in a steady cluster', () => {
    const d = keepLeadingRule(cluster().primary('a').replica('b').input('a'), null);
    assert.equal(d.rule, 'leader.keep');
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
  });

  it('takes its id and the first words of its reason from the note it is handed', () => {
    const d = keepLeadingRule(cluster().primary('a').replica('b').input('a'), { rule: 'handover.wait-candidate', text: 'switchover waiting: x', keepsDrain: false });
    assert.equal(d.rule, 'handover.wait-candidate');
    assert.equal(d.reason, 'primary holding the leader key; switchover waiting: x');
  });

  it('whether a drain is kept depends only on its argument, not on which rules ran before it', () => {
    const c = cluster().primary('a').replica('b').replica('c').failover({ from: 'a', to: 'b' }).proxies([{ id: 'p1', drained: null }]);
    const id = drainIdFor(c.view().failover!);
    c.drain({ id, from: 'a', to: 'b', requestedAt: NOW.wall - 1000, timeoutMs: 5000 });
    const input = c.input('a');
    // The steady state learns of a drain wait only through its argument: no rule leaves anything behind for another
    // to read, so calling other rules first, in any order, changes nothing.
    const before = keepLeadingRule(input, null);
    const outcome = handoverRule(input);
    cutOffRule(input);
    const after = keepLeadingRule(input, null);
    assert.deepEqual(after, before);
    assert.ok(before.actions.some((a) => a.type === 'clearDrain'), 'without a note, nobody waits for the drain');
    assert.ok(outcome && 'note' in outcome && outcome.note.keepsDrain, JSON.stringify(outcome));
    const waiting = keepLeadingRule(input, outcome.note);
    assert.equal(waiting.rule, 'drain.wait');
    assert.ok(!waiting.actions.some((a) => a.type === 'clearDrain'));
    assert.deepEqual(leaderRule(input), waiting);
  });
});

describe('rules/leader: leaderRule', () => {
  it('finishes a promotion when it holds the key as a replica', () => {
    const d = leaderRule(cluster().primary('a').replica('b').input('a', { pg: { inRecovery: true } }));
    assert.equal(d.rule, 'leader.finish-promotion');
    assert.deepEqual(d.actions.map((a) => a.type), ['refreshLeader', 'recordHistory', 'promote', 'checkpoint']);
  });

  it('stops and releases the key past the lease deadline', () => {
    const d = leaderRule(cluster().primary('a').input('a', { memory: { leaderRefreshSentAt: NOW.mono - 10_000 } }));
    assert.equal(d.rule, 'leader.lease-expired');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }]);
  });

  it('keeps the key while the primary does not answer yet', () => {
    assert.equal(leaderRule(cluster().primary('a').input('a', { pg: { accepting: false } })).rule, 'leader.wait-accepting');
  });
});

describe('rules/leader: leaderWithoutPostgresRule', () => {
  it('releases the key for an eligible replica', () => {
    const d = leaderWithoutPostgresRule(cluster().primary('a').replica('b').input('a', { pg: crashed }));
    assert.equal(d.rule, 'leader.release-for-candidate');
    assert.match(d.reason, /b can take over/);
  });

  it('restarts in place without one, and gives up after repeated failures', () => {
    const c = cluster().primary('a').replica('b', { tags: { nofailover: true } });
    assert.equal(leaderWithoutPostgresRule(c.input('a', { pg: crashed })).rule, 'leader.restart-in-place');
    assert.equal(leaderWithoutPostgresRule(c.input('a', { pg: crashed, memory: { startFailures: MAX_START_FAILURES } })).rule, 'leader.release-start-failed');
  });

  it('releases at once when the server was a replica', () => {
    const d = leaderWithoutPostgresRule(cluster().primary('a').input('a', { pg: { ...crashed, controlState: 'shut down in recovery' } }));
    assert.equal(d.rule, 'leader.release-not-primary');
    assert.equal(d.role, 'replica');
  });
});
