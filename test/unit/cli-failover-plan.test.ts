/**
 * The checks `pgwarden switchover` and `failover` make before writing an intent, and `--scheduled` parsing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseSchedule, planFailover, type FailoverRequest } from '../../src/cli/failover-plan.js';
import { isPgwardenError } from '../../src/errors.js';
import { NOW, cluster } from './cluster-builder.js';

const now = NOW.wall;

function request(r: Partial<FailoverRequest>): FailoverRequest {
  return { kind: 'switchover', primary: null, candidate: null, at: null, ...r };
}

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    assert.ok(isPgwardenError(e), `expected a PgwardenError, got ${String(e)}`);
    return { code: e.code, message: e.message };
  }
  assert.fail('expected a refusal');
}

describe('planFailover: switchover', () => {
  const healthy = () => cluster().primary('pg1').replica('pg2').replica('pg3');

  it('writes an intent from the leader to the candidate', () => {
    const view = healthy().view();
    const before = structuredClone(view);
    const intent = planFailover(view, request({ candidate: 'pg2' }), now);
    assert.deepEqual(intent, { kind: 'switchover', from: 'pg1', to: 'pg2', at: null, requestedAt: now });
    assert.deepEqual(view, before, 'the view is not modified');
  });

  it('lets the cluster choose when no candidate is named, and keeps the schedule', () => {
    const at = now + 60_000;
    assert.deepEqual(planFailover(healthy().view(), request({ primary: 'pg1', at }), now), {
      kind: 'switchover',
      from: 'pg1',
      to: null,
      at,
      requestedAt: now,
    });
  });

  it('refuses a --primary that is not the leader, naming the leader', () => {
    const r = refusal(() => planFailover(healthy().view(), request({ primary: 'pg2', candidate: 'pg3' }), now));
    assert.equal(r.code, 'SWITCHOVER_REJECTED');
    assert.match(r.message, /pg2 is not the current primary \(the leader is pg1\): pass --primary pg1/);
  });

  it('refuses an unknown candidate with a suggestion', () => {
    const r = refusal(() => planFailover(healthy().view(), request({ candidate: 'pg4' }), now));
    assert.equal(r.code, 'MEMBER_NOT_FOUND');
    assert.match(r.message, /"pg4" is not a member.*did you mean "pg1"\?.*members: pg1, pg2, pg3/);
  });

  it('refuses the leader itself, a stopped member and a nofailover member', () => {
    assert.match(refusal(() => planFailover(healthy().view(), request({ candidate: 'pg1' }), now)).message, /already holds the leader key/);
    const stopped = healthy().setMember('pg2', { state: 'stopped' }).view();
    assert.match(refusal(() => planFailover(stopped, request({ candidate: 'pg2' }), now)).message, /pg2 is not a running replica \(role replica, state stopped\)/);
    const tagged = cluster().primary('pg1').replica('pg2', { tags: { nofailover: true } }).view();
    assert.match(refusal(() => planFailover(tagged, request({ candidate: 'pg2' }), now)).message, /pg2 is tagged nofailover/);
  });

  it('in synchronous mode accepts only a member of sync', () => {
    const view = healthy().config({ synchronous_mode: true }).sync('pg1', ['pg3']).view();
    const r = refusal(() => planFailover(view, request({ candidate: 'pg2' }), now));
    assert.equal(r.code, 'SWITCHOVER_REJECTED');
    assert.match(r.message, /not a synchronous standby.*choose one of pg3/);
    assert.equal(planFailover(view, request({ candidate: 'pg3' }), now).to, 'pg3');
  });

  it('refuses a candidate lagging more than maximum_lag_on_failover', () => {
    const view = healthy().setMember('pg2', { lagBytes: 5 * 1024 * 1024 }).view();
    assert.match(refusal(() => planFailover(view, request({ candidate: 'pg2' }), now)).message, /lags 5242880 bytes/);
  });

  it('refuses while paused, saying to resume', () => {
    const view = healthy().config({ pause: true }).view();
    const r = refusal(() => planFailover(view, request({ candidate: 'pg2' }), now));
    assert.equal(r.code, 'SWITCHOVER_REJECTED');
    assert.match(r.message, /paused.*pgwarden resume/);
  });

  it('refuses without a leader, pointing to failover', () => {
    const view = healthy().leaderGone().view();
    assert.match(refusal(() => planFailover(view, request({ candidate: 'pg2' }), now)).message, /pgwarden failover --candidate/);
  });

  it('refuses when no replica is eligible, saying why for each', () => {
    const view = healthy().setMember('pg2', { state: 'stopped' }).setMember('pg3', { state: 'starting' }).view();
    const r = refusal(() => planFailover(view, request({}), now));
    assert.match(r.message, /no replica can take over now: pg2 is not a running replica.*; pg3 is not a running replica/);
  });
});

describe('planFailover: failover', () => {
  it('promotes a candidate when no member holds the leader key', () => {
    const view = cluster().primary('pg1').replica('pg2').leaderGone().view();
    assert.deepEqual(planFailover(view, request({ kind: 'failover', candidate: 'pg2' }), now), {
      kind: 'failover',
      from: null,
      to: 'pg2',
      at: null,
      requestedAt: now,
    });
  });

  it('ignores lag (unlike a switchover)', () => {
    const view = cluster().primary('pg1').replica('pg2').setMember('pg2', { lagBytes: 50 * 1024 * 1024 }).view();
    assert.equal(planFailover(view, request({ kind: 'failover', candidate: 'pg2' }), now).to, 'pg2');
  });

  it('needs a candidate when there is no leader, and cannot be scheduled', () => {
    const leaderless = cluster().primary('pg1').replica('pg2').leaderGone().view();
    assert.match(refusal(() => planFailover(leaderless, request({ kind: 'failover' }), now)).message, /pass --candidate/);
    const view = cluster().primary('pg1').replica('pg2').view();
    assert.match(
      refusal(() => planFailover(view, request({ kind: 'failover', candidate: 'pg2', at: now + 1000 }), now)).message,
      /cannot be scheduled/,
    );
  });
});

describe('parseSchedule', () => {
  it('takes "now" as an immediate request', () => {
    assert.equal(parseSchedule('now', now), null);
    assert.equal(parseSchedule(' NOW ', now), null);
  });

  it('reads an ISO time without a zone as local time', () => {
    assert.equal(parseSchedule('2026-11-21T10:00', now), new Date(2026, 10, 21, 10, 0).getTime());
    assert.equal(parseSchedule('2026-11-21 10:00:30', now), new Date(2026, 10, 21, 10, 0, 30).getTime());
  });

  it('honours an explicit zone', () => {
    assert.equal(parseSchedule('2026-11-21T10:00Z', now), Date.UTC(2026, 10, 21, 10, 0));
    assert.equal(parseSchedule('2026-11-21T10:00+01:00', now), Date.UTC(2026, 10, 21, 9, 0));
    assert.equal(parseSchedule('2026-11-21T10:00+0100', now), Date.UTC(2026, 10, 21, 9, 0));
  });

  it('refuses a time in the past and text that is not a time, saying how to write one', () => {
    const past = refusal(() => parseSchedule('2020-01-01T00:00Z', now));
    assert.equal(past.code, 'CONFIG_INVALID');
    assert.match(past.message, /in the past/);
    for (const text of ['tomorrow', '2026-11-21', '10:00', '2026-13-45T99:00']) {
      assert.match(refusal(() => parseSchedule(text, now)).message, /write it like 2026-11-21T10:00/, text);
    }
  });
});
