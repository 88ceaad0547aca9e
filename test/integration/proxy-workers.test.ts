/**
 * The proxy with worker threads (`workers: 2`, static mode) against real PostgreSQL 15: connections are spread
 * evenly over the workers, default_pool_size holds for the whole proxy (counted in pg_stat_activity), a cancel
 * request reaches a query running in another worker, room in a pool moves to the worker whose clients wait, and
 * RELOAD (SIGHUP) reaches every worker.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { parseProxyConfig } from '../../src/config/proxy.js';
import { EtcdDcs } from '../../src/dcs/etcd.js';
import { DEFAULT_TAGS } from '../../src/cluster/types.js';
import { EtcdTopology } from '../../src/proxy/etcd-topology.js';
import { ProxyRegistrar } from '../../src/proxy/registration.js';
import { startEtcd } from '../helpers/etcd.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { ensureLocalCa } from '../../src/proxy/tls.js';
import { WorkerGroup } from '../../src/proxy/workers/group.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, unlessHung, waitFor } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';
import { startProxyProcess } from '../helpers/proxy-process.js';

const credentials = testCredentials();
const user = credentials.superuser.username;
const password = credentials.superuser.password;
let base: string;
let server: PostgresServer;
let direct: pg.Client;
const groups = new Set<WorkerGroup>();

async function startGroup(settings: Record<string, unknown>, configFile = 'proxy.yml', topology?: EtcdTopology): Promise<WorkerGroup> {
  const raw = { listen: '127.0.0.1:0', auth_file: 'userlist.txt', workers: 2, ...settings };
  const configPath = path.join(base, configFile);
  await writeFile(configPath, JSON.stringify(raw)); // JSON is YAML
  const config = parseProxyConfig(raw, { source: configPath, baseDir: base });
  const routes = topology === undefined ? { primary: { host: '127.0.0.1', port: server.port }, replicas: [] } : { topology };
  const group = new WorkerGroup({ config, configPath, ...routes, logger: pino({ level: 'silent' }), logLevel: 'silent' });
  await group.start();
  groups.add(group);
  return group;
}

async function stopGroup(group: WorkerGroup): Promise<void> {
  groups.delete(group);
  await group.stop(100);
}

function client(group: WorkerGroup, database: string, extra: pg.ClientConfig = {}): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port: group.address.port, user, password, database, ...extra });
  c.on('error', () => undefined);
  return c;
}

/** Backends of `database` (the proxy's server connections). */
async function backends(database: string): Promise<number> {
  const r = await direct.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()", [database]);
  return r.rows[0].n as number;
}

/** Backends running `sql` right now (pg_stat_activity state 'active'). */
async function running(sql: string): Promise<number> {
  const r = await direct.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND pid <> pg_backend_pid()", [sql]);
  return r.rows[0].n as number;
}

/** Backends of `database` in a transaction and waiting for their client (state 'idle in transaction'). */
async function inTransaction(database: string): Promise<number> {
  const r = await direct.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'idle in transaction'", [database]);
  return r.rows[0].n as number;
}

/**
 * Waits until every one of the `count` backends of `database` has been idle for `ms` by PostgreSQL's clock. A worker
 * closes an idle connection for another worker only once it has been idle 100 ms (in the proxy's view, which starts
 * a little after PostgreSQL's: hence the margin).
 */
async function idleFor(database: string, count: number, ms: number): Promise<void> {
  await waitFor(`${count} backends of ${database} idle for ${ms} ms`, async () => {
    const r = await direct.query(
      "SELECT count(*)::int AS n, count(*) FILTER (WHERE state = 'idle' AND clock_timestamp() - state_change > $2 * interval '1 ms')::int AS idle FROM pg_stat_activity WHERE datname = $1",
      [database, ms],
    );
    return r.rows[0].n === count && r.rows[0].idle === count;
  });
}

/** The default_pool_size that the console session `admin` reports (its worker's config). */
async function poolSizeSeenBy(admin: pg.Client): Promise<string | undefined> {
  return (await admin.query('SHOW CONFIG')).rows.find((r) => r.key === 'default_pool_size')?.value as string | undefined;
}

/** The most backends of `database` seen every 20 ms while `work` runs, and its result. */
async function watchBackends<T>(database: string, work: Promise<T>): Promise<{ max: number; result: T }> {
  let done = false;
  let max = 0;
  const settled = work.finally(() => {
    done = true;
  });
  while (!done) {
    max = Math.max(max, await backends(database));
    await sleep(20);
  }
  return { max, result: await settled };
}

