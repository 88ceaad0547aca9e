import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  HEALTH_ROUTES,
  clusterBody,
  evaluateHealth,
  historyBody,
  memberStatusBody,
  parseSize,
  replicaLag,
  type HealthCheckName,
  type HealthInputs,
  type HealthQuery,
} from '../../src/api/health.js';
import { MB, NOW, inputsFor, member, viewOf } from './api-fixtures.js';

const code = (check: HealthCheckName, inputs: HealthInputs, query: HealthQuery = {}) =>
  evaluateHealth(check, inputs, query).code;

/** Every check's code at once, for compact expectations. */
function codes(inputs: HealthInputs, query: HealthQuery = {}): Record<HealthCheckName, number> {
  const names: HealthCheckName[] = [
    'primary', 'leader', 'standby-leader', 'replica', 'read-only', 'read-only-sync',
    'synchronous', 'asynchronous', 'health', 'liveness', 'readiness',
  ];
  return Object.fromEntries(names.map((n) => [n, code(n, inputs, query)])) as Record<HealthCheckName, number>;
}

describe('parseSize (Patroni lag units)', () => {
  const cases: Array<[string, number | null]> = [
    ['0', 0],
    ['1048576', 1048576],
    ['16kB', 16 * 1024],
    ['1024kB', 1048576],
    ['10MB', 10 * MB],
    ['1GB', 1024 * MB],
    ['1TB', 1024 * 1024 * MB],
    ['2B', 2],
    ['10mb', 10 * MB],
    [' 10 MB ', 10 * MB],
    ['1.5MB', 1.5 * MB],
    ['10XB', null],
    ['MB', null],
    ['', null],
    ['-1', null],
    ['1e6', null],
    ['ten', null],
  ];
  for (const [text, expected] of cases) {
    it(`${JSON.stringify(text)} -> ${expected}`, () => assert.equal(parseSize(text), expected));
  }
});

describe('health routes', () => {
  it('maps Patroni paths and aliases to checks', () => {
    assert.equal(HEALTH_ROUTES['/'], 'primary');
    assert.equal(HEALTH_ROUTES['/master'], 'primary');
    assert.equal(HEALTH_ROUTES['/read-write'], 'primary');
    assert.equal(HEALTH_ROUTES['/sync'], 'synchronous');
    assert.equal(HEALTH_ROUTES['/async'], 'asynchronous');
    assert.equal(HEALTH_ROUTES['/leader'], 'leader');
  });
});

describe('a healthy primary and replica', () => {
  const a = member('a', 'primary');
  const b = member('b', 'replica');
  const view = viewOf([a, b]);

  it('the primary answers only the primary-side checks', () => {
    assert.deepEqual(codes(inputsFor('a', view)), {
      primary: 200, leader: 200, 'standby-leader': 503, replica: 503, 'read-only': 200, 'read-only-sync': 200,
      synchronous: 503, asynchronous: 503, health: 200, liveness: 200, readiness: 200,
    });
  });

  it('the replica answers only the replica-side checks', () => {
    assert.deepEqual(codes(inputsFor('b', view)), {
      primary: 503, leader: 503, 'standby-leader': 503, replica: 200, 'read-only': 200, 'read-only-sync': 503,
      synchronous: 503, asynchronous: 200, health: 200, liveness: 200, readiness: 200,
    });
  });

  it('gives a reason with each answer', () => {
    assert.match(evaluateHealth('primary', inputsFor('b', view)).reason, /leader key/);
    assert.match(evaluateHealth('replica', inputsFor('a', view)).reason, /primary/);
  });
});

