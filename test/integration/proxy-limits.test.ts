/**
 * The proxy's resources and limits, against a real `pgwarden proxy` process and real PostgreSQL 15: every
 * connection it refuses or closes gives its descriptor back (counted in /proc/<pid>/fd), client_login_timeout
 * closes clients that never log in without blocking those that do, RELOAD on the admin console reaches the main
 * thread that accepts as SIGHUP does, and 10,000 idle clients at once are served and leave nothing behind.
 */
import assert from 'node:assert/strict';
import { readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { PostgresServer } from '../../src/postgres/server.js';
import { ensureLocalCa, type LocalCaFiles } from '../../src/proxy/tls.js';
import { ensureFileLimit, fileLimit, openIdleClients, simpleQuery, startupMessage } from '../helpers/idle-clients.js';
import { cleanupServers, makePgTempDir, makeTestServer, psql, tcpConfig, testCredentials, waitFor } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';
import { type ProxyProcess, startProxyProcess } from '../helpers/proxy-process.js';

const credentials = testCredentials();
const user = credentials.superuser.username;
const password = credentials.superuser.password;
let base: string;
let server: PostgresServer;
let ca: LocalCaFiles;
let otherCa: LocalCaFiles;
const proxies = new Set<ProxyProcess>();

/** How long a proxy may take to give descriptors back (it waits up to 2 s for a peer's EOF, then closes). */
const SETTLE_MS = 15_000;

interface Proxy {
  process: ProxyProcess;
  port: number;
  pid: number;
  configPath: string;
  settings: Record<string, unknown>;
}

async function startProxy(settings: Record<string, unknown>): Promise<Proxy> {
  const port = await freePort();
  const configPath = path.join(base, `proxy-${port}.yml`);
  const all = { listen: `127.0.0.1:${port}`, auth_file: 'userlist.txt', admin_users: [user], ...settings };
  await writeFile(configPath, JSON.stringify(all)); // JSON is YAML
  const process = await startProxyProcess(configPath, server.port);
  proxies.add(process);
  return { process, port, pid: process.child.pid!, configPath, settings: all };
}

async function stopProxy(proxy: Proxy): Promise<void> {
  proxies.delete(proxy.process);
  await proxy.process.kill();
}

/** The proxy's descriptors: all, sockets, and of those its server connections (to PostgreSQL). */
interface Descriptors {
  all: number;
  sockets: number;
  server: number;
}

/**
 * The proxy process's open descriptors. Server connections are told apart by their peer's port (in the process's
 * /proc/<pid>/net/tcp, matched by socket inode): pools keep them open for server_idle_timeout, and how many a
 * test's queries opened is not what is asserted here.
 */
async function descriptors(pid: number): Promise<Descriptors> {
  const names = await readdir(`/proc/${pid}/fd`);
  const inodes: string[] = [];
  for (const name of names) {
    try {
      const target = await readlink(`/proc/${pid}/fd/${name}`);
      if (target.startsWith('socket:[')) inodes.push(target.slice(8, -1));
    } catch {
      // closed while listed
    }
  }
  const toPostgres = new Set<string>();
  const serverPort = server.port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of (await readFile(`/proc/${pid}/net/tcp`, 'utf8')).split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length > 9 && fields[2]!.endsWith(`:${serverPort}`)) toPostgres.add(fields[9]!);
  }
  return { all: names.length, sockets: inodes.length, server: inodes.filter((i) => toPostgres.has(i)).length };
}

/** Descriptors other than server connections: what clients cost. */
function clientSide(d: Descriptors): { all: number; sockets: number } {
  return { all: d.all - d.server, sockets: d.sockets - d.server };
}

/** Waits (bounded) until the proxy holds no more descriptors for clients than at `baseline`. */
async function backToBaseline(proxy: Proxy, baseline: Descriptors, what: string): Promise<void> {
  const want = clientSide(baseline);
  let now = want;
  try {
    await waitFor(`the proxy's descriptors back to ${JSON.stringify(want)} ${what}`, async () => {
      now = clientSide(await descriptors(proxy.pid));
      return (now.all <= want.all && now.sockets <= want.sockets) || undefined;
    }, SETTLE_MS);
  } catch {
    assert.fail(`${what}: the proxy still holds ${JSON.stringify(now)} descriptors besides its server connections ${SETTLE_MS / 1000} s later; baseline ${JSON.stringify(want)}`);
  }
}

