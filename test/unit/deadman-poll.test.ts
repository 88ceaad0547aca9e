import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deadmanPoll, type DeadmanState } from '../../src/ha/deadman.js';
import { DEADLINE_LATE_MS } from '../../src/postgres/emergency-stop.js';

describe('deadmanPoll: one poll of the lease deadman process', () => {
  it('waits while the armed deadline is ahead, and counts no idle time meanwhile', () => {
    const state: DeadmanState = { idleSinceMs: 0 };
    assert.deepEqual(deadmanPoll(state, 10_000, 10_001), { kind: 'wait' });
    assert.equal(state.idleSinceMs, 10_000);
  });

  it('fires once the deadline has passed; late only when it passed more than DEADLINE_LATE_MS ago', () => {
    const state: DeadmanState = { idleSinceMs: 0 };
    assert.deepEqual(deadmanPoll(state, 5_000, 5_000), { kind: 'fire', late: false });
    assert.deepEqual(deadmanPoll(state, 5_000 + DEADLINE_LATE_MS, 5_000), { kind: 'fire', late: false });
    assert.deepEqual(deadmanPoll(state, 5_001 + DEADLINE_LATE_MS, 5_000), { kind: 'fire', late: true });
  });

  it('exits only after more than 3 s without a deadline', () => {
    const state: DeadmanState = { idleSinceMs: 1_000 };
    assert.deepEqual(deadmanPoll(state, 4_000, null), { kind: 'wait' });
    assert.deepEqual(deadmanPoll(state, 4_001, null), { kind: 'exit' });
    // An arm in between starts the idle time again.
    const armed: DeadmanState = { idleSinceMs: 1_000 };
    deadmanPoll(armed, 3_900, 9_000);
    assert.deepEqual(deadmanPoll(armed, 4_001, null), { kind: 'wait' });
  });
});
