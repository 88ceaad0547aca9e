/**
 * IntQueue (a server connection's answers owed): first in, first out across growth and compaction, against a
 * plain array as the model, with seeded random pushes and shifts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IntQueue } from '../../src/proxy/pool/int-queue.js';
import { Rng } from '../sim/prng.js';

describe('IntQueue', () => {
  it('gives back what was pushed, in order, and -1 when empty', () => {
    const q = new IntQueue(2);
    assert.equal(q.peek(), -1);
    assert.equal(q.shift(), -1);
    for (let i = 0; i < 100; i++) q.push(i % 7);
    assert.equal(q.length, 100);
    for (let i = 0; i < 100; i++) {
      assert.equal(q.peek(), i % 7);
      assert.equal(q.shift(), i % 7);
    }
    assert.equal(q.length, 0);
    assert.equal(q.shift(), -1);
  });

  it('keeps order through compaction and growth while pushes and shifts interleave (400 seeds)', () => {
    for (let seed = 1; seed <= 400; seed++) {
      const rng = new Rng(seed);
      const q = new IntQueue(2 + (seed % 5));
      const model: number[] = [];
      let counter = 0;
      for (let step = 0; step < 2000; step++) {
        // Bursts of pushes (a pipeline) and of shifts (its answers), with the queue often emptied in between.
        const pushing = rng.chance(step % 200 < 100 ? 0.7 : 0.35);
        if (pushing) {
          const v = counter++ % 1000;
          q.push(v);
          model.push(v);
        } else {
          assert.equal(q.shift(), model.length > 0 ? model.shift()! : -1, `seed ${seed} step ${step}`);
        }
        assert.equal(q.length, model.length, `seed ${seed} step ${step}`);
        assert.equal(q.peek(), model.length > 0 ? model[0] : -1, `seed ${seed} step ${step}`);
      }
    }
  });
});
