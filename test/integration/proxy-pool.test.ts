/**
 * PgBouncer's pool knobs against real PostgreSQL 15, asserted on numbers: backends in pg_stat_activity, pool
 * stats, and timings (with generous bounds, only where the knob is a time). Then transaction-mode clients across
 * a primary switch (two independent servers and a topology the test switches): clients idle in a transaction
 * stay connected, get 40001, roll back, and run their next transaction on the new primary.
 *
 * Each test uses its own database, so that its backends can be counted apart from the others'.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import * as m from '../../src/proxy/protocol/messages.js';
import type { PoolStats } from '../../src/proxy/pool/server-pool.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { type Endpoint, StaticTopology, type Topology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';
import { RawClient } from '../helpers/raw-client.js';

/** Test-only topology: the test moves the primary and the pools follow, as they follow etcd. */
class SwitchableTopology extends EventEmitter implements Topology {
  constructor(private current: Endpoint | null) {
    super();
  }

  primary(): Endpoint | null {
    return this.current;
  }

  replicas(): readonly Endpoint[] {
    return [];
  }

  switchTo(endpoint: Endpoint | null): void {
    this.current = endpoint;
    this.emit('change');
  }
}

const credentials = testCredentials();
const user = credentials.superuser.username;
const password = credentials.superuser.password;
const APP2 = 'app2';
const APP2_PASSWORD = 'app2-secret';
let base: string;
let a: PostgresServer;
let b: PostgresServer;
let direct: pg.Client;
const proxies = new Set<ProxyServer>();

async function startProxy(settings: Record<string, unknown>, topology?: Topology): Promise<ProxyServer> {
  const config = parseProxyConfig({ listen: '127.0.0.1:0', auth_file: 'userlist.txt', ...settings }, { source: 'test', baseDir: base });
  const proxy = new ProxyServer({ config, topology: topology ?? new StaticTopology({ host: '127.0.0.1', port: a.port }) });
  await proxy.start();
  proxies.add(proxy);
  return proxy;
}

async function stopProxy(proxy: ProxyServer): Promise<void> {
  proxies.delete(proxy);
  await proxy.stop(100);
}

function client(proxy: ProxyServer, database: string, extra: pg.ClientConfig = {}): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user, password, database, ...extra });
  c.on('error', () => undefined);
  return c;
}

/** Backends of `database` on server A (the proxies' server connections; the test's own connection excluded). */
async function backends(database: string, server: pg.Client = direct): Promise<number> {
  const r = await server.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()", [database]);
  return r.rows[0].n as number;
}

/** Counts backends(database) over and over while `work` runs; returns the largest count seen and the work's result. */
async function watchBackends<T>(database: string, work: Promise<T>): Promise<{ max: number; samples: number[]; result: T }> {
  const samples: number[] = [];
  let done = false;
  const settled = work.finally(() => {
    done = true;
  });
  while (!done) samples.push(await backends(database));
  const result = await settled;
  return { max: Math.max(0, ...samples), samples, result };
}

/**
 * Waits until the backends of `database` on server A have all been idle (PostgreSQL's own state_change) for more
 * than `ms`, and returns how many there are: a state in which the proxy's housekeeping has judged them idle.
 */
async function idleBackendsFor(database: string, ms: number): Promise<number> {
  return waitFor(`backends of ${database} idle for ${ms} ms`, async () => {
    const r = await direct.query(
      "SELECT count(*)::int AS n, coalesce(bool_and(state = 'idle' AND now() - state_change > make_interval(secs => $2::float8 / 1000)), false) AS all_idle FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
      [database, ms],
    );
    return r.rows[0].all_idle === true ? (r.rows[0].n as number) : undefined;
  }, 10_000);
}

