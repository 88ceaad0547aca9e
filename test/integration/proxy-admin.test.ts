/**
 * The admin console and /metrics of the proxy against a real PostgreSQL 15, with psql, node-postgres, the real
 * Debian prometheus-pgbouncer-exporter and a real `pgwarden proxy` process (SIGHUP) as clients.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { stringify } from 'yaml';
import { loadProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { AdminConsole, attachAdminConsole } from '../../src/proxy/admin/console.js';
import { COLUMNS, type ShowSubject } from '../../src/proxy/admin/commands.js';
import { ProxyMetricsServer, createProxyMetricsRegistry } from '../../src/proxy/metrics.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';
import { startProxyProcess } from '../helpers/proxy-process.js';

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('proxy admin console', { timeout: 240_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let postgres: PostgresServer;
  let proxy: ProxyServer;
  let topology: StaticTopology;
  let adminConsole: AdminConsole;
  let metrics: ProxyMetricsServer;
  let base: string;
  let configPath: string;
  const baseSettings = (): Record<string, unknown> => ({
    listen: '127.0.0.1:0',
    pool_mode: 'transaction',
    default_pool_size: 3,
    auth_file: 'userlist.txt',
    admin_users: [user],
    stats_users: ['watcher'],
    metrics_listen: '127.0.0.1:0',
    stats_period: 1,
  });

  function client(database: string, as = user, pw = password, port = proxy.address.port): pg.Client {
    const c = new pg.Client({ host: '127.0.0.1', port, user: as, password: pw, database });
    c.on('error', () => undefined);
    return c;
  }

  async function admin<T>(body: (c: pg.Client) => Promise<T>, as = user, pw = password, port = proxy.address.port): Promise<T> {
    const c = client('pgbouncer', as, pw, port);
    await c.connect();
    try {
      return await body(c);
    } finally {
      await c.end();
    }
  }

  async function psqlColumns(subject: string): Promise<string[]> {
    const { stdout } = await run('/usr/bin/psql', ['-h', '127.0.0.1', '-p', String(proxy.address.port), '-U', user, '-d', 'pgbouncer', '-A', '-F', '|', '-c', `SHOW ${subject};`], {
      env: { ...process.env, PGPASSWORD: password },
    });
    return stdout.split('\n')[0].split('|');
  }

  async function statsRow(c: pg.Client, subject: 'STATS' | 'STATS_TOTALS' | 'STATS_AVERAGES', database = 'postgres'): Promise<Record<string, number>> {
    const row = (await c.query(`SHOW ${subject}`)).rows.find((r) => r.database === database);
    return Object.fromEntries(Object.entries(row ?? {}).filter(([k]) => k !== 'database').map(([k, v]) => [k, Number(v)]));
  }

  /** Simple and extended-protocol traffic: `n` autocommit queries and `n` explicit transactions of two statements. */
  async function traffic(n: number): Promise<void> {
    const app = client('postgres');
    await app.connect();
    for (let i = 0; i < n; i++) {
      await app.query('select $1::int as i', [i]);
      await app.query('begin');
      await app.query('select pg_sleep(0.001)');
      await app.query('commit');
    }
    await app.end();
  }

  async function scrape(port: number): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  }

  function metricValue(text: string, series: string): number {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `no ${series} in:\n${text}`);
    return Number(line.slice(series.length + 1));
  }

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-admin-');
    postgres = await makeTestServer('admin', base, credentials, { parameters: { max_connections: 40 } });
    await postgres.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n"watcher" "watchpw"\n"nobody" "nobodypw"\n`);
    configPath = path.join(base, 'proxy.yml');
    await writeFile(configPath, stringify(baseSettings()));
    const config = loadProxyConfig(configPath);
    topology = new StaticTopology({ host: '127.0.0.1', port: postgres.port });
    proxy = new ProxyServer({ config, topology });
    await proxy.start();
    adminConsole = attachAdminConsole(proxy, { config, topology, configPath });
    metrics = new ProxyMetricsServer(createProxyMetricsRegistry({ console: adminConsole, topology, proxy }));
    await metrics.start(config.metrics_listen!);
    // A pool to report on.
    const app = client('postgres');
    await app.connect();
    await app.query('select 1');
    await app.end();
  });

  after(async () => {
    adminConsole?.close();
    await metrics?.stop();
    await proxy?.stop(100);
    await cleanupServers();
  });

  it('answers SHOW with PgBouncer 1.18 column names and order through psql', async () => {
    for (const subject of ['POOLS', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'SERVERS', 'CLIENTS', 'DATABASES', 'LISTS', 'CONFIG', 'VERSION', 'USERS'] satisfies ShowSubject[]) {
      assert.deepEqual(await psqlColumns(subject), [...COLUMNS[subject]], subject);
    }
    assert.deepEqual(COLUMNS.POOLS.slice(0, 4), ['database', 'user', 'cl_active', 'cl_waiting']);
    await admin(async (c) => {
      const pools = await c.query('SHOW POOLS');
      const row = pools.rows.find((r) => r.database === 'postgres' && r.user === user);
      assert.ok(row, JSON.stringify(pools.rows));
      assert.equal(row.pool_mode, 'transaction');
      assert.equal(Number(row.sv_idle) + Number(row.sv_active), 1);
      const version = await c.query('SHOW VERSION');
      assert.match(version.rows[0].version, /^PgBouncer 1\.18/);
      const lists = await c.query('SHOW LISTS');
      assert.equal(Number(lists.rows.find((r) => r.list === 'pools').items), 1);
      const config = (await c.query('SHOW CONFIG')).rows.map((r) => r.key);
      assert.deepEqual(config, [...config].sort(), 'SHOW CONFIG is sorted by key as in PgBouncer');
      await assert.rejects(c.query('SHOW NONSENSE'), (e: pg.DatabaseError) => e.code === '42601' && /SHOW POOLS/.test(e.hint ?? ''));
    });
  });

  it('refuses users outside admin_users/stats_users, and control commands to stats users', async () => {
    const nobody = client('pgbouncer', 'nobody', 'nobodypw');
    await assert.rejects(nobody.connect(), (e: pg.DatabaseError) => e.code === '42501' && e.message === 'not allowed');
    await admin(async (c) => {
      assert.ok((await c.query('SHOW POOLS')).rows.length >= 1);
      await assert.rejects(c.query('PAUSE'), (e: pg.DatabaseError) => e.code === '42501');
    }, 'watcher', 'watchpw');
    assert.equal(adminConsole.paused, false);
    const wrongPassword = client('pgbouncer', user, 'wrong');
    await assert.rejects(wrongPassword.connect(), (e: pg.DatabaseError) => e.code === '28P01');
  });

  it('SHOW STATS / STATS_TOTALS count the traffic of each database; STATS_AVERAGES are per stats_period', async () => {
    await admin(async (c) => {
      const before = await statsRow(c, 'STATS_TOTALS');
      await traffic(10);
      const totals = await statsRow(c, 'STATS_TOTALS');
      // 10 autocommit queries + 10 transactions of begin/select/commit.
      assert.ok(totals.xact_count - (before.xact_count ?? 0) >= 20, `xact_count ${before.xact_count} -> ${totals.xact_count}`);
      assert.ok(totals.query_count - (before.query_count ?? 0) >= 40, `query_count ${before.query_count} -> ${totals.query_count}`);
      assert.ok(totals.bytes_received > (before.bytes_received ?? 0));
      assert.ok(totals.bytes_sent > (before.bytes_sent ?? 0));
      assert.ok(totals.xact_time > (before.xact_time ?? 0));
      // Ten pg_sleep(0.001) at least.
      assert.ok(totals.query_time - (before.query_time ?? 0) >= 10_000, `query_time ${before.query_time} -> ${totals.query_time}`);
      const stats = await statsRow(c, 'STATS');
      assert.ok(stats.total_xact_count >= totals.xact_count);
      assert.equal(stats.total_requests, stats.total_query_count, 'total_requests repeats total_query_count');
      const own = await statsRow(c, 'STATS', 'pgbouncer');
      assert.ok(own.total_query_count >= 3, 'the console counts its own statements as database pgbouncer');

      // Averages cover the last complete stats_period (1 s here): keep traffic going until one has it.
      let running = true;
      const load = (async () => {
        while (running) await traffic(5);
      })();
      try {
        const averages = await waitFor('non-zero STATS_AVERAGES', async () => {
          const a = await statsRow(c, 'STATS_AVERAGES');
          return a.xact_count > 0 && a.query_count > 0 ? a : undefined;
        }, 5000);
        assert.ok(averages.bytes_received > 0 && averages.bytes_sent > 0, JSON.stringify(averages));
        assert.ok(averages.query_time > 0 && averages.xact_time > 0, JSON.stringify(averages));
        const stats2 = await statsRow(c, 'STATS');
        assert.ok(stats2.avg_xact_count > 0 && stats2.avg_query_count > 0, JSON.stringify(stats2));
      } finally {
        running = false;
        await load;
      }
    });
  });

  it('PAUSE closes server connections once released and holds new transactions until RESUME', async () => {
    const app = client('postgres');
    await app.connect();
    await app.query('select 1');
    await admin(async (c) => {
      await c.query('PAUSE');
      assert.equal(adminConsole.paused, true);
      const servers = (await c.query('SHOW SERVERS')).rows.filter((r) => r.database === 'postgres');
      assert.deepEqual(servers, [], 'PAUSE answers once no server connection is left');
      await assert.rejects(c.query('PAUSE'), (e: pg.DatabaseError) => /already suspended\/paused/.test(e.message));
      let done = false;
      const pending = app.query('select 42 as answer').then((r) => {
        done = true;
        return r;
      });
      // Held at the pause gate (SHOW POOLS counts it waiting), not run.
      await waitFor('the transaction held', async () => Number((await c.query('SHOW POOLS')).rows.find((r) => r.database === 'postgres')?.cl_waiting) === 1 || undefined, 5000);
      assert.equal(done, false, 'a transaction ran while paused');
      await c.query('RESUME');
      assert.equal((await pending).rows[0].answer, 42);
      await assert.rejects(c.query('RESUME'), (e: pg.DatabaseError) => /not paused/.test(e.message));
    });
    await app.end();
  });

  it('PAUSE db holds only that database', async () => {
    const app = client('postgres');
    const elsewhere = client('template1');
    await app.connect();
    await elsewhere.connect();
    await admin(async (c) => {
      await c.query('PAUSE postgres');
      const paused = new Map((await c.query('SHOW DATABASES')).rows.map((r) => [r.name, Number(r.paused)]));
      assert.equal(paused.get('postgres'), 1);
      assert.equal(paused.get('template1'), 0);
      let done = false;
      const pending = app.query('select 1 as one').then((r) => {
        done = true;
        return r;
      });
      assert.equal((await elsewhere.query('select current_database() as db')).rows[0].db, 'template1');
      await waitFor('the transaction of the paused database held', async () => Number((await c.query('SHOW POOLS')).rows.find((r) => r.database === 'postgres')?.cl_waiting) === 1 || undefined, 5000);
      assert.equal(done, false, 'a transaction of the paused database ran');
      await c.query('RESUME postgres');
      assert.equal((await pending).rows[0].one, 1);
    });
    await app.end();
    await elsewhere.end();
  });

  it('RECONNECT replaces server connections as they are released; WAIT_CLOSE answers when the last is gone', async () => {
    const inTx = client('postgres');
    const other = client('postgres');
    await inTx.connect();
    await other.connect();
    await other.query('select 1');
    await inTx.query('begin');
    const pidBefore = (await inTx.query('select pg_backend_pid() as pid')).rows[0].pid;
    await admin(async (c) => {
      await c.query('RECONNECT');
      const servers = (await c.query('SHOW SERVERS')).rows.filter((r) => r.database === 'postgres');
      assert.deepEqual(servers.map((s) => [s.state, Number(s.close_needed), Number(s.remote_pid)]), [['active', 1, pidBefore]], 'idle connections close at once, the busy one is marked');
      let waited = false;
      const waitClose = c.query('WAIT_CLOSE').then(() => (waited = true));
      // Nothing to wait for (this checks that WAIT_CLOSE does not answer yet): a while for a wrong answer to come.
      await sleep(300);
      assert.equal(waited, false, 'WAIT_CLOSE answered while a marked connection was still in a transaction');
      // The other client is not disturbed: it gets a fresh connection.
      const otherPid = (await other.query('select pg_backend_pid() as pid')).rows[0].pid;
      assert.notEqual(otherPid, pidBefore);
      assert.equal((await inTx.query('select pg_backend_pid() as pid')).rows[0].pid, pidBefore, 'the transaction stays on its connection');
      await inTx.query('commit');
      await waitClose;
      const after = (await c.query('SHOW SERVERS')).rows.filter((r) => r.database === 'postgres');
      assert.ok(after.every((s) => Number(s.close_needed) === 0 && Number(s.remote_pid) !== pidBefore), JSON.stringify(after));
    });
    assert.notEqual((await inTx.query('select pg_backend_pid() as pid')).rows[0].pid, pidBefore);
    await inTx.end();
    await other.end();
  });

  it('RELOAD applies pool size, admin_users and timeouts live, keeps clients, and keeps listen until a restart', async () => {
    const app = client('postgres');
    await app.connect();
    await app.query('begin');
    const pid = (await app.query('select pg_backend_pid() as pid')).rows[0].pid;
    await admin(async (c) => {
      const portBefore = (await c.query('SHOW CONFIG')).rows.find((r) => r.key === 'listen_port').value;
      await writeFile(configPath, stringify({ ...baseSettings(), default_pool_size: 5, admin_users: [user, 'watcher'], query_wait_timeout: 30, listen: '127.0.0.1:1' }));
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await c.query('RELOAD');
      assert.equal(notices.length, 1, JSON.stringify(notices));
      assert.match(notices[0], /^listen changed .* restart/);
      const config = new Map((await c.query('SHOW CONFIG')).rows.map((r) => [r.key, r.value]));
      assert.equal(config.get('default_pool_size'), '5');
      assert.equal(config.get('query_wait_timeout'), '30');
      assert.equal(config.get('admin_users'), `${user},watcher`);
      assert.equal(config.get('listen_port'), portBefore, 'listen keeps its running value');
      const db = (await c.query('SHOW DATABASES')).rows.find((r) => r.name === 'postgres');
      assert.equal(Number(db.pool_size), 5);
      // A broken file changes nothing.
      await writeFile(configPath, 'default_pool_size: [\n');
      await assert.rejects(c.query('RELOAD'), (e: pg.DatabaseError) => e.code === 'F0000' && /unchanged/.test(e.message));
      assert.equal((await c.query('SHOW CONFIG')).rows.find((r) => r.key === 'default_pool_size').value, '5');
    });
    // The client's transaction went on on the same server connection.
    assert.equal((await app.query('select pg_backend_pid() as pid')).rows[0].pid, pid);
    await app.query('commit');
    // watcher became an admin.
    await admin((c) => c.query('RECONNECT'), 'watcher', 'watchpw');
    // The larger pool serves five transactions at once (three before).
    const apps = Array.from({ length: 5 }, () => client('postgres'));
    await Promise.all(apps.map((a) => a.connect()));
    await Promise.all(apps.map((a) => a.query('begin')));
    const pids = await Promise.all(apps.map(async (a) => (await a.query('select pg_backend_pid() as pid')).rows[0].pid));
    assert.equal(new Set(pids).size, 5);
    await Promise.all(apps.map((a) => a.query('commit')));
    await Promise.all(apps.map((a) => a.end()));
    await app.end();
    await writeFile(configPath, stringify(baseSettings()));
    assert.equal(proxy.poolStats().get(`postgres/${user}`)!.total, 5);
    const back = adminConsole.reload();
    assert.deepEqual(back.needRestart, []);
    assert.ok(back.applied.includes('default_pool_size') && back.applied.includes('admin_users'), JSON.stringify(back));
    // Back to three: the idle surplus closes at once.
    assert.equal(proxy.poolStats().get(`postgres/${user}`)!.total, 3);
  });

  it('KILL drops the clients of a database and pauses it until RESUME; RELOAD without a config file is an error', async () => {
    const app = client('postgres');
    await app.connect();
    await app.query('select 1');
    const ended = new Promise((resolve) => app.once('end', resolve));
    await admin(async (c) => {
      await c.query('KILL postgres');
      await ended;
      const db = (await c.query('SHOW DATABASES')).rows.find((r) => r.name === 'postgres');
      assert.equal(Number(db.paused), 1);
      const late = client('postgres');
      await late.connect();
      let done = false;
      const pending = late.query('select 7 as n').then((r) => {
        done = true;
        return r;
      });
      await waitFor('the transaction of the killed database held', async () => Number((await c.query('SHOW POOLS')).rows.find((r) => r.database === 'postgres')?.cl_waiting) === 1 || undefined, 5000);
      assert.equal(done, false, 'a killed database runs nothing before RESUME');
      await c.query('RESUME postgres');
      assert.equal((await pending).rows[0].n, 7);
      await late.end();
      await assert.rejects(c.query('KILL pgbouncer'), (e: pg.DatabaseError) => e.code === '55000');
    });
    const bare = new AdminConsole(proxy, { config: adminConsole.currentConfig, topology });
    try {
      await assert.rejects(bare.control('RELOAD', null), (e: { sqlstate?: string }) => e.sqlstate === '55000');
    } finally {
      bare.close();
    }
  });

  it('serves pool gauges, stats counters, latency histograms and routing on /metrics', async () => {
    await traffic(5);
    const app = client('postgres');
    await app.connect();
    await app.query('select 1');
    const pinned = client('postgres');
    await pinned.connect();
    // A session advisory lock pins the client to its server connection in transaction mode.
    await pinned.query('select pg_advisory_lock(42)');
    const text = await scrape(metrics.address.port);
    await pinned.query('select pg_advisory_unlock(42)');
    const unpinned = await scrape(metrics.address.port);
    await pinned.end();
    await app.end();
    const pinnedSeries = `pgwarden_proxy_pinned_clients{database="postgres",user="${user}",port="rw"}`;
    assert.equal(metricValue(text, pinnedSeries), 1);
    assert.equal(metricValue(unpinned, pinnedSeries), 0);
    assert.equal(metricValue(text, `pgbouncer_pools_client_active_connections{database="postgres",user="${user}"}`), 2);
    assert.equal(metricValue(text, `pgbouncer_pools_server_active_connections{database="postgres",user="${user}"}`), 1, 'the pinned client holds its connection');
    const idle = metricValue(text, `pgbouncer_pools_server_idle_connections{database="postgres",user="${user}"}`);
    assert.match(text, /^pgbouncer_pools_client_waiting_connections\{/m);
    assert.match(text, /^pgbouncer_up 1$/m);
    assert.match(text, new RegExp(`^pgwarden_proxy_primary\\{host="127.0.0.1",port="${postgres.port}"\\} 1$`, 'm'));
    assert.match(text, /^pgwarden_proxy_primary_changes_total 0$/m);
    assert.ok(metricValue(text, 'pgbouncer_stats_sql_transactions_pooled_total{database="postgres"}') > 0);
    assert.ok(metricValue(text, 'pgbouncer_stats_queries_duration_seconds_total{database="postgres"}') > 0);
    assert.ok(metricValue(text, `pgwarden_proxy_routed_transactions_total{database="postgres",user="${user}",port="rw"}`) > 0);
    assert.equal(metricValue(text, `pgwarden_proxy_server_connections{port="rw",server="127.0.0.1:${postgres.port}"}`), 1 + idle, 'all go to the primary');
    for (const name of ['pgwarden_proxy_transaction_duration_seconds', 'pgwarden_proxy_query_duration_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} histogram$`, 'm'));
      const labels = `database="postgres",user="${user}",port="rw"`;
      const buckets = text.split('\n').filter((l) => l.startsWith(`${name}_bucket{${labels},`)).map((l) => Number(l.split(' ')[1]));
      assert.equal(buckets.length, 17, `16 bounds and +Inf for ${name}`);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i] >= buckets[i - 1], `${name} buckets are cumulative`);
      const count = metricValue(text, `${name}_count{${labels}}`);
      assert.equal(metricValue(text, `${name}_bucket{${labels},le="+Inf"}`), count);
      assert.ok(count > 0, `${name}_count is 0`);
      assert.ok(metricValue(text, `${name}_sum{${labels}}`) > 0);
      assert.match(text, new RegExp(`^${name}_bucket\\{${labels},le="0.001"\\} `, 'm'));
    }
  });

  it("Debian's prometheus-pgbouncer-exporter scrapes the console without errors and reports our numbers", async () => {
    await traffic(5);
    const port = await freePort();
    const exporter = spawn('/usr/bin/python3', ['/usr/bin/prometheus-pgbouncer-exporter', '--pgbouncer-host', '127.0.0.1', '--pgbouncer-port', String(proxy.address.port), '--pgbouncer-user', user, '--host', '127.0.0.1', '--port', String(port)], {
      env: { ...process.env, PGPASSWORD: password },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    exporter.stdout.on('data', (d: Buffer) => (output += d.toString()));
    exporter.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      const text = await waitFor('the exporter to serve /metrics', async () => {
        if (exporter.exitCode !== null) throw new Error(`exporter exited ${exporter.exitCode}: ${output}`);
        return scrape(port).catch(() => undefined);
      }, 20_000);
      const stats = await admin((c) => statsRow(c, 'STATS'));
      const requests = metricValue(text, 'pgbouncer_requests_total{database="postgres"}');
      assert.ok(requests > 0 && requests <= stats.total_requests, `requests ${requests}, SHOW STATS ${stats.total_requests}`);
      assert.ok(metricValue(text, 'pgbouncer_received_bytes_total{database="postgres"}') > 0);
      assert.ok(metricValue(text, 'pgbouncer_sent_bytes_total{database="postgres"}') > 0);
      assert.ok(metricValue(text, 'pgbouncer_query_microseconds_total{database="postgres"}') > 0);
      assert.equal(metricValue(text, 'pgbouncer_pool_size{database="postgres"}'), 3);
      assert.ok(metricValue(text, 'pgbouncer_pools') >= 1);
      assert.ok(metricValue(text, 'pgbouncer_used_clients') >= 1, 'the exporter itself is a client');
      assert.match(text, new RegExp(`^pgbouncer_active_clients\\{database="postgres",user="${user}"\\} `, 'm'));
      // A second scrape after more traffic sees the counters move.
      await traffic(2);
      const again = await scrape(port);
      assert.ok(metricValue(again, 'pgbouncer_requests_total{database="postgres"}') > requests);
      assert.doesNotMatch(output, /Traceback|Error|ERROR|Exception|KeyError/, output);
    } finally {
      exporter.kill('SIGTERM');
      if (exporter.exitCode === null) await new Promise((resolve) => exporter.once('exit', resolve));
    }
  });

  it('a real `pgwarden proxy` process re-reads its config on SIGHUP without dropping a connected client', async () => {
    const port = await freePort();
    const newPort = await freePort();
    const file = path.join(base, 'proxy-process.yml');
    const settings = { ...baseSettings(), listen: `127.0.0.1:${port}`, metrics_listen: undefined, admin_users: [user], stats_users: [] };
    await writeFile(file, stringify(settings));
    const proxy = await startProxyProcess(file, postgres.port);
    const child = proxy.child;
    try {
      const app = client('postgres', user, password, port);
      await app.connect();
      await app.query('begin');
      const pid = (await app.query('select pg_backend_pid() as pid')).rows[0].pid;
      await assert.rejects(admin((c) => c.query('SHOW CONFIG'), 'watcher', 'watchpw', port), (e: pg.DatabaseError) => e.code === '42501');

      await writeFile(file, stringify({ ...settings, default_pool_size: 4, stats_users: ['watcher'], listen: `127.0.0.1:${newPort}` }));
      child.kill('SIGHUP');
      await waitFor('the reload to be logged', async () => /RELOAD: config file re-read/.test(proxy.log()) || undefined, 10_000);
      assert.match(proxy.log(), /"level":40[^\n]*listen changed[^\n]*restart/, 'a warning names the setting that needs a restart');
      assert.equal(child.exitCode, null, 'SIGHUP does not end the process');

      assert.equal((await app.query('select pg_backend_pid() as pid')).rows[0].pid, pid, 'the client keeps its transaction');
      await app.query('commit');
      assert.equal((await app.query('select 5 as n')).rows[0].n, 5);
      const config = await admin(async (c) => new Map((await c.query('SHOW CONFIG')).rows.map((r) => [r.key, r.value])), 'watcher', 'watchpw', port);
      assert.equal(config.get('default_pool_size'), '4');
      assert.equal(config.get('listen_port'), String(port));
      const pools = await admin(async (c) => (await c.query('SHOW DATABASES')).rows, 'watcher', 'watchpw', port);
      assert.equal(Number(pools.find((r) => r.name === 'postgres').pool_size), 4);
      await assert.rejects(client('postgres', user, password, newPort).connect(), 'the new listen address is not used before a restart');
      await app.end();
    } finally {
      await proxy.kill();
    }
  });
});
