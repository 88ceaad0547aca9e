import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planFailover, planReinitialize, planRestart, type FailoverPlan } from '../../src/api/intents.js';
import { DEFAULT_TAGS } from '../../src/cluster/types.js';
import { NOW, member, viewOf } from './api-fixtures.js';

function refused(plan: FailoverPlan | ReturnType<typeof planRestart>, status: number, message: RegExp): void {
  assert.equal(plan.ok, false, `expected a refusal, got ${JSON.stringify(plan)}`);
  assert.equal(plan.status, status);
  assert.match(plan.message, message);
}

const cluster = () => viewOf([member('a', 'primary'), member('b', 'replica'), member('c', 'replica')]);

describe('planFailover: switchover', () => {
  it('accepts leader + candidate and builds the intent', () => {
    const view = cluster();
    const before = structuredClone(view);
    const plan = planFailover('switchover', { leader: 'a', candidate: 'b' }, view, NOW);
    assert.ok(plan.ok);
    assert.equal(plan.status, 200);
    assert.deepEqual(plan.intent, { kind: 'switchover', from: 'a', to: 'b', at: null, requestedAt: NOW });
    assert.match(plan.message, /Switchover from "a" to "b" requested/);
    assert.deepEqual(view, before, 'the view is not modified');
  });

  it('accepts from/to as synonyms and defaults the leader to the current one', () => {
    const plan = planFailover('switchover', { from: 'a', to: 'c' }, cluster(), NOW);
    assert.ok(plan.ok);
    assert.deepEqual([plan.intent.from, plan.intent.to], ['a', 'c']);
    const implicit = planFailover('switchover', { candidate: 'c' }, cluster(), NOW);
    assert.ok(implicit.ok);
    assert.equal(implicit.intent.from, 'a');
  });

  it('without a candidate lets the cluster choose', () => {
    const plan = planFailover('switchover', { leader: 'a' }, cluster(), NOW);
    assert.ok(plan.ok);
    assert.equal(plan.intent.to, null);
    assert.match(plan.message, /the best replica/);
  });

  it('refuses a leader that is not the current one', () => {
    refused(planFailover('switchover', { leader: 'b', candidate: 'c' }, cluster(), NOW), 412, /current leader is "a", not "b"/);
  });

  it('refuses an unknown candidate and suggests the closest name', () => {
    const view = viewOf([member('a', 'primary'), member('pg-east-2', 'replica')]);
    refused(planFailover('switchover', { leader: 'a', candidate: 'pg-east-3' }, view, NOW), 412, /not a member.*did you mean "pg-east-2"/);
  });

  it('refuses the leader itself as candidate', () => {
    refused(planFailover('switchover', { leader: 'a', candidate: 'a' }, cluster(), NOW), 412, /already the leader/);
    refused(planFailover('switchover', { candidate: 'a' }, cluster(), NOW), 412, /already the leader/);
  });

  it('refuses a candidate with nofailover or priority 0', () => {
    const view = viewOf([
      member('a', 'primary'),
      member('b', 'replica', { tags: { ...DEFAULT_TAGS, nofailover: true } }),
      member('c', 'replica', { tags: { ...DEFAULT_TAGS, failover_priority: 0 } }),
    ]);
    refused(planFailover('switchover', { leader: 'a', candidate: 'b' }, view, NOW), 412, /nofailover/);
    refused(planFailover('switchover', { leader: 'a', candidate: 'c' }, view, NOW), 412, /nofailover/);
    refused(planFailover('switchover', { leader: 'a' }, view, NOW), 412, /no member other than the leader/);
  });

  it('refuses a candidate that is not a running replica', () => {
    const view = viewOf([member('a', 'primary'), member('b', 'replica', { state: 'crashed' })]);
    refused(planFailover('switchover', { leader: 'a', candidate: 'b' }, view, NOW), 412, /not a running replica.*crashed/);
  });

  it('in synchronous mode accepts only a synchronous standby', () => {
    const view = cluster();
    view.config.synchronous_mode = true;
    view.sync = { leader: 'a', members: ['c'] };
    refused(planFailover('switchover', { leader: 'a', candidate: 'b' }, view, NOW), 412, /not a synchronous standby.*one of c/);
    assert.ok(planFailover('switchover', { leader: 'a', candidate: 'c' }, view, NOW).ok);
    view.sync = { leader: 'a', members: [] };
    refused(planFailover('switchover', { leader: 'a' }, view, NOW), 412, /synchronous standby/);
  });

  it('refuses when there is no leader', () => {
    const view = viewOf([member('b', 'replica'), member('c', 'replica')]);
    refused(planFailover('switchover', { candidate: 'b' }, view, NOW), 412, /no leader.*POST \/failover/);
  });

  it('refuses while the view is unknown', () => {
    refused(planFailover('switchover', { leader: 'a', candidate: 'b' }, null, NOW), 503, /not read the cluster/);
  });

  it('refuses malformed bodies', () => {
    refused(planFailover('switchover', 'a->b', cluster(), NOW), 400, /JSON object/);
    refused(planFailover('switchover', [1], cluster(), NOW), 400, /JSON object/);
    refused(planFailover('switchover', { leader: 'a', candidate: 7 }, cluster(), NOW), 400, /"candidate" must be a member name/);
  });

  describe('scheduled_at', () => {
    it('a future time gives 202 and the time in the intent', () => {
      const at = new Date(NOW + 3_600_000).toISOString();
      const plan = planFailover('switchover', { leader: 'a', candidate: 'b', scheduled_at: at }, cluster(), NOW);
      assert.ok(plan.ok);
      assert.equal(plan.status, 202);
      assert.equal(plan.intent.at, NOW + 3_600_000);
      assert.match(plan.message, /scheduled at/);
    });

    it('accepts an offset time zone', () => {
      const plan = planFailover('switchover', { leader: 'a', scheduled_at: '2026-01-01T14:00:00+01:00' }, cluster(), NOW);
      assert.ok(plan.ok);
      assert.equal(plan.intent.at, Date.UTC(2026, 0, 1, 13, 0, 0));
    });

    it('a past time gives 422', () => {
      refused(planFailover('switchover', { leader: 'a', scheduled_at: new Date(NOW - 1000).toISOString() }, cluster(), NOW), 422, /in the past/);
    });

    it('a time without zone or not a time gives 400', () => {
      refused(planFailover('switchover', { leader: 'a', scheduled_at: '2026-01-01T14:00:00' }, cluster(), NOW), 400, /time zone/);
      refused(planFailover('switchover', { leader: 'a', scheduled_at: 'tomorrow' }, cluster(), NOW), 400, /ISO 8601/);
    });

    it('cannot be combined with a paused cluster', () => {
      const view = cluster();
      view.config.pause = true;
      const at = new Date(NOW + 60_000).toISOString();
      refused(planFailover('switchover', { leader: 'a', candidate: 'b', scheduled_at: at }, view, NOW), 400, /paused/);
    });
  });

  it('a paused cluster needs a named candidate', () => {
    const view = cluster();
    view.config.pause = true;
    refused(planFailover('switchover', { leader: 'a' }, view, NOW), 400, /paused.*candidate/);
    assert.ok(planFailover('switchover', { leader: 'a', candidate: 'b' }, view, NOW).ok);
  });
});

