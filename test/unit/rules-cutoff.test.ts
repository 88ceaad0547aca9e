import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cutOffRule } from '../../src/ha/rules/cutoff.js';
import { cluster, NOW } from './cluster-builder.js';

const base = () => cluster().primary('a').replica('b').replica('c');

describe('rules/cutoff', () => {
  it('not this rule while any proxy reaches the primary, or without proxies', () => {
    assert.equal(cutOffRule(base().input('a')), null);
    assert.equal(cutOffRule(base().proxies([{ id: 'p1', drained: null }, { id: 'p2', drained: null, unreachable: { a: NOW.wall - 9000 } }]).input('a')), null);
  });

  it('counts towards proxy_unreachable_timeout with a note', () => {
    const out = cutOffRule(base().proxies([{ id: 'p1', drained: null, unreachable: { a: NOW.wall - 2000 } }]).input('a'));
    assert.ok(out && 'note' in out, JSON.stringify(out));
    assert.equal(out.note.rule, 'cutoff.wait');
    assert.equal(out.note.keepsDrain, false);
  });

  it('asks for a switchover to a replica every proxy reaches', () => {
    const out = cutOffRule(base().proxies([{ id: 'p1', drained: null, unreachable: { a: NOW.wall - 9000, b: NOW.wall - 9000 } }]).input('a'));
    assert.ok(out && 'decision' in out, JSON.stringify(out));
    assert.equal(out.decision.rule, 'cutoff.request-switchover');
    assert.deepEqual(out.decision.actions[1], { type: 'requestSwitchover', intent: { kind: 'switchover', from: 'a', to: 'c', at: null, requestedAt: NOW.wall } });
  });

  it('notes when no replica the proxies reach could take over', () => {
    const out = cutOffRule(base().proxies([{ id: 'p1', drained: null, unreachable: { a: 1, b: 1, c: 1 } }]).input('a'));
    assert.ok(out && 'note' in out && out.note.rule === 'cutoff.no-candidate', JSON.stringify(out));
  });
});
