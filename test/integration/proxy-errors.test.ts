/**
 * What clients are told when a connection ends, compared with PostgreSQL itself (real PostgreSQL 15, real clients):
 * a client hanging up before its startup packet is closed without a word; a backend ended by pg_terminate_backend
 * reaches the client as PostgreSQL's own error (session mode: the FATAL, then the close; transaction mode: the same
 * SQLSTATE and message as an ERROR, the client goes on); a session-mode client that finds a server connection free
 * at login is told its backend's real pid and cancel key, one that logs in while the pool is full or PAUSEd is told
 * the proxy's own key and waits at its first query, as in PgBouncer.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { attachAdminConsole } from '../../src/proxy/admin/console.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, unlessHung, waitFor } from '../helpers/pg.js';

const run = promisify(execFile);

const credentials = testCredentials();
const user = credentials.superuser.username;
const password = credentials.superuser.password;
let base: string;
let postgres: PostgresServer;
let direct: pg.Client;
let sessionProxy: ProxyServer;
let txProxy: ProxyServer;
/** Session mode, one server connection, query_wait_timeout 1 s: a second client's first query waits for it. */
let tinySession: ProxyServer;

async function startProxy(settings: Record<string, unknown>, withConsole = false): Promise<ProxyServer> {
  const config = parseProxyConfig({ listen: '127.0.0.1:0', auth_file: 'userlist.txt', query_wait_timeout: 20, ...settings }, { source: 'test', baseDir: base });
  const topology = new StaticTopology({ host: '127.0.0.1', port: postgres.port });
  const proxy = new ProxyServer({ config, topology });
  await proxy.start();
  if (withConsole) attachAdminConsole(proxy, { config, topology });
  return proxy;
}

function pgClient(port: number, extra: pg.ClientConfig = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres', connectionTimeoutMillis: 10_000, ...extra });
}

/** A pg client that records its 'error' events and its end. */
function watched(port: number, extra: pg.ClientConfig = {}): { c: pg.Client; errors: pg.DatabaseError[]; ended: Promise<void> } {
  const c = pgClient(port, extra);
  const errors: pg.DatabaseError[] = [];
  c.on('error', (e) => errors.push(e as pg.DatabaseError));
  const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
  return { c, errors, ended };
}

/** Bytes a raw socket receives after sending `bytes` (then ending its side, or not), until the other side closes. */
async function rawExchange(port: number, bytes: Buffer, endAfter: boolean): Promise<{ received: Buffer; hadError: boolean; error: string | null }> {
  const socket = connect({ host: '127.0.0.1', port });
  let error: string | null = null;
  socket.on('error', (e: NodeJS.ErrnoException) => {
    error = e.code ?? e.message;
  });
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.on('data', (d: Buffer) => received.push(d));
  const closed = once(socket, 'close') as Promise<[boolean]>;
  if (endAfter) socket.end(bytes);
  else socket.write(bytes);
  const [hadError] = await Promise.race([closed, sleep(5000).then(() => [true] as [boolean])]);
  socket.destroy();
  return { received: Buffer.concat(received), hadError, error };
}

const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

/**
 * pg's connect() immediately followed by end(): how connect() turned out ('pending' if it did not settle: what
 * node-postgres 8 does against PostgreSQL, which closes without a word) and the 'error' events seen.
 */
async function connectThenEnd(port: number): Promise<{ connect: string; errorEvents: string[]; ended: boolean }> {
  const c = pgClient(port);
  const errorEvents: string[] = [];
  c.on('error', (e) => errorEvents.push(`${(e as { code?: string }).code ?? ''} ${e.message}`));
  const ended = new Promise<boolean>((resolve) => c.once('end', () => resolve(true)));
  let outcome = 'pending';
  c.connect().then(
    () => {
      outcome = 'connected';
    },
    (e: Error & { code?: string }) => {
      outcome = `rejected${e.code === undefined ? '' : ` ${e.code}`}: ${e.message}`;
    },
  );
  void c.end();
  const closed = await Promise.race([ended, sleep(5000).then(() => false)]);
  // Late events (an ErrorResponse read after the Terminate) would come now: nothing to wait for, this checks that none comes.
  await sleep(300);
  return { connect: outcome, errorEvents, ended: closed };
}