describe('planFailover: failover', () => {
  it('needs a candidate', () => {
    refused(planFailover('failover', {}, cluster(), NOW), 400, /needs a candidate/);
  });

  it('works without a leader', () => {
    const view = viewOf([member('b', 'replica'), member('c', 'replica')]);
    const plan = planFailover('failover', { candidate: 'b' }, view, NOW);
    assert.ok(plan.ok);
    assert.deepEqual(plan.intent, { kind: 'failover', from: null, to: 'b', at: null, requestedAt: NOW });
  });

  it('with a leader named is a switchover (as in Patroni)', () => {
    const plan = planFailover('failover', { leader: 'a', candidate: 'b' }, cluster(), NOW);
    assert.ok(plan.ok);
    assert.equal(plan.intent.kind, 'switchover');
  });

  it('cannot be scheduled', () => {
    refused(planFailover('failover', { candidate: 'b', scheduled_at: new Date(NOW + 60_000).toISOString() }, cluster(), NOW), 400, /cannot be scheduled/);
  });

  it('refuses the current leader as candidate', () => {
    refused(planFailover('failover', { candidate: 'a' }, cluster(), NOW), 412, /already the leader/);
  });
});

describe('planRestart', () => {
  const replica = member('b', 'replica');

  it('accepts an empty body or {}', () => {
    assert.equal(planRestart(undefined, replica).status, 202);
    assert.equal(planRestart({}, replica).status, 202);
  });

  it('restart_pending restarts only when a restart is pending', () => {
    refused(planRestart({ restart_pending: true }, replica), 503, /no restart is pending/);
    assert.ok(planRestart({ restart_pending: true }, { ...replica, pendingRestart: true }).ok);
  });

  it('role must match this member', () => {
    refused(planRestart({ role: 'primary' }, replica), 503, /replica, not primary/);
    assert.ok(planRestart({ role: 'replica' }, replica).ok);
    assert.ok(planRestart({ role: 'master' }, member('a', 'primary')).ok);
    refused(planRestart({ role: 'leader' }, replica), 400, /primary" or "replica/);
  });

  it('refuses scheduling options rather than restarting now', () => {
    refused(planRestart({ schedule: '2030-01-01T00:00:00Z' }, replica), 400, /"schedule" is not supported/);
    refused(planRestart({ colour: 'blue' }, replica), 400, /unknown restart option "colour"/);
  });

  it('refuses before the first status', () => {
    refused(planRestart({}, null), 503, /first cycle/);
  });
});

describe('planReinitialize', () => {
  it('refuses on the leader', () => {
    refused(planReinitialize('a', cluster()), 503, /is the leader/);
  });
  it('accepts on a replica and names the source', () => {
    const plan = planReinitialize('b', cluster());
    assert.ok(plan.ok);
    assert.match(plan.message, /from "a"/);
  });
  it('refuses without a leader to clone from', () => {
    refused(planReinitialize('b', viewOf([member('b', 'replica')])), 503, /no leader/);
  });
});
