/**
 * Transaction pooling and session state, against a real PostgreSQL 15: a client that takes a session advisory
 * lock, LISTENs, SETs outside a transaction or creates a temp table keeps its server connection until it
 * releases the state (or disconnects), so the state never shows up in another client's session. Also the
 * pool counters (SHOW STATS totals) for a known workload. One PostgreSQL and one transaction-mode proxy with a
 * pool of 2 are shared by the file; the tests run in order and leave no client pinned. Also: large results of
 * concurrent clients arrive intact (the server read buffer is reused only when nothing refers to it).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import type { PoolCounters } from '../../src/proxy/pool/counters.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';

describe('proxy: session state pins a client to its server connection (transaction mode)', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let postgres: PostgresServer;
  let proxy: ProxyServer;
  const open: pg.Client[] = [];

  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user, password, database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    open.push(c);
    return c;
  }

  function counters(): PoolCounters {
    const c = proxy.poolCounters().get(`postgres/${user}`);
    assert.ok(c, 'the pool exists once a client logged in');
    return c;
  }

  async function one<T>(c: pg.Client, sql: string, params: unknown[] = []): Promise<T> {
    const r = await c.query(sql, params);
    return Object.values(r.rows[0] as Record<string, unknown>)[0] as T;
  }

  before(async () => {
    const base = await makePgTempDir('pgwarden-proxy-pinning-');
    postgres = await makeTestServer('pinning', base, credentials, { parameters: { max_connections: 20 } });
    await postgres.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
    const config = parseProxyConfig(
      { listen: '127.0.0.1:0', pool_mode: 'transaction', default_pool_size: 2, auth_file: 'userlist.txt', query_wait_timeout: 20 },
      { source: 'test', baseDir: base },
    );
    proxy = new ProxyServer({ config, topology: new StaticTopology({ host: '127.0.0.1', port: postgres.port }) });
    await proxy.start();
  });

  after(async () => {
    for (const c of open) await c.end().catch(() => undefined);
    await proxy?.stop(100);
    await cleanupServers();
  });

  it('a session advisory lock keeps its holder on one server connection; no other client sees it as its own', async () => {
    const a = await client();
    const b = await client();
    assert.equal(counters().pinnedClients, 0);
    const aPid = await one<number>(a, 'SELECT pg_backend_pid()');
    assert.equal(await one<boolean>(a, 'SELECT pg_try_advisory_lock(4242)'), true);
    assert.equal(counters().pinnedClients, 1);
    for (let i = 0; i < 5; i++) {
      // Without the pin, B would get A's connection (pool of 2, A idle) and hold A's lock as its own.
      assert.equal(await one<number>(b, "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"), 0);
      assert.equal(await one<number>(b, "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1", [aPid]), 1, 'A still holds the lock in its own session');
      assert.equal(await one<number>(a, 'SELECT pg_backend_pid()'), aPid, 'A stays on its server connection');
    }
    // Upper case counts too; the unlock brings the count to 0 and gives the connection back.
    assert.equal(await one<boolean>(a, 'SELECT PG_ADVISORY_UNLOCK(4242)'), true);
    assert.equal(counters().pinnedClients, 0);
    assert.equal(await one<boolean>(b, 'SELECT pg_try_advisory_lock(4242)'), true);
    await b.query('SELECT pg_advisory_unlock_all()');
    assert.equal(counters().pinnedClients, 0, 'unlock_all unpins B');
    // Transaction-level locks end with their transaction: no pin.
    await a.query('BEGIN');
    await a.query('SELECT pg_advisory_xact_lock(7)');
    await a.query('COMMIT');
    assert.equal(counters().pinnedClients, 0);
  });

  it('LISTEN keeps the client on its connection, so NOTIFY reaches it; UNLISTEN * lets go', async () => {
    const a = await client();
    const b = await client();
    const received: string[] = [];
    a.on('notification', (n) => received.push(`${n.channel}:${n.payload}`));
    await a.query('LISTEN pinning_test');
    assert.equal(counters().pinnedClients, 1);
    for (let i = 0; i < 3; i++) {
      await b.query(`NOTIFY pinning_test, 'hello ${i}'`);
      assert.deepEqual(await one<string[]>(b, 'SELECT array(SELECT pg_listening_channels())'), [], 'B does not listen');
    }
    await waitFor('three notifications', async () => received.length === 3, 5000);
    assert.deepEqual(received, ['pinning_test:hello 0', 'pinning_test:hello 1', 'pinning_test:hello 2']);
    await a.query('UNLISTEN *');
    assert.equal(counters().pinnedClients, 0);
  });

  it('SET outside a transaction does not leak to other clients; SET LOCAL does not pin; RESET ALL unpins', async () => {
    const a = await client();
    const b = await client();
    await a.query('BEGIN');
    await a.query("SET LOCAL statement_timeout = '1111ms'");
    await a.query('COMMIT');
    assert.equal(counters().pinnedClients, 0, 'SET LOCAL ends with its transaction');
    await a.query("SET statement_timeout = '4321ms'");
    assert.equal(counters().pinnedClients, 1);
    for (let i = 0; i < 4; i++) {
      assert.equal(await one<string>(b, 'SHOW statement_timeout'), '0');
      assert.equal(await one<string>(a, 'SHOW statement_timeout'), '4321ms');
    }
    await a.query('RESET ALL');
    assert.equal(counters().pinnedClients, 0);
    assert.equal(await one<string>(a, 'SHOW statement_timeout'), '0');
    assert.equal(await one<string>(b, 'SHOW statement_timeout'), '0');
  });

  it('SET of a reported parameter (TIME ZONE, application_name) does not pin: the client keeps its value on every server connection, a rollback is followed too', async () => {
    const a = await client();
    const b = await client();
    const defaultZone = await one<string>(b, 'SHOW TimeZone');
    assert.notEqual(defaultZone, 'America/New_York');
    await a.query("SET TIME ZONE 'America/New_York'");
    await a.query("SET application_name = 'alpha'");
    assert.equal(counters().pinnedClients, 0, 'followed parameters do not pin');
    // With 2 server connections, one held by the other client's transaction, each client moves between them.
    const seen = new Map<string, Set<number>>([['a', new Set()], ['b', new Set()]]);
    const probe = async (c: pg.Client, who: 'a' | 'b'): Promise<{ tz: string; app: string }> => {
      const r = await c.query<{ pid: number; tz: string; app: string }>("SELECT pg_backend_pid() AS pid, current_setting('TimeZone') AS tz, current_setting('application_name') AS app");
      seen.get(who)!.add(r.rows[0]!.pid);
      return r.rows[0]!;
    };
    for (let i = 0; i < 3; i++) {
      for (const [holder, other] of [
        [b, a],
        [a, b],
      ] as const) {
        await holder.query('BEGIN');
        const held = await probe(holder, holder === a ? 'a' : 'b');
        const moved = await probe(other, other === a ? 'a' : 'b');
        await holder.query('COMMIT');
        for (const [c, got] of [
          [holder, held],
          [other, moved],
        ] as const) {
          if (c === a) assert.deepEqual({ tz: got.tz, app: got.app }, { tz: 'America/New_York', app: 'alpha' });
          else assert.deepEqual({ tz: got.tz, app: got.app }, { tz: defaultZone, app: '' });
        }
      }
    }
    assert.equal(seen.get('a')!.size, 2, 'a ran on both server connections');
    assert.equal(seen.get('b')!.size, 2, 'b ran on both server connections');
    // A SET rolled back: PostgreSQL reports the old value again, and the client keeps it.
    await a.query('BEGIN');
    await a.query("SET TIME ZONE 'Asia/Tokyo'");
    assert.equal(await one<string>(a, 'SHOW TimeZone'), 'Asia/Tokyo');
    await a.query('ROLLBACK');
    for (let i = 0; i < 3; i++) {
      await b.query('BEGIN');
      assert.equal(await one<string>(a, 'SHOW TimeZone'), 'America/New_York');
      await b.query('COMMIT');
      assert.equal(await one<string>(a, 'SHOW TimeZone'), 'America/New_York');
    }
    // RESET of a followed parameter: back to the server's default, everywhere.
    await a.query('RESET TimeZone');
    assert.equal(counters().pinnedClients, 0);
    await b.query('BEGIN');
    assert.equal(await one<string>(a, 'SHOW TimeZone'), defaultZone);
    await b.query('COMMIT');
    // Any other SET in the same text still pins.
    await a.query("SET TIME ZONE 'UTC'; SET work_mem = '5MB'");
    assert.equal(counters().pinnedClients, 1);
    await a.query('RESET ALL');
    assert.equal(counters().pinnedClients, 0);
  });

  it('a pinned client that disconnects leaves a clean connection behind (DISCARD ALL); the gauge goes back down', async () => {
    const a = await client();
    await a.query("SET work_mem = '7MB'");
    await a.query('LISTEN gone_channel');
    await a.query('CREATE TEMP TABLE pinned_temp (x int)');
    assert.equal(counters().pinnedClients, 1);
    await a.end();
    await waitFor('the pin to go', async () => counters().pinnedClients === 0, 5000);
    // Both server connections of the pool, in turn: neither carries A's state.
    const b = await client();
    const c = await client();
    await b.query('BEGIN');
    await c.query('BEGIN');
    for (const x of [b, c]) {
      assert.equal(await one<string>(x, 'SHOW work_mem'), '4MB');
      assert.deepEqual(await one<string[]>(x, 'SELECT array(SELECT pg_listening_channels())'), []);
      assert.equal(await one<string | null>(x, "SELECT to_regclass('pg_temp.pinned_temp')::text"), null);
    }
    await b.query('COMMIT');
    await c.query('COMMIT');
    assert.equal(counters().pinnedClients, 0);
  });

  it('large results of concurrent clients arrive intact (the server read buffer is reused only when free)', async () => {
    const clients = [await client(), await client(), await client()];
    const sql = "SELECT i, md5(i::text) AS h, repeat(chr(65 + i % 26), i % 3000) AS pad FROM generate_series(1, 20000) AS i";
    const results = await Promise.all(clients.map((c) => c.query(sql)));
    for (const r of results) {
      assert.equal(r.rows.length, 20000);
      for (let k = 0; k < r.rows.length; k++) {
        const row = r.rows[k] as { i: number; h: string; pad: string };
        const i = k + 1;
        if (row.i !== i || row.pad.length !== i % 3000 || (row.pad.length > 0 && row.pad[0] !== String.fromCharCode(65 + (i % 26)))) {
          assert.fail(`row ${i} arrived damaged: ${JSON.stringify(row).slice(0, 200)}`);
        }
      }
      assert.equal(r.rows[41].h, 'a1d0c6e83f027327d8461063f4ac58a6', 'md5 of 42');
    }
  });

  it('counters: exact query and transaction counts for a known workload, bytes both ways, wait time', async () => {
    const a = await client();
    const before = counters().snapshot();
    for (let i = 0; i < 10; i++) await a.query('SELECT 1');
    let now = counters().snapshot();
    assert.equal(now.queryCount - before.queryCount, 10);
    assert.equal(now.xactCount - before.xactCount, 10);
    assert.ok(now.queryTimeUs > before.queryTimeUs && now.xactTimeUs > before.xactTimeUs);
    assert.ok(now.bytesReceived - before.bytesReceived >= 10 * 14, "ten Query messages of 14 bytes ('Q', length, 'SELECT 1', NUL)");
    assert.ok(now.bytesSent - before.bytesSent >= 10 * 40, 'ten results of at least 40 bytes');
    // An explicit transaction: 4 queries, 1 transaction; an extended-protocol query: 1 query (one Sync), 1 transaction.
    await a.query('BEGIN');
    await a.query('SELECT 1');
    await a.query('SELECT $1::int', [2]);
    await a.query('COMMIT');
    await a.query('SELECT $1::int AS v', [3]);
    const later = counters().snapshot();
    assert.equal(later.queryCount - now.queryCount, 5);
    assert.equal(later.xactCount - now.xactCount, 2);

    // Both connections busy: a third client waits, and its wait is counted.
    now = later;
    const b = await client();
    const c = await client();
    await a.query('BEGIN');
    await b.query('BEGIN');
    // The wait the proxy counts began after `asked` and before it showed c waiting; it ended after a's COMMIT was
    // sent and before c got its answer (the proxy's clock is performance.now() too; 1 ms for rounding). a's
    // transaction runs 200 ms more meanwhile, so that the wait is long enough to be told from none.
    const asked = performance.now();
    const waited = c.query('SELECT 1');
    await waitFor('c to wait for a server connection', () => proxy.poolStats().get(`postgres/${user}`)?.waiting === 1);
    const seenWaiting = performance.now();
    await a.query('SELECT pg_sleep(0.2)');
    const commitSent = performance.now();
    await a.query('COMMIT');
    await waited;
    const answered = performance.now();
    await b.query('COMMIT');
    const waitedUs = counters().snapshot().waitTimeUs - now.waitTimeUs;
    const atLeastUs = (commitSent - seenWaiting - 1) * 1000;
    const atMostUs = (answered - asked + 1) * 1000;
    assert.ok(waitedUs >= atLeastUs && waitedUs <= atMostUs, `wait time ${waitedUs} µs, between ${atLeastUs.toFixed(0)} and ${atMostUs.toFixed(0)} µs expected`);
  });
});