before(async () => {
  base = await makePgTempDir('pgwarden-proxy-errors-');
  postgres = await makeTestServer('errors', base, credentials, { parameters: { max_connections: 40 } });
  await postgres.bootstrap();
  await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
  direct = pgClient(postgres.port);
  direct.on('error', () => undefined);
  await direct.connect();
  sessionProxy = await startProxy({ pool_mode: 'session', default_pool_size: 5 });
  // Node sockets here (the session proxy uses native I/O where available): both read paths meet a FATAL.
  txProxy = await startProxy({ pool_mode: 'transaction', default_pool_size: 3, native_io: false });
  tinySession = await startProxy({ pool_mode: 'session', default_pool_size: 1, query_wait_timeout: 1 });
});

after(async () => {
  await sessionProxy?.stop(100);
  await txProxy?.stop(100);
  await tinySession?.stop(100);
  await direct?.end().catch(() => undefined);
  await cleanupServers();
});

/** pg_terminate_backend of `pid`, from a direct connection. */
async function terminate(pid: number): Promise<void> {
  const r = await direct.query('SELECT pg_terminate_backend($1) AS done', [pid]);
  assert.equal(r.rows[0].done, true, `backend ${pid} was terminated`);
}

/** The processID of a pg client's BackendKeyData. */
function processId(c: pg.Client): number {
  return (c as unknown as { processID: number }).processID;
}

/** The pids of PostgreSQL's backends now. */
async function backendPids(): Promise<Set<number>> {
  const r = await direct.query('SELECT pid FROM pg_stat_activity');
  return new Set(r.rows.map((row: { pid: number }) => row.pid));
}

/** Clients waiting for a server connection in the proxy's pools. */
function waitingIn(proxy: ProxyServer): number {
  let n = 0;
  for (const stats of proxy.poolStats().values()) n += stats.waiting;
  return n;
}

/** Server connections (open or opening) of the proxy's pools. */
function serverConnections(proxy: ProxyServer): number {
  let n = 0;
  for (const stats of proxy.poolStats().values()) n += stats.total;
  return n;
}

/** The pid of the backend running a statement that starts with `prefix` (waits until it runs). */
/** Waits until no backend runs a query starting with `prefix` any more. */
async function backendIdle(prefix: string): Promise<void> {
  await waitFor(`no backend running ${prefix}`, async () => {
    const r = await direct.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid() AND state = $2', [`${prefix}%`, 'active']);
    return r.rows[0].n === 0;
  });
}

async function backendRunning(prefix: string): Promise<number> {
  return waitFor(`a backend running ${prefix}`, async () => {
    const r = await direct.query('SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid() AND state = $2', [`${prefix}%`, 'active']);
    return r.rows.length === 1 ? (r.rows[0].pid as number) : undefined;
  });
}

describe('a client that leaves before its startup packet', { timeout: 60_000 }, () => {
  for (const target of ['postgres', 'proxy'] as const) {
    it(`${target}: Terminate before the startup packet is closed without a byte sent`, async () => {
      const port = target === 'postgres' ? postgres.port : sessionProxy.address.port;
      for (const endAfter of [true, false]) {
        const { received, hadError, error } = await rawExchange(port, TERMINATE, endAfter);
        assert.equal(received.length, 0, `no answer (got ${JSON.stringify(received.toString('latin1'))})`);
        assert.equal(hadError, false, `a clean close (error ${error})`);
      }
    });

    it(`${target}: EOF before or inside the startup packet is closed without a byte sent`, async () => {
      const port = target === 'postgres' ? postgres.port : txProxy.address.port;
      for (const bytes of [Buffer.alloc(0), Buffer.from([0, 0, 0]), Buffer.from([0, 0, 0, 40, 0, 3, 0, 0])]) {
        const { received, hadError } = await rawExchange(port, bytes, true);
        assert.equal(received.length, 0, `no answer to ${bytes.length} bytes then EOF`);
        assert.equal(hadError, false);
      }
    });
  }

  it('node-postgres connect() then end() at once: the same outcome as with PostgreSQL, no error event', async () => {
    const expected = await connectThenEnd(postgres.port);
    assert.deepEqual(expected.errorEvents, []);
    assert.equal(expected.ended, true);
    for (const port of [sessionProxy.address.port, txProxy.address.port]) {
      for (let i = 0; i < 5; i++) {
        const got = await connectThenEnd(port);
        assert.deepEqual(got, expected);
      }
    }
    // The proxy is fine afterwards.
    const c = pgClient(txProxy.address.port);
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS v')).rows[0].v, 1);
    await c.end();
  });
});