describe('leadership is judged from the view and a fresh status', () => {
  it('a member that publishes role primary while the view names another leader is not primary', () => {
    const a = member('a', 'primary');
    const b = member('b', 'primary');
    const view = viewOf([a, b], { leader: { name: 'b' } });
    assert.equal(code('primary', inputsFor('a', view)), 503);
    assert.equal(code('leader', inputsFor('a', view)), 503);
    assert.equal(code('read-only', inputsFor('a', view)), 503);
    assert.equal(code('primary', inputsFor('b', view)), 200);
  });

  it('with no leader key nobody is primary', () => {
    const view = viewOf([member('a', 'primary')], { leader: null });
    assert.equal(code('primary', inputsFor('a', view)), 503);
    assert.equal(code('leader', inputsFor('a', view)), 503);
  });

  it('a status older than ttl fails /primary and /leader closed (the lease may have expired)', () => {
    const view = viewOf([member('a', 'primary', { updatedAt: NOW - 5001 })]);
    assert.equal(code('primary', inputsFor('a', view)), 503);
    assert.equal(code('leader', inputsFor('a', view)), 503);
    const fresh = viewOf([member('a', 'primary', { updatedAt: NOW - 5000 })]);
    assert.equal(code('primary', inputsFor('a', fresh)), 200);
  });

  it('the ttl used is the dynamic one', () => {
    const view = viewOf([member('a', 'primary', { updatedAt: NOW - 8000 })]);
    view.config.ttl = 10;
    assert.equal(code('primary', inputsFor('a', view)), 200);
  });

  it('holding the key while PostgreSQL is down: /leader yes, /primary and /health no', () => {
    const view = viewOf([member('a', 'primary')]);
    const inputs = inputsFor('a', view, { pgRunning: false });
    assert.equal(code('leader', inputs), 200);
    assert.equal(code('primary', inputs), 503);
    assert.equal(code('health', inputs), 503);
  });

  it('holding the key while still running as replica (promotion under way): /leader yes, /primary no', () => {
    const a = member('a', 'replica', { state: 'promoting' });
    const view = viewOf([a], { leader: { name: 'a' } });
    assert.equal(code('leader', inputsFor('a', view)), 200);
    assert.equal(code('primary', inputsFor('a', view)), 503);
  });

  it('without any view nothing is primary, sync or async', () => {
    const status = member('b', 'replica');
    const inputs = inputsFor('b', null, { status });
    assert.equal(code('primary', inputs), 503);
    assert.equal(code('synchronous', inputs), 503);
    assert.equal(code('asynchronous', inputs), 503);
    assert.equal(code('replica', inputs), 200);
  });

  it('before the first status nothing but liveness passes', () => {
    const view = viewOf([member('a', 'primary')]);
    const inputs = inputsFor('c', view, { startedAt: NOW - 1000 });
    assert.equal(inputs.status, null);
    const c = codes(inputs);
    assert.equal(c.liveness, 200);
    for (const check of ['primary', 'leader', 'replica', 'read-only', 'readiness'] as const) assert.equal(c[check], 503, check);
  });
});

