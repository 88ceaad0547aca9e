/**
 * The admin console and /metrics of the proxy against a real PostgreSQL 15, with psql, node-postgres and the
 * real Debian prometheus-pgbouncer-exporter's collectors as clients.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { type AdminConsole, attachAdminConsole } from '../../src/proxy/admin/console.js';
import { COLUMNS, type ShowSubject } from '../../src/proxy/admin/commands.js';
import { ProxyMetricsServer, createProxyMetricsRegistry } from '../../src/proxy/metrics.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials } from '../helpers/pg.js';

const run = promisify(execFile);

describe('proxy admin console', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let postgres: PostgresServer;
  let proxy: ProxyServer;
  let adminConsole: AdminConsole;
  let metrics: ProxyMetricsServer;
  let base: string;

  function client(database: string, as = user, pw = password): pg.Client {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user: as, password: pw, database });
    c.on('error', () => undefined);
    return c;
  }

  async function psqlColumns(subject: string): Promise<string[]> {
    const { stdout } = await run('/usr/bin/psql', ['-h', '127.0.0.1', '-p', String(proxy.address.port), '-U', user, '-d', 'pgbouncer', '-A', '-F', '|', '-c', `SHOW ${subject};`], {
      env: { ...process.env, PGPASSWORD: password },
    });
    return stdout.split('\n')[0].split('|');
  }

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-admin-');
    postgres = await makeTestServer('admin', base, credentials, { parameters: { max_connections: 30 } });
    await postgres.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n"watcher" "watchpw"\n"nobody" "nobodypw"\n`);
    const config = parseProxyConfig(
      { listen: '127.0.0.1:0', pool_mode: 'transaction', default_pool_size: 3, auth_file: 'userlist.txt', admin_users: [user], stats_users: ['watcher'], metrics_listen: '127.0.0.1:0' },
      { source: 'test', baseDir: base },
    );
    const topology = new StaticTopology({ host: '127.0.0.1', port: postgres.port });
    proxy = new ProxyServer({ config, topology });
    await proxy.start();
    adminConsole = attachAdminConsole(proxy, { config, topology });
    metrics = new ProxyMetricsServer(createProxyMetricsRegistry({ console: adminConsole, topology }));
    await metrics.start(config.metrics_listen!);
    // A pool to report on.
    const app = client('postgres');
    await app.connect();
    await app.query('select 1');
    await app.end();
  });

  after(async () => {
    await metrics?.stop();
    await proxy?.stop(100);
    await cleanupServers();
  });

  it('answers SHOW with PgBouncer 1.18 column names and order through psql', async () => {
    for (const subject of ['POOLS', 'STATS', 'STATS_TOTALS', 'SERVERS', 'CLIENTS', 'DATABASES', 'LISTS', 'CONFIG', 'VERSION'] satisfies ShowSubject[]) {
      assert.deepEqual(await psqlColumns(subject), [...COLUMNS[subject]], subject);
    }
    assert.deepEqual(COLUMNS.POOLS.slice(0, 4), ['database', 'user', 'cl_active', 'cl_waiting']);
    const admin = client('pgwarden');
    await admin.connect();
    const pools = await admin.query('SHOW POOLS');
    const row = pools.rows.find((r) => r.database === 'postgres' && r.user === user);
    assert.ok(row, JSON.stringify(pools.rows));
    assert.equal(row.pool_mode, 'transaction');
    assert.equal(Number(row.sv_idle) + Number(row.sv_active), 1);
    const version = await admin.query('SHOW VERSION');
    assert.match(version.rows[0].version, /^PgBouncer 1\.18/);
    const lists = await admin.query('SHOW LISTS');
    assert.equal(Number(lists.rows.find((r) => r.list === 'pools').items), 1);
    await assert.rejects(admin.query('SHOW NONSENSE'), (e: pg.DatabaseError) => e.code === '42601' && /SHOW POOLS/.test(e.hint ?? ''));
    await admin.end();
  });

  it('refuses users outside admin_users/stats_users, and control commands to stats users', async () => {
    const nobody = client('pgbouncer', 'nobody', 'nobodypw');
    await assert.rejects(nobody.connect(), (e: pg.DatabaseError) => e.code === '42501' && e.message === 'not allowed');
    const watcher = client('pgbouncer', 'watcher', 'watchpw');
    await watcher.connect();
    assert.ok((await watcher.query('SHOW POOLS')).rows.length >= 1);
    await assert.rejects(watcher.query('PAUSE'), (e: pg.DatabaseError) => e.code === '42501');
    assert.equal(adminConsole.paused, false);
    await watcher.end();
    const wrongPassword = client('pgbouncer', user, 'wrong');
    await assert.rejects(wrongPassword.connect(), (e: pg.DatabaseError) => e.code === '28P01');
  });

  it('PAUSE holds a new transaction until RESUME', async () => {
    const admin = client('pgbouncer');
    const app = client('postgres');
    await admin.connect();
    await app.connect();
    await admin.query('PAUSE');
    assert.equal(adminConsole.paused, true);
    let done = false;
    const pending = app.query('select 42 as answer').then((r) => {
      done = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(done, false, 'a transaction ran while paused');
    const waiting = (await admin.query('SHOW POOLS')).rows.find((r) => r.database === 'postgres');
    assert.equal(Number(waiting.cl_waiting), 1);
    await admin.query('RESUME');
    assert.equal((await pending).rows[0].answer, 42);
    await app.end();
    await admin.end();
  });

  it('KILL drops the clients of a database; RELOAD without a config file is an error', async () => {
    const admin = client('pgbouncer');
    const app = client('postgres');
    await admin.connect();
    await app.connect();
    await app.query('select 1');
    const ended = new Promise((resolve) => app.once('end', resolve));
    await admin.query('KILL postgres');
    await ended;
    await assert.rejects(admin.query('RELOAD'), (e: pg.DatabaseError) => e.code === '55000');
    await admin.end();
  });

  it('serves pool gauges under pgbouncer_exporter names on /metrics', async () => {
    const app = client('postgres');
    await app.connect();
    await app.query('select 1');
    const text = await (await fetch(`http://127.0.0.1:${metrics.address.port}/metrics`)).text();
    await app.end();
    const active = new RegExp(`^pgbouncer_pools_client_active_connections\\{database="postgres",user="${user}"\\} 1$`, 'm');
    assert.match(text, active);
    assert.match(text, new RegExp(`^pgbouncer_pools_server_idle_connections\\{database="postgres",user="${user}"\\} 1$`, 'm'));
    assert.match(text, /^pgbouncer_pools_client_waiting_connections\{/m);
    assert.match(text, /^pgbouncer_pools_server_active_connections\{/m);
    assert.match(text, /^pgbouncer_up 1$/m);
    assert.match(text, new RegExp(`^pgwarden_proxy_primary\\{host="127.0.0.1",port="${postgres.port}"\\} 1$`, 'm'));
  });

  it("Debian's prometheus-pgbouncer-exporter collectors read POOLS, DATABASES and LISTS from the console", async () => {
    // The exporter's own collectors, run once; its StatsCollector expects PgBouncer < 1.8's total_requests column.
    const script = `
import sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_pgbouncer_exporter.utils import get_connection
from prometheus_pgbouncer_exporter.collectors import PoolsCollector, DatabasesCollector, ListsCollector
c = get_connection(sys.argv[1], sys.argv[2], '127.0.0.1')
r = CollectorRegistry()
for k in (PoolsCollector, DatabasesCollector):
    r.register(k(connection=c, databases=None))
r.register(ListsCollector(connection=c))
sys.stdout.write(generate_latest(r).decode())
`;
    const { stdout } = await run('/usr/bin/python3', ['-c', script, user, String(proxy.address.port)], { env: { ...process.env, PGPASSWORD: password } });
    assert.match(stdout, new RegExp(`^pgbouncer_active_clients\\{database="postgres",user="${user}"\\} \\d`, 'm'));
    assert.match(stdout, /^pgbouncer_pool_size\{database="postgres"\} 3\.0$/m);
    assert.match(stdout, /^pgbouncer_pools 1\.0$/m);
  });
});
