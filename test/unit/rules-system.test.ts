import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { foreignSystemRule } from '../../src/ha/rules/system.js';
import { cluster } from './cluster-builder.js';

describe('rules/system', () => {
  it('not this rule when the system identifiers agree', () => {
    assert.equal(foreignSystemRule(cluster().primary('a').replica('b').input('b')), null);
  });

  it('refuses to act on another system\'s data directory, naming the command that fixes it', () => {
    const d = foreignSystemRule(cluster().primary('a').replica('b').input('b', { pg: { systemId: 'other' } }));
    assert.equal(d?.rule, 'system.foreign-data-directory');
    assert.deepEqual(d?.actions, []);
    assert.match(d!.reason, /belongs to system other, the cluster is sys1; run 'pgwarden reinit b'/);
  });

  it('cannot tell without etcd or without an identifier', () => {
    const c = cluster().primary('a').replica('b');
    assert.equal(foreignSystemRule(c.input('b', { pg: { systemId: 'other' }, dcsReachable: false })), null);
    assert.equal(foreignSystemRule(c.input('b', { pg: { systemId: null } })), null);
  });
});