describe('/replica', () => {
  const a = member('a', 'primary');

  it('requires a running replica', () => {
    for (const state of ['starting', 'stopped', 'crashed', 'cloning', 'rewinding'] as const) {
      const view = viewOf([a, member('b', 'replica', { state })]);
      assert.equal(code('replica', inputsFor('b', view)), 503, state);
    }
    const running = viewOf([a, member('b', 'replica', { state: 'running' })]);
    assert.equal(code('replica', inputsFor('b', running)), 200);
    assert.equal(code('replica', inputsFor('b', running, { pgRunning: false })), 503);
  });

  it('an uninitialized member is no replica', () => {
    const view = viewOf([a, member('b', 'uninitialized', { state: 'stopped' })]);
    assert.equal(code('replica', inputsFor('b', view)), 503);
  });

  it('the noloadbalance tag takes it out of /replica and /read-only but not /health', () => {
    const view = viewOf([a, member('b', 'replica', { tags: { nofailover: false, noloadbalance: true, nosync: false, failover_priority: 1 } })]);
    const inputs = inputsFor('b', view);
    assert.equal(code('replica', inputs), 503);
    assert.equal(code('read-only', inputs), 503);
    assert.equal(code('health', inputs), 200);
  });

  describe('?lag=', () => {
    const view = viewOf([a, member('b', 'replica', { lagBytes: 10 * MB })]);
    const cases: Array<[string, number]> = [
      ['16MB', 200],
      ['1MB', 503],
      [String(10 * MB), 200],
      [String(10 * MB - 1), 503],
      ['10240kB', 200],
      ['1GB', 200],
      ['16kB', 503],
      ['abc', 503],
      ['', 503],
    ];
    for (const [lag, expected] of cases) {
      it(`lag=${lag} -> ${expected}`, () => assert.equal(code('replica', inputsFor('b', view), { lag }), expected));
    }
    it('a lag limit that is not a size says so', () => {
      assert.match(evaluateHealth('replica', inputsFor('b', view), { lag: 'abc' }).reason, /not a size/);
    });
    it('applies to /read-only and /asynchronous too', () => {
      assert.equal(code('read-only', inputsFor('b', view), { lag: '1MB' }), 503);
      assert.equal(code('asynchronous', inputsFor('b', view), { lag: '1MB' }), 503);
      assert.equal(code('asynchronous', inputsFor('b', view), { lag: '11MB' }), 200);
    });
    it('never fails the primary on /read-only', () => {
      assert.equal(code('read-only', inputsFor('a', view), { lag: '1kB' }), 200);
    });
  });

  it('computes lag from the leader optime when the member published none', () => {
    const b = member('b', 'replica', { lagBytes: null, replayLsn: 40 * MB });
    const view = viewOf([a, b], { optime: 50 * MB });
    assert.equal(replicaLag(b, view), 10 * MB);
    assert.equal(code('replica', inputsFor('b', view), { lag: '9MB' }), 503);
    assert.equal(code('replica', inputsFor('b', view), { lag: '10MB' }), 200);
  });

  it('an unknown lag passes without a limit and fails with one', () => {
    const b = member('b', 'replica', { lagBytes: null, replayLsn: null, walPosition: null });
    const view = viewOf([a, b], { optime: null });
    assert.equal(code('replica', inputsFor('b', view)), 200);
    assert.equal(code('replica', inputsFor('b', view), { lag: '1GB' }), 503);
  });

  it('?replication_state= must match', () => {
    const view = viewOf([a, member('b', 'replica', { state: 'running' })]);
    assert.equal(code('replica', inputsFor('b', view), { replication_state: 'streaming' }), 503);
    const streaming = viewOf([a, member('b', 'replica')]);
    assert.equal(code('replica', inputsFor('b', streaming), { replication_state: 'streaming' }), 200);
  });
});

describe('tag filters ?tag_<key>=<value>', () => {
  const a = member('a', 'primary', { tags: { nofailover: true, noloadbalance: false, nosync: false, failover_priority: 1 } });
  const b = member('b', 'replica', { tags: { nofailover: false, noloadbalance: false, nosync: true, failover_priority: 3 } });
  const view = viewOf([a, b]);

  const cases: Array<[HealthQuery, number]> = [
    [{ tag_nosync: 'true' }, 200],
    [{ tag_nosync: 'false' }, 503],
    [{ tag_nofailover: 'false', tag_nosync: 'true' }, 200],
    [{ tag_nofailover: 'false', tag_nosync: 'false' }, 503],
    [{ tag_failover_priority: '3' }, 200],
    [{ tag_failover_priority: '1' }, 503],
    [{ tag_datacenter: 'east' }, 503],
    [{ lag: '1MB', tag_nosync: 'true' }, 200],
  ];
  for (const [query, expected] of cases) {
    it(`replica ${JSON.stringify(query)} -> ${expected}`, () => assert.equal(code('replica', inputsFor('b', view), query), expected));
  }

  it('also filter /read-only, /asynchronous and /health', () => {
    assert.equal(code('read-only', inputsFor('b', view), { tag_nosync: 'false' }), 503);
    assert.equal(code('asynchronous', inputsFor('b', view), { tag_nosync: 'false' }), 503);
    assert.equal(code('health', inputsFor('b', view), { tag_nosync: 'false' }), 503);
    assert.equal(code('read-only', inputsFor('a', view), { tag_nofailover: 'false' }), 503);
  });

  it('are ignored by /primary and /leader (as in Patroni)', () => {
    assert.equal(code('primary', inputsFor('a', view), { tag_nofailover: 'false' }), 200);
    assert.equal(code('leader', inputsFor('a', view), { tag_unknown: 'x' }), 200);
  });

  it('never turn a 503 into 200', () => {
    assert.equal(code('replica', inputsFor('a', view), { tag_nofailover: 'true' }), 503);
  });
});

