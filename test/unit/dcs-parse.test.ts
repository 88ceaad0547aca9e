import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeCluster,
  decodeConfig,
  decodeHistory,
  decodeMember,
  decodeOptime,
  encodeConfig,
  encodeDrain,
  encodeFailover,
  encodeProxy,
  encodeShutdown,
  encodeHistory,
  encodeLeader,
  encodeMember,
  encodeOptime,
  encodeSync,
  type RawCluster,
} from '../../src/dcs/codec.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../../src/cluster/dynamic-config.js';
import { validateDynamicConfig } from '../../src/config/schema.js';
import type { FailoverIntent, HistoryEntry, MemberStatus } from '../../src/cluster/types.js';

function member(name: string, overrides: Partial<MemberStatus> = {}): MemberStatus {
  return {
    name,
    role: 'replica',
    state: 'streaming',
    apiUrl: `http://127.0.0.1:8008`,
    host: '127.0.0.1',
    port: 5432,
    timeline: 2,
    walPosition: 1000,
    receiveLsn: 1000,
    replayLsn: 990,
    lagBytes: 10,
    following: 'a',
    tags: { nofailover: false, noloadbalance: true, nosync: false, failover_priority: 3 },
    paused: false,
    pendingRestart: true,
    reason: 'following a',
    updatedAt: 1_700_000_000_000,
    version: '0.1.0',
    systemId: '7300000000000000001',
    ...overrides,
  };
}

const HISTORY: HistoryEntry[] = [
  { timeline: 2, lsn: 50_331_648, at: 1_700_000_000_000, reason: 'failover', leader: 'b' },
  { timeline: 3, lsn: 67_108_864, at: 1_700_000_100_000, reason: 'switchover', leader: 'a' },
];

/** Decodes and checks that the input object was not modified. */
function decodeUnchanged(raw: Record<string, string>) {
  const copy = structuredClone(raw);
  const view = decodeCluster(raw);
  assert.deepEqual(raw, copy);
  return view;
}

