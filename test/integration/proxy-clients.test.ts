/**
 * Real clients through the proxy, in both pool modes: psql, pgbench (simple, extended, prepared), node-postgres
 * (named statements, cancel, COPY), postgres.js and psycopg2. Results are checked on the data, against a direct
 * connection to PostgreSQL. One PostgreSQL server and two proxies (transaction, session) with 3 server
 * connections each serve the whole file, so most clients share server connections.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import postgres from 'postgres';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { NativeWire, nativeIoStatus } from '../../src/proxy/wire/native-wire.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';

/** transaction_node_io: transaction mode with native_io: false, so the Node-socket path is tested as well. */
type Mode = 'transaction' | 'session' | 'transaction_node_io';
const MODES: readonly Mode[] = ['transaction', 'session', 'transaction_node_io'];
const poolModeOf = (mode: Mode): 'transaction' | 'session' => (mode === 'session' ? 'session' : 'transaction');
const POOL_SIZE = 3;
/** Debian's python3 has psycopg2; the one on PATH may not. */
const SYSTEM_PYTHON = '/usr/bin/python3';
// Compiled to dist/test/integration/: the fixture stays in the source tree.
const PSYCOPG2_SCRIPT = fileURLToPath(new URL('../../../test/integration/fixtures/psycopg2_client.py', import.meta.url));

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end; a non-zero exit is a result, not an exception. */
function runProgram(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
    });
  });
}

function codeOf(e: unknown): string | undefined {
  return (e as { code?: string }).code;
}