function pgClient(proxy: Proxy, database = 'postgres'): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user, password, database });
  c.on('error', () => undefined);
  return c;
}

/**
 * The proxy's descriptors at rest, after clients logged in and queried on every worker and left: each worker
 * thread opens one descriptor (/dev/null) of its own with its first client, and pools their server connections.
 */
async function warmBaseline(proxy: Proxy): Promise<Descriptors> {
  const clients = Array.from({ length: 4 }, () => pgClient(proxy));
  // All connected at once: the main thread hands them to the workers in turn.
  for (const c of clients) await c.connect();
  for (const c of clients) assert.equal((await c.query('SELECT 1 AS n')).rows[0].n, 1);
  await Promise.all(clients.map((c) => c.end()));
  let last: Descriptors | null = null;
  // Steady: two equal readings in a row (the clients' descriptors are gone once their close reached the proxy).
  return waitFor('the proxy descriptors to settle', async () => {
    const now = await descriptors(proxy.pid);
    const steady = last !== null && last.all === now.all && last.sockets === now.sockets && last.server === now.server;
    last = now;
    return steady ? now : undefined;
  });
}

/** A raw TCP client: what it received, and whether the proxy ended or closed it. */
interface RawClient {
  socket: Socket;
  received: () => Buffer;
  /** The proxy sent its EOF (or the connection closed). */
  ended: () => boolean;
}

async function rawClient(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: options.allowHalfOpen ?? false });
  const chunks: Buffer[] = [];
  let ended = false;
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('end', () => (ended = true));
  socket.on('close', () => (ended = true));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => Buffer.concat(chunks), ended: () => ended };
}