/** Polls the proxy's own pool numbers (in-process, so every 10 ms) until `probe` holds. */
async function untilPool(proxy: ProxyServer, key: string, what: string, probe: (stats: PoolStats) => boolean, timeoutMs = 10_000): Promise<PoolStats> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = proxy.poolStats().get(key);
    if (stats !== undefined && probe(stats)) return stats;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(stats)}`);
    await sleep(10);
  }
}

async function createDatabases(...names: string[]): Promise<void> {
  for (const name of names) await direct.query(`CREATE DATABASE ${name}`);
}

before(async () => {
  base = await makePgTempDir('pgwarden-proxy-pool-');
  a = await makeTestServer('a', base, credentials, { parameters: { max_connections: 80 } });
  b = await makeTestServer('b', base, credentials, { parameters: { max_connections: 30 } });
  await Promise.all([a.bootstrap(), b.bootstrap()]);
  await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n"${APP2}" "${APP2_PASSWORD}"\n`);
  direct = new pg.Client({ host: '127.0.0.1', port: a.port, user, password, database: 'postgres' });
  direct.on('error', () => undefined);
  await direct.connect();
  await direct.query(`CREATE ROLE ${APP2} LOGIN PASSWORD '${APP2_PASSWORD}'`);
});

after(async () => {
  for (const proxy of [...proxies]) await stopProxy(proxy).catch(() => undefined);
  await direct?.end().catch(() => undefined);
  await cleanupServers();
});

