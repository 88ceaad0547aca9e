/**
 * Transaction mode: a client's named statement is prepared again on another server connection after its table was
 * dropped and created again. PostgreSQL answers the use of such a statement on its own connection with
 * ERROR 0A000 "cached plan must not change result type" when the result shape changed (and runs it when it did
 * not); through the proxy the client must get exactly that, never rows of another shape than the one it learnt.
 *
 * Each driver case runs the same client code against PostgreSQL directly and through the proxy, whose pool has two
 * server connections: after the client prepared its statement on one (A), another client keeps A busy inside a
 * transaction, so the client's next use lands on the other (B), where the proxy must prepare it again.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import * as m from '../../src/proxy/protocol/messages.js';
import type { MessageWriter } from '../../src/proxy/protocol/writer.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';
import { RawClient } from '../helpers/raw-client.js';

const credentials = testCredentials();
const user = credentials.superuser.username;
const password = credentials.superuser.password;
let base: string;
let server: PostgresServer;
let direct: pg.Client;
/** Transaction mode, 2 server connections; with native I/O and with Node sockets (two forwarding paths). */
const proxies = new Map<'native' | 'node', ProxyServer>();
/** Session mode: one client, one server connection, PostgreSQL's own answers (the reference for raw clients). */
let session: ProxyServer;

interface Target {
  label: string;
  port: number;
  /** Through a transaction-mode proxy: the statement's server connection must be kept busy to move the client. */
  pooled: boolean;
}

/** How a table changes between the first and the second use of the statement. */
interface Change {
  before: string;
  beforeRow: string;
  after: string;
  afterRow: string;
}

const CHANGES: Record<string, Change> = {
  'int→text': { before: '(x int)', beforeRow: '(42)', after: '(x text)', afterRow: "('hello')" },
  '3→2 columns': { before: '(x int, y int, z int)', beforeRow: '(1, 2, 3)', after: '(x text, y int)', afterRow: "('hello', 2)" },
  'same shape': { before: '(x int, y text)', beforeRow: "(1, 'one')", after: '(x int, y text)', afterRow: "(2, 'two')" },
};

/** What one use of the statement gave: its rows, or PostgreSQL's error fields. */
type Outcome = { rows: unknown[] } | { error: Record<string, string | undefined> };

async function attempt(run: () => Promise<unknown[]>): Promise<Outcome> {
  try {
    return { rows: JSON.parse(JSON.stringify(await run())) as unknown[] };
  } catch (e) {
    const err = e as Record<string, string | undefined>;
    return { error: { severity: err.severity, code: err.code, message: err.message, file: err.file, line: err.line, routine: err.routine } };
  }
}

function pgClient(port: number): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres', connectionTimeoutMillis: 5000 });
  c.on('error', () => undefined);
  return c;
}

async function createTable(table: string, columns: string, row: string): Promise<void> {
  await direct.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} ${columns}; INSERT INTO ${table} VALUES ${row}`);
}

/**
 * Through the proxy: a client takes the server connection `pid` (the statement's) inside a transaction and keeps it,
 * so that the pool's only other connection serves the next use. Returns the release and the backend pid of that
 * other connection. Directly: nothing to do.
 */
async function keepBusy(target: Target, pid: number): Promise<{ release: () => Promise<void>; otherPid: number }> {
  if (!target.pooled) return { release: async () => undefined, otherPid: 0 };
  const holders = [pgClient(target.port), pgClient(target.port)];
  await Promise.all(holders.map((h) => h.connect()));
  const pids: number[] = [];
  for (const h of holders) {
    await h.query('BEGIN');
    pids.push((await h.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
  }
  const keeper = pids.indexOf(pid);
  assert.ok(keeper >= 0, `one of the two server connections (${pids.join(', ')}) is the statement's (${pid})`);
  const other = holders[1 - keeper]!;
  await other.query('COMMIT');
  await other.end();
  return {
    release: async () => {
      await holders[keeper]!.query('COMMIT');
      await holders[keeper]!.end();
    },
    otherPid: pids[1 - keeper]!,
  };
}

