/**
 * What PgBouncer users read off a running proxy, against real PostgreSQL 15 servers and a real proxy:
 * SHOW CLIENTS/SERVERS' connect_time, request_time and tls (a TLS client beside a plaintext one), SHOW DATABASES'
 * host and port for the read-only listener's "<db>@ro", and the log lines and /metrics counters of failed logins
 * and protocol violations, rate-limited under a flood, with no password in any line.
 *
 * The read-only listener's server is a second PostgreSQL standing in for a replica: the ro pools connect to
 * whatever the topology lists as replicas, and a distinct port is what tells the two apart.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chown, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import pg from 'pg';
import pino from 'pino';
import { parseProxyConfig } from '../../src/config/proxy.js';
import { runAsIdentity } from '../../src/postgres/run.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { type AdminConsole, attachAdminConsole } from '../../src/proxy/admin/console.js';
import { LOG_LINES_PER_SECOND } from '../../src/proxy/client-failures.js';
import { ProxyMetricsServer, createProxyMetricsRegistry } from '../../src/proxy/metrics.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { type LocalCaFiles, ensureLocalCa } from '../../src/proxy/tls.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { WorkerGroup } from '../../src/proxy/workers/group.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';

const TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/;

/** "2026-12-07 00:24:17 UTC" as ms since the epoch. */
function parseTime(text: string): number {
  return Date.parse(text.replace(' UTC', 'Z').replace(' ', 'T'));
}