describe('session mode: the real backend', { timeout: 90_000 }, () => {
  it('BackendKeyData carries the backend pid: pg_backend_pid() through the proxy equals the processID the client got', async () => {
    const clients = Array.from({ length: 3 }, () => pgClient(sessionProxy.address.port));
    for (const c of clients) await c.connect();
    const keys = clients.map((c) => c as unknown as { processID: number; secretKey: number });
    for (const [i, c] of clients.entries()) {
      assert.equal((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, keys[i].processID);
    }
    assert.equal(new Set(keys.map((k) => k.processID)).size, 3, 'three backends');
    await Promise.all(clients.map((c) => c.end()));
  });

  it('pg_terminate_backend from another connection: idle client gets FATAL 57P01 and is closed, as from PostgreSQL', async () => {
    const seen: string[][] = [];
    for (const port of [postgres.port, sessionProxy.address.port]) {
      const { c, errors, ended } = watched(port);
      await c.connect();
      const pid = (c as unknown as { processID: number }).processID;
      assert.equal((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pid);
      await terminate(pid);
      await ended;
      assert.equal(errors[0]?.code, '57P01');
      assert.equal(errors[0].severity, 'FATAL');
      assert.equal(errors[0].message, 'terminating connection due to administrator command');
      seen.push(errors.map((e) => `${e.code ?? ''} ${e.severity ?? ''} ${e.message}`));
    }
    // Then node-postgres' own "Connection terminated unexpectedly": the same events in the same order.
    assert.deepEqual(seen[1], seen[0]);
  });

  it('pg_terminate_backend of a client running a statement: the statement fails with FATAL 57P01, the client is closed', async () => {
    const { c, ended } = watched(sessionProxy.address.port, { application_name: 'terminated-running' });
    await c.connect();
    const running = c.query('SELECT pg_sleep(30) AS terminated_running');
    const outcome = running.then(
      () => null,
      (e: pg.DatabaseError) => e,
    );
    const pid = await backendRunning('SELECT pg_sleep(30) AS terminated_running');
    assert.equal(pid, (c as unknown as { processID: number }).processID);
    await terminate(pid);
    const e = await outcome;
    assert.ok(e !== null, 'the statement failed');
    assert.equal(e.code, '57P01');
    assert.equal(e.severity, 'FATAL');
    assert.equal(e.message, 'terminating connection due to administrator command');
    await ended;
  });

  it('psql: pg_terminate_backend(pg_backend_pid()) prints the same FATAL 57P01 through the proxy as from PostgreSQL', async () => {
    const outputs: string[] = [];
    for (const port of [postgres.port, sessionProxy.address.port]) {
      const result = await run('/usr/bin/psql', ['-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-X', '-v', 'VERBOSITY=verbose', '-c', 'SELECT pg_terminate_backend(pg_backend_pid())'], {
        env: { ...process.env, PGPASSWORD: password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5' },
      }).then(
        (r) => ({ code: 0, stderr: r.stderr }),
        (e: { code?: number; stderr?: string }) => ({ code: e.code ?? -1, stderr: e.stderr ?? '' }),
      );
      assert.notEqual(result.code, 0);
      // The first line is the error; what follows is libpq's own note about the closed connection.
      outputs.push(result.stderr.split('\n')[0]);
    }
    assert.match(outputs[0], /FATAL: {2}57P01: terminating connection due to administrator command/);
    assert.equal(outputs[1], outputs[0]);
  });

  it("a CancelRequest with the client's (real) key cancels pg_sleep; the client goes on", async () => {
    const c = pgClient(sessionProxy.address.port);
    c.on('error', () => undefined);
    await c.connect();
    const query = new pg.Query('SELECT pg_sleep(30) AS to_cancel');
    const outcome = new Promise<string>((resolve) => {
      query.on('end', () => resolve('finished'));
      query.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
    });
    void c.query(query);
    await backendRunning('SELECT pg_sleep(30) AS to_cancel');
    // pg's own cancel path: a new connection to the proxy carrying the key pg got at login.
    const canceller = pgClient(sessionProxy.address.port);
    (canceller as unknown as { cancel(client: pg.Client, query: pg.Query): void }).cancel(c, query);
    assert.equal(await outcome, '57014');
    // Long before pg_sleep(30) would have ended, its backend runs it no more.
    await backendIdle('SELECT pg_sleep(30) AS to_cancel');
    assert.equal((await c.query('SELECT 42 AS v')).rows[0].v, 42);
    await c.end();
  });

  it('with the pool full, a login succeeds at once with a proxy-made key; its first query waits for a free connection (08P01 query_wait_timeout if none frees in time)', async () => {
    const holder = pgClient(tinySession.address.port);
    await holder.connect();
    const holderPid = processId(holder);
    assert.equal((await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, holderPid, 'a free connection at login: the real pid');
    // The pool's one connection is the holder's: the next login takes none (query_wait_timeout is 1 s).
    const second = pgClient(tinySession.address.port);
    second.on('error', () => undefined);
    await unlessHung("the second client's login", second.connect());
    // It logged in without the pool's one connection, which is still the holder's, and without waiting for it.
    assert.equal(serverConnections(tinySession), 1);
    assert.equal((await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, holderPid, "the holder keeps the pool's connection");
    assert.ok(!(await backendPids()).has(processId(second)), 'the key is the proxy\'s own, not a backend\'s pid');
    const started = Date.now();
    await unlessHung(
      "the waiting query's query_wait_timeout",
      assert.rejects(second.query('SELECT 1'), (e: unknown) => {
        assert.equal((e as { code?: string }).code, '08P01');
        assert.equal((e as Error).message, 'query_wait_timeout');
        return true;
      }),
    );
    // The timeout is what is tested: it must not fire before its second (a lower bound; slowness only adds to it).
    const waited = Date.now() - started;
    assert.ok(waited >= 900, `failed after ${waited} ms`);
    // A query waiting while the holder leaves runs on the freed connection (the same backend: the pool has one).
    const third = pgClient(tinySession.address.port);
    third.on('error', () => undefined);
    await third.connect();
    const thirdKey = processId(third);
    assert.ok(!(await backendPids()).has(thirdKey));
    const query = third.query('SELECT pg_backend_pid() AS pid');
    await waitFor('the query waiting for a server connection', async () => waitingIn(tinySession) === 1);
    await holder.end();
    assert.equal((await query).rows[0].pid, holderPid);
    // A CancelRequest with the proxy-made key reaches the query the client runs on that connection.
    const sleeping = new pg.Query('SELECT pg_sleep(30) AS cancel_proxy_key');
    const outcome = new Promise<string>((resolve) => {
      sleeping.on('end', () => resolve('finished'));
      sleeping.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
    });
    void third.query(sleeping);
    assert.equal(await backendRunning('SELECT pg_sleep(30) AS cancel_proxy_key'), holderPid);
    (pgClient(tinySession.address.port) as unknown as { cancel(client: pg.Client, query: pg.Query): void }).cancel(third, sleeping);
    assert.equal(await outcome, '57014');
    assert.equal((await third.query('SELECT 42 AS v')).rows[0].v, 42);
    await third.end();
  });

  it('logins at once over a cold pool: the first ones get their own backends, the rest log in without one; never more connections than the pool size', async () => {
    const burst = await startProxy({ pool_mode: 'session', default_pool_size: 2 });
    try {
      const clients = Array.from({ length: 5 }, () => pgClient(burst.address.port));
      for (const c of clients) c.on('error', () => undefined);
      await Promise.all(clients.map((c) => c.connect()));
      assert.ok(serverConnections(burst) <= 2, `${serverConnections(burst)} server connections`);
      const backends = await backendPids();
      const real = clients.filter((c) => backends.has(processId(c)));
      assert.equal(real.length, 2, 'two logins took a backend each');
      for (const c of real) assert.equal((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, processId(c));
      // Each session ends in turn; the waiting ones take the freed connections at their first query.
      const others = clients.filter((c) => !real.includes(c));
      const queries = others.map((c) => c.query('SELECT pg_backend_pid() AS pid'));
      for (const c of real) await c.end();
      for (const [i, c] of others.entries()) {
        const pid = (await queries[i]).rows[0].pid as number;
        assert.notEqual(pid, processId(c));
        assert.ok(serverConnections(burst) <= 2, `${serverConnections(burst)} server connections`);
        await c.end();
      }
    } finally {
      await burst.stop(100);
    }
  });
});

describe('session mode: login while the console has PAUSEd', { timeout: 30_000 }, () => {
  it('a login completes at once with a proxy-made key; its first query waits until RESUME', async () => {
    const paused = await startProxy({ pool_mode: 'session', default_pool_size: 2, admin_users: [user] }, true);
    try {
      // A session before the PAUSE: the pool knows its parameters and has had a connection the login must not take.
      const earlier = pgClient(paused.address.port);
      await earlier.connect();
      assert.equal((await earlier.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, processId(earlier));
      await earlier.end();
      const admin = pgClient(paused.address.port, { database: 'pgbouncer' });
      await admin.connect();
      await admin.query('PAUSE');
      const c = pgClient(paused.address.port);
      c.on('error', () => undefined);
      const loggedIn = await Promise.race([c.connect().then(() => true), sleep(5000).then(() => false)]);
      assert.equal(loggedIn, true, 'logged in while paused');
      const key = processId(c);
      assert.ok(!(await backendPids()).has(key), 'the key is the proxy\'s own, not a backend\'s pid');
      let answered = false;
      const query = c.query('SELECT pg_backend_pid() AS pid').then((r) => {
        answered = true;
        return r;
      });
      await waitFor('the query held by the PAUSE', async () => {
        const pools = await admin.query('SHOW POOLS');
        return pools.rows.some((r: { database: string; cl_waiting: number | string }) => r.database === 'postgres' && Number(r.cl_waiting) === 1);
      });
      assert.equal(answered, false, 'answered while paused');
      await admin.query('RESUME');
      const pid = (await query).rows[0].pid as number;
      assert.notEqual(pid, key);
      assert.ok((await backendPids()).has(pid));
      await c.end();
      await admin.end();
    } finally {
      await paused.stop(100);
    }
  });
});

describe('transaction mode: a terminated server connection', { timeout: 60_000 }, () => {
  it("a statement in flight gets PostgreSQL's 57P01 as an ERROR with the proxy's note; the client goes on", async () => {
    const { c, errors } = watched(txProxy.address.port);
    await c.connect();
    const running = c.query('SELECT pg_sleep(30) AS tx_in_flight').then(
      () => null,
      (e: pg.DatabaseError) => e,
    );
    await terminate(await backendRunning('SELECT pg_sleep(30) AS tx_in_flight'));
    const e = await running;
    assert.ok(e !== null, 'the statement failed');
    assert.equal(e.code, '57P01');
    assert.equal(e.severity, 'ERROR');
    assert.equal(e.message, 'terminating connection due to administrator command');
    assert.match(e.hint ?? '', /connection to the proxy is still usable/);
    assert.equal((await c.query('SELECT 7 AS v')).rows[0].v, 7);
    assert.deepEqual(errors, [], 'no error event: the client is still connected');
    await c.end();
  });

  it("idle in a transaction: the next statement gets 57P01 (rolled back), then 25P02 until ROLLBACK; the client goes on", async () => {
    await direct.query('CREATE TABLE IF NOT EXISTS tx_lost (v int)');
    const { c, errors } = watched(txProxy.address.port);
    await c.connect();
    await c.query('BEGIN');
    await c.query('INSERT INTO tx_lost VALUES (1)');
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const pooled = txProxy.poolStats().get(`postgres/${user}`)!.total;
    await terminate(pid);
    // The proxy has read the FATAL (a statement sent before that would count as in flight on the dying backend).
    await waitFor('the proxy dropped the server connection', async () => txProxy.poolStats().get(`postgres/${user}`)!.total === pooled - 1);
    const e = await c.query('SELECT 1').then(
      () => null,
      (err: pg.DatabaseError) => err,
    );
    assert.ok(e !== null);
    assert.equal(e.code, '57P01');
    assert.equal(e.severity, 'ERROR');
    assert.equal(e.message, 'terminating connection due to administrator command');
    assert.match(e.detail ?? '', /rolled back/);
    await assert.rejects(c.query('SELECT 1'), (err: unknown) => (err as { code?: string }).code === '25P02');
    assert.equal((await c.query('ROLLBACK')).command, 'ROLLBACK');
    assert.equal((await c.query('SELECT count(*)::int AS n FROM tx_lost')).rows[0].n, 0, 'nothing was committed');
    assert.deepEqual(errors, []);
    await c.end();
  });
});
