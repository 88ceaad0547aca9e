import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drainBeforeHandover, drainIdFor, proxiesReachingMe } from '../../src/ha/rules/drain.js';
import { cluster, NOW } from './cluster-builder.js';

const base = () => cluster().primary('a').replica('b').failover({ from: 'a', to: 'b' });

describe('rules/drain', () => {
  it('names the drain after its request', () => {
    assert.equal(drainIdFor({ kind: 'switchover', from: 'a', to: 'b', at: null, requestedAt: 7 }), 'switchover:7:b');
    assert.equal(drainIdFor({ kind: 'failover', from: null, to: null, at: null, requestedAt: 7 }), 'failover:7:*');
  });

  it('without proxies the handover goes on at once', () => {
    const input = base().input('a');
    assert.deepEqual(drainBeforeHandover(input, input.view.failover!, 'b'), { proceed: { drain: 'none', prefix: '' } });
  });

  it('asks for a drain, then waits with a note that keeps it, then goes on once all acknowledged', () => {
    const c = base().proxies([{ id: 'p1', drained: null }, { id: 'p2', drained: null }]);
    const intent = c.view().failover!;
    const asked = drainBeforeHandover(c.input('a'), intent, 'b');
    assert.ok('decision' in asked && asked.decision.rule === 'drain.request', JSON.stringify(asked));
    const id = drainIdFor(intent);
    c.drain({ id, from: 'a', to: 'b', requestedAt: NOW.wall - 1000, timeoutMs: 5000 });
    c.proxies([{ id: 'p1', drained: id }, { id: 'p2', drained: null }]);
    const waiting = drainBeforeHandover(c.input('a'), intent, 'b');
    assert.ok('note' in waiting, JSON.stringify(waiting));
    assert.deepEqual(waiting.note, { rule: 'drain.wait', text: 'switchover to b waiting for proxy p2 to drain (4 s left)', keepsDrain: true });
    c.proxies([{ id: 'p1', drained: id }, { id: 'p2', drained: id }]);
    assert.deepEqual(drainBeforeHandover(c.input('a'), intent, 'b'), { proceed: { drain: 'drained', prefix: '2 proxies drained; ' } });
  });

  it('goes on after the timeout, naming the proxies that did not answer', () => {
    const c = base().proxies([{ id: 'p1', drained: null }]);
    const intent = c.view().failover!;
    c.drain({ id: drainIdFor(intent), from: 'a', to: 'b', requestedAt: NOW.wall - 6000, timeoutMs: 5000 });
    const out = drainBeforeHandover(c.input('a'), intent, 'b');
    assert.ok('proceed' in out && out.proceed.drain === 'timed-out' && out.proceed.prefix.includes('p1'), JSON.stringify(out));
  });

  it('leaves out proxies that cannot reach this server', () => {
    const c = base().proxies([{ id: 'p1', drained: null, unreachable: { a: NOW.wall } }, { id: 'p2', drained: null }]);
    assert.deepEqual(proxiesReachingMe(c.input('a')).map((p) => p.id), ['p2']);
  });
});
