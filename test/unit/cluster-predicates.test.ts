import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  candidateProblem,
  isEligibleCandidate,
  isHealthyReplica,
  isRunningState,
  mayBePromoted,
  ranksAbove,
  syncMembersOf,
} from '../../src/cluster/predicates.js';
import type { MemberState } from '../../src/cluster/types.js';
import { MB, member, viewOf } from './api-fixtures.js';

const ALL_STATES: MemberState[] = [
  'running', 'streaming', 'starting', 'stopped', 'stopping', 'crashed', 'bootstrapping', 'cloning', 'rewinding',
  'promoting', 'demoting', 'restarting', 'start failed',
];

describe('isHealthyReplica', () => {
  it('is a replica whose PostgreSQL is running or streaming, nothing else', () => {
    const healthy = ALL_STATES.filter((state) => isHealthyReplica(member('b', 'replica', { state })));
    assert.deepEqual(healthy, ['running', 'streaming']);
    assert.deepEqual(ALL_STATES.filter(isRunningState), ['running', 'streaming']);
    assert.equal(isHealthyReplica(member('a', 'primary')), false);
    assert.equal(isHealthyReplica(member('u', 'uninitialized', { state: 'running' })), false);
    assert.equal(isHealthyReplica(undefined), false);
  });
});

describe('mayBePromoted', () => {
  it('refuses nofailover and failover_priority 0', () => {
    assert.equal(mayBePromoted({ nofailover: false, failover_priority: 1 }), true);
    assert.equal(mayBePromoted({ nofailover: true, failover_priority: 1 }), false);
    assert.equal(mayBePromoted({ nofailover: false, failover_priority: 0 }), false);
  });
});

describe('syncMembersOf', () => {
  const sync = { leader: 'a', members: ['b'] };
  it('is null while synchronous_mode is off', () => {
    assert.equal(syncMembersOf(viewOf([member('a', 'primary')], { sync })), null);
  });
  it('takes the sync key of the current leader, none of another, and the last leader\'s when there is none', () => {
    const on = (o: Parameters<typeof viewOf>[1]) => {
      const view = viewOf([member('a', 'primary'), member('b', 'replica'), member('c', 'replica')], o);
      view.config.synchronous_mode = true;
      return syncMembersOf(view);
    };
    assert.deepEqual(on({ sync }), ['b']);
    assert.deepEqual(on({ sync, leader: { name: 'c' } }), []);
    assert.deepEqual(on({ sync, leader: null }), ['b']);
    assert.deepEqual(on({ sync: null }), []);
  });
});

describe('candidateProblem', () => {
  const rules = { syncMembers: null, maxLag: MB };
  it('names the first rule broken, in order: tags, health, sync, lag', () => {
    assert.equal(candidateProblem(member('b', 'replica'), rules), null);
    const tagged = member('b', 'replica', { state: 'stopped', tags: { nofailover: true, noloadbalance: false, nosync: false, failover_priority: 1 } });
    assert.deepEqual(candidateProblem(tagged, rules), { kind: 'nofailover' });
    assert.deepEqual(candidateProblem(member('b', 'replica', { state: 'stopped' }), { syncMembers: ['c'], maxLag: MB }), { kind: 'not-running' });
    assert.deepEqual(candidateProblem(member('b', 'replica', { lagBytes: 2 * MB }), { syncMembers: ['c'], maxLag: MB }), { kind: 'not-sync', syncMembers: ['c'] });
    assert.deepEqual(candidateProblem(member('b', 'replica', { lagBytes: 2 * MB }), rules), { kind: 'lag', lag: 2 * MB, maxLag: MB });
  });
  it('skips the lag limit when maxLag is null and when the lag is unknown; a given lag overrides the published one', () => {
    assert.equal(isEligibleCandidate(member('b', 'replica', { lagBytes: 2 * MB }), { syncMembers: null, maxLag: null }), true);
    assert.equal(isEligibleCandidate(member('b', 'replica', { lagBytes: null }), rules), true);
    assert.equal(isEligibleCandidate(member('b', 'replica', { lagBytes: 0 }), rules, 2 * MB), false);
    assert.equal(isEligibleCandidate(member('b', 'replica', { lagBytes: MB }), rules), true);
  });
});

describe('ranksAbove', () => {
  it('prefers the most advanced, then the higher failover_priority; anyone beats none', () => {
    const at = (wal: number | null, priority = 1) =>
      member('b', 'replica', { walPosition: wal, tags: { nofailover: false, noloadbalance: false, nosync: false, failover_priority: priority } });
    assert.equal(ranksAbove(at(1), null), true);
    assert.equal(ranksAbove(at(2), at(1, 5)), true);
    assert.equal(ranksAbove(at(1, 5), at(2)), false);
    assert.equal(ranksAbove(at(1, 2), at(1, 1)), true);
    assert.equal(ranksAbove(at(1, 1), at(1, 1)), false);
    assert.equal(ranksAbove(at(0), at(null)), true);
  });
});