describe('decodeCluster', () => {
  it('an empty prefix is a never-bootstrapped cluster with default config', () => {
    const view = decodeUnchanged({});
    assert.deepEqual(view, {
      initialize: null,
      config: DEFAULT_DYNAMIC_CONFIG,
      leader: null,
      members: {},
      sync: null,
      failover: null,
      optime: null,
      history: [],
      drain: null,
      proxies: [],
      shutdown: null,
    });
  });

  it('round-trips every key written by the encoders', () => {
    const config: DynamicConfig = {
      ...DEFAULT_DYNAMIC_CONFIG,
      ttl: 10,
      loop_wait: 2,
      synchronous_mode: true,
      synchronous_node_count: 2,
      postgresql: { parameters: { max_connections: 200, wal_log_hints: 'on', hot_standby: true } },
    };
    const failover: FailoverIntent = { kind: 'switchover', from: 'a', to: 'b', at: null, requestedAt: 123 };
    const raw: RawCluster = {
      initialize: '7300000000000000001',
      config: encodeConfig(config),
      leader: encodeLeader('a'),
      'members/a': encodeMember(member('a', { role: 'primary', state: 'running', following: null, lagBytes: null })),
      'members/b': encodeMember(member('b')),
      sync: encodeSync({ leader: 'a', members: ['b'] }),
      failover: encodeFailover(failover),
      history: encodeHistory(HISTORY),
      optime: encodeOptime(67_108_864),
      'proxies/p1': '{"id":"p1"}',
      'proxies/p2': encodeProxy({ id: 'p2', rw: '127.0.0.1:6432', ro: null, updatedAt: 5, drained: 'switchover:123:b' }),
      'proxies/p3': encodeProxy({ id: 'p3', rw: '127.0.0.1:7432', ro: null, updatedAt: 5 }),
      drain: encodeDrain({ id: 'switchover:123:b', from: 'a', to: 'b', requestedAt: 124, timeoutMs: 5000 }),
      shutdown: encodeShutdown({ leader: 'a', checkpoint: 50_331_688, timeline: 3, at: 125 }),
    };
    const view = decodeUnchanged({ ...raw });
    assert.equal(view.initialize, '7300000000000000001');
    assert.deepEqual(view.config, config);
    assert.deepEqual(view.leader, { name: 'a' });
    assert.deepEqual(Object.keys(view.members).sort(), ['a', 'b']);
    assert.deepEqual(view.members.b, member('b'));
    assert.equal(view.members.a.role, 'primary');
    assert.deepEqual(view.sync, { leader: 'a', members: ['b'] });
    assert.deepEqual(view.failover, failover);
    assert.deepEqual(view.history, HISTORY);
    assert.equal(view.optime, 67_108_864);
    assert.deepEqual(view.drain, { id: 'switchover:123:b', from: 'a', to: 'b', requestedAt: 124, timeoutMs: 5000 });
    assert.deepEqual(view.shutdown, { leader: 'a', checkpoint: 50_331_688, timeline: 3, at: 125 });
    // p1 is malformed (no rw address) and ignored; p3 never drained anything.
    assert.deepEqual(view.proxies, [
      { id: 'p2', drained: 'switchover:123:b', unreachable: {} },
      { id: 'p3', drained: null, unreachable: {} },
    ]);
  });

  it("'' in initialize means a bootstrap is in progress", () => {
    assert.equal(decodeUnchanged({ initialize: '' }).initialize, '');
  });

  it('leader is the plain member name; blank is no leader', () => {
    assert.equal(encodeLeader('node-1'), 'node-1');
    assert.deepEqual(decodeUnchanged({ leader: 'node-1' }).leader, { name: 'node-1' });
    assert.equal(decodeUnchanged({ leader: '' }).leader, null);
    assert.equal(decodeUnchanged({ leader: '  \n' }).leader, null);
  });

  it('skips garbled members and keeps the valid ones', () => {
    const view = decodeUnchanged({
      'members/good': encodeMember(member('good')),
      'members/notjson': '{"name": "notjson", ',
      'members/array': '[1,2,3]',
      'members/norole': JSON.stringify({ ...member('norole'), role: 'king' }),
      'members/noport': JSON.stringify({ ...member('noport'), port: 'x' }),
      'members/nohost': JSON.stringify({ ...member('nohost'), host: undefined }),
      'members/impostor': encodeMember(member('someone-else')),
      'members/': encodeMember(member('')),
      'members/a/b': encodeMember(member('a/b')),
      'members/null': 'null',
    });
    assert.deepEqual(Object.keys(view.members), ['good']);
  });

  it('fills unknown descriptive member fields instead of dropping the member', () => {
    const minimal = { name: 'm', role: 'replica', state: 'starting', apiUrl: 'http://h:8008', host: 'h', port: 5433 };
    const view = decodeUnchanged({
      'members/m': JSON.stringify(minimal),
      'members/n': JSON.stringify({ ...member('n'), timeline: 'two', walPosition: -5, tags: 'x', paused: 'yes', extra: 1 }),
    });
    assert.deepEqual(view.members.m, {
      ...minimal,
      timeline: null,
      walPosition: null,
      receiveLsn: null,
      replayLsn: null,
      lagBytes: null,
      following: null,
      tags: { nofailover: false, noloadbalance: false, nosync: false, failover_priority: 1 },
      paused: false,
      pendingRestart: false,
      reason: '',
      updatedAt: 0,
      version: '',
      systemId: null,
    });
    const n = view.members.n;
    assert.equal(n.timeline, null);
    assert.equal(n.walPosition, null);
    assert.deepEqual(n.tags, { nofailover: false, noloadbalance: false, nosync: false, failover_priority: 1 });
    assert.equal(n.paused, false);
    assert.equal('extra' in n, false);
  });

  it('each decoded member owns its tags (no shared default object)', () => {
    const view = decodeUnchanged({
      'members/x': JSON.stringify({ ...member('x'), tags: null }),
      'members/y': JSON.stringify({ ...member('y'), tags: null }),
    });
    view.members.x.tags.nofailover = true;
    assert.equal(view.members.y.tags.nofailover, false);
    assert.equal(decodeMember(JSON.stringify({ ...member('z'), tags: null }))?.tags.nofailover, false);
  });

  it('garbage in sync, failover, optime, history reads as absent', () => {
    const view = decodeUnchanged({
      sync: '{"leader": 3}',
      failover: '{"kind":"reboot","requestedAt":1}',
      optime: 'soon',
      history: '{"not":"an array"}',
    });
    assert.equal(view.sync, null);
    assert.equal(view.failover, null);
    assert.equal(view.optime, null);
    assert.deepEqual(view.history, []);
    assert.equal(decodeUnchanged({ sync: 'not json' }).sync, null);
    assert.equal(decodeUnchanged({ sync: '{"leader":"a","members":["b",7]}' }).sync, null);
    assert.equal(decodeUnchanged({ failover: '' }).failover, null);
  });

  it('a garbled shutdown record reads as absent (replicas then elect without waiting)', () => {
    for (const shutdown of ['not json', '{"leader":"a"}', '{"leader":"a","checkpoint":-1,"timeline":1}', '{"leader":"a","checkpoint":1.5,"timeline":1}', '{"leader":"","checkpoint":1,"timeline":1}']) {
      assert.equal(decodeUnchanged({ shutdown }).shutdown, null, shutdown);
    }
    assert.deepEqual(decodeUnchanged({ shutdown: '{"leader":"a","checkpoint":1,"timeline":1}' }).shutdown, { leader: 'a', checkpoint: 1, timeline: 1, at: 0 });
  });

  it('a failover intent with only the required fields gets nulls for the rest', () => {
    assert.deepEqual(decodeUnchanged({ failover: '{"kind":"failover","requestedAt":5}' }).failover, {
      kind: 'failover',
      from: null,
      to: null,
      at: null,
      requestedAt: 5,
    });
  });

  it('does not let a prototype-named key leak in', () => {
    const raw = JSON.parse('{"__proto__": "x", "constructor": "y"}') as Record<string, string>;
    const view = decodeUnchanged(raw);
    assert.equal(view.leader, null);
    assert.deepEqual(view.members, {});
  });
});

