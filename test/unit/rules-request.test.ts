import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { operatorRequestRule } from '../../src/ha/rules/request.js';
import { cluster } from './cluster-builder.js';

const none = { restart: false, reload: false, reinitialize: false };

describe('rules/request', () => {
  const c = () => cluster().primary('a').replica('b');

  it('not this rule without a request', () => {
    assert.equal(operatorRequestRule(c().input('b')), null);
  });

  it('reinitialize: a replica clones again, the leader refuses, and it waits for a running primary', () => {
    const reinit = { requests: { ...none, reinitialize: true } };
    assert.equal(operatorRequestRule(c().input('b', { memory: reinit }))?.rule, 'request.reinit');
    assert.equal(operatorRequestRule(c().input('a', { memory: reinit }))?.rule, 'request.reinit-refused');
    assert.equal(operatorRequestRule(c().leaderGone().input('b', { memory: reinit }))?.rule, 'request.reinit-wait-primary');
  });

  it('restart and reload; the leader keeps its key first', () => {
    const restart = operatorRequestRule(c().input('a', { memory: { requests: { ...none, restart: true } } }));
    assert.equal(restart?.rule, 'request.restart');
    assert.deepEqual(restart?.actions.map((a) => a.type), ['refreshLeader', 'clearRequests', 'restart']);
    assert.equal(operatorRequestRule(c().input('b', { memory: { requests: { ...none, reload: true } } }))?.rule, 'request.reload');
    const down = { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery' as const };
    assert.equal(operatorRequestRule(c().input('b', { pg: down, memory: { requests: { ...none, restart: true } } }))?.rule, 'request.restart-not-running');
  });
});
