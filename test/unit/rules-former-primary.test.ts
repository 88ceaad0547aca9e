import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStoppedPrimary, primaryRetakeBlocker, runningPrimaryRule, stoppedPrimaryRule } from '../../src/ha/rules/former-primary.js';
import { cluster } from './cluster-builder.js';

const stopped = { running: false, accepting: false, inRecovery: null, controlState: 'shut down' as const, controlTimeline: 1, walPosition: null };
const expired = () => cluster().primary('a').replica('b').leaderGone(true);

describe('rules/former-primary', () => {
  it('primaryRetakeBlocker: nothing happened since, so nothing blocks', () => {
    assert.equal(primaryRetakeBlocker(expired().input('a'), null), null);
  });

  it('primaryRetakeBlocker: a request elsewhere, a newer timeline, nofailover', () => {
    assert.match(primaryRetakeBlocker(expired().failover({ to: 'b' }).input('a'), 'b')!, /a switchover to b is in progress/);
    const newer = expired().history([{ timeline: 2, lsn: 900, at: 0, reason: 'failover', leader: 'b' }]);
    assert.match(primaryRetakeBlocker(newer.input('a'), null)!, /timeline 2 was started by b/);
    assert.equal(primaryRetakeBlocker(expired().input('a', { tags: { nofailover: true } }), null), 'this member is tagged nofailover');
  });

  it('runningPrimaryRule: retakes, or stops when blocked', () => {
    assert.equal(runningPrimaryRule(expired().input('a', { memory: { holdsLeader: false } }), null).rule, 'former-primary.retake');
    const d = runningPrimaryRule(expired().input('a', { tags: { nofailover: true } }), null);
    assert.equal(d.rule, 'former-primary.demote');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
  });

  it('stoppedPrimaryRule: restarts, yields to a peer ahead, stays stopped when blocked, resumes after a recorded clean shutdown', () => {
    const behind = cluster().primary('a', { wal: 5000 }).replica('b', { wal: 10 }).leaderGone(true).config({ maximum_lag_on_failover: 1000 });
    assert.equal(stoppedPrimaryRule(behind.input('a', { pg: stopped }), null).rule, 'former-primary.restart');
    const ahead = cluster().primary('a').replica('b', { wal: 2000 }).leaderGone(true);
    assert.equal(stoppedPrimaryRule(ahead.input('a', { pg: stopped }), null).rule, 'former-primary.yield');
    assert.equal(stoppedPrimaryRule(ahead.input('a', { pg: stopped, tags: { nofailover: true } }), null).rule, 'former-primary.stay-stopped');
    const clean = cluster().primary('a', { wal: 1000 }).replica('b', { wal: 1000, state: 'running' }).leaderGone().shutdown('a', 1000);
    const d = stoppedPrimaryRule(clean.input('a', { pg: { ...stopped, checkpointLsn: 1000 } }), null);
    assert.equal(d.rule, 'former-primary.resume');
    assert.deepEqual(d.actions, [{ type: 'acquireLeader' }, { type: 'start', role: 'primary', follow: null }]);
  });

  it('isStoppedPrimary reads the control file of a stopped server', () => {
    assert.equal(isStoppedPrimary(expired().input('a', { pg: stopped })), true);
    assert.equal(isStoppedPrimary(expired().input('b', { pg: { ...stopped, controlState: 'shut down in recovery' } })), false);
    assert.equal(isStoppedPrimary(expired().input('a')), false);
  });
});