describe('proxy console times, tls, @ro and failure logs', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  const WRONG_PASSWORD = 'wrong-Secret-4711';
  const OUTSIDER = 'outsider';
  let primary: PostgresServer;
  let replica: PostgresServer;
  let proxy: ProxyServer;
  let adminConsole: AdminConsole;
  let metrics: ProxyMetricsServer;
  let ca: LocalCaFiles;
  let base: string;
  const logLines: Record<string, unknown>[] = [];
  let logText = '';

  function client(database: string, extra: pg.ClientConfig = {}): pg.Client {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user, password, database, ...extra });
    c.on('error', () => undefined);
    return c;
  }

  async function show(subject: string): Promise<Record<string, unknown>[]> {
    const c = client('pgbouncer');
    await c.connect();
    try {
      return (await c.query(`SHOW ${subject}`)).rows as Record<string, unknown>[];
    } finally {
      await c.end();
    }
  }

  async function scrape(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${metrics.address.port}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  }

  function metricValue(text: string, series: string): number {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `no ${series} in:\n${text.split('\n').filter((l) => l.includes('pgwarden_proxy_')).join('\n')}`);
    return Number(line.slice(series.length + 1));
  }

  /** A login that must fail; resolves with the error's SQLSTATE. */
  async function failedLogin(as: string, pw: string, database: string): Promise<string> {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user: as, password: pw, database });
    c.on('error', () => undefined);
    try {
      await c.connect();
    } catch (e) {
      return (e as { code?: string }).code ?? 'none';
    }
    await c.end();
    throw new Error(`login of ${as} to ${database} succeeded`);
  }

  const logged = (msg: string): Record<string, unknown>[] => logLines.filter((l) => l.msg === msg);

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-console-logs-');
    ca = await ensureLocalCa(path.join(base, 'tls'));
    const owner = runAsIdentity('postgres');
    if (owner) for (const file of [ca.dir, ca.serverCert, ca.serverKey]) await chown(file, owner.uid, owner.gid);
    // The primary speaks TLS (server_tls_sslmode prefer uses it), the replica stand-in does not.
    primary = await makeTestServer('primary', base, credentials, { parameters: { ssl: 'on', ssl_cert_file: ca.serverCert, ssl_key_file: ca.serverKey } });
    replica = await makeTestServer('replica', base, credentials);
    await Promise.all([primary.bootstrap(), replica.bootstrap()]);
    // OUTSIDER knows its password but is neither an admin nor a stats user of the console.
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n"${OUTSIDER}" "${password}"\n`);
    const config = parseProxyConfig(
      {
        listen: '127.0.0.1:0',
        listen_ro: '127.0.0.1:0',
        pool_mode: 'transaction',
        default_pool_size: 4,
        auth_file: 'userlist.txt',
        admin_users: [user],
        metrics_listen: '127.0.0.1:0',
        client_tls_cert_file: ca.serverCert,
        client_tls_key_file: ca.serverKey,
        server_tls_sslmode: 'prefer',
      },
      { source: 'test', baseDir: base },
    );
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logText += chunk.toString();
        for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const topology = new StaticTopology({ host: '127.0.0.1', port: primary.port }, [{ host: '127.0.0.1', port: replica.port }]);
    proxy = new ProxyServer({ config, topology, logger: pino({ level: 'info' }, stream), connectTimeoutMs: 5000 });
    await proxy.start();
    adminConsole = attachAdminConsole(proxy, { config, topology });
    metrics = new ProxyMetricsServer(createProxyMetricsRegistry({ console: adminConsole, topology, proxy }));
    await metrics.start(config.metrics_listen!);
  });

  after(async () => {
    adminConsole?.close();
    await metrics?.stop();
    await proxy?.stop(100);
    await cleanupServers();
  });

  it('SHOW CLIENTS gives connect_time, request_time (the last request) and tls as PgBouncer does', async () => {
    const connectedFrom = Math.floor(Date.now() / 1000) * 1000;
    const plain = client('postgres');
    const secure = client('postgres', { ssl: { rejectUnauthorized: false } });
    await plain.connect();
    await secure.connect();
    try {
      await plain.query('select 1');
      await secure.query('select 1');
      const connectedTo = Date.now();
      const rows = await show('CLIENTS');
      const byPort = (c: pg.Client): Record<string, unknown> => {
        const port = (c as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
        const row = rows.find((r) => Number(r.port) === port);
        assert.ok(row, `no SHOW CLIENTS row for port ${port}: ${JSON.stringify(rows)}`);
        return row;
      };
      const plainRow = byPort(plain);
      const secureRow = byPort(secure);
      for (const row of [plainRow, secureRow]) {
        assert.match(String(row.connect_time), TIME);
        assert.match(String(row.request_time), TIME);
        const connectAt = parseTime(String(row.connect_time));
        assert.ok(connectAt >= connectedFrom && connectAt <= connectedTo, `connect_time ${row.connect_time}`);
        assert.ok(parseTime(String(row.request_time)) >= connectAt, `request_time ${row.request_time} before connect_time ${row.connect_time}`);
      }
      assert.equal(plainRow.tls, '', 'plaintext: empty tls');
      const tlsSocket = (secure as unknown as { connection: { stream: TLSSocket } }).connection.stream;
      assert.equal(secureRow.tls, `${tlsSocket.getProtocol()}/${tlsSocket.getCipher().name}`, 'protocol/cipher as the client negotiated them');
      assert.match(String(secureRow.tls), /^TLSv1\.[23]\//);

      // request_time follows the client's last request: once the clock has passed the next second, a new query moves it.
      const before = parseTime(String(plainRow.request_time));
      await waitFor('the next second', async () => Date.now() >= before + 1000 || undefined, 3000);
      const queriedAt = Math.floor(Date.now() / 1000) * 1000;
      await plain.query('select 2');
      const again = (await show('CLIENTS')).find((r) => r.port === plainRow.port)!;
      assert.ok(parseTime(String(again.request_time)) >= queriedAt, `request_time ${again.request_time} did not move to the query at ${new Date(queriedAt).toISOString()}`);
      assert.equal(again.connect_time, plainRow.connect_time, 'connect_time stays');
    } finally {
      await plain.end();
      await secure.end();
    }
  });

  it('SHOW SERVERS gives connect_time, request_time, and tls as PostgreSQL sees it (empty for plaintext)', async () => {
    const c = client('postgres');
    await c.connect();
    const startedFrom = Math.floor(Date.now() / 1000) * 1000;
    await c.query('select 1');
    await c.end();
    const ro = new pg.Client({ host: '127.0.0.1', port: proxy.roAddress!.port, user, password, database: 'postgres' });
    await ro.connect();
    await ro.query('select 1');
    await ro.end();
    const rows = await show('SERVERS');
    const toPrimary = rows.filter((r) => Number(r.port) === primary.port);
    const toReplica = rows.filter((r) => Number(r.port) === replica.port);
    assert.ok(toPrimary.length > 0 && toReplica.length > 0, JSON.stringify(rows));
    for (const row of rows) {
      assert.match(String(row.connect_time), TIME);
      assert.match(String(row.request_time), TIME);
      assert.ok(parseTime(String(row.request_time)) >= parseTime(String(row.connect_time)));
    }
    assert.ok(toPrimary.some((r) => parseTime(String(r.request_time)) >= startedFrom), 'the connection that ran the query has it as request_time');
    // The primary's own view of each of those backends: pg_stat_ssl's version and cipher.
    const direct = new pg.Client({ host: '127.0.0.1', port: primary.port, user, password, database: 'postgres' });
    await direct.connect();
    try {
      for (const row of toPrimary) {
        const ssl = (await direct.query('select version, cipher from pg_stat_ssl where pid = $1', [Number(row.remote_pid)])).rows[0] as { version: string; cipher: string } | undefined;
        assert.ok(ssl?.version, `backend ${row.remote_pid} uses TLS`);
        assert.match(String(row.tls), new RegExp(`^${ssl.version.replace('.', '\\.')}/${ssl.cipher}(/ECDH=[A-Za-z0-9_-]+)?$`));
      }
    } finally {
      await direct.end();
    }
    for (const row of toReplica) assert.equal(row.tls, '', 'plaintext: empty tls');
  });

  it('SHOW DATABASES shows for <db>@ro the server the read-only pool really connects to', async () => {
    const ro = new pg.Client({ host: '127.0.0.1', port: proxy.roAddress!.port, user, password, database: 'postgres' });
    ro.on('error', () => undefined);
    await ro.connect();
    const served = (await ro.query('select inet_server_port() as port')).rows[0].port as number;
    await ro.end();
    assert.equal(served, replica.port, 'the ro listener reached the replica');
    const rows = await show('DATABASES');
    const roRow = rows.find((r) => r.name === 'postgres@ro');
    const rwRow = rows.find((r) => r.name === 'postgres');
    assert.ok(roRow && rwRow, JSON.stringify(rows));
    assert.equal(roRow.host, '127.0.0.1');
    assert.equal(Number(roRow.port), replica.port, 'postgres@ro shows the replica it connects to');
    assert.equal(roRow.database, 'postgres', 'the dbname, without @ro');
    assert.equal(Number(rwRow.port), primary.port);
  });

  it('logs and counts failed logins by reason, with user, database and client address and no password', async () => {
    const before = logged('login failed').length;
    assert.equal(await failedLogin(user, WRONG_PASSWORD, 'postgres'), '28P01');
    assert.equal(await failedLogin('nosuchuser', WRONG_PASSWORD, 'postgres'), '28P01');
    assert.equal(await failedLogin(user, password, 'nosuchdb'), '3D000');
    assert.equal(await failedLogin(OUTSIDER, password, 'pgbouncer'), '42501');
    await waitFor('four login failure lines', async () => logged('login failed').length >= before + 4 || undefined, 5000);
    const lines = logged('login failed').slice(before);
    assert.deepEqual(
      lines.map((l) => [l.reason, l.user, l.database, l.sqlstate]),
      [
        ['wrong_password', user, 'postgres', '28P01'],
        ['unknown_user', 'nosuchuser', 'postgres', '28P01'],
        ['unknown_database', user, 'nosuchdb', '3D000'],
        ['not_allowed', OUTSIDER, 'pgbouncer', '42501'],
      ],
    );
    for (const line of lines) {
      assert.match(String(line.client), /^127\.0\.0\.1:\d+$/);
      assert.equal(line.level, 40, 'warn');
    }
    const text = await scrape();
    assert.equal(metricValue(text, 'pgwarden_proxy_failed_logins_total{reason="wrong_password"}'), 1);
    assert.equal(metricValue(text, 'pgwarden_proxy_failed_logins_total{reason="unknown_user"}'), 1);
    assert.equal(metricValue(text, 'pgwarden_proxy_failed_logins_total{reason="unknown_database"}'), 1);
    assert.equal(metricValue(text, 'pgwarden_proxy_failed_logins_total{reason="not_allowed"}'), 1);
    assert.ok(!logText.includes(WRONG_PASSWORD) && !logText.includes(password), 'no password in the log');
  });

  it('logs and counts protocol violations that close a client, before and after login', async () => {
    const before = logged('protocol violation: client connection closed').length;
    // Before login: a startup packet announcing 2 GiB.
    const raw = connect(proxy.address.port, '127.0.0.1');
    await once(raw, 'connect');
    raw.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]));
    raw.on('error', () => undefined);
    await waitFor('the violation before login logged', async () => logged('protocol violation: client connection closed').length >= before + 1 || undefined, 5000);
    raw.destroy();
    // After login: a Query message whose length field is smaller than the length field itself.
    const c = client('postgres');
    await c.connect();
    (c as unknown as { connection: { stream: { write(b: Buffer): void } } }).connection.stream.write(Buffer.from([0x51, 0, 0, 0, 2]));
    await waitFor('two protocol violation lines', async () => logged('protocol violation: client connection closed').length >= before + 2 || undefined, 5000);
    await c.end().catch(() => undefined);
    const lines = logged('protocol violation: client connection closed').slice(before);
    assert.deepEqual(lines.map((l) => [l.loggedIn, l.sqlstate]), [[false, '08P01'], [true, '08P01']]);
    assert.equal(lines[1].user, user);
    assert.equal(metricValue(await scrape(), 'pgwarden_proxy_protocol_errors_total'), 2);
    assert.equal(logged('login failed').filter((l) => l.sqlstate === '08P01').length, 0, 'a violation is no failed login');
  });

  it('rate-limits a flood of failed logins: at most the limit per second, then "suppressed K similar messages"', async () => {
    const N = 80;
    const counted = metricValue(await scrape(), 'pgwarden_proxy_failed_logins_total{reason="wrong_password"}');
    // A fresh window: the previous test's lines are over a second old.
    const previous = logged('login failed').at(-1);
    await waitFor('a fresh rate-limit window', async () => Date.now() > Number(previous?.time ?? 0) + 1100 || undefined, 5000);
    const linesBefore = logLines.length;
    const start = Date.now();
    const codes = await Promise.all(Array.from({ length: N }, () => failedLogin(user, WRONG_PASSWORD, 'postgres')));
    const span = Date.now() - start;
    assert.deepEqual(new Set(codes), new Set(['28P01']));
    const summaries = (): Record<string, unknown>[] => logLines.slice(linesBefore).filter((l) => String(l.msg).startsWith('suppressed '));
    const written = (): number => logLines.slice(linesBefore).filter((l) => l.msg === 'login failed').length;
    const suppressed = (): number => summaries().reduce((n, l) => n + Number(l.suppressed), 0);
    await waitFor('every failed login written or summarised', async () => written() + suppressed() === N || undefined, 5000);
    // Fixed one-second windows starting at a line: the flood's span touches at most floor(span/1000)+1 of them.
    const windows = Math.floor(span / 1000) + 1;
    assert.ok(written() <= LOG_LINES_PER_SECOND * windows, `${written()} lines over ${span} ms (${windows} windows of at most ${LOG_LINES_PER_SECOND})`);
    assert.ok(summaries().length >= 1 && summaries().length <= windows);
    assert.match(String(summaries()[0].msg), /^suppressed \d+ similar messages \(failed logins\)$/);
    assert.equal(metricValue(await scrape(), 'pgwarden_proxy_failed_logins_total{reason="wrong_password"}'), counted + N, 'every one counted');
    assert.ok(!logText.includes(WRONG_PASSWORD) && !logText.includes(password), 'no password in the log');
  });

  it('with worker threads, /metrics sums the failed logins of every worker and SHOW CLIENTS lists the times of all', async () => {
    const config = parseProxyConfig(
      { listen: '127.0.0.1:0', auth_file: 'userlist.txt', workers: 2, admin_users: [user], metrics_listen: '127.0.0.1:0' },
      { source: 'test', baseDir: base },
    );
    const group = new WorkerGroup({ config, primary: { host: '127.0.0.1', port: primary.port }, replicas: [], logger: pino({ level: 'silent' }), logLevel: 'silent' });
    await group.start();
    const open: pg.Client[] = [];
    try {
      const login = async (pw: string): Promise<void> => {
        const c = new pg.Client({ host: '127.0.0.1', port: group.address.port, user, password: pw, database: 'postgres' });
        c.on('error', () => undefined);
        if (pw === password) {
          await c.connect();
          open.push(c);
        } else {
          await assert.rejects(c.connect());
        }
      };
      const settled = (want: number[]): Promise<true> =>
        waitFor(`clients per worker ${want.join(',')}`, async () => JSON.stringify(group.clientsPerWorker()) === JSON.stringify(want) || undefined, 5000);
      // New connections go to the worker with the fewest clients: a held client steers the failures to each in turn.
      await login(password);
      await settled([1, 0]);
      await login(WRONG_PASSWORD); // worker 1
      await settled([1, 0]);
      await login(password);
      await settled([1, 1]);
      await login(WRONG_PASSWORD); // worker 0 (a tie goes to the first)
      await settled([1, 1]);
      const res = await fetch(`http://127.0.0.1:${group.metricsAddress!.port}/metrics`);
      const text = await res.text();
      assert.equal(metricValue(text, 'pgwarden_proxy_failed_logins_total{reason="wrong_password"}'), 2, 'one failure in each worker, summed');
      assert.equal(metricValue(text, 'pgwarden_proxy_protocol_errors_total'), 0);
      const adminClient = new pg.Client({ host: '127.0.0.1', port: group.address.port, user, password, database: 'pgbouncer' });
      await adminClient.connect();
      try {
        const rows = (await adminClient.query('SHOW CLIENTS')).rows as Record<string, unknown>[];
        const apps = rows.filter((r) => r.database === 'postgres');
        assert.equal(apps.length, 2, JSON.stringify(rows));
        for (const r of apps) {
          assert.match(String(r.connect_time), TIME);
          assert.match(String(r.request_time), TIME);
        }
      } finally {
        await adminClient.end();
      }
    } finally {
      for (const c of open) await c.end();
      await group.stop(100);
    }
  });
});
