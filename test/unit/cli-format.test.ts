/**
 * What the CLI prints: the members table, lag in MB, the JSON shape scripts rely on, the history table and
 * edit-config's diff. Pure functions of a cluster view.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  configDiff,
  displayRole,
  formatLagMb,
  formatTime,
  historyJson,
  listJson,
  renderHistory,
  renderList,
  renderTable,
} from '../../src/cli/format.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../../src/cluster/dynamic-config.js';
import { cluster } from './cluster-builder.js';

describe('renderTable', () => {
  it('draws borders sized to the widest cell and aligns the chosen columns right', () => {
    const table = renderTable(['Name', 'N'], [['a', '1'], ['longer', '100']], { alignRight: [1] });
    assert.equal(
      table,
      [
        '+--------+-----+',
        '| Name   | N   |',
        '+--------+-----+',
        '| a      |   1 |',
        '| longer | 100 |',
        '+--------+-----+',
      ].join('\n'),
    );
  });

  it('draws an empty table with only the header', () => {
    assert.equal(renderTable(['A'], []), ['+---+', '| A |', '+---+', '+---+'].join('\n'));
  });
});

describe('formatLagMb', () => {
  it('shows replicas in MB with one decimal', () => {
    assert.equal(formatLagMb(0, 'replica'), '0.0');
    assert.equal(formatLagMb(1024 * 1024, 'replica'), '1.0');
    assert.equal(formatLagMb(16 * 1024 * 1024 + 512 * 1024, 'replica'), '16.5');
    assert.equal(formatLagMb(3 * 1024 * 1024 * 1024, 'replica'), '3072.0');
  });

  it('shows nothing for a primary and "unknown" when the replica did not say', () => {
    assert.equal(formatLagMb(null, 'primary'), '');
    assert.equal(formatLagMb(5_000_000, 'primary'), '');
    assert.equal(formatLagMb(null, 'replica'), 'unknown');
  });

  it('never shows a negative lag', () => {
    assert.equal(formatLagMb(-10, 'replica'), '0.0');
  });
});

describe('listJson', () => {
  it('lists live proxies with their rw and ro addresses', () => {
    const view = cluster().primary('a').view();
    const json = listJson('main', view, [{ id: 'p1', rw: '127.0.0.1:6432', ro: '127.0.0.1:6433', updatedAt: 5 }]);
    assert.deepEqual(json.proxies, [
      { id: 'p1', rw: '127.0.0.1:6432', ro: '127.0.0.1:6433', updated_at: 5, unreachable: [], admin: 'postgresql://127.0.0.1:6432/pgbouncer', metrics: null },
    ]);
    const text = renderList('main', view, 'etcd x', [{ id: 'p1', rw: '127.0.0.1:6432', ro: null, updatedAt: 5 }]);
    assert.match(text, /\| p1 +\| 127\.0\.0\.1:6432 +\| - +\| postgresql:\/\/127\.0\.0\.1:6432\/pgbouncer +\| - +\| - +\|/);
    const cut = [{ id: 'p2', rw: '127.0.0.1:7432', ro: null, updatedAt: 5, unreachable: { c: 9, a: 7 } }];
    assert.deepEqual(listJson('main', view, cut).proxies[0]!.unreachable, ['a', 'c']);
    assert.match(renderList('main', view, 'etcd x', cut), /\| p2 +\| 127\.0\.0\.1:7432 +\| - +\| [^|]+\| - +\| a, c +\|/);
  });

  it("shows each proxy's admin console and metrics endpoint as it published them", () => {
    const view = cluster().primary('a').view();
    const published = [
      { id: 'p3', rw: '127.0.0.1:6432', ro: null, updatedAt: 5, admin: 'postgresql://127.0.0.1:6432/pgbouncer', metrics: 'http://127.0.0.1:9127/metrics' },
    ];
    const json = listJson('main', view, published).proxies[0]!;
    assert.equal(json.admin, 'postgresql://127.0.0.1:6432/pgbouncer');
    assert.equal(json.metrics, 'http://127.0.0.1:9127/metrics');
    assert.match(renderList('main', view, 'etcd x', published), /\| Admin console +\| Metrics +\|/);
    assert.match(renderList('main', view, 'etcd x', published), /\| postgresql:\/\/127\.0\.0\.1:6432\/pgbouncer \| http:\/\/127\.0\.0\.1:9127\/metrics \|/);
  });

  it('has exactly the documented keys, members sorted by name', () => {
    const view = cluster().replica('b', { wal: 900 }).primary('a', { wal: 1000 }).replica('c').view();
    view.members.b.lagBytes = 100;
    view.members.b.reason = 'replica streaming from a';
    const json = listJson('main', view);
    assert.deepEqual(Object.keys(json), ['cluster', 'members', 'proxies']);
    assert.deepEqual(json.proxies, []);
    assert.equal(json.cluster, 'main');
    assert.deepEqual(
      json.members.map((m) => m.name),
      ['a', 'b', 'c'],
    );
    for (const m of json.members) {
      assert.deepEqual(Object.keys(m).sort(), ['api_url', 'host', 'lag_bytes', 'name', 'port', 'reason', 'reclone', 'role', 'state', 'timeline']);
    }
    assert.deepEqual(json.members[1], {
      name: 'b',
      role: 'replica',
      state: 'streaming',
      host: '127.0.0.1',
      port: view.members.b.port,
      api_url: view.members.b.apiUrl,
      timeline: 1,
      lag_bytes: 100,
      reason: 'replica streaming from a',
      reclone: null,
    });
    assert.equal(json.members[0].role, 'primary');
    assert.equal(json.members[0].lag_bytes, 0);
  });

  it('reports an uninitialized member as a replica (its state says what it is doing)', () => {
    const view = cluster().primary('a').replica('b').view();
    view.members.b.role = 'uninitialized';
    view.members.b.state = 'cloning';
    const b = listJson('main', view).members[1];
    assert.equal(b.role, 'replica');
    assert.equal(b.state, 'cloning');
  });

  it("shows a member's last re-clone and its reason, in the table and the JSON", () => {
    const view = cluster().primary('a').replica('b').view();
    const reason = 'rejoining as a replica of a: pg_rewind failed, cloning again (pg_rewind: error: could not find previous WAL record at 0/3000028)';
    view.members.b.reclone = { at: Date.UTC(2026, 11, 7, 3, 0, 0), reason };
    assert.deepEqual(listJson('main', view).members[1]!.reclone, { time: '2026-12-07T03:00:00.000Z', reason });
    assert.equal(listJson('main', view).members[0]!.reclone, null);
    assert.ok(renderList('main', view, 'etcd x').split('\n').includes(`Re-cloned: b at 2026-12-07 03:00:00Z: ${reason}`));
  });

  it('survives a round trip through JSON unchanged', () => {
    const json = listJson('main', cluster().primary('a').replica('b').view());
    assert.deepEqual(JSON.parse(JSON.stringify(json)), json);
  });
});

describe('displayRole', () => {
  it('marks a primary without the leader key and sync replicas in synchronous mode', () => {
    const view = cluster().primary('a').replica('b').replica('c').config({ synchronous_mode: true }).sync('a', ['b']).view();
    assert.equal(displayRole(view.members.a, view), 'primary');
    assert.equal(displayRole(view.members.b, view), 'sync replica');
    assert.equal(displayRole(view.members.c, view), 'replica');
    view.leader = { name: 'b' };
    assert.equal(displayRole(view.members.a, view), 'primary (no leader key)');
    assert.equal(displayRole(view.members.b, view), 'replica (leader key)');
  });
});

describe('renderList', () => {
  it('shows one row per member with host:port, role, state, timeline, lag and reason', () => {
    const view = cluster().primary('pg1', { timeline: 3 }).replica('pg2', { timeline: 3 }).view();
    view.members.pg2.lagBytes = 2 * 1024 * 1024;
    view.members.pg1.reason = 'primary holding the leader key';
    const text = renderList('main', view, 'etcd http://127.0.0.1:2379');
    const lines = text.split('\n');
    assert.equal(lines[0], 'Cluster: main (system sys1, etcd http://127.0.0.1:2379)');
    assert.match(lines[2], /\| Member \| Host +\| Role +\| State +\| TL \| Lag in MB \| Last reason +\|/);
    const pg1 = lines.find((l) => l.startsWith('| pg1'))!;
    const pg2 = lines.find((l) => l.startsWith('| pg2'))!;
    assert.deepEqual(
      pg1.split('|').map((c) => c.trim()).slice(1, -1),
      ['pg1', `127.0.0.1:${view.members.pg1.port}`, 'primary', 'running', '3', '', 'primary holding the leader key'],
    );
    assert.deepEqual(pg2.split('|').map((c) => c.trim()).slice(1, -1).slice(2, 6), ['replica', 'streaming', '3', '2.0']);
  });

  it('notes maintenance mode, a pending request and a missing leader', () => {
    const view = cluster()
      .primary('a')
      .replica('b')
      .config({ pause: true })
      .failover({ from: 'a', to: 'b', at: Date.UTC(2026, 10, 21, 10, 0) })
      .view();
    view.leader = null;
    const text = renderList('main', view, 'etcd x');
    assert.match(text, /Maintenance mode: on/);
    assert.match(text, /Pending: switchover from a to b scheduled at 2026-11-21 10:00:00Z/);
    assert.match(text, /No member holds the leader key/);
  });

  it('cuts long reasons in the table', () => {
    const view = cluster().primary('a').view();
    view.members.a.reason = 'x'.repeat(300);
    const row = renderList('main', view, 'etcd x').split('\n').find((l) => l.startsWith('| a'))!;
    assert.ok(row.includes(`${'x'.repeat(99)}…`));
    assert.ok(!row.includes('x'.repeat(101)));
  });
});

describe('history', () => {
  const entries = [
    { timeline: 1, lsn: 0, at: Date.UTC(2026, 0, 1, 0, 0, 0), reason: 'bootstrap', leader: 'pg1' },
    { timeline: 2, lsn: 0x1_0500_0230, at: Date.UTC(2026, 0, 2, 3, 4, 5), reason: 'switchover to pg2', leader: 'pg2' },
  ];

  it('renders timeline, LSN as X/Y, time, reason and leader', () => {
    const rows = renderHistory(entries).split('\n').filter((l) => l.startsWith('|')).slice(1);
    assert.deepEqual(rows[1].split('|').map((c) => c.trim()).slice(1, -1), ['2', '1/5000230', '2026-01-02 03:04:05Z', 'switchover to pg2', 'pg2']);
  });

  it('says so when there is no entry', () => {
    assert.match(renderHistory([]), /No timeline switch yet/);
  });

  it('has a JSON form with the LSN as text', () => {
    assert.deepEqual(historyJson(entries)[1], {
      timeline: 2,
      lsn: '1/5000230',
      time: '2026-01-02T03:04:05.000Z',
      reason: 'switchover to pg2',
      leader: 'pg2',
    });
  });

  it('formats times in UTC to the second', () => {
    assert.equal(formatTime(Date.UTC(2026, 10, 21, 10, 0, 7, 123)), '2026-11-21 10:00:07Z');
  });
});

describe('configDiff', () => {
  it('lists each changed setting as a removed and an added line, nested ones dotted', () => {
    const before = structuredClone(DEFAULT_DYNAMIC_CONFIG);
    const after = structuredClone(DEFAULT_DYNAMIC_CONFIG);
    after.maximum_lag_on_failover = 2097152;
    after.postgresql.parameters.work_mem = '64MB';
    assert.deepEqual(configDiff(before, after), [
      '-maximum_lag_on_failover: 1048576',
      '+maximum_lag_on_failover: 2097152',
      '+postgresql.parameters.work_mem: "64MB"',
    ]);
  });

  it('is empty when nothing changes', () => {
    assert.deepEqual(configDiff(DEFAULT_DYNAMIC_CONFIG, structuredClone(DEFAULT_DYNAMIC_CONFIG)), []);
  });

  it('shows a removed parameter', () => {
    const before = structuredClone(DEFAULT_DYNAMIC_CONFIG);
    before.postgresql.parameters.work_mem = '64MB';
    assert.deepEqual(configDiff(before, DEFAULT_DYNAMIC_CONFIG), ['-postgresql.parameters.work_mem: "64MB"']);
  });
});
