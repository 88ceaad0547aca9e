import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { handoverRule } from '../../src/ha/rules/handover.js';
import { cluster, NOW } from './cluster-builder.js';

const c3 = () => cluster().primary('a').replica('b').replica('c');

describe('rules/handover', () => {
  it('no request: not this rule', () => {
    assert.equal(handoverRule(c3().input('a')), null);
  });

  it('hands over to the named candidate', () => {
    const out = handoverRule(c3().failover({ from: 'a', to: 'b' }).input('a'));
    assert.ok(out && 'decision' in out, JSON.stringify(out));
    assert.equal(out.decision.rule, 'handover.release');
    assert.deepEqual(out.decision.actions, [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }]);
  });

  it('drops invalid requests, each with its own id', () => {
    const rule = (o: Parameters<ReturnType<typeof c3>['failover']>[0]) => {
      const out = handoverRule(c3().failover(o).input('a'));
      return out && 'decision' in out ? out.decision.rule : out;
    };
    assert.equal(rule({ from: 'x', to: 'b' }), 'handover.drop-wrong-leader');
    assert.equal(rule({ to: 'a' }), 'handover.drop-to-self');
    assert.equal(rule({ to: 'b', requestedAt: NOW.wall - 3_600_000 }), 'handover.drop-stale');
    assert.equal(rule({ to: 'zz' }), 'handover.drop-not-member');
  });

  it('notes a scheduled request and a candidate that is not ready, without deciding', () => {
    const scheduled = handoverRule(c3().failover({ to: 'b', at: NOW.wall + 60_000 }).input('a'));
    assert.ok(scheduled && 'note' in scheduled && scheduled.note.rule === 'handover.scheduled', JSON.stringify(scheduled));
    const waiting = handoverRule(c3().failover({ to: 'b' }).input('a', { pg: { replication: [] } }));
    assert.ok(waiting && 'note' in waiting, JSON.stringify(waiting));
    assert.deepEqual(waiting.note, { rule: 'handover.wait-candidate', text: 'switchover waiting: b is not streaming from this primary', keepsDrain: false });
  });
});