describe('pool knobs', { timeout: 120_000 }, () => {
  it("pool_mode per database and per user: the user's wins over the database's, which wins over the global one", async () => {
    await createDatabases('pm_session');
    const proxy = await startProxy({
      pool_mode: 'transaction',
      default_pool_size: 2,
      databases: { pm_session: { pool_mode: 'session' }, postgres: null },
      user_settings: { [APP2]: { pool_mode: 'session' } },
    });
    const holds = async (database: string, as: { user?: string; password?: string } = {}): Promise<number> => {
      const c = client(proxy, database, as);
      await c.connect();
      try {
        await c.query('SELECT 1');
        // The connection goes back to the pool (transaction mode) as its ReadyForQuery is forwarded, before the
        // client reads it. An idle client still holding its server connection is session pooling.
        return [...proxy.poolStats()].filter(([key]) => key.startsWith(`${database}/`)).reduce((n, [, s]) => n + s.active, 0);
      } finally {
        await c.end();
      }
    };
    assert.equal(await holds('postgres'), 0, 'transaction mode (global): the idle client holds nothing');
    assert.equal(await holds('pm_session'), 1, 'session mode (the database\'s)');
    assert.equal(await holds('postgres', { user: APP2, password: APP2_PASSWORD }), 1, 'session mode (the user\'s)');
    await stopProxy(proxy);
  });

  it('min_pool_size keeps 3 connections open with no client, across server_idle_timeout, and refills killed ones', async () => {
    await createDatabases('k_min');
    const proxy = await startProxy({ default_pool_size: 5, min_pool_size: 3, server_idle_timeout: 1 });
    try {
      const c = client(proxy, 'k_min');
      await c.connect();
      assert.equal((await c.query('SELECT 1 AS v')).rows[0].v, 1);
      await c.end();
      await waitFor('3 backends', async () => (await backends('k_min')) === 3 || undefined, 5000);
      // Idle longer than server_idle_timeout (and a housekeeping round): the idle timeout never goes below min_pool_size.
      assert.equal(await idleBackendsFor('k_min', 1500), 3);
      assert.equal(proxy.poolStats().get(`k_min/${user}`)?.total, 3);
      await direct.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'k_min' AND pid <> pg_backend_pid()");
      await waitFor('the pool refilled to 3', async () => (await backends('k_min')) === 3 || undefined, 5000);
      // Housekeeping rounds (every 250 ms) have passed since the refill: still no more than min_pool_size.
      assert.equal(await idleBackendsFor('k_min', 600), 3, 'never more than min_pool_size without clients');
    } finally {
      await stopProxy(proxy);
    }
  });

  it('reserve_pool_size: 2 connections, then 2 more once a client waited reserve_pool_timeout, never more', async () => {
    await createDatabases('k_res');
    const proxy = await startProxy({ default_pool_size: 2, reserve_pool_size: 2, reserve_pool_timeout: 0.6, query_wait_timeout: 30 });
    try {
      const clients = Array.from({ length: 6 }, () => client(proxy, 'k_res'));
      await Promise.all(clients.map((c) => c.connect()));
      const key = `k_res/${user}`;
      const work = Promise.all(clients.map(async (c) => (await c.query('SELECT pg_sleep(1.5), 1 AS v')).rows[0].v as number));
      const watched = watchBackends('k_res', work);
      // Before the timeout only the pool itself works: 2 connections run queries, 4 clients wait.
      const early = await untilPool(proxy, key, '6 queries on 2 connections', (s) => s.waiting === 4 && s.active === 2 && s.opening === 0);
      assert.equal(early.total, 2, `2 connections before reserve_pool_timeout: ${JSON.stringify(early)}`);
      // Then the reserve: 4 connections run queries at once (the waiters are served by the reserve, not after the pool's).
      await untilPool(proxy, key, '4 connections running queries', (s) => s.active === 4 && s.opening === 0);
      const { max, samples, result } = await watched;
      assert.deepEqual(result, [1, 1, 1, 1, 1, 1]);
      assert.equal(max, 4, `default_pool_size + reserve_pool_size: ${JSON.stringify(samples)}`);
      await Promise.all(clients.map((c) => c.end()));
    } finally {
      await stopProxy(proxy);
    }
  });

  it('max_db_connections caps the pools of all users of a database at 3; a waiting user gets an idle connection of another', async () => {
    await createDatabases('k_maxdb');
    await direct.query(`GRANT ALL ON DATABASE k_maxdb TO ${APP2}`);
    const proxy = await startProxy({ default_pool_size: 5, max_db_connections: 3, query_wait_timeout: 30 });
    try {
      // app2 logs in first: its pool opens one connection (to learn the server's parameters) that stays idle.
      const others = Array.from({ length: 2 }, () => client(proxy, 'k_maxdb', { user: APP2, password: APP2_PASSWORD }));
      await Promise.all(others.map((c) => c.connect()));
      const holders = Array.from({ length: 3 }, () => client(proxy, 'k_maxdb'));
      await Promise.all(holders.map((c) => c.connect()));
      // Three transactions held open: the third needs app2's idle connection closed to stay within 3.
      for (const c of holders) await c.query('BEGIN');
      for (const c of holders) await c.query('SELECT 1');
      assert.equal(await backends('k_maxdb'), 3);
      assert.equal(proxy.poolStats().get(`k_maxdb/${APP2}`)?.total, 0);
      let finished = 0;
      const waiting = Promise.all(
        others.map(async (c) => {
          const r = await c.query('SELECT current_user AS u');
          finished++;
          return r.rows[0].u as string;
        }),
      );
      await untilPool(proxy, `k_maxdb/${APP2}`, 'both app2 clients waiting', (s) => s.waiting === 2);
      assert.equal(finished, 0, 'app2 waits while the database is at max_db_connections');
      assert.equal(await backends('k_maxdb'), 3);
      assert.equal(proxy.poolStats().get(`k_maxdb/${APP2}`)?.total, 0, 'no connection opened past max_db_connections');
      const { max, result } = await watchBackends('k_maxdb', (async () => {
        for (const c of holders) await c.query('COMMIT');
        return waiting;
      })());
      assert.deepEqual(result, [APP2, APP2]);
      assert.ok(max <= 3, `at most 3 backends of k_maxdb, saw ${max}`);
      await Promise.all([...holders, ...others].map((c) => c.end()));
    } finally {
      await stopProxy(proxy);
    }
  });

  it('databases: per-database pool_size and max_db_connections override the defaults', async () => {
    await createDatabases('k_psize', 'k_plain');
    const proxy = await startProxy({ default_pool_size: 4, databases: { k_psize: { pool_size: 1 }, k_plain: null, app: { dbname: 'k_plain', max_db_connections: 2 } } });
    try {
      const run = async (database: string, n: number): Promise<number> => {
        const clients = Array.from({ length: n }, () => client(proxy, database));
        await Promise.all(clients.map((c) => c.connect()));
        const { max } = await watchBackends(database === 'app' ? 'k_plain' : database, Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.4)'))));
        await Promise.all(clients.map((c) => c.end()));
        return max;
      };
      assert.equal(await run('k_psize', 3), 1);
      assert.equal(await run('k_plain', 5), 4);
      await proxy.stop(100);
      proxies.delete(proxy);
      await waitFor('k_plain closed', async () => (await backends('k_plain')) === 0 || undefined, 5000);
      const second = await startProxy({ default_pool_size: 4, databases: { app: { dbname: 'k_plain', max_db_connections: 2 } } });
      const clients = Array.from({ length: 4 }, () => client(second, 'app'));
      await Promise.all(clients.map((c) => c.connect()));
      const { max } = await watchBackends('k_plain', Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.4)'))));
      assert.equal(max, 2);
      await Promise.all(clients.map((c) => c.end()));
      await stopProxy(second);
    } finally {
      if (proxies.has(proxy)) await stopProxy(proxy);
    }
  });

  it('max_client_conn: the 4th client of 3 gets FATAL 08P01 "no more connections allowed (max_client_conn)"', async () => {
    const proxy = await startProxy({ max_client_conn: 3 });
    try {
      const clients = Array.from({ length: 3 }, () => client(proxy, 'postgres'));
      await Promise.all(clients.map((c) => c.connect()));
      const fourth = client(proxy, 'postgres');
      await assert.rejects(fourth.connect(), (e: unknown) => {
        assert.equal((e as { code?: string }).code, '08P01');
        assert.equal((e as { severity?: string }).severity, 'FATAL');
        assert.equal((e as Error).message, 'no more connections allowed (max_client_conn)');
        return true;
      });
      for (const c of clients) assert.equal((await c.query('SELECT 2 AS v')).rows[0].v, 2);
      await clients[0].end();
      const fifth = client(proxy, 'postgres');
      await waitFor('a free client slot', async () => {
        const c = client(proxy, 'postgres');
        try {
          await c.connect();
          await c.end();
          return true;
        } catch {
          return undefined;
        }
      }, 5000);
      await fifth.connect();
      assert.equal((await fifth.query('SELECT 5 AS v')).rows[0].v, 5);
      await Promise.all([fifth.end(), clients[1].end(), clients[2].end()]);
    } finally {
      await stopProxy(proxy);
    }
  });

  it('query_wait_timeout: a client that gets no server connection within 1 s is disconnected (08P01)', async () => {
    const proxy = await startProxy({ default_pool_size: 1, query_wait_timeout: 1 });
    try {
      const holder = client(proxy, 'postgres');
      await holder.connect();
      await holder.query('BEGIN');
      const waiter = client(proxy, 'postgres');
      await waiter.connect();
      const answer = waiter.query('SELECT 1');
      // It waits in the pool first (the timeout's own timing is a unit test with a fake clock: proxy-pool-timing).
      await untilPool(proxy, `postgres/${user}`, 'the client waiting for the busy connection', (s) => s.waiting === 1);
      await assert.rejects(answer, (e: unknown) => {
        assert.equal((e as { code?: string }).code, '08P01');
        assert.equal((e as Error).message, 'query_wait_timeout');
        return true;
      });
      assert.equal(proxy.poolStats().get(`postgres/${user}`)?.waiting, 0);
      await holder.query('COMMIT');
      assert.equal((await holder.query('SELECT 3 AS v')).rows[0].v, 3);
      await holder.end();
    } finally {
      await stopProxy(proxy);
    }
  });

  it('server_idle_timeout closes idle server connections after 1 s; server_lifetime 1 s renews a busy one', async () => {
    await createDatabases('k_idle', 'k_life');
    const proxy = await startProxy({ default_pool_size: 3, server_idle_timeout: 1, server_lifetime: 1 });
    try {
      const clients = Array.from({ length: 3 }, () => client(proxy, 'k_idle'));
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.2)')));
      // Just released: not closed yet (when exactly they go is a unit test with a fake clock: proxy-pool-timing).
      assert.equal(await backends('k_idle'), 3);
      await waitFor('idle connections closed', async () => (await backends('k_idle')) === 0 || undefined, 5000);
      assert.equal(proxy.poolStats().get(`k_idle/${user}`)?.total, 0);
      // The clients stay connected and get new server connections.
      for (const c of clients) assert.equal((await c.query('SELECT 1 AS v')).rows[0].v, 1);
      await Promise.all(clients.map((c) => c.end()));

      const c = client(proxy, 'k_life');
      await c.connect();
      const pid = async () => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
      const first = await pid();
      assert.equal(await pid(), first, 'reused within server_lifetime');
      // Kept busy (one query of 0.1 s after another, so never idle 1 s): renewed on release once older than 1 s.
      const busyPid = async () => (await c.query('SELECT pg_backend_pid() AS p, pg_sleep(0.1)')).rows[0].p as number;
      const order = [first];
      const served = new Map([[first, 2]]);
      for (let queries = 0; order.length < 3; queries++) {
        assert.ok(queries < 200, `not renewed twice in 200 queries of 0.1 s: ${JSON.stringify([...served])}`);
        const p = await busyPid();
        if (!served.has(p)) order.push(p);
        served.set(p, (served.get(p) ?? 0) + 1);
      }
      // Renewed twice; in between, one backend served the queries of its lifetime (about 10), not one each.
      assert.ok(served.get(order[1])! >= 3, `the second backend served ${served.get(order[1])} queries of 0.1 s (server_lifetime 1 s)`);
      await c.end();
    } finally {
      await stopProxy(proxy);
    }
  });

  it('server_reset_query runs in session mode when a client leaves (and not when it is empty)', async () => {
    await createDatabases('k_reset');
    const withReset = await startProxy({ pool_mode: 'session', default_pool_size: 1, server_reset_query: 'DISCARD ALL' });
    const withoutReset = await startProxy({ pool_mode: 'session', default_pool_size: 1, server_reset_query: '' });
    try {
      const leaveState = async (proxy: ProxyServer): Promise<number> => {
        const c = client(proxy, 'k_reset');
        await c.connect();
        await c.query("SET work_mem = '77MB'");
        await c.query('CREATE TEMP TABLE left_behind (x int)');
        const p = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
        await c.end();
        return p;
      };
      const seeState = async (proxy: ProxyServer): Promise<{ pid: number; workMem: string; temp: boolean }> => {
        const c = client(proxy, 'k_reset');
        await c.connect();
        const r = await c.query("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS wm, to_regclass('pg_temp.left_behind') IS NOT NULL AS temp");
        await c.end();
        return { pid: r.rows[0].pid, workMem: r.rows[0].wm, temp: r.rows[0].temp };
      };
      const pid1 = await leaveState(withReset);
      const after1 = await seeState(withReset);
      assert.equal(after1.pid, pid1, 'the same server connection (pool size 1)');
      assert.equal(after1.workMem, '4MB');
      assert.equal(after1.temp, false);
      const pid2 = await leaveState(withoutReset);
      const after2 = await seeState(withoutReset);
      assert.equal(after2.pid, pid2);
      assert.equal(after2.workMem, '77MB', 'no reset query: the next client inherits the session');
      assert.equal(after2.temp, true);
    } finally {
      await stopProxy(withReset);
      await stopProxy(withoutReset);
    }
  });

  it('idle_transaction_timeout: a client idle inside a transaction for 1 s is disconnected and its transaction rolled back', async () => {
    await createDatabases('k_itx');
    const proxy = await startProxy({ idle_transaction_timeout: 1 });
    try {
      const setup = client(proxy, 'k_itx');
      await setup.connect();
      await setup.query('CREATE TABLE t (x int)');
      // From here on `setup` is idle outside a transaction, and then busy inside one, for as long as the sweep
      // takes to disconnect `idle` (idle inside a transaction since after setup's last statement): both untouched.
      const outside = client(proxy, 'k_itx');
      await outside.connect();
      assert.equal((await outside.query('SELECT 1 AS v')).rows[0].v, 1);
      const idle = client(proxy, 'k_itx');
      await idle.connect();
      const errors: Error[] = [];
      idle.on('error', (e) => errors.push(e));
      let idleEnded = false;
      const ended = new Promise<void>((resolve) =>
        idle.on('end', () => {
          idleEnded = true;
          resolve();
        }),
      );
      await setup.query('BEGIN');
      await idle.query('BEGIN');
      await idle.query('INSERT INTO t VALUES (1)');
      // Busy inside a transaction: a statement, then a pause shorter than the timeout, until `idle` is gone.
      let statements = 0;
      while (!idleEnded) {
        await setup.query('SELECT pg_sleep(0.05)');
        statements++;
        await Promise.race([ended, sleep(300)]);
      }
      await setup.query('COMMIT');
      assert.ok(statements >= 2, `setup ran ${statements} statements in its transaction meanwhile`);
      assert.equal((await outside.query('SELECT 1 AS v')).rows[0].v, 1, 'idle outside a transaction all along: untouched');
      await outside.end();
      assert.equal(errors[0]?.message, 'idle transaction timeout');
      assert.equal((errors[0] as { code?: string }).code, '08P01');
      assert.equal((await setup.query('SELECT count(*)::int AS n FROM t')).rows[0].n, 0, 'the transaction was rolled back');
      assert.equal((await setup.query('SELECT 1 AS v')).rows[0].v, 1);
      await setup.end();
    } finally {
      await stopProxy(proxy);
    }
  });

  it('client_idle_timeout: a client idle for 1 s is disconnected; a busy one is not', async () => {
    const proxy = await startProxy({ client_idle_timeout: 1 });
    try {
      const idle = client(proxy, 'postgres');
      const busy = client(proxy, 'postgres');
      await Promise.all([idle.connect(), busy.connect()]);
      const errors: Error[] = [];
      idle.on('error', (e) => errors.push(e));
      let idleEnded = false;
      const ended = new Promise<void>((resolve) =>
        idle.on('end', () => {
          idleEnded = true;
          resolve();
        }),
      );
      // Busy: a query, then a pause shorter than the timeout, until the idle client is disconnected; then still served.
      let queries = 0;
      while (!idleEnded) {
        assert.equal((await busy.query('SELECT 1 AS v')).rows[0].v, 1);
        queries++;
        await Promise.race([ended, sleep(250)]);
      }
      assert.ok(queries >= 2, `the busy client ran ${queries} queries meanwhile`);
      assert.equal((await busy.query('SELECT 1 AS v')).rows[0].v, 1);
      assert.equal(errors[0]?.message, 'client_idle_timeout');
      await busy.end();
    } finally {
      await stopProxy(proxy);
    }
  });
});

