/**
 * TLS for the proxy's clients against a real PostgreSQL 15, with psql and node-postgres: sslmode=require and
 * verify-full with the local CA that `pgwarden up` makes (same code), a wrong CA, plaintext under allow and
 * require, and plaintext bytes injected after an SSLRequest.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { type LocalCaFiles, ensureLocalCa } from '../../src/proxy/tls.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials } from '../helpers/pg.js';

const execFileAsync = promisify(execFile);

describe('proxy TLS for clients', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let postgres: PostgresServer;
  let allowProxy: ProxyServer;
  let requireProxy: ProxyServer;
  let clientCaProxy: ProxyServer;
  let base: string;
  let ca: LocalCaFiles;
  let otherCa: LocalCaFiles;

  async function startProxy(sslmode: 'allow' | 'require', extra: Record<string, unknown> = {}): Promise<ProxyServer> {
    const config = parseProxyConfig(
      {
        listen: '127.0.0.1:0',
        pool_mode: 'transaction',
        default_pool_size: 4,
        auth_file: 'userlist.txt',
        client_tls_cert_file: path.relative(base, ca.serverCert),
        client_tls_key_file: ca.serverKey,
        ...(sslmode === 'require' ? { client_tls_sslmode: 'require' } : {}),
        ...extra,
      },
      { source: 'test', baseDir: base },
    );
    const proxy = new ProxyServer({ config, topology: new StaticTopology({ host: '127.0.0.1', port: postgres.port }) });
    await proxy.start();
    return proxy;
  }

  /** psql's exit code, stdout and stderr; never throws. */
  async function psql(conninfo: string, command: string): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync('/usr/bin/psql', ['-X', '-d', conninfo, '-c', command], {
        env: { PATH: process.env.PATH, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' },
      });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const error = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof error.code === 'number' ? error.code : -1, stdout: error.stdout ?? '', stderr: error.stderr ?? '' };
    }
  }

  const conninfo = (proxy: ProxyServer, host: string, extra: string): string =>
    `host=${host} port=${proxy.address.port} user=${user} dbname=postgres ${extra}`;

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-tls-');
    postgres = await makeTestServer('tls', base, credentials, { parameters: { max_connections: 30 } });
    await postgres.bootstrap();
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
    ca = await ensureLocalCa(path.join(base, 'tls'));
    otherCa = await ensureLocalCa(path.join(base, 'other-tls'));
    allowProxy = await startProxy('allow');
    requireProxy = await startProxy('require');
    clientCaProxy = await startProxy('allow', { client_tls_ca_file: ca.caCert });
  });

  after(async () => {
    await allowProxy?.stop(100);
    await requireProxy?.stop(100);
    await clientCaProxy?.stop(100);
    await cleanupServers();
  });

  it('the local CA: keys 0600, a second call keeps the same files, the server certificate names localhost and 127.0.0.1', async () => {
    assert.equal((await stat(ca.caKey)).mode & 0o777, 0o600);
    assert.equal((await stat(ca.serverKey)).mode & 0o777, 0o600);
    const before = await readFile(ca.caCert, 'utf8');
    await ensureLocalCa(ca.dir);
    assert.equal(await readFile(ca.caCert, 'utf8'), before);
    const { stdout } = await execFileAsync('openssl', ['x509', '-in', ca.serverCert, '-noout', '-ext', 'subjectAltName']);
    assert.match(stdout, /DNS:localhost/);
    assert.match(stdout, /IP Address:127\.0\.0\.1/);
  });

  it('client_tls_* settings: both files or neither, require needs them, disable turns TLS off, an unusable key stops the start', async () => {
    const parse = (raw: Record<string, unknown>) => parseProxyConfig({ auth_type: 'trust', ...raw }, { source: 'proxy.yml', baseDir: base });
    assert.throws(() => parse({ client_tls_cert_file: ca.serverCert }), /client_tls_cert_file and client_tls_key_file go together/);
    assert.throws(() => parse({ client_tls_sslmode: 'require' }), /needs a certificate/);
    assert.equal(parse({}).clientTls, null);
    assert.equal(parse({ client_tls_cert_file: ca.serverCert, client_tls_key_file: ca.serverKey, client_tls_sslmode: 'disable' }).clientTls, null);
    assert.deepEqual(parse({ client_tls_cert_file: 'tls/server.crt', client_tls_key_file: ca.serverKey }).clientTls, {
      certFile: ca.serverCert, keyFile: ca.serverKey, caFile: null, sslmode: 'allow',
    });
    const mismatched = parse({ client_tls_cert_file: ca.serverCert, client_tls_key_file: otherCa.serverKey });
    assert.throws(
      () => new ProxyServer({ config: mismatched, topology: new StaticTopology({ host: '127.0.0.1', port: postgres.port }) }),
      (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && /could not be used/.test(e.message),
    );
  });

  it('psql sslmode=require: the connection is encrypted (\\conninfo) and queries work', async () => {
    const r = await psql(conninfo(allowProxy, '127.0.0.1', 'sslmode=require'), '\\conninfo');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
    const q = await psql(conninfo(allowProxy, '127.0.0.1', 'sslmode=require'), 'SELECT 40 + 2 AS answer');
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stdout, /\b42\b/);
  });

  it('psql sslmode=verify-full with the local CA: succeeds for host=localhost and host=127.0.0.1', async () => {
    for (const host of ['localhost', '127.0.0.1']) {
      const r = await psql(conninfo(allowProxy, host, `sslmode=verify-full sslrootcert=${ca.caCert}`), '\\conninfo');
      assert.equal(r.code, 0, `${host}: ${r.stderr}`);
      assert.match(r.stdout, /SSL connection/, host);
    }
  });

  it('a wrong CA fails verification (psql verify-full, node-postgres)', async () => {
    const r = await psql(conninfo(allowProxy, '127.0.0.1', `sslmode=verify-full sslrootcert=${otherCa.caCert}`), 'SELECT 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /certificate verify failed/);
    const c = new pg.Client({
      host: '127.0.0.1', port: allowProxy.address.port, user, password, database: 'postgres',
      ssl: { ca: await readFile(otherCa.caCert, 'utf8'), servername: 'localhost' },
    });
    c.on('error', () => undefined);
    await assert.rejects(c.connect(), /self[- ]signed|unable to verify|certificate/i);
  });

  it('node-postgres with the CA (verify-full): encrypted socket; concurrent transactions, prepared statements and a large result', async () => {
    const caPem = await readFile(ca.caCert, 'utf8');
    const clients = Array.from({ length: 12 }, () => {
      const c = new pg.Client({ host: 'localhost', port: allowProxy.address.port, user, password, database: 'postgres', ssl: { ca: caPem, rejectUnauthorized: true } });
      c.on('error', () => undefined);
      return c;
    });
    await Promise.all(clients.map((c) => c.connect()));
    for (const c of clients) {
      const stream = (c as unknown as { connection: { stream: unknown } }).connection.stream;
      assert.ok(stream instanceof TLSSocket, 'the client socket is a TLSSocket');
      assert.equal(stream.encrypted, true);
      assert.equal(stream.authorized, true);
    }
    const sums = await Promise.all(
      clients.map(async (c, i) => {
        let sum = 0;
        for (let k = 0; k < 5; k++) {
          await c.query('BEGIN');
          sum += (await c.query({ name: `p${i % 3}`, text: `SELECT $1::int + ${i % 3} AS v`, values: [k] })).rows[0].v;
          await c.query('COMMIT');
        }
        return sum;
      }),
    );
    assert.deepEqual(sums, clients.map((_, i) => 10 + 5 * (i % 3)));
    // Several MB each way: back pressure on both TLS directions.
    const big = 'x'.repeat(3 * 1024 * 1024);
    const echoed = (await clients[0].query('SELECT length($1::text) AS n, repeat($2::text, 4000000) AS r', [big, 'y'])).rows[0];
    assert.equal(echoed.n, big.length);
    assert.equal(echoed.r.length, 4_000_000);
    await Promise.all(clients.map((c) => c.end()));
  });

  it("plaintext clients work under 'allow' and get FATAL 28000 under 'require', where TLS works", async () => {
    const plain = await psql(conninfo(allowProxy, '127.0.0.1', 'sslmode=disable'), '\\conninfo');
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stdout, /SSL connection/);

    const refused = await psql(conninfo(requireProxy, '127.0.0.1', 'sslmode=disable'), 'SELECT 1');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /no encryption/);
    const c = new pg.Client({ host: '127.0.0.1', port: requireProxy.address.port, user, password, database: 'postgres' });
    c.on('error', () => undefined);
    await assert.rejects(c.connect(), (e: Error & { code?: string }) => e.code === '28000');

    const tls = await psql(conninfo(requireProxy, 'localhost', `sslmode=verify-full sslrootcert=${ca.caCert}`), 'SELECT 7 * 6 AS answer');
    assert.equal(tls.code, 0, tls.stderr);
    assert.match(tls.stdout, /\b42\b/);
  });

  it('client_tls_ca_file: no client certificate or one signed by the CA is accepted, one from another CA is refused', async () => {
    const verifyFull = `sslmode=verify-full sslrootcert=${ca.caCert}`;
    const none = await psql(conninfo(clientCaProxy, 'localhost', verifyFull), 'SELECT 1 AS one');
    assert.equal(none.code, 0, none.stderr);
    const signed = await psql(conninfo(clientCaProxy, 'localhost', `${verifyFull} sslcert=${ca.serverCert} sslkey=${ca.serverKey}`), 'SELECT 1 AS one');
    assert.equal(signed.code, 0, signed.stderr);
    const foreign = await psql(conninfo(clientCaProxy, 'localhost', `${verifyFull} sslcert=${otherCa.serverCert} sslkey=${otherCa.serverKey}`), 'SELECT 1 AS one');
    assert.notEqual(foreign.code, 0);
    assert.match(foreign.stderr, /not signed by a CA of client_tls_ca_file/);
  });

  it('plaintext bytes right after an SSLRequest (same packet) are refused before any TLS', async () => {
    const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const params = Buffer.from(`user\0${user}\0database\0postgres\0\0`, 'latin1');
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(196608, 4);
    params.copy(startup, 8);
    const socket = connect(allowProxy.address.port, '127.0.0.1');
    await once(socket, 'connect');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write(Buffer.concat([sslRequest, startup]));
    await once(socket, 'close');
    const answer = Buffer.concat(received);
    assert.ok(answer.length > 0, 'the proxy answered');
    assert.equal(String.fromCharCode(answer[0]), 'E', 'an ErrorResponse, not S');
    const text = answer.toString('latin1');
    assert.match(text, /C08P01\0/);
    assert.match(text, /unencrypted data after SSL request/);
  });
});
