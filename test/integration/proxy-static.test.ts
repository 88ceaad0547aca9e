/**
 * The static-mode pooler against a real PostgreSQL 15 with real clients: psql, node-postgres, pgbench.
 * One PostgreSQL server and two proxies (transaction and session mode) are shared by the whole file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';
import { cleanupServers, makePgTempDir, makeTestServer, psql, testCredentials, waitFor } from '../helpers/pg.js';

const run = promisify(execFile);

describe('proxy in static mode', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let postgres: PostgresServer;
  let txProxy: ProxyServer;
  let sessionProxy: ProxyServer;
  let base: string;

  async function startProxy(mode: 'session' | 'transaction', size: number): Promise<ProxyServer> {
    const config = parseProxyConfig(
      { listen: '127.0.0.1:0', pool_mode: mode, default_pool_size: size, auth_file: 'userlist.txt', query_wait_timeout: 20 },
      { source: 'test', baseDir: base },
    );
    const proxy = new ProxyServer({ config, topology: new StaticTopology({ host: '127.0.0.1', port: postgres.port }) });
    await proxy.start();
    return proxy;
  }

  function client(proxy: ProxyServer, extra: pg.ClientConfig = {}): pg.Client {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user, password, database: 'postgres', ...extra });
    c.on('error', () => undefined);
    return c;
  }

  /** Backends running `sql` right now (pg_stat_activity state 'active'), asked of PostgreSQL directly. */
  async function backendsRunning(sql: string): Promise<number> {
    const rows = await psql<{ n: number }>(
      { host: '127.0.0.1', port: postgres.port, user, password, database: 'postgres' },
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND pid <> pg_backend_pid()",
      [sql],
    );
    return rows[0]!.n;
  }

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-static-');
    postgres = await makeTestServer('static', base, credentials, { parameters: { max_connections: 40 } });
    await postgres.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
    txProxy = await startProxy('transaction', 5);
    sessionProxy = await startProxy('session', 5);
  });

  after(async () => {
    await txProxy?.stop(100);
    await sessionProxy?.stop(100);
    await cleanupServers();
  });

  it('node-postgres: simple, parameterized and named prepared queries; a transaction sees its own writes', async () => {
    const c = client(txProxy, { application_name: 'proxy-test', options: '-c statement_timeout=1234 -c my.guc=hello' });
    await c.connect();
    assert.equal((await c.query('SELECT 1 + 1 AS two')).rows[0].two, 2);
    assert.equal((await c.query('SELECT $1::int * 2 AS v, $2::text AS t', [21, 'x'])).rows[0].v, 42);
    assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'proxy-test');
    assert.equal((await c.query('SHOW statement_timeout')).rows[0].statement_timeout, '1234ms');
    assert.equal((await c.query("SELECT current_setting('my.guc') AS g")).rows[0].g, 'hello');
    await c.query('CREATE TABLE IF NOT EXISTS t (id int primary key, v text)');
    await c.query('BEGIN');
    await c.query('INSERT INTO t VALUES (1, $1)', ['one']);
    assert.equal((await c.query('SELECT v FROM t WHERE id = 1')).rows[0].v, 'one');
    await c.query('ROLLBACK');
    assert.equal((await c.query('SELECT count(*)::int AS n FROM t')).rows[0].n, 0);
    for (let i = 0; i < 5; i++) {
      const r = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS sum', values: [i, 1] });
      assert.equal(r.rows[0].sum, i + 1);
    }
    await c.end();
  });

  it('50 concurrent clients over 5 server connections all succeed; at most 5 backends', async () => {
    const clients = Array.from({ length: 50 }, () => client(txProxy));
    await Promise.all(clients.map((c) => c.connect()));
    const results = await Promise.all(
      clients.map(async (c, i) => {
        let sum = 0;
        for (let k = 0; k < 5; k++) {
          await c.query('BEGIN');
          sum += (await c.query('SELECT $1::int AS v, pg_sleep(0.005)', [i])).rows[0].v;
          // Named statements: prepared once per client, re-prepared by the proxy on whichever connection runs them.
          assert.equal((await c.query({ name: `q${i % 3}`, text: `SELECT $1::int + ${i % 3} AS w`, values: [k] })).rows[0].w, k + (i % 3));
          await c.query('COMMIT');
        }
        return sum;
      }),
    );
    assert.deepEqual(results, clients.map((_, i) => i * 5));
    const direct = new pg.Client({ host: '127.0.0.1', port: postgres.port, user, password, database: 'postgres' });
    await direct.connect();
    const backends = (await direct.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename = $1", [user])).rows[0].n;
    await direct.end();
    assert.ok(backends <= 5 + 5, `at most the two pools' backends, got ${backends}`);
    const stats = txProxy.poolStats().get(`postgres/${user}`)!;
    assert.ok(stats.total <= 5, `pool holds ${stats.total}`);
    await Promise.all(clients.map((c) => c.end()));
  });

  it('a wrong password gets 28P01', async () => {
    const c = client(txProxy, { password: 'wrong' });
    await assert.rejects(c.connect(), (e: unknown) => {
      assert.equal((e as { code?: string }).code, '28P01');
      assert.equal((e as Error).message, `password authentication failed for user "${user}"`);
      return true;
    });
  });

  it('garbage on one client closes it with an error; another client keeps working', async () => {
    const good = client(txProxy);
    await good.connect();
    const socket = connect({ host: '127.0.0.1', port: txProxy.address.port });
    await once(socket, 'connect');
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]));
    await once(socket, 'close');
    const reply = Buffer.concat(received);
    assert.equal(reply[0], 0x45, 'an ErrorResponse');
    assert.match(reply.toString('latin1'), /08P01/);
    assert.equal((await good.query('SELECT 7 AS v')).rows[0].v, 7);
    await good.end();
  });

  it("a server connection killed mid-query (pg_terminate_backend) gives PostgreSQL's 57P01 as an ERROR and the client goes on", async () => {
    const c = client(txProxy);
    await c.connect();
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const running = c.query('SELECT pg_sleep(10), pg_backend_pid()');
    const outcome = assert.rejects(running, (e: unknown) => (e as { code?: string }).code === '57P01' && (e as { severity?: string }).severity === 'ERROR');
    await waitFor('pg_sleep(10) to run', async () => (await backendsRunning('SELECT pg_sleep(10), pg_backend_pid()')) === 1);
    const direct = new pg.Client({ host: '127.0.0.1', port: postgres.port, user, password, database: 'postgres' });
    await direct.connect();
    // The sleeping query runs on some pooled connection: terminate every backend that sleeps.
    await direct.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(10)%' AND pid <> pg_backend_pid()");
    await direct.end();
    await outcome;
    assert.equal((await c.query('SELECT 3 AS v')).rows[0].v, 3);
    assert.ok(pid > 0);
    await c.end();
  });

  it('a CancelRequest reaches the server running the query', async () => {
    const c = client(txProxy);
    await c.connect();
    const running = c.query('SELECT pg_sleep(10)');
    await waitFor('pg_sleep(10) to run', async () => (await backendsRunning('SELECT pg_sleep(10)')) === 1);
    // node-postgres keeps the BackendKeyData it got (the proxy's fake key): send the CancelRequest by hand.
    const key = c as unknown as { processID: number; secretKey: number };
    const cancel = connect({ host: '127.0.0.1', port: txProxy.address.port });
    await once(cancel, 'connect');
    cancel.end(m.writeCancelRequest(new MessageWriter(64), key.processID, key.secretKey).flush());
    await once(cancel, 'close');
    await assert.rejects(running, (e: unknown) => (e as { code?: string }).code === '57014');
    // Long before pg_sleep(10) would have ended, its backend runs it no more.
    await waitFor('the backend to stop running pg_sleep(10)', async () => (await backendsRunning('SELECT pg_sleep(10)')) === 0, 5000);
    await c.end();
  });

  it('psql runs a script through the proxy', async () => {
    const script = "CREATE TABLE IF NOT EXISTS ps (x int);\nINSERT INTO ps SELECT generate_series(1, 10);\nSELECT sum(x) FROM ps;\n\\echo done\n";
    const scriptFile = path.join(base, 'script.sql');
    await writeFile(scriptFile, script);
    const { stdout } = await run('/usr/bin/psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', '127.0.0.1', '-p', String(txProxy.address.port), '-U', user, '-d', 'postgres', '-f', scriptFile], {
      env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '5' },
    });
    assert.match(stdout, /^55$/m);
    assert.match(stdout, /^done$/m);
  });

  it('session mode keeps one server connection per client, with SET state and temp tables', async () => {
    const c = client(sessionProxy);
    await c.connect();
    await c.query("SET search_path TO 'pg_catalog'");
    await c.query('CREATE TEMP TABLE tmp1 (x int)');
    await c.query('INSERT INTO tmp1 VALUES (1), (2)');
    assert.equal((await c.query('SELECT count(*)::int AS n FROM tmp1')).rows[0].n, 2);
    assert.equal((await c.query('SHOW search_path')).rows[0].search_path, 'pg_catalog');
    await c.end();
    const d = client(sessionProxy);
    await d.connect();
    await assert.rejects(d.query('SELECT * FROM tmp1'), (e: unknown) => (e as { code?: string }).code === '42P01');
    await d.end();
  });

  it('pgbench -M simple and -M extended run with 0 failed transactions; TPS direct vs proxy', async () => {
    const env = { ...process.env, PGPASSWORD: password };
    const args = (port: number) => ['-h', '127.0.0.1', '-p', String(port), '-U', user];
    await run('/usr/bin/pgbench', ['-i', '-q', '-s', '1', ...args(txProxy.address.port), 'postgres'], { env });
    const tps: Record<string, number> = {};
    for (const mode of ['simple', 'extended']) {
      for (const [name, port] of [['proxy', txProxy.address.port], ['direct', postgres.port]] as const) {
        const { stdout } = await run('/usr/bin/pgbench', ['-c', '10', '-j', '2', '-T', name === 'proxy' ? '5' : '3', '-M', mode, ...args(port), 'postgres'], { env });
        const failed = /number of failed transactions: (\d+)/.exec(stdout);
        assert.ok(failed === null || failed[1] === '0', stdout);
        const processed = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? '0');
        assert.ok(processed > 0, stdout);
        tps[`${mode}/${name}`] = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? '0');
      }
    }
    console.log(`pgbench TPS: ${JSON.stringify(tps)}`);
  });
});
