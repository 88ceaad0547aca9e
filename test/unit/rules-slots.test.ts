import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { slotSteps } from '../../src/ha/rules/slots.js';
import { cluster, NOW } from './cluster-builder.js';

describe('rules/slots', () => {
  it('nothing to do when every member has its slot', () => {
    assert.deepEqual(slotSteps(cluster().primary('a').replica('b').input('a')), []);
  });

  it('creates missing slots and drops those of members gone longer than member_slots_ttl', () => {
    const input = cluster().primary('a').replica('b').input('a', {
      pg: { slots: ['gone', 'recent'] },
      memory: { memberLastSeen: { gone: NOW.wall - 3_600_000, recent: NOW.wall - 60_000 } },
    });
    assert.deepEqual(slotSteps(input), [{ type: 'manageSlots', create: ['b'], drop: ['gone'] }]);
  });

  it('never a slot for itself', () => {
    assert.deepEqual(slotSteps(cluster().primary('a').input('a', { pg: { slots: [] }, memory: { memberLastSeen: { a: NOW.wall } } })), []);
  });
});