before(async () => {
  base = await makePgTempDir('pgwarden-proxy-workers-');
  server = await makeTestServer('w', base, credentials, { parameters: { max_connections: 60 } });
  await server.bootstrap();
  await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
  direct = new pg.Client({ host: '127.0.0.1', port: server.port, user, password, database: 'postgres' });
  direct.on('error', () => undefined);
  await direct.connect();
});

after(async () => {
  for (const group of [...groups]) await stopGroup(group).catch(() => undefined);
  await direct?.end().catch(() => undefined);
  await cleanupServers();
});

describe('proxy with worker threads', { timeout: 120_000 }, () => {
  it('spreads clients evenly over the workers and keeps default_pool_size for the whole proxy', async () => {
    await direct.query('CREATE DATABASE w_spread');
    const group = await startGroup({ default_pool_size: 4 });
    const clients = Array.from({ length: 24 }, () => client(group, 'w_spread'));
    for (const c of clients) await c.connect();
    assert.deepEqual(group.clientsPerWorker(), [12, 12]);
    const { max, result } = await watchBackends(
      'w_spread',
      Promise.all(
        clients.map(async (c, i) => {
          const answers: number[] = [];
          for (let k = 0; k < 15; k++) {
            const r = await c.query('SELECT $1::int * 1000 + $2::int AS v, pg_sleep(0.002)', [i, k]);
            answers.push(r.rows[0].v as number);
          }
          return answers.every((v, k) => v === i * 1000 + k);
        }),
      ),
    );
    assert.equal(result.filter((ok) => ok).length, 24, 'every client got its own answers');
    assert.ok(max >= 2, `both workers used server connections (saw at most ${max})`);
    assert.ok(max <= 4, `at most default_pool_size server connections over both workers, saw ${max}`);
    assert.ok(group.serverConnections(`w_spread/${user}`) <= 4);
    await Promise.all(clients.map((c) => c.end()));
    await waitFor('the closed clients to be counted out', () => group.clientsPerWorker().every((n) => n === 0), 2000).catch(() => undefined);
    assert.deepEqual(group.clientsPerWorker(), [0, 0], 'closed clients are counted out');
    await stopGroup(group);
  });

  for (const poolMode of ['transaction', 'session'] as const) {
    it(`${poolMode}: a cancel request reaches the query of a client served by another worker`, async () => {
      const group = await startGroup({ default_pool_size: 2, pool_mode: poolMode });
      const sleeper = client(group, 'postgres');
      await sleeper.connect();
      assert.deepEqual(group.clientsPerWorker(), [1, 0]);
      if (poolMode === 'session') {
        // The key the client got is its backend's own.
        const pid = (await sleeper.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
        assert.equal(pid, (sleeper as unknown as { processID: number }).processID);
      }
      const cancelled = sleeper.query('SELECT pg_sleep(30)').then(
        () => 'finished',
        (e: { code?: string }) => e.code ?? 'no code',
      );
      await waitFor('pg_sleep(30) to run', async () => (await running('SELECT pg_sleep(30)')) === 1);
      // The cancel request is a connection of its own: the main thread gives it to worker 1, which has no clients.
      const { processID, secretKey } = sleeper as unknown as { processID: number; secretKey: number };
      const cancel = Buffer.alloc(16);
      cancel.writeInt32BE(16, 0);
      cancel.writeInt32BE(80877102, 4);
      cancel.writeInt32BE(processID, 8);
      cancel.writeInt32BE(secretKey, 12);
      const socket = connect(group.address.port, '127.0.0.1', () => socket.end(cancel));
      socket.on('error', () => undefined);
      assert.equal(await cancelled, '57014', 'the query was cancelled (57014)');
      // Long before pg_sleep(30) would have ended, its backend runs it no more.
      await waitFor('the backend to stop running pg_sleep(30)', async () => (await running('SELECT pg_sleep(30)')) === 0, 10_000);
      const after = await sleeper.query('SELECT 1 AS one');
      assert.equal(after.rows[0].one, 1, 'the client goes on after the cancel');
      await sleeper.end();
      await stopGroup(group);
    });
  }

  it('room in a pool moves to the worker whose clients wait, and back to one below its share of it', async () => {
    await direct.query('CREATE DATABASE w_room');
    const group = await startGroup({ default_pool_size: 2 });
    // Connected in this order, even ones go to worker 0 and odd ones to worker 1; each worker's first login opens
    // one server connection (for the server's parameters), so each worker holds one.
    const cs = Array.from({ length: 6 }, () => client(group, 'w_room'));
    for (const c of cs) await c.connect();
    const [c0, c1, c2, c3, c4, c5] = cs as [pg.Client, pg.Client, pg.Client, pg.Client, pg.Client, pg.Client];
    assert.deepEqual(group.clientsPerWorker(), [3, 3]);
    await idleFor('w_room', 2, 300);

    // Two transactions of worker 1 at once: worker 0's idle connection is closed to make room for the second.
    await c1.query('BEGIN');
    await unlessHung("c3's BEGIN (worker 1's second transaction)", c3.query('BEGIN'));
    assert.equal(await inTransaction('w_room'), 2, 'worker 1 holds two server connections, one per transaction');
    await c1.query('COMMIT');
    assert.equal(await backends('w_room'), 2, 'still at most default_pool_size');

    // Worker 1 now holds both connections and always has clients waiting (c1 and c5 in a loop, c3 in its
    // transaction); worker 0 has none. Its client is served anyway: worker 1 gives back what exceeds its share.
    let looping = true;
    const rounds = [0, 0];
    const loop = async (c: pg.Client, i: number): Promise<void> => {
      while (looping) {
        await c.query('SELECT pg_sleep(0.005)');
        rounds[i]!++;
      }
    };
    const loops = [loop(c1, 0), loop(c5, 1)];
    await waitFor("both of worker 1's loops to run", () => rounds.every((n) => n > 0));
    const roundsWhenAsked = rounds[0]! + rounds[1]!;
    const served = await unlessHung("c0's query", c0.query('SELECT 42 AS v')).then((r) => r.rows[0].v as number, (e: Error) => e.message);
    const roundsWhileWaiting = rounds[0]! + rounds[1]! - roundsWhenAsked;
    looping = false;
    await Promise.all(loops);
    assert.equal(served, 42);
    // Within a transaction or two of worker 1's (5 ms each; one typically; the bound leaves room for a slow
    // connection opening in worker 0): not whenever worker 1 happens to have no client waiting, which is never while
    // its loops run.
    assert.ok(roundsWhileWaiting < 50, `c0 was served after ${roundsWhileWaiting} transactions of worker 1`);
    assert.ok(rounds.every((n) => n > 0), 'worker 1 kept serving its clients meanwhile');
    assert.ok((await backends('w_room')) <= 2, 'never more than default_pool_size');
    await c3.query('COMMIT');
    await Promise.all([c0, c1, c2, c3, c4, c5].map((c) => c.end()));
    await stopGroup(group);
  });

  it('max_db_connections holds for the whole proxy, and room in the database moves to the worker whose clients wait', async () => {
    await direct.query('CREATE DATABASE w_dblimit');
    await direct.query("CREATE ROLE w_other LOGIN PASSWORD 'w_other_pw'");
    await writeFile(path.join(base, 'userlist-dblimit.txt'), `"${user}" "${password}"\n"w_other" "w_other_pw"\n`);
    const group = await startGroup({ auth_file: 'userlist-dblimit.txt', default_pool_size: 4, max_db_connections: 2 });
    const other = { user: 'w_other', password: 'w_other_pw' };
    // In this order: worker 0 gets the superuser's clients, worker 1 w_other's. Each worker's first login opens a
    // server connection (the server's parameters): the database's two are taken, one per worker and pool.
    const cs = [client(group, 'w_dblimit'), client(group, 'w_dblimit', other), client(group, 'w_dblimit'), client(group, 'w_dblimit', other)];
    for (const c of cs) await c.connect();
    const [a1, b1, a2, b2] = cs as [pg.Client, pg.Client, pg.Client, pg.Client];
    assert.deepEqual(group.clientsPerWorker(), [2, 2]);
    assert.equal(await backends('w_dblimit'), 2);
    await idleFor('w_dblimit', 2, 300);

    // Two transactions of worker 1 at once: worker 0's idle connection (another pool) is closed to make room.
    await b1.query('BEGIN');
    await unlessHung("b2's BEGIN (worker 1's second transaction)", b2.query('BEGIN'));
    assert.equal(await inTransaction('w_dblimit'), 2, "worker 1 holds the database's two server connections, one per transaction");
    assert.equal(await backends('w_dblimit'), 2, 'still at most max_db_connections');
    await Promise.all([b1.query('COMMIT'), b2.query('COMMIT')]);

    // Both workers, both pools, all at once: every client served, never more than max_db_connections backends.
    const { max, result } = await watchBackends(
      'w_dblimit',
      Promise.all(
        cs.map(async (c, i) => {
          let right = 0;
          for (let k = 0; k < 15; k++) {
            const r = await c.query('SELECT $1::int * 1000 + $2::int AS v, pg_sleep(0.002)', [i, k]);
            if (r.rows[0].v === i * 1000 + k) right++;
          }
          return right;
        }),
      ),
    );
    assert.deepEqual(result, [15, 15, 15, 15], 'every client got its own answers');
    assert.ok(max <= 2, `at most max_db_connections server connections over both workers and pools, saw ${max}`);
    await Promise.all([a1, b1, a2, b2].map((c) => c.end()));
    await stopGroup(group);
  });

  it('RELOAD (SIGHUP) gives every worker the new pool size', async () => {
    await direct.query('CREATE DATABASE w_reload');
    const group = await startGroup({ default_pool_size: 1, admin_users: [user] }, 'reload.yml');
    const clients = Array.from({ length: 4 }, () => client(group, 'w_reload'));
    for (const c of clients) await c.connect();
    // A console session in each worker (each goes to the worker with fewer clients), to see each worker's config.
    const consoles = [client(group, 'pgbouncer'), client(group, 'pgbouncer')];
    for (const c of consoles) await c.connect();
    assert.deepEqual(group.clientsPerWorker(), [3, 3]);
    await writeFile(path.join(base, 'reload.yml'), JSON.stringify({ listen: '127.0.0.1:0', auth_file: 'userlist.txt', workers: 2, default_pool_size: 4, admin_users: [user] }));
    group.reload();
    await waitFor('both workers to apply the new pool size', async () => (await Promise.all(consoles.map(poolSizeSeenBy))).every((v) => v === '4'));
    // Four transactions open at once, two in each worker: only a pool of 4 over both runs them together.
    await unlessHung('four transactions at once', Promise.all(clients.map((c) => c.query('BEGIN'))));
    assert.equal(await backends('w_reload'), 4);
    await Promise.all(clients.map((c) => c.query('COMMIT')));
    await Promise.all([...clients, ...consoles].map((c) => c.end()));
    await stopGroup(group);
  });

  it('/metrics (metrics_listen) is the sum over the workers', async () => {
    await direct.query('CREATE DATABASE w_metrics');
    const group = await startGroup({ default_pool_size: 4, metrics_listen: '127.0.0.1:0' });
    const clients = Array.from({ length: 6 }, () => client(group, 'w_metrics'));
    for (const c of clients) await c.connect();
    assert.deepEqual(group.clientsPerWorker(), [3, 3]);
    await Promise.all(clients.map(async (c) => {
      for (let k = 0; k < 5; k++) await c.query('SELECT 1');
    }));
    const text = await (await fetch(`http://127.0.0.1:${group.metricsAddress!.port}/metrics`)).text();
    const value = (line: RegExp): number => {
      const found = text.split('\n').find((l) => line.test(l));
      assert.ok(found !== undefined, `no line matching ${line} in /metrics`);
      return Number(found.split(' ').pop());
    };
    const pool = `database="w_metrics",user="${user}"`;
    assert.equal(value(new RegExp(`^pgbouncer_pools_client_active_connections\\{${pool}\\}`)), 6, 'clients of both workers');
    assert.equal(value(new RegExp(`^pgwarden_proxy_routed_transactions_total\\{${pool},port="rw"\\}`)), 30, 'transactions of both workers');
    assert.equal(value(new RegExp(`^pgwarden_proxy_transaction_duration_seconds_count\\{${pool},port="rw"\\}`)), 30);
    assert.equal(value(/^pgbouncer_up /), 1, 'one proxy up, not one per worker');
    await Promise.all(clients.map((c) => c.end()));
    await stopGroup(group);
  });

  it('serves TLS clients (sslmode verify-full) in the workers', async () => {
    const ca = await ensureLocalCa(path.join(base, 'tls'));
    const group = await startGroup({ client_tls_cert_file: ca.serverCert, client_tls_key_file: ca.serverKey, client_tls_sslmode: 'require' });
    const caPem = await readFile(ca.caCert, 'utf8');
    const clients = Array.from({ length: 4 }, () => {
      const c = new pg.Client({ host: 'localhost', port: group.address.port, user, password, database: 'postgres', ssl: { ca: caPem, rejectUnauthorized: true } });
      c.on('error', () => undefined);
      return c;
    });
    for (const c of clients) await c.connect();
    assert.deepEqual(group.clientsPerWorker(), [2, 2]);
    const rows = await Promise.all(clients.map(async (c, i) => (await c.query('SELECT $1::int AS i', [i])).rows[0].i as number));
    assert.deepEqual(rows, [0, 1, 2, 3]);
    await Promise.all(clients.map((c) => c.end()));
    await stopGroup(group);
  });

  it('a real `pgwarden proxy` process with workers: SIGHUP reloads every worker, SIGTERM ends it with exit code 0', async () => {
    await direct.query('CREATE DATABASE w_process');
    const port = await freePort();
    const file = path.join(base, 'process.yml');
    const settings = { listen: `127.0.0.1:${port}`, auth_file: 'userlist.txt', workers: 2, default_pool_size: 1, admin_users: [user] };
    await writeFile(file, JSON.stringify(settings));
    const proxy = await startProxyProcess(file, server.port, /"workers":2[^\n]*proxy listening/);
    const child = proxy.child;
    try {
      const clients = Array.from({ length: 2 }, () => {
        const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'w_process' });
        c.on('error', () => undefined);
        return c;
      });
      for (const c of clients) await c.connect();
      // A console session in each worker (each goes to the worker with fewer clients), to see each worker's config.
      const consoles = Array.from({ length: 2 }, () => {
        const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'pgbouncer' });
        c.on('error', () => undefined);
        return c;
      });
      for (const c of consoles) await c.connect();
      await writeFile(file, JSON.stringify({ ...settings, default_pool_size: 2 }));
      child.kill('SIGHUP');
      await waitFor('the reload to be logged', async () => /RELOAD: config file re-read/.test(proxy.log()) || undefined, 10_000);
      await waitFor('both workers to apply the new pool size', async () => (await Promise.all(consoles.map(poolSizeSeenBy))).every((v) => v === '2'));
      // One client in each worker, both in a transaction at once: a pool of 2 over both workers.
      await unlessHung('two transactions at once', Promise.all(clients.map((c) => c.query('BEGIN'))));
      assert.equal(await backends('w_process'), 2);
      await Promise.all(clients.map((c) => c.query('COMMIT')));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await unlessHung('the proxy to exit after SIGTERM', exited), 0);
      await Promise.all([...clients, ...consoles].map((c) => c.end().catch(() => undefined)));
    } finally {
      await proxy.kill();
    }
  });

  it('etcd mode: a switchover drain holds new transactions in every worker and is acknowledged only once the last one running ends', async () => {
    await direct.query('CREATE DATABASE w_drain');
    const etcd = await startEtcd();
    const cluster = `drain-${process.pid}`;
    const agent = new EtcdDcs({ endpoints: [etcd.endpoint], cluster });
    const proxyDcs = new EtcdDcs({ endpoints: [etcd.endpoint], cluster });
    // Stale after 1.5 s without a load (loads come every second): the workers must hear of every load, not only of changes.
    const topology = new EtcdTopology({ dcs: proxyDcs, maxReplicaLagBytes: 1 << 30, staleAfterMs: 1500 });
    let group: WorkerGroup | null = null;
    let registrar: ProxyRegistrar | null = null;
    const clients: pg.Client[] = [];
    try {
      // A cluster of one member, "a", primary at the test's PostgreSQL.
      await agent.ensureLease(30);
      await agent.publishMember({
        name: 'a', role: 'primary', state: 'running', apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: server.port, timeline: 1, walPosition: null, receiveLsn: null,
        replayLsn: null, lagBytes: null, following: null, tags: DEFAULT_TAGS, paused: false, pendingRestart: false, reason: '', updatedAt: Date.now(), version: 'test', systemId: null,
      });
      assert.equal(await agent.acquireLeader('a'), true);
      await topology.start();
      group = await startGroup({ default_pool_size: 4, query_wait_timeout: 2 }, 'drain.yml', topology);
      registrar = new ProxyRegistrar(proxyDcs, 'p1', group, topology, pino({ level: 'silent' }));
      await registrar.start(30);
      const drained = async (): Promise<string | null> => (await agent.loadProxies()).find((p) => p.id === 'p1')?.drained ?? null;

      for (let i = 0; i < 2; i++) clients.push(client(group, 'w_drain'));
      for (const c of clients) await c.connect();
      assert.deepEqual(group.clientsPerWorker(), [1, 1]);
      const [c0, c1] = clients as [pg.Client, pg.Client];
      await c1.query('BEGIN');
      await c1.query('SELECT 1');

      await agent.setDrain({ id: 'switchover:1:b', from: 'a', to: 'b', requestedAt: Date.now(), timeoutMs: 20_000 });
      // Once both workers hold for the drain they report: worker 1's transaction is the one still running.
      await waitFor('both workers to hold for the drain', async () => (group!.rwTransactionsInFlight() === 1 ? true : undefined), 5000);
      let answered = 0;
      const held = c0.query('SELECT 2 AS v').then((r) => {
        answered = Date.now();
        return r.rows[0].v as number;
      });
      // Nothing to wait for (this checks that nothing happens): 600 ms is over a hundred of the registrar's 5 ms polls.
      await sleep(600);
      assert.equal(await drained(), null, "not acknowledged while worker 1's transaction runs");
      assert.equal(answered, 0, 'worker 0 holds the new transaction');

      await c1.query('COMMIT');
      await waitFor('the drain to be acknowledged', async () => ((await drained()) === 'switchover:1:b' ? true : undefined), 5000);
      assert.equal(answered, 0, 'still held after the acknowledgement, until the drain ends');

      await agent.clearDrain();
      assert.equal(await held, 2, 'the held transaction runs once the drain is over');

      // Three loads with nothing changing in etcd (two seconds, past staleAfterMs): both workers still route to the
      // primary (their view is kept fresh).
      let loads = 0;
      const counted = (): void => {
        loads++;
      };
      topology.on('loaded', counted);
      await waitFor('three loads of the topology', () => loads >= 3, 10_000).finally(() => topology.off('loaded', counted));
      const later = await Promise.all(clients.map((c, i) => c.query('SELECT $1::int AS v', [i]).then((r) => r.rows[0].v as number, (e: Error) => e.message)));
      assert.deepEqual(later, [0, 1]);
    } finally {
      registrar?.stop();
      for (const c of clients) await c.end().catch(() => undefined);
      if (group !== null) await stopGroup(group);
      await topology.stop();
      await proxyDcs.close({ revoke: true });
      await agent.close({ revoke: true });
      await etcd.stop();
    }
  });

  it('the admin console sees and commands every worker: SHOW adds up both, PAUSE and RESUME hold and free clients in both', async () => {
    await direct.query('CREATE DATABASE w_admin');
    const group = await startGroup({ default_pool_size: 4, admin_users: [user] });
    const clients = Array.from({ length: 4 }, () => client(group, 'w_admin'));
    for (const c of clients) await c.connect();
    for (const c of clients) await c.query('SELECT 1');
    // The console session is a fifth connection: worker 0 (a tie goes to the first).
    const adminClient = client(group, 'pgbouncer');
    await adminClient.connect();
    assert.deepEqual(group.clientsPerWorker(), [3, 2]);
    const show = async (what: string): Promise<Array<Record<string, unknown>>> => (await adminClient.query(`SHOW ${what}`)).rows;
    const pool = (await show('POOLS')).find((r) => r.database === 'w_admin')!;
    assert.equal(Number(pool.cl_active), 4, 'clients of both workers');
    assert.ok(Number(pool.sv_active) + Number(pool.sv_idle) >= 2 && Number(pool.sv_active) + Number(pool.sv_idle) <= 4, 'server connections of both workers, within the pool size');
    assert.equal((await show('CLIENTS')).filter((r) => r.database === 'w_admin').length, 4);
    assert.equal(Number((await show('STATS_TOTALS')).find((r) => r.database === 'w_admin')!.xact_count), 4);
    assert.equal(Number((await show('LISTS')).find((r) => r.list === 'used_clients')!.items), 5, 'four clients and the console session');

    await adminClient.query('PAUSE w_admin');
    const answered: number[] = [];
    const queries = clients.map((c, i) => c.query('SELECT 1').then(() => answered.push(i)));
    await waitFor('the four clients to be held', async () => (await show('CLIENTS')).filter((r) => r.database === 'w_admin' && r.state === 'waiting').length === 4);
    assert.deepEqual(answered, [], 'PAUSE holds the clients of both workers');
    await adminClient.query('RESUME w_admin');
    await Promise.all(queries);
    assert.deepEqual(answered.sort(), [0, 1, 2, 3]);
    await adminClient.end();
    await Promise.all(clients.map((c) => c.end()));
    await stopGroup(group);
  });
});
