import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { followerRule, rejoinAsReplica } from '../../src/ha/rules/follower.js';
import { MAX_START_FAILURES } from '../../src/ha/rules/input.js';
import { cluster } from './cluster-builder.js';

const after = () => cluster().primary('b', { timeline: 2, wal: 2000 }).replica('a');
const stoppedReplica = { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery', controlTimeline: 1 } as const;

describe('rules/follower', () => {
  it('a streaming replica does nothing; one pointed elsewhere follows the leader', () => {
    assert.equal(followerRule(after().input('a'), 'b').rule, 'follower.streaming');
    assert.equal(followerRule(after().input('a', { pg: { streaming: false } }), 'b').rule, 'follower.not-streaming');
    const d = followerRule(after().input('a', { pg: { following: 'c' } }), 'b');
    assert.equal(d.rule, 'follower.follow');
    assert.deepEqual(d.actions, [{ type: 'follow', leader: 'b' }]);
  });

  it('a writable server stops at once', () => {
    assert.equal(followerRule(after().input('a', { pg: { inRecovery: false } }), 'b').rule, 'follower.demote');
  });

  it('a stopped replica starts, is rewound after repeated failures, cloned after more', () => {
    const rule = (failures: number) => followerRule(after().input('a', { pg: stoppedReplica, memory: { startFailures: failures } }), 'b').rule;
    assert.equal(rule(0), 'follower.start');
    assert.equal(rule(MAX_START_FAILURES), 'follower.rewind');
    assert.equal(rule(MAX_START_FAILURES * 2), 'follower.reclone');
  });

  it('rejoinAsReplica waits for a running primary, rewinds, clones when the rewind failed', () => {
    const input = after().input('a');
    const lm = input.view.members.b;
    assert.equal(rejoinAsReplica(input, 'b', undefined, 'x').rule, 'follower.wait-primary');
    assert.equal(rejoinAsReplica(input, 'b', lm, 'x').rule, 'follower.rewind');
    assert.equal(rejoinAsReplica(input, 'b', lm, 'x', true).rule, 'follower.reclone');
    const failed = after().input('a', { memory: { rewindFailed: true, rewindError: 'boom' } });
    const d = rejoinAsReplica(failed, 'b', lm, 'x');
    assert.equal(d.rule, 'follower.reclone');
    assert.match(d.reason, /pg_rewind failed, cloning again \(boom\)/);
  });
});
