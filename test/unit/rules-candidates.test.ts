import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bestCandidate, candidateCheck, moreAdvancedPeer } from '../../src/ha/rules/candidates.js';
import { cluster } from './cluster-builder.js';

describe('rules/candidates', () => {
  it('candidateCheck: a streaming replica passes; each problem is named', () => {
    const c = cluster().primary('a', { wal: 5_000_000 }).replica('b').replica('n', { tags: { nofailover: true } }).config({ maximum_lag_on_failover: 1000 });
    const input = c.input('a', { pg: { walPosition: 5_000_000 } });
    assert.deepEqual(candidateCheck(input, 'b', false), { name: 'b' });
    assert.deepEqual(candidateCheck(input, 'b', true), { refusal: 'b lags 4999000 bytes, over maximum_lag_on_failover' });
    assert.deepEqual(candidateCheck(input, 'n', false), { refusal: 'n is tagged nofailover' });
    assert.deepEqual(candidateCheck(input, 'zz', false), { refusal: 'zz is not a member' });
  });

  it('bestCandidate: the most advanced eligible member, then the higher failover_priority', () => {
    const c = cluster().primary('a', { wal: 1000 }).replica('b', { wal: 900 }).replica('c', { wal: 1000 }).replica('d', { wal: 1000, tags: { failover_priority: 9 } });
    assert.equal(bestCandidate(c.input('a'))?.name, 'd');
    assert.equal(bestCandidate(cluster().primary('a').input('a')), null);
  });

  it('moreAdvancedPeer: ahead, equal with higher priority, or still primary', () => {
    const c = cluster().primary('a').replica('b', { wal: 1000 }).replica('c', { wal: 900 }).leaderGone();
    assert.equal(moreAdvancedPeer(c.input('c'), 900), 'b is more advanced (1000 > 900)');
    assert.equal(moreAdvancedPeer(c.input('b'), 1000), null);
    const input = c.input('b', { peers: { a: { reachable: true, healthy: true, walPosition: 1000, role: 'primary', tags: null } } });
    assert.equal(moreAdvancedPeer(input, 1000), 'a is still running as a primary');
  });

  it('moreAdvancedPeer after a clean shutdown: a peer holding all of the WAL counts only with yieldToEqual', () => {
    const c = cluster().primary('a').replica('b', { wal: 50_000_000, state: 'running' }).leaderGone();
    assert.equal(moreAdvancedPeer(c.input('a'), null, { checkpoint: 50_000_000, yieldToEqual: false }), null);
    assert.match(moreAdvancedPeer(c.input('a'), null, { checkpoint: 50_000_000, yieldToEqual: true })!, /holds all of this server's WAL/);
  });
});