/** node-postgres: a named query, used once, the table changed, used again twice, then once inside a transaction. */
async function pgCase(target: Target, table: string, change: Change): Promise<Outcome[]> {
  await createTable(table, change.before, change.beforeRow);
  const x = pgClient(target.port);
  await x.connect();
  const stmt = { name: `${table}_s`, text: `SELECT * FROM ${table}` };
  try {
    await x.query('BEGIN');
    const pid = (await x.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const outcomes = [await attempt(async () => (await x.query(stmt)).rows)];
    await x.query('COMMIT');
    const { release } = await keepBusy(target, pid);
    try {
      await createTable(table, change.after, change.afterRow);
      outcomes.push(await attempt(async () => (await x.query(stmt)).rows));
      outcomes.push(await attempt(async () => (await x.query(stmt)).rows));
      // Inside a transaction block the error aborts it, as any error does.
      await x.query('BEGIN');
      outcomes.push(await attempt(async () => (await x.query(stmt)).rows));
      outcomes.push(await attempt(async () => (await x.query('SELECT 1 AS one')).rows));
      await x.query('ROLLBACK');
    } finally {
      await release();
    }
    return outcomes;
  } finally {
    await x.end().catch(() => undefined);
  }
}

/**
 * node-postgres, two clients with a statement of the same name and text (as drivers name them: pgbench P0_1,
 * pgjdbc S_1, hashes of the SQL): X prepares it, the table changes, Y prepares it (through the proxy: on the other
 * server connection), then X uses its own again.
 */
async function sharedNameCase(target: Target, table: string, change: Change): Promise<Outcome[]> {
  await createTable(table, change.before, change.beforeRow);
  const x = pgClient(target.port);
  const y = pgClient(target.port);
  await Promise.all([x.connect(), y.connect()]);
  const stmt = { name: 'shared_s', text: `SELECT * FROM ${table}` };
  try {
    await x.query('BEGIN');
    const pid = (await x.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const outcomes = [await attempt(async () => (await x.query(stmt)).rows)];
    await x.query('COMMIT');
    const { release } = await keepBusy(target, pid);
    try {
      await createTable(table, change.after, change.afterRow);
      outcomes.push(await attempt(async () => (await y.query(stmt)).rows));
      outcomes.push(await attempt(async () => (await x.query(stmt)).rows));
      outcomes.push(await attempt(async () => (await y.query(stmt)).rows));
    } finally {
      await release();
    }
    return outcomes;
  } finally {
    await Promise.all([x.end().catch(() => undefined), y.end().catch(() => undefined)]);
  }
}

/** postgres.js (prepare: true): retries a prepared statement whose error has routine RevalidateCachedQuery. */
async function postgresJsCase(target: Target, table: string, change: Change): Promise<Outcome[]> {
  await createTable(table, change.before, change.beforeRow);
  const sql = postgres({ host: '127.0.0.1', port: target.port, user, password, database: 'postgres', prepare: true, max: 1, onnotice: () => undefined });
  // A tagged template is sent with the extended protocol as a named statement (unsafe() without parameters
  // would be a simple query), prepared once per connection and then only bound and executed.
  try {
    let pid = 0;
    const outcomes: Outcome[] = [];
    await sql.begin(async (tx) => {
      pid = (await tx<Array<{ pid: number }>>`SELECT pg_backend_pid() AS pid`)[0]!.pid;
      outcomes.push(await attempt(async () => [...(await tx`SELECT * FROM ${tx(table)}`)]));
    });
    const { release } = await keepBusy(target, pid);
    try {
      await createTable(table, change.after, change.afterRow);
      outcomes.push(await attempt(async () => [...(await sql`SELECT * FROM ${sql(table)}`)]));
      outcomes.push(await attempt(async () => [...(await sql`SELECT * FROM ${sql(table)}`)]));
    } finally {
      await release();
    }
    return outcomes;
  } finally {
    await sql.end({ timeout: 5 });
  }
}


function describeMessage(type: number, body: Buffer): string {
  const t = String.fromCharCode(type);
  switch (type) {
    case m.BackendType.ErrorResponse: {
      const e = m.decodeErrorFields(body, 0, body.length);
      return `${t} ${e.severity} ${e.code} ${e.message} ${e.routine ?? ''}`;
    }
    case m.BackendType.CommandComplete:
      return `${t} ${body.toString('utf8', 0, body.length - 1)}`;
    case m.BackendType.ReadyForQuery:
      return `${t} ${String.fromCharCode(body[0]!)}`;
    case m.BackendType.RowDescription:
      return `${t} ${m
        .decodeRowDescription(body, 0, body.length)
        .map((c) => `${c.name}:${c.typeOid}`)
        .join(',')}`;
    case m.BackendType.DataRow:
      return `${t} ${JSON.stringify(m.decodeDataRow(body, 0, body.length))}`;
    case m.BackendType.ParameterDescription:
      return `${t} ${body.readInt16BE(0)}`;
    default:
      return t;
  }
}

/** A raw client that prepares `name`, sees the table change, and uses, describes and prepares it again. */
async function rawCase(port: number, pooled: boolean, table: string, change: Change): Promise<string[][]> {
  await createTable(table, change.before, change.beforeRow);
  const raw = await RawClient.open(port, { user, database: 'postgres' }, describeMessage);
  const name = `${table}_s`;
  const text = `SELECT * FROM ${table}`;
  const use = (w: MessageWriter): void => {
    m.writeBind(w, '', name);
    m.writeExecute(w, '');
    m.writeSync(w);
  };
  try {
    const steps: string[][] = [];
    await raw.run((w) => m.writeQuery(w, 'BEGIN'));
    raw.send((w) => m.writeQuery(w, 'SELECT pg_backend_pid()'));
    const pidRow = (await raw.untilReady()).find((s) => s.startsWith('D '))!;
    const pid = Number((JSON.parse(pidRow.slice(2)) as string[])[0]);
    steps.push(
      await raw.run((w) => {
        m.writeParse(w, name, text);
        m.writeDescribe(w, 'S', name);
        use(w);
      }),
    );
    await raw.run((w) => m.writeQuery(w, 'COMMIT'));
    const { release } = await keepBusy({ label: '', port, pooled }, pid);
    try {
      await createTable(table, change.after, change.afterRow);
      steps.push(await raw.run(use));
      steps.push(
        await raw.run((w) => {
          m.writeDescribe(w, 'S', name);
          m.writeSync(w);
        }),
      );
      // Inside a transaction block: the error leaves it failed ('E'); what follows in the batch is skipped.
      steps.push(await raw.run((w) => m.writeQuery(w, 'BEGIN')));
      steps.push(
        await raw.run((w) => {
          m.writeBind(w, '', name);
          m.writeExecute(w, '');
          m.writeParse(w, '', 'SELECT 1');
          m.writeBind(w, '', '');
          m.writeExecute(w, '');
          m.writeSync(w);
        }),
      );
      steps.push(await raw.run((w) => m.writeQuery(w, 'ROLLBACK')));
      // What drivers do on 0A000: close the statement and prepare it again, under the same name.
      steps.push(
        await raw.run((w) => {
          m.writeClose(w, 'S', name);
          m.writeParse(w, name, text);
          m.writeDescribe(w, 'S', name);
          use(w);
        }),
      );
      steps.push(await raw.run(use));
    } finally {
      await release();
    }
    return steps;
  } finally {
    raw.close();
  }
}

/**
 * Through `proxy`: a raw client prepares `<table>_s` on one server connection, that connection is kept busy and the
 * table changed, and another client locks the table, so that the proxy's re-prepare on the other connection waits
 * for the lock. Returns what the test needs to go on from there.
 */
async function checkBlockedOnLock(
  proxy: ProxyServer,
  table: string,
  change: Change,
): Promise<{ raw: RawClient<string>; locker: pg.Client; otherPid: number; release: () => Promise<void> }> {
  await createTable(table, change.before, change.beforeRow);
  const raw = await RawClient.open(proxy.address.port, { user, database: 'postgres' }, describeMessage);
  await raw.run((w) => m.writeQuery(w, 'BEGIN'));
  raw.send((w) => m.writeQuery(w, 'SELECT pg_backend_pid()'));
  const pid = Number((JSON.parse((await raw.untilReady()).find((s) => s.startsWith('D '))!.slice(2)) as string[])[0]);
  await raw.run((w) => {
    m.writeParse(w, `${table}_s`, `SELECT * FROM ${table}`);
    m.writeDescribe(w, 'S', `${table}_s`);
    m.writeSync(w);
  });
  await raw.run((w) => m.writeQuery(w, 'COMMIT'));
  const { release, otherPid } = await keepBusy({ label: '', port: proxy.address.port, pooled: true }, pid);
  await createTable(table, change.after, change.afterRow);
  const locker = pgClient(server.port);
  await locker.connect();
  await locker.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  return { raw, locker, otherPid, release };
}

/** Until the backend `pid` waits for a lock (the proxy's re-prepare of the statement). */
async function untilWaitingForLock(pid: number): Promise<void> {
  await waitFor(`backend ${pid} to wait for the table lock`, async () => {
    const rows = await direct.query<{ wait: string | null }>('SELECT wait_event_type AS wait FROM pg_stat_activity WHERE pid = $1', [pid]);
    return rows.rows[0]?.wait === 'Lock' || undefined;
  });
}

async function startProxy(settings: Record<string, unknown>): Promise<ProxyServer> {
  const config = parseProxyConfig({ listen: '127.0.0.1:0', auth_file: 'userlist.txt', query_wait_timeout: 20, ...settings }, { source: 'test', baseDir: base });
  const proxy = new ProxyServer({ config, topology: new StaticTopology({ host: '127.0.0.1', port: server.port }) });
  await proxy.start();
  return proxy;
}

const CACHED_PLAN_ERROR = { severity: 'ERROR', code: '0A000', message: 'cached plan must not change result type', file: 'plancache.c', routine: 'RevalidateCachedQuery' };

describe('transaction mode: statements prepared again on another server connection keep the result shape', { timeout: 240_000 }, () => {
  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-shape-');
    server = await makeTestServer('shape', base, credentials, { parameters: { max_connections: 40 } });
    await server.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
    proxies.set('native', await startProxy({ pool_mode: 'transaction', default_pool_size: 2, auth_type: 'trust', native_io: true }));
    proxies.set('node', await startProxy({ pool_mode: 'transaction', default_pool_size: 2, auth_type: 'trust', native_io: false }));
    session = await startProxy({ pool_mode: 'session', default_pool_size: 4, auth_type: 'trust' });
    direct = pgClient(server.port);
    await direct.connect();
  });

  after(async () => {
    await direct?.end().catch(() => undefined);
    for (const proxy of proxies.values()) await proxy.stop(100);
    await session?.stop(100);
    await cleanupServers();
  });

  const directTarget = (): Target => ({ label: 'PostgreSQL', port: server.port, pooled: false });
  const proxyTargets = (): Target[] => [...proxies].map(([kind, proxy]) => ({ label: `proxy (${kind} I/O)`, port: proxy.address.port, pooled: true }));

  for (const [changeName, change] of Object.entries(CHANGES)) {
    const slug = changeName === 'int→text' ? 'itt' : changeName === '3→2 columns' ? 'ttc' : 'same';

    it(`pg (node-postgres) named query, ${changeName}: the same rows or errors as PostgreSQL directly`, async () => {
      const expected = await pgCase(directTarget(), `pg_${slug}_d`, change);
      // What PostgreSQL does, measured: the first use gives the old rows; then, if the shape changed, 0A000 on each
      // use (node-postgres never prepares again) and 25P02 after it inside a transaction block; else the new rows.
      if (slug === 'same') {
        assert.deepEqual(expected.slice(1, 3), [{ rows: [{ x: 2, y: 'two' }] }, { rows: [{ x: 2, y: 'two' }] }]);
      } else {
        for (const i of [1, 2, 3]) {
          const outcome = expected[i] as { error: Record<string, string> };
          assert.ok('error' in outcome, `use ${i} fails`);
          const { line: _line, ...fields } = outcome.error;
          assert.deepEqual(fields, CACHED_PLAN_ERROR);
        }
        assert.equal((expected[4] as { error: Record<string, string> }).error.code, '25P02');
      }
      for (const target of proxyTargets()) {
        const got = await pgCase(target, `pg_${slug}_${target.label.includes('native') ? 'n' : 'j'}`, change);
        assert.deepEqual(got, expected, `${target.label}: ${JSON.stringify(got)}`);
      }
    });

    it(`postgres.js (prepare: true), ${changeName}: the same rows as PostgreSQL directly, never another shape`, async () => {
      const expected = await postgresJsCase(directTarget(), `pj_${slug}_d`, change);
      // postgres.js prepares the statement again (it retries on routine RevalidateCachedQuery) and gets the new rows.
      const newRows = slug === 'itt' ? [{ x: 'hello' }] : slug === 'ttc' ? [{ x: 'hello', y: 2 }] : [{ x: 2, y: 'two' }];
      assert.deepEqual(expected.slice(1), [{ rows: newRows }, { rows: newRows }]);
      for (const target of proxyTargets()) {
        const got = await postgresJsCase(target, `pj_${slug}_${target.label.includes('native') ? 'n' : 'j'}`, change);
        assert.deepEqual(got, expected, `${target.label}: ${JSON.stringify(got)}`);
      }
    });
  }

  it('another client prepared a statement of the same name and text after the change: the first client still gets 0A000', async () => {
    const change = CHANGES['int→text']!;
    const expected = await sharedNameCase(directTarget(), 'shared_d', change);
    const { line: _line, ...fields } = (expected[2] as { error: Record<string, string> }).error;
    assert.deepEqual(fields, CACHED_PLAN_ERROR);
    assert.deepEqual([expected[1], expected[3]], [{ rows: [{ x: 'hello' }] }, { rows: [{ x: 'hello' }] }]);
    for (const target of proxyTargets()) {
      const got = await sharedNameCase(target, `shared_${target.label.includes('native') ? 'n' : 'j'}`, change);
      assert.deepEqual(got, expected, `${target.label}: ${JSON.stringify(got)}`);
    }
  });

  for (const [changeName, change] of Object.entries(CHANGES)) {
    if (changeName === 'same shape') continue;
    it(`raw protocol, ${changeName}: Bind and Describe get 0A000 until the client closes and prepares again; 'E' inside a transaction block`, async () => {
      const slug = changeName === 'int→text' ? 'itt' : 'ttc';
      // Reference: PostgreSQL's own answers on one connection (session mode forwards them as they are).
      const expected = await rawCase(session.address.port, false, `raw_${slug}_d`, change);
      const error = `E ERROR 0A000 cached plan must not change result type RevalidateCachedQuery`;
      // A Describe('S') gets the statement's ParameterDescription before the error (PostgreSQL sends it first).
      assert.deepEqual(expected.slice(1, 6), [
        [error, 'Z I'],
        ['t 0', error, 'Z I'],
        ['C BEGIN', 'Z T'],
        [error, 'Z E'],
        ['C ROLLBACK', 'Z I'],
      ]);
      assert.equal(expected[6]![0], '3', 'CloseComplete');
      assert.ok(expected[6]!.includes(slug === 'itt' ? 'D ["hello"]' : 'D ["hello","2"]'), JSON.stringify(expected[6]));
      for (const [kind, proxy] of proxies) {
        const got = await rawCase(proxy.address.port, true, `raw_${slug}_${kind === 'native' ? 'n' : 'j'}`, change);
        assert.deepEqual(got, expected, `${kind} I/O: ${JSON.stringify(got)}`);
      }
    });
  }

  it('a re-prepare that fails (the table is gone) gives the client PostgreSQL\'s error, and the client goes on', async () => {
    for (const [kind, proxy] of proxies) {
      const table = `gone_${kind}`;
      await createTable(table, '(x int)', '(1)');
      const raw = await RawClient.open(proxy.address.port, { user, database: 'postgres' }, describeMessage);
      try {
        await raw.run((w) => m.writeQuery(w, 'BEGIN'));
        raw.send((w) => m.writeQuery(w, 'SELECT pg_backend_pid()'));
        const pid = Number((JSON.parse((await raw.untilReady()).find((s) => s.startsWith('D '))!.slice(2)) as string[])[0]);
        await raw.run((w) => {
          m.writeParse(w, 's', `SELECT * FROM ${table}`);
          m.writeSync(w);
        });
        await raw.run((w) => m.writeQuery(w, 'COMMIT'));
        const { release } = await keepBusy({ label: kind, port: proxy.address.port, pooled: true }, pid);
        try {
          await direct.query(`DROP TABLE ${table}`);
          const got = await raw.run((w) => {
            m.writeBind(w, '', 's');
            m.writeExecute(w, '');
            m.writeSync(w);
          });
          assert.equal(got.length, 2, JSON.stringify(got));
          assert.match(got[0]!, /^E ERROR 42P01 relation ".*" does not exist/);
          assert.equal(got[1], 'Z I');
          // An error earlier in the batch: PostgreSQL skips the rest, the proxy's re-prepare included.
          const skipped = await raw.run((w) => {
            m.writeParse(w, '', 'SELEC 1');
            m.writeBind(w, '', '');
            m.writeExecute(w, '');
            m.writeBind(w, '', 's');
            m.writeExecute(w, '');
            m.writeSync(w);
          });
          assert.deepEqual(skipped.map((s) => s.slice(0, 13)), ['E ERROR 42601', 'Z I']);
          assert.deepEqual(await raw.run((w) => m.writeQuery(w, 'SELECT 7')), ['T ?column?:23', 'D ["7"]', 'C SELECT 1', 'Z I']);
        } finally {
          await release();
        }
      } finally {
        raw.close();
      }
    }
  });

  for (const changeName of ['same shape', 'int→text'] as const) {
    it(`${changeName}: the client's Bind waits for the shape check while the rest of its batch arrives (Flush, then Sync)`, async () => {
      for (const [kind, proxy] of proxies) {
        const table = `held_${changeName === 'same shape' ? 'same' : 'itt'}_${kind}`;
        const { raw, locker, otherPid, release } = await checkBlockedOnLock(proxy, table, CHANGES[changeName]!);
        try {
          raw.send((w) => {
            m.writeBind(w, '', `${table}_s`);
            m.writeExecute(w, '');
          });
          await untilWaitingForLock(otherPid);
          // More of the batch while the Bind is held: it stays behind the Bind, in order.
          raw.send((w) => m.writeFlush(w));
          await locker.query('COMMIT');
          if (changeName === 'same shape') {
            assert.deepEqual(await raw.until(m.BackendType.CommandComplete), ['2', 'D ["2","two"]', 'C SELECT 1'], kind);
          } else {
            assert.deepEqual(await raw.until(m.BackendType.ErrorResponse), ['E ERROR 0A000 cached plan must not change result type RevalidateCachedQuery'], kind);
          }
          assert.deepEqual(await raw.run((w) => m.writeSync(w)), ['Z I'], kind);
          assert.deepEqual(await raw.run((w) => m.writeQuery(w, 'SELECT 7')), ['T ?column?:23', 'D ["7"]', 'C SELECT 1', 'Z I'], kind);
        } finally {
          await locker.end().catch(() => undefined);
          await release();
          raw.close();
        }
      }
    });
  }

  it('the server connection dies during the shape check: the held batch gets an error at its Sync, and the client goes on', async () => {
    for (const [kind, proxy] of proxies) {
      const table = `lost_${kind}`;
      const { raw, locker, otherPid, release } = await checkBlockedOnLock(proxy, table, CHANGES['int→text']!);
      try {
        raw.send((w) => {
          m.writeBind(w, '', `${table}_s`);
          m.writeExecute(w, '');
          m.writeSync(w);
        });
        await untilWaitingForLock(otherPid);
        await direct.query('SELECT pg_terminate_backend($1)', [otherPid]);
        const got = await raw.untilReady();
        assert.equal(got.length, 2, JSON.stringify(got));
        // PostgreSQL said why the connection ended: its SQLSTATE and message, as an ERROR (the client stays).
        assert.match(got[0]!, /^E ERROR 57P01 terminating connection due to administrator command/, kind);
        assert.equal(got[1], 'Z I', kind);
        await locker.query('COMMIT');
        assert.deepEqual(await raw.run((w) => m.writeQuery(w, 'SELECT 7')), ['T ?column?:23', 'D ["7"]', 'C SELECT 1', 'Z I'], kind);
      } finally {
        await locker.end().catch(() => undefined);
        await release();
        raw.close();
      }
    }
  });

  it('two changed statements in one batch: one 0A000 for the first, the rest of the batch skipped, as in PostgreSQL', async () => {
    const batch = async (port: number, pooled: boolean, table: string): Promise<string[][]> => {
      await createTable(table, '(x int, y int)', '(1, 2)');
      const raw = await RawClient.open(port, { user, database: 'postgres' }, describeMessage);
      try {
        await raw.run((w) => m.writeQuery(w, 'BEGIN'));
        raw.send((w) => m.writeQuery(w, 'SELECT pg_backend_pid()'));
        const pid = Number((JSON.parse((await raw.untilReady()).find((s) => s.startsWith('D '))!.slice(2)) as string[])[0]);
        await raw.run((w) => {
          m.writeParse(w, 'one', `SELECT x FROM ${table}`);
          m.writeParse(w, 'two', `SELECT y FROM ${table}`);
          m.writeSync(w);
        });
        await raw.run((w) => m.writeQuery(w, 'COMMIT'));
        const { release } = await keepBusy({ label: '', port, pooled }, pid);
        try {
          await createTable(table, '(x text, y text)', "('a', 'b')");
          const steps = [];
          for (let i = 0; i < 2; i++) {
            steps.push(
              await raw.run((w) => {
                m.writeBind(w, '', 'one');
                m.writeExecute(w, '');
                m.writeBind(w, '', 'two');
                m.writeExecute(w, '');
                m.writeSync(w);
              }),
            );
          }
          steps.push(await raw.run((w) => m.writeQuery(w, 'SELECT 7')));
          return steps;
        } finally {
          await release();
        }
      } finally {
        raw.close();
      }
    };
    const expected = await batch(session.address.port, false, 'two_d');
    const error = 'E ERROR 0A000 cached plan must not change result type RevalidateCachedQuery';
    assert.deepEqual(expected, [[error, 'Z I'], [error, 'Z I'], ['T ?column?:23', 'D ["7"]', 'C SELECT 1', 'Z I']]);
    for (const [kind, proxy] of proxies) assert.deepEqual(await batch(proxy.address.port, true, `two_${kind}`), expected, kind);
  });
});