describe('real clients through the proxy', { timeout: 180_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let server: PostgresServer;
  let base: string;
  const proxies = new Map<Mode, ProxyServer>();
  /** Transaction mode with ONE server connection: every client shares it, so state left on it shows. */
  let singleTx: ProxyServer;
  let directClient: pg.Client;

  const portOf = (mode: Mode): number => proxies.get(mode)!.address.port;
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '5', PGSSLMODE: 'disable' });

  function pgConfig(port: number, extra: pg.ClientConfig = {}): pg.ClientConfig {
    return { host: '127.0.0.1', port, user, password, database: 'postgres', connectionTimeoutMillis: 5000, ...extra };
  }

  function pgClient(mode: Mode, extra: pg.ClientConfig = {}): pg.Client {
    const c = new pg.Client(pgConfig(portOf(mode), extra));
    c.on('error', () => undefined);
    return c;
  }

  async function direct<T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await directClient.query<T>(sql, params)).rows;
  }

  /** Backends running `sql` right now (pg_stat_activity state 'active'). */
  async function running(sql: string): Promise<number> {
    return (await direct<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND pid <> pg_backend_pid()", [sql]))[0]!.n;
  }

  async function startProxy(mode: Mode, size = POOL_SIZE): Promise<ProxyServer> {
    const config = parseProxyConfig(
      {
        listen: '127.0.0.1:0',
        pool_mode: poolModeOf(mode),
        default_pool_size: size,
        auth_file: 'userlist.txt',
        query_wait_timeout: 20,
        native_io: mode !== 'transaction_node_io',
      },
      { source: 'test', baseDir: base },
    );
    const proxy = new ProxyServer({ config, topology: new StaticTopology({ host: '127.0.0.1', port: server.port }) });
    await proxy.start();
    return proxy;
  }

  function assertPoolBounded(mode: Mode): void {
    const stats = proxies.get(mode)!.poolStats().get(`postgres/${user}`);
    assert.ok(stats !== undefined, 'the pool exists');
    assert.ok(stats.total <= POOL_SIZE, `the ${mode} pool holds ${stats.total} server connections`);
  }

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-clients-');
    server = await makeTestServer('clients', base, credentials, { parameters: { max_connections: 40 } });
    await server.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
    for (const mode of MODES) proxies.set(mode, await startProxy(mode));
    singleTx = await startProxy('transaction', 1);
    directClient = new pg.Client(pgConfig(server.port));
    directClient.on('error', () => undefined);
    await directClient.connect();
    const init = await runProgram('/usr/bin/pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(server.port), '-U', user, 'postgres'], env());
    assert.equal(init.code, 0, init.stderr);
  });

  after(async () => {
    await directClient?.end().catch(() => undefined);
    for (const proxy of proxies.values()) await proxy.stop(100);
    await singleTx?.stop(100);
    await cleanupServers();
  });

  it('native_io: logged-in plain TCP clients and server connections move to the native module; with native_io: false they stay Node sockets', async () => {
    assert.deepEqual(nativeIoStatus(), { active: true }, 'npm run build compiled the module');
    for (const mode of MODES) {
      const clients = Array.from({ length: 3 }, () => pgClient(mode));
      await Promise.all(clients.map((c) => c.connect()));
      try {
        await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.05)')));
        const proxy = proxies.get(mode)!;
        const native = mode !== 'transaction_node_io';
        const clientKinds = proxy.clientList().map((c) => c.socket instanceof NativeWire);
        assert.ok(clientKinds.length >= 3, `${mode}: ${clientKinds.length} clients`);
        assert.deepEqual([...new Set(clientKinds)], [native], `${mode}: every client is ${native ? 'native' : 'a Node socket'}`);
        const servers = proxy.serverPools().get(`postgres/${user}`)!.connectionsNow().all;
        assert.ok(servers.length >= 1);
        assert.deepEqual([...new Set(servers.map((s) => s.socket instanceof NativeWire))], [native], `${mode}: server connections alike`);
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    }
  });

  // ------------------------------------------------------------------------------------------------------------
  // psql
  // ------------------------------------------------------------------------------------------------------------

  for (const mode of MODES) {
    it(`${mode}: psql script with multi-statement queries, a failed transaction rolled back, \\copy in and out`, async () => {
      const table = `psql_${mode}`;
      const csvIn = path.join(base, `${table}-in.csv`);
      const csvOut = path.join(base, `${table}-out.csv`);
      const scriptFile = path.join(base, `${table}.sql`);
      await writeFile(csvIn, Array.from({ length: 1000 }, (_, i) => `${i + 100},row${i + 100}\n`).join(''));
      await writeFile(
        scriptFile,
        [
          `CREATE TABLE ${table} (id int PRIMARY KEY, v text);`,
          // \; sends both statements (and the SELECT) in one Query message.
          `INSERT INTO ${table} VALUES (1, 'a') \\; INSERT INTO ${table} VALUES (2, 'b') \\; SELECT 'multi-' || count(*) FROM ${table};`,
          'BEGIN;',
          `INSERT INTO ${table} VALUES (3, 'rolled back');`,
          'SELECT 1/0;',
          `INSERT INTO ${table} VALUES (4, 'never');`,
          'ROLLBACK;',
          'BEGIN;',
          `INSERT INTO ${table} VALUES (5, 'e');`,
          'COMMIT;',
          `\\copy ${table} FROM '${csvIn}' WITH (FORMAT csv)`,
          `\\copy (SELECT id, v FROM ${table} ORDER BY id) TO '${csvOut}' WITH (FORMAT csv)`,
          `SELECT 'total-' || count(*) || '-' || sum(id) FROM ${table};`,
          '\\echo done',
          '',
        ].join('\n'),
      );
      const result = await runProgram('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(portOf(mode)), '-U', user, '-d', 'postgres', '-f', scriptFile], env());
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^multi-2$/m);
      assert.match(result.stderr, /ERROR: {2}division by zero/);
      assert.match(result.stderr, /ERROR: {2}current transaction is aborted, commands ignored until end of transaction block/);
      assert.match(result.stdout, /^COPY 1000$/m);
      const expectedSum = 1 + 2 + 5 + (1000 * (100 + 1099)) / 2;
      assert.match(result.stdout, new RegExp(`^total-1003-${expectedSum}$`, 'm'));
      assert.match(result.stdout, /^done$/m);

      const rows = await direct<{ id: number; v: string }>(`SELECT id, v FROM ${table} ORDER BY id`);
      assert.deepEqual(rows.slice(0, 3), [
        { id: 1, v: 'a' },
        { id: 2, v: 'b' },
        { id: 5, v: 'e' },
      ]);
      assert.equal(rows.length, 1003);
      const out = (await readFile(csvOut, 'utf8')).trimEnd().split('\n');
      assert.equal(out.length, 1003);
      assert.deepEqual([out[0], out[2], out[1002]], ['1,a', '5,e', '1099,row1099']);
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // pgbench
  // ------------------------------------------------------------------------------------------------------------

  for (const mode of MODES) {
    for (const protocol of ['simple', 'extended', 'prepared'] as const) {
      it(`${mode}: pgbench -M ${protocol}, 4 clients over ${POOL_SIZE} server connections, 0 failed`, async () => {
        const clients = 4;
        const perClient = 150;
        const before = (await direct<{ n: number }>('SELECT count(*)::int AS n FROM pgbench_history'))[0].n;
        // -n: no vacuum, which would also truncate pgbench_history.
        const result = await runProgram(
          '/usr/bin/pgbench',
          ['-n', '-c', String(clients), '-j', '2', '-t', String(perClient), '-M', protocol, '-h', '127.0.0.1', '-p', String(portOf(mode)), '-U', user, 'postgres'],
          env(),
        );
        assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
        assert.match(result.stdout, new RegExp(`query mode: ${protocol}`));
        const failed = /number of failed transactions: (\d+)/.exec(result.stdout);
        assert.ok(failed === null || failed[1] === '0', result.stdout);
        const processed = Number(/number of transactions actually processed: (\d+)/.exec(result.stdout)?.[1]);
        assert.equal(processed, clients * perClient, result.stdout);
        const afterCount = (await direct<{ n: number }>('SELECT count(*)::int AS n FROM pgbench_history'))[0].n;
        assert.equal(afterCount - before, processed, 'every processed transaction left one pgbench_history row');
        // tpcb-like keeps branch balances equal to the sum of the history's deltas.
        const balance = await direct<{ ok: boolean }>('SELECT (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) AS ok');
        assert.equal(balance[0].ok, true);
        assertPoolBounded(mode);
      });
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // node-postgres
  // ------------------------------------------------------------------------------------------------------------

  for (const mode of MODES) {
    it(`${mode}: node-postgres named prepared statements from 10 clients over ${POOL_SIZE} server connections`, async () => {
      const table = `np_prepared_${mode}`;
      await direct(`CREATE TABLE ${table} (client int, k int, v int)`);
      const clients = Array.from({ length: 10 }, () => pgClient(mode));
      const backendsSeen = clients.map(() => new Set<number>());
      const results = await Promise.all(
        clients.map(async (c, i) => {
          await c.connect();
          let sum = 0;
          for (let k = 0; k < 8; k++) {
            // The same statement names with a different text per client group: the proxy must re-prepare
            // whichever text this client made on the server connection it gets.
            const factor = (i % 3) + 1;
            const r = await c.query({ name: 'times', text: `SELECT $1::int * ${factor} AS v, pg_backend_pid() AS pid`, values: [k] });
            assert.equal(r.rows[0].v, k * factor);
            backendsSeen[i].add(r.rows[0].pid as number);
            if (k % 2 === 0) await c.query('BEGIN');
            await c.query({ name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2, $3)`, values: [i, k, k * factor] });
            const check = await c.query({ name: 'mine', text: `SELECT count(*)::int AS n FROM ${table} WHERE client = $1`, values: [i] });
            assert.equal(check.rows[0].n, k + 1);
            if (k % 2 === 0) await c.query('COMMIT');
            sum += r.rows[0].v as number;
          }
          // In session mode only POOL_SIZE clients hold a server connection at a time: ending frees it.
          await c.end();
          return sum;
        }),
      );
      assert.deepEqual(
        results,
        clients.map((_, i) => 28 * ((i % 3) + 1)),
      );
      const rows = await direct<{ n: number; s: number }>(`SELECT count(*)::int AS n, sum(v)::int AS s FROM ${table}`);
      assert.deepEqual(rows[0], { n: 80, s: results.reduce((a, b) => a + b, 0) });
      const counts = backendsSeen.map((seen) => seen.size);
      if (mode === 'session') assert.ok(counts.every((n) => n === 1), `one server connection per client: ${counts}`);
      // Transaction mode: a statement prepared on one server connection was run on another one.
      else assert.ok(counts.some((n) => n > 1), `clients moved between server connections: ${counts}`);
      assertPoolBounded(mode);
    });

    it(`${mode}: node-postgres cancel of pg_sleep(10) gives 57014 quickly; the connection stays usable`, async () => {
      const c = pgClient(mode);
      await c.connect();
      const query = new pg.Query('SELECT pg_sleep(10)');
      const outcome = new Promise<void>((resolve, reject) => {
        query.on('end', () => resolve());
        query.on('error', reject);
      });
      void c.query(query);
      await waitFor('pg_sleep(10) to run', async () => (await running('SELECT pg_sleep(10)')) === 1);
      // pg's own cancel path: a new connection to the proxy with the key pg got at login.
      const canceller = new pg.Client(pgConfig(portOf(mode)));
      (canceller as unknown as { cancel(client: pg.Client, query: pg.Query): void }).cancel(c, query);
      await assert.rejects(outcome, (e: unknown) => {
        assert.equal(codeOf(e), '57014');
        assert.match((e as Error).message, /canceling statement due to user request/);
        return true;
      });
      // Long before pg_sleep(10) would have ended, its backend runs it no more.
      await waitFor('the backend to stop running pg_sleep(10)', async () => (await running('SELECT pg_sleep(10)')) === 0, 5000);
      assert.equal((await c.query('SELECT 41 + 1 AS v')).rows[0].v, 42);
      await c.end();
    });

    it(`${mode}: node-postgres COPY FROM STDIN and TO STDOUT of 100k rows; a bad row fails the COPY and the connection goes on`, async () => {
      const table = `np_copy_${mode}`;
      const rowCount = 100_000;
      const c = pgClient(mode);
      await c.connect();
      await c.query(`CREATE TABLE ${table} (id int, v text)`);
      async function* rows(from: number, to: number, bad: number | null): AsyncGenerator<string> {
        const batch: string[] = [];
        for (let i = from; i <= to; i++) {
          batch.push(i === bad ? `${i}\tnot-a-row-with\textra\tcolumns\n` : `${i}\tv${i}\n`);
          if (batch.length === 1000) {
            yield batch.join('');
            batch.length = 0;
          }
        }
        if (batch.length > 0) yield batch.join('');
      }
      const copyIn = c.query(copyFrom(`COPY ${table} FROM STDIN`));
      await pipeline(Readable.from(rows(1, rowCount, null)), copyIn);
      assert.equal(copyIn.rowCount, rowCount);
      const stats = await direct<{ n: number; s: string }>(`SELECT count(*)::int AS n, sum(id)::text AS s FROM ${table}`);
      assert.deepEqual(stats[0], { n: rowCount, s: String((rowCount * (rowCount + 1)) / 2) });

      let lines = 0;
      let sum = 0;
      let rest = '';
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          const text = rest + chunk.toString('utf8');
          const parts = text.split('\n');
          rest = parts.pop()!;
          for (const line of parts) {
            lines++;
            sum += Number(line.slice(0, line.indexOf('\t')));
          }
          done();
        },
      });
      await pipeline(c.query(copyTo(`COPY (SELECT id, v FROM ${table} ORDER BY id) TO STDOUT`)), counter);
      assert.equal(rest, '');
      assert.equal(lines, rowCount);
      assert.equal(sum, (rowCount * (rowCount + 1)) / 2);

      // Row 5000 has too many columns: PostgreSQL's 22P04, nothing of this COPY stays.
      await assert.rejects(pipeline(Readable.from(rows(rowCount + 1, rowCount + 20_000, rowCount + 5000)), c.query(copyFrom(`COPY ${table} FROM STDIN`))), (e: unknown) => {
        assert.equal(codeOf(e), '22P04');
        assert.match((e as Error).message, /extra data after last expected column/);
        return true;
      });
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, rowCount);
      assert.equal((await c.query({ name: 'after-copy', text: 'SELECT $1::text AS t', values: ['still here'] })).rows[0].t, 'still here');
      await c.end();
      assertPoolBounded(mode);
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // postgres.js
  // ------------------------------------------------------------------------------------------------------------

  for (const mode of MODES) {
    for (const prepare of [true, false]) {
      it(`${mode}: postgres.js (prepare: ${prepare}) parameters, sql.begin, concurrent queries over max connections`, async () => {
        const table = `pjs_${mode}_${prepare ? 'prepared' : 'unprepared'}`;
        // Session mode: each postgres.js connection holds a server connection for its life, so at most the pool's size.
        const max = poolModeOf(mode) === 'transaction' ? 8 : POOL_SIZE;
        const sql = postgres({ host: '127.0.0.1', port: portOf(mode), user, password, database: 'postgres', max, prepare, connect_timeout: 5, onnotice: () => undefined });
        try {
          const [row] = await sql`SELECT ${41}::int + 1 AS v, ${'text'}::text AS t, ${[1, 2, 3]}::int[] AS a`;
          assert.deepEqual({ ...row }, { v: 42, t: 'text', a: [1, 2, 3] });
          await sql`CREATE TABLE ${sql(table)} (id int PRIMARY KEY, v text)`;
          const inserted = await sql.begin(async (tx) => {
            await tx`INSERT INTO ${tx(table)} VALUES (${1}, ${'one'})`;
            await tx`INSERT INTO ${tx(table)} VALUES (${2}, ${'two'})`;
            return (await tx`SELECT count(*)::int AS n FROM ${tx(table)}`)[0].n as number;
          });
          assert.equal(inserted, 2);
          await assert.rejects(
            sql.begin(async (tx) => {
              await tx`INSERT INTO ${tx(table)} VALUES (${3}, ${'rolled back'})`;
              await tx`INSERT INTO ${tx(table)} VALUES (${1}, ${'duplicate'})`;
            }),
            (e: unknown) => codeOf(e) === '23505',
          );
          const values = await Promise.all(
            Array.from({ length: 60 }, async (_, i) => {
              const [r] = await sql`SELECT ${i}::int * 2 AS v, pg_sleep(0.002)`;
              if (i % 10 === 0) await sql`INSERT INTO ${sql(table)} VALUES (${100 + i}, ${`c${i}`})`;
              return r.v as number;
            }),
          );
          assert.deepEqual(
            values,
            Array.from({ length: 60 }, (_, i) => i * 2),
          );
          const rows = await direct<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`);
          assert.deepEqual(
            rows.map((r) => r.id),
            [1, 2, 100, 110, 120, 130, 140, 150],
          );
          assertPoolBounded(mode);
        } finally {
          await sql.end({ timeout: 5 });
        }
      });
    }
  }

  for (const mode of MODES) {
    it(`${mode}: postgres.js pipelines 400 statements on one connection (hundreds of answers owed at once)`, async () => {
      // One connection: postgres.js sends every query without waiting, so the proxy's list of owed answers grows far
      // past its first size, and is compacted and reused between bursts. In transaction mode another client with other
      // settings uses the server connection between bursts, so each burst begins with the proxy's own SET, whose
      // answers are owed first and must not reach this client.
      const sql = postgres({ host: '127.0.0.1', port: portOf(mode), user, password, database: 'postgres', max: 1, prepare: true, connect_timeout: 5, connection: { application_name: 'pipeliner' } });
      try {
        for (let burst = 0; burst < 2; burst++) {
          const other = new pg.Client({ host: '127.0.0.1', port: portOf(mode), user, password, database: 'postgres', application_name: `other_${burst}` });
          await other.connect();
          assert.equal((await other.query('SELECT current_setting($1) AS a', ['application_name'])).rows[0].a, `other_${burst}`);
          await other.end();
          const values = await Promise.all(
            Array.from({ length: 200 }, async (_, i) => {
              // Two statement texts alternate: named statements are prepared, then reused, on the server connection.
              const [r] = i % 2 === 0 ? await sql`SELECT ${i}::int + ${burst * 1000}::int AS v` : await sql`SELECT ${i}::int * 1 + ${burst * 1000}::int AS v`;
              return r.v as number;
            }),
          );
          assert.deepEqual(
            values,
            Array.from({ length: 200 }, (_, i) => i + burst * 1000),
          );
        }
        const [after] = await sql`SELECT 7 AS v, current_setting('application_name') AS a`;
        assert.deepEqual({ ...after }, { v: 7, a: 'pipeliner' });
      } finally {
        await sql.end({ timeout: 5 });
      }
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // psycopg2
  // ------------------------------------------------------------------------------------------------------------

  for (const mode of MODES) {
    it(`${mode}: psycopg2 parameters, commit/rollback, a named cursor, copy_expert`, async () => {
      const dsn = `host=127.0.0.1 port=${portOf(mode)} user=${user} password=${password} dbname=postgres sslmode=disable connect_timeout=5`;
      const result = await runProgram(SYSTEM_PYTHON, [PSYCOPG2_SCRIPT, dsn, `py_${mode}`], env());
      assert.equal(result.code, 0, result.stderr);
      const seen = JSON.parse(result.stdout) as Record<string, unknown>;
      // ids 11..50 except 20
      assert.deepEqual(seen.filtered, [39, (11 + 50) * 20 - 20]);
      assert.equal(seen.after_rollback, 0);
      assert.equal(seen.duplicate_error, '23505');
      assert.deepEqual(seen.named_cursor, { count: 50, sum: 1275, first: 1, last: 50 });
      assert.deepEqual(seen.copy_out, { lines: 100, first: '101,c101', last: '200,c200' });
      assert.deepEqual(seen.total, [150, 1275 + (101 + 200) * 50]);
      const rows = await direct<{ n: number }>(`SELECT count(*)::int AS n FROM py_${mode}`);
      assert.equal(rows[0].n, 150);
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // Authentication failures
  // ------------------------------------------------------------------------------------------------------------

  for (const mode of MODES) {
    it(`${mode}: a wrong password gives 28P01 to node-postgres, postgres.js and psql; an unknown database 3D000`, async () => {
      await assert.rejects(pgClient(mode, { password: 'wrong' }).connect(), (e: unknown) => {
        assert.equal(codeOf(e), '28P01');
        assert.equal((e as Error).message, `password authentication failed for user "${user}"`);
        return true;
      });

      const wrong = postgres({ host: '127.0.0.1', port: portOf(mode), user, password: 'wrong', database: 'postgres', max: 1, connect_timeout: 5 });
      try {
        await assert.rejects(wrong`SELECT 1`, (e: unknown) => {
          assert.equal(codeOf(e), '28P01');
          assert.match((e as Error).message, /password authentication failed for user "postgres"/);
          return true;
        });
      } finally {
        await wrong.end({ timeout: 1 });
      }

      const badPsql = await runProgram('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(portOf(mode)), '-U', user, '-d', 'postgres', '-c', 'SELECT 1'], {
        ...env(),
        PGPASSWORD: 'wrong',
      });
      assert.equal(badPsql.code, 2);
      assert.match(badPsql.stderr, /FATAL: {2}password authentication failed for user "postgres"/);

      const noDb = pgClient(mode, { database: 'no_such_db' });
      await assert.rejects(noDb.connect(), (e: unknown) => {
        assert.equal(codeOf(e), '3D000');
        assert.match((e as Error).message, /database "no_such_db" does not exist/);
        return true;
      });
      const noDbJs = postgres({ host: '127.0.0.1', port: portOf(mode), user, password, database: 'no_such_db', max: 1, connect_timeout: 5 });
      try {
        await assert.rejects(noDbJs`SELECT 1`, (e: unknown) => codeOf(e) === '3D000');
      } finally {
        await noDbJs.end({ timeout: 1 });
      }
      const noDbPsql = await runProgram('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(portOf(mode)), '-U', user, '-d', 'no_such_db', '-c', 'SELECT 1'], env());
      assert.equal(noDbPsql.code, 2);
      assert.match(noDbPsql.stderr, /FATAL: {2}database "no_such_db" does not exist/);

      // The failures cost nothing to the clients that come after them.
      const ok = pgClient(mode);
      await ok.connect();
      assert.equal((await ok.query('SELECT current_database() AS d')).rows[0].d, 'postgres');
      await ok.end();
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // Transaction mode, one shared server connection: what one client leaves on it must not reach another
  // ------------------------------------------------------------------------------------------------------------

  function singleClient(extra: pg.ClientConfig = {}): pg.Client {
    const c = new pg.Client(pgConfig(singleTx.address.port, extra));
    c.on('error', () => undefined);
    return c;
  }

  for (const reset of ['DEALLOCATE ALL', 'DISCARD ALL']) {
    it(`transaction: ${reset} from one client does not break another client's named prepared statement`, async () => {
      const a = singleClient();
      const b = singleClient();
      await Promise.all([a.connect(), b.connect()]);
      try {
        const name = `kept_${reset.split(' ')[0].toLowerCase()}`;
        assert.equal((await a.query({ name, text: 'SELECT $1::int + 1 AS v', values: [1] })).rows[0].v, 2);
        // Same server connection (the pool has one): this drops every statement PostgreSQL holds on it.
        await b.query(reset);
        // node-postgres sends only Bind/Execute now (it parsed `name` already): the proxy must prepare it again.
        assert.equal((await a.query({ name, text: 'SELECT $1::int + 1 AS v', values: [2] })).rows[0].v, 3);
      } finally {
        await Promise.all([a.end(), b.end()]);
      }
    });
  }

  it('transaction: a named statement whose re-prepare failed on a new server connection works once the cause is gone', async () => {
    await direct('CREATE TABLE reprepare_t (x int)');
    const a = singleClient();
    await a.connect();
    try {
      const statement = { name: 'count_reprepare', text: 'SELECT count(*)::int AS n FROM reprepare_t' };
      assert.equal((await a.query(statement)).rows[0].n, 0);
      // The pool's one server connection goes away (as after server_lifetime or a failover): the next execution
      // is prepared again by the proxy on a new connection, and that Parse fails while the table is missing.
      const pid = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await direct('DROP TABLE reprepare_t');
      await direct('SELECT pg_terminate_backend($1)', [pid]);
      const deadline = Date.now() + 5000;
      while ((singleTx.poolStats().get(`postgres/${user}`)?.total ?? 0) > 0) {
        assert.ok(Date.now() < deadline, 'the proxy noticed its server connection was closed');
        await sleep(20);
      }
      // What a direct connection gets too (its cached plan is checked again): the table does not exist.
      await assert.rejects(a.query(statement), (e: unknown) => codeOf(e) === '42P01');
      await direct('CREATE TABLE reprepare_t (x int)');
      // Direct: 0 again. The statement must not be taken for prepared on the connection where its Parse failed.
      assert.equal((await a.query(statement)).rows[0].n, 0);
    } finally {
      await a.end();
    }
  });

  for (const mode of MODES) {
    it(`${mode}: SET TimeZone by one client is never seen by another client; the first keeps it`, async () => {
      const a = pgClient(mode);
      const b = pgClient(mode);
      await Promise.all([a.connect(), b.connect()]);
      try {
        const initial = (await b.query('SHOW TimeZone')).rows[0].TimeZone as string;
        assert.notEqual(initial, 'Asia/Tokyo');
        await a.query("SET TimeZone = 'Asia/Tokyo'");
        // Several rounds: in transaction mode b runs on whichever server connection is free, a's one included.
        for (let round = 0; round < 5; round++) {
          assert.equal((await b.query('SHOW TimeZone')).rows[0].TimeZone, initial, "b sees a's TimeZone");
          assert.equal((await a.query('SHOW TimeZone')).rows[0].TimeZone, 'Asia/Tokyo', 'a keeps its own TimeZone');
        }
      } finally {
        await Promise.all([a.end(), b.end()]);
      }
      // a's setting did not outlive a either.
      const c = pgClient(mode);
      await c.connect();
      const seen = await Promise.all(Array.from({ length: POOL_SIZE }, () => c.query('SHOW TimeZone')));
      assert.ok(seen.every((r) => r.rows[0].TimeZone !== 'Asia/Tokyo'));
      await c.end();
    });
  }

  it('transaction: after a failed psql \\copy the idle psql session does not keep the server connection', async () => {
    const generator = path.join(base, 'copy-bad-first.sh');
    const sleeping = path.join(base, 'psql-sleeping');
    const woke = path.join(base, 'psql-woke');
    // The first row is bad: PostgreSQL fails the COPY (ErrorResponse, ReadyForQuery) while psql, reading its
    // input from a program that pauses, sends the rest of the rows and CopyDone a second later.
    await writeFile(generator, `printf 'bad\\n'; seq 1 20000; sleep 1; seq 1 100\n`);
    const script = path.join(base, 'copy-bad.sql');
    await writeFile(script, ['CREATE TABLE copy_bad (x int);', `\\copy copy_bad FROM PROGRAM 'sh ${generator}'`, `\\! touch ${sleeping}; sleep 2; touch ${woke}`, "SELECT 'after';", ''].join('\n'));
    const psqlRun = runProgram('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(singleTx.address.port), '-U', user, '-d', 'postgres', '-f', script], env());
    const deadline = Date.now() + 10_000;
    while (!(await readFile(sleeping).then(() => true, () => false))) {
      assert.ok(Date.now() < deadline, 'psql reached its sleep');
      await sleep(20);
    }
    // psql is idle (outside any transaction) for 2 s: the one server connection must be free for others.
    const other = singleClient();
    await other.connect();
    assert.equal((await other.query('SELECT 5 AS v')).rows[0].v, 5);
    const wokeAlready = await readFile(woke).then(() => true, () => false);
    await other.end();
    const result = await psqlRun;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /ERROR: {2}invalid input syntax for type integer: "bad"/);
    assert.match(result.stdout, /^after$/m);
    assert.equal(wokeAlready, false, 'another client had to wait until psql sent its next statement');
    assert.equal((await direct<{ n: number }>('SELECT count(*)::int AS n FROM copy_bad'))[0].n, 0);
  });
});
