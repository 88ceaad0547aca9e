import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pausedRule } from '../../src/ha/rules/pause.js';
import { cluster } from './cluster-builder.js';

describe('rules/pause', () => {
  const paused = () => cluster().config({ pause: true }).primary('a').replica('b');

  it('the primary only keeps its key', () => {
    const d = pausedRule(paused().input('a'));
    assert.equal(d.rule, 'pause.keep-leader');
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
  });

  it('a running primary takes a free key', () => {
    const d = pausedRule(paused().leaderGone(true).input('a'));
    assert.equal(d.rule, 'pause.take-free-key');
    assert.deepEqual(d.actions, [{ type: 'acquireLeader' }]);
  });

  it('replicas do nothing, even with the key free', () => {
    assert.equal(pausedRule(paused().input('b')).rule, 'pause.idle');
    assert.deepEqual(pausedRule(paused().leaderGone().input('b')).actions, []);
  });
});