describe('decodeConfig', () => {
  it('missing or unparseable config gives a fresh copy of the defaults', () => {
    for (const raw of [undefined, '', 'garbage', '[]', 'null', '42', '"ttl"']) {
      const config = decodeConfig(raw);
      assert.deepEqual(config, DEFAULT_DYNAMIC_CONFIG, String(raw));
      assert.notEqual(config, DEFAULT_DYNAMIC_CONFIG);
      assert.notEqual(config.postgresql.parameters, DEFAULT_DYNAMIC_CONFIG.postgresql.parameters);
    }
  });

  it('keeps each valid field and ignores each invalid one', () => {
    const config = decodeConfig(
      JSON.stringify({
        ttl: 0, // below the 2 s minimum
        loop_wait: 3,
        retry_timeout: '5',
        maximum_lag_on_failover: -1,
        synchronous_mode: true,
        synchronous_mode_strict: 'true',
        synchronous_node_count: 1.5,
        pause: true,
        member_slots_ttl: 60,
        primary_start_timeout: null,
        unknown_setting: 1,
        postgresql: { parameters: { work_mem: '8MB', max_connections: 300, bad: { nested: 1 }, worse: [1], fsync: false } },
      }),
    );
    assert.deepEqual(config, {
      ...DEFAULT_DYNAMIC_CONFIG,
      loop_wait: 3,
      synchronous_mode: true,
      pause: true,
      member_slots_ttl: 60,
      postgresql: { parameters: { work_mem: '8MB', max_connections: 300, fsync: false } },
    });
  });

  it('a garbled postgresql section keeps the default parameters', () => {
    assert.deepEqual(decodeConfig('{"ttl": 7, "postgresql": "x"}'), { ...DEFAULT_DYNAMIC_CONFIG, ttl: 7 });
    assert.deepEqual(decodeConfig('{"postgresql": {"parameters": [1]}}'), DEFAULT_DYNAMIC_CONFIG);
  });

  it('reads each field by the rules edit-config and the API validate with', () => {
    // What they accept reads as itself (a lease of 7.5 s is rounded up by the lease, not refused) ...
    const accepted = { ttl: 7.5, loop_wait: 0.1, maximum_lag_on_failover: 0, postgresql: { parameters: { 'pg_stat_statements.max': 1000 } } };
    const expected = { ...DEFAULT_DYNAMIC_CONFIG, ...accepted };
    assert.deepEqual(validateDynamicConfig(accepted), expected);
    assert.deepEqual(decodeConfig(JSON.stringify(accepted)), expected);
    // ... and what they refuse keeps its default, field by field and parameter by parameter.
    const refused = [{ ttl: 1 }, { loop_wait: 0.05 }, { maximum_lag_on_failover: 1.5 }, { postgresql: { parameters: { port: 5433 } } }, { postgresql: { parameters: { 'work mem': '1MB' } } }];
    for (const settings of refused) {
      assert.throws(() => validateDynamicConfig(settings), /invalid/, JSON.stringify(settings));
      assert.deepEqual(decodeConfig(JSON.stringify(settings)), DEFAULT_DYNAMIC_CONFIG, JSON.stringify(settings));
    }
    const mixed = { ...Object.assign({}, ...refused.slice(0, 3)), ttl: 9, postgresql: { parameters: { port: 5433, 'work mem': '1MB', work_mem: '8MB' } } };
    assert.deepEqual(decodeConfig(JSON.stringify(mixed)), { ...DEFAULT_DYNAMIC_CONFIG, ttl: 9, postgresql: { parameters: { work_mem: '8MB' } } });
  });

  it('decoding never mutates the shared defaults', () => {
    const before = structuredClone(DEFAULT_DYNAMIC_CONFIG);
    const config = decodeConfig('{"postgresql":{"parameters":{"a":1}}}');
    config.ttl = 99;
    assert.deepEqual(DEFAULT_DYNAMIC_CONFIG, before);
  });
});

describe('decodeHistory', () => {
  it('drops bad entries one by one and keeps order', () => {
    const raw = JSON.stringify([HISTORY[0], { timeline: 'x' }, null, 5, { ...HISTORY[1], lsn: -1 }, HISTORY[1]]);
    assert.deepEqual(decodeHistory(raw), HISTORY);
  });

  it('an entry without a reason keeps an empty reason', () => {
    const { reason: _reason, ...rest } = HISTORY[0];
    assert.deepEqual(decodeHistory(JSON.stringify([rest])), [{ ...rest, reason: '' }]);
  });
});

describe('decodeOptime', () => {
  it('reads a non-negative number, else null', () => {
    assert.equal(decodeOptime('123456'), 123456);
    assert.equal(decodeOptime(encodeOptime(0)), 0);
    assert.equal(decodeOptime('-1'), null);
    assert.equal(decodeOptime(''), null);
    assert.equal(decodeOptime('NaN'), null);
    assert.equal(decodeOptime('Infinity'), null);
    assert.equal(decodeOptime(undefined), null);
  });
});
