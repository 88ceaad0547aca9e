import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootstrapRule } from '../../src/ha/rules/bootstrap.js';
import { cluster } from './cluster-builder.js';

const empty = { dataDir: 'empty', running: false, accepting: false, inRecovery: null } as const;

describe('rules/bootstrap', () => {
  it('bootstraps when the initialize key is free, unless paused, nofailover or without etcd', () => {
    const free = cluster().uninitialized(null);
    assert.equal(bootstrapRule(free.input('a', { pg: empty })).rule, 'bootstrap.init');
    assert.equal(bootstrapRule(free.input('a', { pg: empty, tags: { nofailover: true } })).rule, 'bootstrap.nofailover');
    assert.equal(bootstrapRule(free.input('a', { pg: empty, dcsReachable: false })).rule, 'bootstrap.wait-etcd');
    assert.equal(bootstrapRule(cluster().uninitialized(null).config({ pause: true }).input('a', { pg: empty })).rule, 'bootstrap.paused');
  });

  it('waits while another member bootstraps', () => {
    assert.equal(bootstrapRule(cluster().uninitialized('').input('b', { pg: empty })).rule, 'bootstrap.wait-other');
  });

  it('clones from a running primary, or waits for one', () => {
    const d = bootstrapRule(cluster().primary('a').input('b', { pg: empty }));
    assert.equal(d.rule, 'bootstrap.clone');
    assert.deepEqual(d.actions, [{ type: 'clone', from: 'a' }, { type: 'start', role: 'replica', follow: 'a' }]);
    assert.equal(bootstrapRule(cluster().primary('a').leaderGone().input('b', { pg: empty })).rule, 'bootstrap.wait-primary');
  });
});