describe('/synchronous and /asynchronous', () => {
  const a = member('a', 'primary');
  const b = member('b', 'replica');
  const c = member('c', 'replica');

  it('follow the sync key of the current leader', () => {
    const view = viewOf([a, b, c], { sync: { leader: 'a', members: ['b'] } });
    assert.equal(code('synchronous', inputsFor('b', view)), 200);
    assert.equal(code('asynchronous', inputsFor('b', view)), 503);
    assert.equal(code('read-only-sync', inputsFor('b', view)), 200);
    assert.equal(code('synchronous', inputsFor('c', view)), 503);
    assert.equal(code('asynchronous', inputsFor('c', view)), 200);
    assert.equal(code('read-only-sync', inputsFor('c', view)), 503);
    assert.equal(code('synchronous', inputsFor('a', view)), 503);
  });

  it('a sync key written by a former leader makes nobody synchronous', () => {
    const view = viewOf([a, b], { sync: { leader: 'x', members: ['b'] } });
    assert.equal(code('synchronous', inputsFor('b', view)), 503);
    assert.equal(code('asynchronous', inputsFor('b', view)), 200);
  });

  it('a synchronous standby that stopped is not synchronous-healthy', () => {
    const view = viewOf([a, member('b', 'replica', { state: 'stopped' })], { sync: { leader: 'a', members: ['b'] } });
    assert.equal(code('synchronous', inputsFor('b', view)), 503);
  });
});

describe('/liveness', () => {
  it('primary: fails after one ttl without a published status', () => {
    const view = viewOf([member('a', 'primary', { updatedAt: NOW - 5000 })]);
    assert.equal(code('liveness', inputsFor('a', view)), 200);
    const stale = viewOf([member('a', 'primary', { updatedAt: NOW - 5001 })]);
    assert.equal(code('liveness', inputsFor('a', stale)), 503);
  });

  it('replica: tolerates two ttls', () => {
    const a = member('a', 'primary');
    const view = viewOf([a, member('b', 'replica', { updatedAt: NOW - 9000 })]);
    assert.equal(code('liveness', inputsFor('b', view)), 200);
    const stale = viewOf([a, member('b', 'replica', { updatedAt: NOW - 10_001 })]);
    assert.equal(code('liveness', inputsFor('b', stale)), 503);
  });

  it('passes while paused however old the status', () => {
    const view = viewOf([member('a', 'primary', { updatedAt: NOW - 600_000 })]);
    view.config.pause = true;
    assert.equal(code('liveness', inputsFor('a', view)), 200);
  });

  it('counts from the start until the first status is published', () => {
    assert.equal(code('liveness', inputsFor('a', null, { startedAt: NOW - 9000 })), 200);
    assert.equal(code('liveness', inputsFor('a', null, { startedAt: NOW - 10_001 })), 503);
  });
});

