import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasDiverged, newestTimeline, promotionSteps, timelineAncestry } from '../../src/ha/rules/timeline.js';
import { cluster, NOW } from './cluster-builder.js';

const history = [
  { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'x' },
  { timeline: 2, lsn: 1500, at: 1, reason: 'failover', leader: 'a', parent: 1 },
  { timeline: 3, lsn: 2500, at: 2, reason: 'failover', leader: 'c', parent: 1 },
];

describe('rules/timeline', () => {
  it('newestTimeline is the highest timeline recorded, 0 for none', () => {
    assert.equal(newestTimeline([]), 0);
    assert.equal(newestTimeline(history), 3);
  });

  it('timelineAncestry follows parents back to the bootstrap timeline', () => {
    assert.deepEqual([...timelineAncestry(history, 3)!], [[3, Infinity], [1, 2500]]);
    assert.equal(timelineAncestry([{ timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'x' }, { timeline: 2, lsn: 5, at: 1, reason: 'failover', leader: 'a' }], 2), null, 'an entry without parent');
  });

  it('promotionSteps records the next timeline after every recorded one, then promotes', () => {
    const c = cluster().primary('a', { timeline: 3 }).replica('b', { wal: 1000 }).leaderGone().history(history);
    assert.deepEqual(promotionSteps(c.input('b', { pg: { timeline: 1 } })), [
      { type: 'recordHistory', reason: 'failover to b', timeline: 4, lsn: 1000, parent: 1 },
      { type: 'promote' },
      { type: 'checkpoint' },
    ]);
    const sync = cluster().config({ synchronous_mode: true }).primary('a').replica('b').leaderGone().failover({ to: 'b' });
    assert.deepEqual(promotionSteps(sync.input('b')).map((a) => a.type), ['writeSync', 'recordHistory', 'promote', 'clearFailover', 'checkpoint']);
  });

  it('hasDiverged: a replica on a branch the leader does not descend from, not streaming for long enough', () => {
    const c = cluster().primary('c', { timeline: 3 }).replica('b', { timeline: 2, wal: 2000 }).history(history);
    const pg = { timeline: 2, walPosition: 2000, streaming: false, following: 'c' };
    assert.equal(hasDiverged(c.input('b', { pg, memory: { notStreamingSince: NOW.mono - 60_000 } }), 3), true);
    assert.equal(hasDiverged(c.input('b', { pg, memory: { notStreamingSince: NOW.mono - 1000 } }), 3), false, 'the primary may just have died');
    assert.equal(hasDiverged(c.input('b', { pg: { ...pg, timeline: 1, walPosition: 2400 }, memory: { notStreamingSince: NOW.mono - 60_000 } }), 3), false, 'on the ancestor before the fork');
  });
});