/** `count` raw clients, `concurrency` connecting at a time (a burst of thousands would overflow the listen backlog). */
async function rawClients(port: number, count: number, concurrency = 100): Promise<RawClient[]> {
  const clients: RawClient[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      clients.push(await rawClient(port));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return clients;
}

/** The first backend message's type in `data` ('E' for an ErrorResponse), and an ErrorResponse's text. */
function firstMessage(data: Buffer): { type: string; text: string } | null {
  if (data.length < 5) return null;
  const type = String.fromCharCode(data[0]!);
  return { type, text: type === 'E' ? data.subarray(5, 1 + data.readInt32BE(1)).toString('utf8').replace(/\0/g, ' ') : '' };
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

before(async () => {
  base = await makePgTempDir('pgwarden-proxy-limits-');
  server = await makeTestServer('limits', base, credentials, { parameters: { max_connections: 60 } });
  await server.bootstrap();
  // The role's SCRAM verifier, as bench:proxy does: every login sees the same salt, so the cheap clients of
  // idle-clients.ts derive the keys once (PBKDF2 per login would cost the 10,000-client test seconds of CPU).
  const [{ verifier }] = await psql<{ verifier: string }>(tcpConfig(server, user, password), 'SELECT rolpassword AS verifier FROM pg_authid WHERE rolname = $1', [user]);
  await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${verifier}"\n`);
  ca = await ensureLocalCa(path.join(base, 'tls'));
  otherCa = await ensureLocalCa(path.join(base, 'other-tls'));
});

after(async () => {
  for (const p of [...proxies]) await p.kill().catch(() => undefined);
  await cleanupServers();
});

describe('proxy limits and descriptors', { timeout: 240_000 }, () => {
  for (const workers of ['auto', 1] as const) {
    it(`connections refused at max_client_conn are closed and give their descriptors back (workers: ${workers})`, async () => {
      const maxClientConn = 20;
      const proxy = await startProxy({ workers, max_client_conn: maxClientConn });
      try {
        const baseline = await warmBaseline(proxy);
        // More than max_client_conn clients that each send a startup packet and then wait. Half keep their end
        // open after the proxy's EOF (allowHalfOpen), as a client that never reads would: the proxy must close
        // those too, not wait for them.
        const clients: RawClient[] = [];
        for (let i = 0; i < 200; i++) {
          const c = await rawClient(proxy.port, { allowHalfOpen: i % 2 === 0 });
          c.socket.write(startupMessage(user, 'postgres'));
          clients.push(c);
        }
        await waitFor('every client to be answered', async () => clients.every((c) => firstMessage(c.received()) !== null) || undefined);
        const refused = clients.filter((c) => firstMessage(c.received())!.type === 'E');
        for (const c of refused) assert.match(firstMessage(c.received())!.text, /C08P01 Mno more connections allowed \(max_client_conn\)/);
        assert.ok(refused.length >= 200 - maxClientConn - 16, `at least ${200 - maxClientConn - 16} of 200 refused, got ${refused.length}`);
        // Every open socket counts, so a startup packet read after later connections were accepted may be refused
        // too: how many of the first 20 get in depends on timing.
        assert.ok(refused.length < 200, 'some are let in');
        // The proxy closes every refused connection, including those whose client keeps its end open.
        await waitFor('the proxy to close every refused connection', async () => refused.every((c) => c.ended()) || undefined, SETTLE_MS);
        const admitted = clients.filter((c) => !refused.includes(c));
        // While every client, refused or not, still has its end open: only the admitted ones hold a descriptor.
        let held = clientSide(baseline);
        const wanted = clientSide(baseline).sockets + admitted.length;
        await waitFor('the proxy to give back the descriptors of refused connections', async () => {
          held = clientSide(await descriptors(proxy.pid));
          return held.sockets <= wanted || undefined;
        }, SETTLE_MS).catch(() => assert.fail(`refused connections still hold descriptors: ${held.sockets} client sockets for ${admitted.length} admitted clients, baseline ${clientSide(baseline).sockets}`));
        for (const c of clients) c.socket.destroy();
        await backToBaseline(proxy, baseline, 'after 200 clients (max_client_conn 20) left');
        // Nothing is still counted: max_client_conn real clients log in and query.
        const real = Array.from({ length: maxClientConn - 1 }, () => pgClient(proxy));
        for (const c of real) await c.connect();
        for (const [i, c] of real.entries()) assert.equal((await c.query('SELECT $1::int AS v', [i])).rows[0].v, i);
        await Promise.all(real.map((c) => c.end()));
      } finally {
        await stopProxy(proxy);
      }
    });
  }

  it('failed TLS handshakes and garbage give their descriptors back, and are not counted against max_client_conn', async () => {
    const maxClientConn = 20;
    const proxy = await startProxy({ workers: 'auto', max_client_conn: maxClientConn, client_tls_cert_file: ca.serverCert, client_tls_key_file: ca.serverKey });
    try {
      const baseline = await warmBaseline(proxy);
      const otherRoot = await readFile(otherCa.caCert);
      for (let round = 0; round < 10; round++) {
        // SSLRequest, then bytes that are no TLS ClientHello.
        const a = await rawClient(proxy.port);
        a.socket.write(SSL_REQUEST);
        await waitFor('S', async () => a.received().length > 0 || undefined);
        a.socket.write(Buffer.alloc(300, 0x41));
        // A TLS handshake the client gives up on (the proxy's certificate is not from the CA it trusts).
        const b = await rawClient(proxy.port);
        b.socket.write(SSL_REQUEST);
        await waitFor('S', async () => b.received().length > 0 || undefined);
        b.socket.removeAllListeners('data');
        const tls = tlsConnect({ socket: b.socket, ca: [otherRoot], servername: 'localhost' });
        tls.on('error', () => undefined);
        await new Promise((resolve) => {
          tls.once('error', resolve);
          tls.once('secureConnect', resolve);
        });
        tls.destroy();
        // SSLRequest, then the client leaves before the handshake.
        const c = await rawClient(proxy.port);
        c.socket.write(SSL_REQUEST);
        await waitFor('S', async () => c.received().length > 0 || undefined);
        c.socket.destroy();
        // Garbage in plaintext from a client that keeps its end open after the proxy's FATAL.
        const d = await rawClient(proxy.port, { allowHalfOpen: true });
        d.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
        await waitFor('the proxy to close the garbage connection', async () => d.ended() || undefined, SETTLE_MS);
        assert.equal(firstMessage(d.received())?.type, 'E', 'garbage gets a FATAL');
        await waitFor('the proxy to close the non-TLS bytes', async () => a.ended() || undefined, SETTLE_MS);
        // The garbage client still has its end open: the proxy closed its descriptor anyway (checked below).
        a.socket.destroy();
      }
      await backToBaseline(proxy, baseline, 'after 40 failed TLS handshakes and garbage connections (one in four kept open by its client)');
      // 40 connections failed with max_client_conn 20: none is still counted.
      const real = Array.from({ length: maxClientConn - 1 }, () => pgClient(proxy));
      for (const c of real) await c.connect();
      for (const c of real) assert.equal((await c.query('SELECT 7 AS v')).rows[0].v, 7);
      await Promise.all(real.map((c) => c.end()));
    } finally {
      await stopProxy(proxy);
    }
  });

  it('client_login_timeout: 2,000 sockets that never send a byte do not block a real client and are closed when it passes', async () => {
    const loginTimeout = 6;
    const silentCount = 2000;
    const limit = await ensureFileLimit(silentCount + 500);
    assert.ok(limit.soft >= silentCount + 500, `this test needs an open-file limit of ${silentCount + 500}, the test process has ${limit.soft}${limit.error ? ` (prlimit: ${limit.error})` : ''}`);
    const proxy = await startProxy({ workers: 'auto', max_client_conn: silentCount + 100, client_login_timeout: loginTimeout });
    try {
      const baseline = await warmBaseline(proxy);
      const opened = performance.now();
      const silent = await rawClients(proxy.port, silentCount);
      // A real client logs in and queries while all of them are open.
      const real = pgClient(proxy);
      await real.connect();
      assert.equal((await real.query('SELECT 42 AS v')).rows[0].v, 42);
      const held = await descriptors(proxy.pid);
      // The real client was served while every silent socket was still open: they did not block it.
      assert.equal(silent.filter((c) => c.ended()).length, 0, 'no silent socket is closed before client_login_timeout, nor before the real client was served');
      assert.ok(held.sockets >= baseline.sockets + silentCount, `the proxy holds the ${silentCount} sockets (${held.sockets} sockets, baseline ${baseline.sockets})`);
      // Then they are closed, without a byte (none sent a startup packet), and their descriptors are given back.
      await waitFor('client_login_timeout to close every silent socket', async () => silent.every((c) => c.ended()) || undefined, loginTimeout * 1000 + SETTLE_MS);
      // The timeout itself is tested here: not before it ran out (a lower bound; slowness only adds to it).
      const closedAfter = (performance.now() - opened) / 1000;
      assert.ok(closedAfter >= loginTimeout - 0.5, `closed after the timeout, not before (${closedAfter.toFixed(1)} s)`);
      assert.equal(silent.filter((c) => c.received().length > 0).length, 0, 'a client that sent nothing gets nothing');
      for (const c of silent) c.socket.destroy();
      // The logged-in client is not affected by the login timeout.
      assert.equal((await real.query('SELECT 43 AS v')).rows[0].v, 43);
      await real.end();
      await backToBaseline(proxy, baseline, `after ${silentCount} silent sockets timed out`);
    } finally {
      await stopProxy(proxy);
    }
  });

  it('client_login_timeout: a client stuck in SCRAM gets FATAL 08P01 client_login_timeout; SHOW CONFIG and RELOAD know the setting', async () => {
    const proxy = await startProxy({ workers: 1, client_login_timeout: 2 });
    try {
      const admin = pgClient(proxy, 'pgbouncer');
      await admin.connect();
      const setting = async (): Promise<string> => String((await admin.query('SHOW CONFIG')).rows.find((r) => r.key === 'client_login_timeout')?.value);
      assert.equal(await setting(), '2');
      const stuck = await rawClient(proxy.port);
      stuck.socket.write(startupMessage(user, 'postgres'));
      await waitFor('the proxy to close the client stuck in SCRAM', async () => stuck.ended() || undefined, 10_000);
      const data = stuck.received();
      assert.equal(String.fromCharCode(data[0]!), 'R', 'it was asked for SCRAM first');
      const error = firstMessage(data.subarray(1 + data.readInt32BE(1)));
      assert.equal(error?.type, 'E');
      assert.match(error!.text, /SFATAL .*C08P01 Mclient_login_timeout/);
      // RELOAD applies a new value (0: off) to clients that connect from then on.
      await writeFile(proxy.configPath, JSON.stringify({ ...proxy.settings, client_login_timeout: 0 }));
      await admin.query('RELOAD');
      assert.equal(await setting(), '0');
      const waiting = await rawClient(proxy.port);
      waiting.socket.write(startupMessage(user, 'postgres'));
      await waitFor('the SCRAM request', async () => waiting.received().length > 0 || undefined);
      // Nothing to wait for (this checks that nothing happens): 3 s, past the 2 s this login had before the RELOAD.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      assert.equal(waiting.ended(), false, 'with client_login_timeout 0 a slow login is kept');
      waiting.socket.destroy();
      await admin.end();
    } finally {
      await stopProxy(proxy);
    }
  });

  it('RELOAD on the admin console raises max_client_conn for the accepting main thread and every worker, as SIGHUP does', async () => {
    const proxy = await startProxy({ workers: 'auto', max_client_conn: 40 });
    try {
      const admin = pgClient(proxy, 'pgbouncer');
      await admin.connect();
      // A bad file: RELOAD answers the error, and nothing changes in any thread.
      await writeFile(proxy.configPath, JSON.stringify({ ...proxy.settings, max_client_conn: 'many' }));
      await assert.rejects(admin.query('RELOAD'), (e: pg.DatabaseError) => e.code === 'F0000' && /RELOAD failed, the running config is unchanged: .*max_client_conn/.test(e.message));
      assert.equal((await admin.query('SHOW CONFIG')).rows.find((r) => r.key === 'max_client_conn')?.value, '40');
      await writeFile(proxy.configPath, JSON.stringify({ ...proxy.settings, max_client_conn: 400 }));
      await admin.query('RELOAD');
      const config = (await admin.query('SHOW CONFIG')).rows.find((r) => r.key === 'max_client_conn');
      assert.equal(config?.value, '400');
      // Ten times the old limit: none refused (openIdleClients fails on the first ErrorResponse).
      const clients = await openIdleClients({ port: proxy.port, user, password }, 380, 50);
      try {
        assert.equal(clients.length, 380);
        for (const i of [0, 100, 379]) assert.deepEqual(await simpleQuery(clients[i]!, `SELECT ${i}`), [String(i)]);
      } finally {
        for (const c of clients) c.destroy();
      }
      await admin.end();
    } finally {
      await stopProxy(proxy);
    }
  });

  it('10,000 idle clients at once after max_client_conn was raised by console RELOAD: none refused, a sample queries, descriptors back to baseline after they leave', async (t) => {
    const count = 10_000;
    // The proxy holds a descriptor per client and the test process one per client: both need room (the proxy
    // is a child of this process and inherits its limit).
    const needed = count + 1000;
    const limit = await ensureFileLimit(needed);
    if (limit.soft < needed) {
      assert.fail(`this test needs an open-file limit of at least ${needed} (10,000 clients in this process and in the proxy); the test process has ${limit.soft} (hard ${limit.hard})${limit.error ? `, prlimit failed: ${limit.error}` : ''}: raise it with ulimit -n or prlimit`);
    }
    // As the issue found it: the default max_client_conn (1000), raised to 12,000 in the file and applied with RELOAD.
    const proxy = await startProxy({ workers: 'auto' });
    try {
      const proxyLimit = await fileLimit(proxy.pid);
      assert.ok(proxyLimit.soft >= needed, `the proxy process's open-file limit is ${proxyLimit.soft}, it needs ${needed}`);
      const admin = pgClient(proxy, 'pgbouncer');
      await admin.connect();
      await writeFile(proxy.configPath, JSON.stringify({ ...proxy.settings, max_client_conn: 12_000 }));
      await admin.query('RELOAD');
      await admin.end();
      const baseline = await warmBaseline(proxy);
      const rssBefore = await rssKiB(proxy.pid);
      const started = performance.now();
      const clients = await openIdleClients({ port: proxy.port, user, password }, count);
      const openSeconds = (performance.now() - started) / 1000;
      try {
        assert.equal(clients.length, count, 'every client logged in (an ErrorResponse would have failed the test)');
        const held = await descriptors(proxy.pid);
        assert.ok(held.sockets >= baseline.sockets + count, `the proxy holds the ${count} clients (${held.sockets} sockets)`);
        const rssAfter = await rssKiB(proxy.pid);
        // A sample of them, spread over the workers, runs a query each and gets its own answer.
        const sample = Array.from({ length: 100 }, (_, i) => i * 100 + 7);
        const answers = await Promise.all(sample.map((i) => simpleQuery(clients[i]!, `SELECT ${i} * 2`)));
        assert.deepEqual(answers, sample.map((i) => [String(i * 2)]));
        t.diagnostic(`${count} clients opened in ${openSeconds.toFixed(1)} s; proxy VmRSS ${rssBefore} → ${rssAfter} KiB (${(((rssAfter - rssBefore) * 1024) / count / 1024).toFixed(1)} KiB per idle client)`);
      } finally {
        for (const c of clients) c.destroy();
      }
      await backToBaseline(proxy, baseline, `after ${count} clients left`);
    } finally {
      await stopProxy(proxy);
    }
  });
});

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]);
}