describe('/readiness', () => {
  const a = member('a', 'primary');

  it('a replica must be streaming', () => {
    const view = viewOf([a, member('b', 'replica', { state: 'running' })]);
    assert.equal(code('readiness', inputsFor('b', view)), 503);
    assert.match(evaluateHealth('readiness', inputsFor('b', view)).reason, /not streaming/);
  });

  it('a replica lagging past maximum_lag_on_failover is not ready, unless ?lag allows it', () => {
    const view = viewOf([a, member('b', 'replica', { lagBytes: 2 * MB })]);
    assert.equal(code('readiness', inputsFor('b', view)), 503);
    assert.equal(code('readiness', inputsFor('b', view), { lag: '4MB' }), 200);
    view.config.maximum_lag_on_failover = 4 * MB;
    assert.equal(code('readiness', inputsFor('b', view)), 200);
  });

  it('a replica whose PostgreSQL is down is not ready', () => {
    const view = viewOf([a, member('b', 'replica')]);
    assert.equal(code('readiness', inputsFor('b', view, { pgRunning: false })), 503);
  });

  it('a primary without the leader key is not ready', () => {
    const view = viewOf([a, member('b', 'primary')]);
    assert.equal(code('readiness', inputsFor('b', view)), 503);
  });
});

describe('response bodies', () => {
  const a = member('a', 'primary', { walPosition: 123 });
  const b = member('b', 'replica', { receiveLsn: 120, replayLsn: 110, lagBytes: 13 });
  const c = member('c', 'replica', { lagBytes: null, replayLsn: null, walPosition: null, pendingRestart: true });
  const view = viewOf([c, b, a], { sync: { leader: 'a', members: ['b'] }, optime: null });

  it('a primary reports its WAL location like Patroni', () => {
    const body = memberStatusBody(inputsFor('a', view), 'main')!;
    assert.equal(body.state, 'running');
    assert.equal(body.role, 'primary');
    assert.deepEqual(body.xlog, { location: 123 });
    assert.equal(body.cluster_unlocked, false);
    assert.deepEqual(body.patroni, { version: '0.1.0', scope: 'main', name: 'a' });
    assert.equal(body.replication_state, undefined);
    assert.equal(body.member, a);
  });

  it('a streaming replica reports state running and replication_state streaming', () => {
    const body = memberStatusBody(inputsFor('b', view), 'main')!;
    assert.equal(body.state, 'running');
    assert.equal(body.replication_state, 'streaming');
    assert.deepEqual(body.xlog, { received_location: 120, replayed_location: 110, replayed_timestamp: null, paused: false });
    assert.equal(body.sync_standby, true);
    assert.equal(body.lag, 13);
  });

  it('no body before the first status', () => {
    assert.equal(memberStatusBody(inputsFor('z', view), 'main'), null);
  });

  it('/cluster lists members by name with Patroni roles and lag', () => {
    view.failover = { kind: 'switchover', from: 'a', to: 'b', at: NOW + 60_000, requestedAt: NOW };
    const body = clusterBody(view, 'main');
    assert.equal(body.scope, 'main');
    assert.equal(body.pause, false);
    assert.deepEqual(body.members.map((m) => [m.name, m.role, m.member_role]), [
      ['a', 'leader', 'primary'],
      ['b', 'sync_standby', 'replica'],
      ['c', 'replica', 'replica'],
    ]);
    assert.equal(body.members[0].lag, undefined);
    assert.equal(body.members[1].lag, 13);
    assert.equal(body.members[2].lag, 'unknown');
    assert.equal(body.members[2].pending_restart, true);
    assert.equal(body.members[0].api_url, 'http://127.0.0.1:8008/patroni');
    assert.deepEqual(body.scheduled_switchover, { at: new Date(NOW + 60_000).toISOString(), from: 'a', to: 'b' });
    view.failover = null;
  });

  it('/history rows are [timeline, lsn, reason, time, leader]', () => {
    const v = viewOf([a], {
      history: [{ timeline: 2, lsn: 1000, at: NOW, reason: 'switchover to a', leader: 'a' }],
    });
    assert.deepEqual(historyBody(v), [[2, 1000, 'switchover to a', new Date(NOW).toISOString(), 'a']]);
  });
});