/** A message as the failover tests compare it: [type char, detail] (SQLSTATE, tag or status). */
function brief(type: number, body: Buffer): [string, string] {
  const t = String.fromCharCode(type);
  if (type === m.BackendType.ErrorResponse) return [t, m.decodeErrorFields(body, 0, body.length).code];
  if (type === m.BackendType.CommandComplete) return [t, body.toString('utf8', 0, body.length - 1)];
  if (type === m.BackendType.ReadyForQuery) return [t, String.fromCharCode(body[0])];
  return [t, ''];
}

describe('transaction mode across a primary switch', { timeout: 60_000 }, () => {
  it('clients idle in a transaction stay connected: 40001, failed state until ROLLBACK, next transaction on the new primary', async () => {
    const proxyStartedAt = new Date();
    const topology = new SwitchableTopology({ host: '127.0.0.1', port: a.port });
    const proxy = await startProxy({ auth_type: 'trust', default_pool_size: 10, query_wait_timeout: 10 }, topology);
    const setupB = new pg.Client({ host: '127.0.0.1', port: b.port, user, password, database: 'postgres' });
    await setupB.connect();
    for (const c of [direct, setupB]) await c.query('CREATE TABLE IF NOT EXISTS lost (who text)');
    const clients = Array.from({ length: 6 }, () => client(proxy, 'postgres'));
    const raw = await RawClient.open(proxy.address.port, { user, database: 'postgres' }, brief);
    const rawNamed = await RawClient.open(proxy.address.port, { user, database: 'postgres' }, brief);
    try {
      await Promise.all(clients.map((c) => c.connect()));
      const [idleSelect, idleCommit, idleRollback, inFlightTx, inFlightAuto, idleExtended] = clients;
      for (const [i, c] of [idleSelect, idleCommit, idleRollback, inFlightTx, idleExtended].entries()) {
        await c.query('BEGIN');
        await c.query(`INSERT INTO lost VALUES ('c${i}')`);
        assert.equal((await c.query('SELECT inet_server_port() AS port')).rows[0].port, a.port);
      }
      // Mid-batch: Parse/Bind/Execute sent inside a transaction, Sync not yet.
      raw.send((w) => m.writeQuery(w, "BEGIN; INSERT INTO lost VALUES ('raw')"));
      assert.deepEqual((await raw.untilReady()).at(-1), ['Z', 'T']);
      raw.send((w) => {
        m.writeParse(w, '', "INSERT INTO lost VALUES ('raw-batch')");
        m.writeBind(w, '', '');
        m.writeExecute(w, '');
      });
      // A driver that prepares COMMIT/ROLLBACK as named statements (pgjdbc does).
      rawNamed.send((w) => m.writeQuery(w, "BEGIN; INSERT INTO lost VALUES ('raw-named')"));
      assert.deepEqual((await rawNamed.untilReady()).at(-1), ['Z', 'T']);
      const txInFlight = inFlightTx.query('SELECT pg_sleep(5)');
      const autoInFlight = inFlightAuto.query('SELECT pg_sleep(5)');
      const settledInFlight = Promise.allSettled([txInFlight, autoInFlight]);
      const sleepsRunning = async (): Promise<number> =>
        (await direct.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(5)'")).rows[0].n as number;
      await waitFor('both statements running on the old primary', async () => (await sleepsRunning()) === 2 || undefined, 5000);

      topology.switchTo({ host: '127.0.0.1', port: b.port });

      const [txOutcome, autoOutcome] = await settledInFlight;
      // At once: their pg_sleep(5) still runs on the old primary (it does not notice the closed socket while sleeping).
      assert.equal(await sleepsRunning(), 2, 'statements in flight fail at once');
      for (const outcome of [txOutcome, autoOutcome]) {
        assert.equal(outcome.status, 'rejected');
        assert.equal((outcome as PromiseRejectedResult).reason.code, '08006');
        assert.doesNotMatch((outcome as PromiseRejectedResult).reason.message, /rolled back/);
      }
      const code = async (p: Promise<unknown>): Promise<string | undefined> => {
        try {
          await p;
          return 'ok';
        } catch (e) {
          return (e as { code?: string }).code;
        }
      };
      const port = async (c: pg.Client): Promise<number> => (await c.query('SELECT inet_server_port() AS port')).rows[0].port as number;

      // Idle in a transaction: the next statement gets 40001, then 25P02 until ROLLBACK.
      assert.equal(await code(idleSelect.query('SELECT 1')), '40001');
      assert.equal(await code(idleSelect.query('SELECT 1')), '25P02');
      assert.equal((await idleSelect.query('ROLLBACK')).command, 'ROLLBACK');
      assert.equal(await port(idleSelect), b.port);
      // COMMIT of a lost transaction fails with 40001 and ends the transaction.
      assert.equal(await code(idleCommit.query('COMMIT')), '40001');
      assert.equal(await port(idleCommit), b.port);
      // ROLLBACK of a lost transaction is simply done.
      assert.equal((await idleRollback.query('ROLLBACK')).command, 'ROLLBACK');
      assert.equal(await port(idleRollback), b.port);
      // In flight inside a transaction: failed state (25P02) until ROLLBACK; COMMIT answers ROLLBACK as PostgreSQL does.
      assert.equal(await code(inFlightTx.query('SELECT 1')), '25P02');
      assert.equal((await inFlightTx.query('COMMIT')).command, 'ROLLBACK');
      assert.equal(await port(inFlightTx), b.port);
      // In flight outside a transaction: the connection just goes on.
      assert.equal(await port(inFlightAuto), b.port);
      // Extended protocol (parameters) in the lost transaction.
      assert.equal(await code(idleExtended.query('SELECT $1::int AS v', [1])), '40001');
      assert.equal(await code(idleExtended.query('SELECT $1::int AS v', [1])), '25P02');
      assert.equal((await idleExtended.query('ROLLBACK')).command, 'ROLLBACK');
      assert.equal((await idleExtended.query('SELECT $1::int AS v, inet_server_port() AS port', [7])).rows[0].port, b.port);

      // The batch cut by the switch: skipped until its Sync, which gets the error and 'E'.
      raw.send((w) => m.writeSync(w));
      assert.deepEqual(await raw.untilReady(), [['E', '40001'], ['Z', 'E']]);
      raw.send((w) => {
        m.writeParse(w, '', 'SELECT 1');
        m.writeBind(w, '', '');
        m.writeExecute(w, '');
        m.writeSync(w);
      });
      assert.deepEqual(await raw.untilReady(), [['E', '25P02'], ['Z', 'E']]);
      raw.send((w) => {
        m.writeParse(w, '', 'ROLLBACK');
        m.writeBind(w, '', '');
        m.writeDescribe(w, 'P', '');
        m.writeExecute(w, '');
        m.writeSync(w);
      });
      assert.deepEqual(await raw.untilReady(), [['1', ''], ['2', ''], ['n', ''], ['C', 'ROLLBACK'], ['Z', 'I']]);
      raw.send((w) => m.writeQuery(w, 'SELECT inet_server_port()'));
      const rows = await raw.untilReady();
      assert.deepEqual(rows.at(-1), ['Z', 'I']);
      assert.ok(rows.some(([t]) => t === 'D'));

      // Named COMMIT prepared after the loss: the error, and the transaction is over.
      rawNamed.send((w) => {
        m.writeParse(w, 'S_commit', 'COMMIT');
        m.writeBind(w, '', 'S_commit');
        m.writeExecute(w, '');
        m.writeSync(w);
      });
      assert.deepEqual(await rawNamed.untilReady(), [['1', ''], ['2', ''], ['E', '40001'], ['Z', 'I']]);
      // The named statement is prepared on the new primary when next used.
      rawNamed.send((w) => {
        m.writeQuery(w, 'BEGIN');
      });
      assert.deepEqual((await rawNamed.untilReady()).at(-1), ['Z', 'T']);
      rawNamed.send((w) => {
        m.writeBind(w, '', 'S_commit');
        m.writeExecute(w, '');
        m.writeSync(w);
      });
      assert.deepEqual(await rawNamed.untilReady(), [['2', ''], ['C', 'COMMIT'], ['Z', 'I']]);

      // Nothing of the lost transactions was committed on the old primary, and the proxy holds no connection to it.
      assert.equal((await direct.query('SELECT count(*)::int AS n FROM lost')).rows[0].n, 0);
      let left: unknown[] = [];
      await waitFor('no proxy connection left on the old primary', async () => {
        left = (
          await direct.query(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = 'postgres' AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND backend_start >= $1 AND query NOT LIKE 'SELECT pg_sleep(5)%'",
            [proxyStartedAt],
          )
        ).rows;
        return left.length === 0 || undefined;
      }, 5000).catch((e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(left)}`);
      });
      const stats = proxy.poolStats().get(`postgres/${user}`)!;
      assert.ok(stats.total >= 1 && stats.total <= 10, JSON.stringify(stats));
    } finally {
      raw.close();
      rawNamed.close();
      await Promise.allSettled(clients.map((c) => c.end()));
      await setupB.end().catch(() => undefined);
      await stopProxy(proxy);
    }
  });
});
