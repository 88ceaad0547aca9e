/**
 * The proxy's Unix-domain socket (unix_socket_dir) and its per-connection authentication rules (auth_hba_file)
 * against a real PostgreSQL 15, with psql and node-postgres: `psql -h <dir>` through the socket (one thread and
 * worker threads), the socket file's mode and group, stale and live socket files at start, removal at stop; reject,
 * trust, hostssl, local, md5 and scram lines, cert, the admin console under the rules, and a bad rules file at
 * start (file:line) and at RELOAD (the running rules stay).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { lstat, mkdir, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { loadProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { attachAdminConsole } from '../../src/proxy/admin/console.js';
import { MessageFramer } from '../../src/proxy/protocol/framer.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { type LocalCaFiles, ensureLocalCa } from '../../src/proxy/tls.js';
import { NativeWire } from '../../src/proxy/wire/native-wire.js';
import { WorkerGroup } from '../../src/proxy/workers/group.js';
import { cleanupServers, makePgTempDir, makeTestServer, psql as query, tcpConfig, testCredentials } from '../helpers/pg.js';
import { firstAuthRequest } from '../helpers/raw-client.js';
import { freePort } from '../helpers/ports.js';

/** The built CLI, from dist/test/integration/. */
const CLI = path.resolve(import.meta.dirname, '../../src/cli/main.js');

const run = promisify(execFile);
const credentials = testCredentials();
const superuser = credentials.superuser;
/** Roles made in PostgreSQL, all in the proxy's auth_file with these passwords. */
const ROLES = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw', mallory: 'mallory-pw' } as const;

let base: string;
let postgres: PostgresServer;
let ca: LocalCaFiles;
const proxies = new Set<{ stop(graceMs?: number): Promise<void> }>();

interface Started {
  proxy: ProxyServer;
  configPath: string;
  hbaPath: string;
}

/** An in-process proxy (one thread) from a config file `name`.yml with `hba` as its auth_hba_file, and its console. */
async function startProxy(name: string, hba: string | null, settings: Record<string, unknown> = {}): Promise<Started> {
  const configPath = path.join(base, `${name}.yml`);
  const hbaPath = path.join(base, `${name}.hba`);
  if (hba !== null) await writeFile(hbaPath, hba);
  const raw = { listen: '127.0.0.1:0', auth_file: 'userlist.txt', admin_users: ['alice'], ...(hba === null ? {} : { auth_hba_file: `${name}.hba` }), ...settings };
  await writeFile(configPath, JSON.stringify(raw)); // JSON is YAML
  const config = loadProxyConfig(configPath);
  const topology = new StaticTopology({ host: '127.0.0.1', port: postgres.port });
  const proxy = new ProxyServer({ config, topology, logger: pino({ level: 'silent' }) });
  await proxy.start();
  const console = attachAdminConsole(proxy, { config, topology, configPath });
  proxies.add({
    async stop(graceMs) {
      console.close();
      await proxy.stop(graceMs);
    },
  });
  return { proxy, configPath, hbaPath };
}

/** Connects (TCP to 127.0.0.1 unless `host` is a socket directory), runs `sql`, returns the first row; throws the login error. */
async function login(port: number, user: string, password: string | undefined, options: { database?: string; host?: string; ssl?: pg.ClientConfig['ssl']; sql?: string } = {}): Promise<Record<string, unknown>> {
  const client = new pg.Client({
    host: options.host ?? '127.0.0.1',
    port,
    user,
    database: options.database ?? 'postgres',
    connectionTimeoutMillis: 5000,
    ...(password === undefined ? {} : { password }),
    ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.query(options.sql ?? 'SELECT current_user AS who, 6 * 7 AS answer')).rows[0];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Asserts that `attempt` fails with SQLSTATE `code` and a message matching `message`. */
async function refused(attempt: Promise<unknown>, code: string, message: RegExp | string): Promise<void> {
  await assert.rejects(attempt, (e: Error & { code?: string }) => {
    assert.equal(e.code, code, e.message);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

/** psql's exit code, stdout and stderr; never throws. */
async function psql(args: string[], password?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('/usr/bin/psql', ['-X', '-At', '-w', ...args], {
      env: { PATH: process.env.PATH, PGCONNECT_TIMEOUT: '10', ...(password === undefined ? {} : { PGPASSWORD: password }) },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const error = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof error.code === 'number' ? error.code : -1, stdout: error.stdout ?? '', stderr: error.stderr ?? '' };
  }
}

/** A socket file at `file` with nobody listening: a process that listened there was killed. */
async function staleSocket(file: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await once(child, 'exit');
  assert.ok((await lstat(file)).isSocket(), 'the killed process left its socket file');
}

function gidOf(group: string): number {
  const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith(`${group}:`));
  assert.ok(line !== undefined, `group ${group} exists`);
  return Number(line.split(':')[2]);
}

before(async () => {
  base = await makePgTempDir('pgw-hba-');
  postgres = await makeTestServer('hba', base, credentials, { parameters: { max_connections: 40 } });
  await postgres.bootstrap();
  const admin = tcpConfig(postgres, superuser.username, superuser.password);
  for (const [role, password] of Object.entries(ROLES)) await query(admin, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await writeFile(path.join(base, 'userlist.txt'), Object.entries(ROLES).map(([u, p]) => `"${u}" "${p}"\n`).join(''));
  ca = await ensureLocalCa(path.join(base, 'tls'));
});

after(async () => {
  for (const p of proxies) await p.stop(100);
  await cleanupServers();
});

describe('proxy Unix-domain socket (unix_socket_dir)', { timeout: 120_000 }, () => {
  it('psql -h <dir> -p <port> runs a query through the socket; the file is .s.PGSQL.<port> with unix_socket_mode; the connection moves to native I/O', async () => {
    const dir = path.join(base, 'sock1');
    await mkdir(dir);
    const { proxy } = await startProxy('sock1', null, { unix_socket_dir: dir, unix_socket_mode: '0700' });
    const file = path.join(dir, `.s.PGSQL.${proxy.address.port}`);
    assert.equal(proxy.unixSocketPath, file);
    const st = await lstat(file);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o700);
    const r = await psql(['-h', dir, '-p', String(proxy.address.port), '-U', 'alice', '-d', 'postgres', '-c', "SELECT current_user || ' via ' || host(inet_server_addr())"], ROLES.alice);
    assert.equal(r.code, 0, r.stderr);
    // The proxy's own connection to PostgreSQL is TCP: the server sees 127.0.0.1.
    assert.equal(r.stdout.trim(), 'alice via 127.0.0.1');
    // A node-postgres client through the socket: its connection is read and written by the native module.
    const client = new pg.Client({ host: dir, port: proxy.address.port, user: 'bob', password: ROLES.bob, database: 'postgres' });
    await client.connect();
    try {
      assert.deepEqual((await client.query('SELECT 6 * 7 AS answer')).rows, [{ answer: 42 }]);
      const mine = proxy.clientList().filter((c) => c.user === 'bob');
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.local, true);
      if (proxy.nativeIo) assert.ok(mine[0]!.socket instanceof NativeWire, 'NativeWire adopted the Unix socket');
      assert.deepEqual((await client.query('SELECT repeat($1, 100000) AS big', ['x'])).rows[0].big.length, 100000);
      // SHOW CLIENTS lists it as PgBouncer does a Unix-socket client: addr "unix", port the one it listens on.
      const admin = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user: 'alice', password: ROLES.alice, database: 'pgbouncer' });
      await admin.connect();
      try {
        const rows = (await admin.query('SHOW CLIENTS')).rows.filter((r) => r.user === 'bob');
        assert.deepEqual(rows.map((r) => [r.addr, Number(r.port)]), [['unix', proxy.address.port]]);
      } finally {
        await admin.end();
      }
    } finally {
      await client.end();
    }
  });

  it('unix_socket_mode defaults to 0777; unix_socket_group sets the group; the file is removed at stop', async () => {
    const dir = path.join(base, 'sock2');
    await mkdir(dir);
    const { proxy } = await startProxy('sock2', null, { unix_socket_dir: dir, unix_socket_group: 'postgres' });
    const file = proxy.unixSocketPath!;
    const st = await lstat(file);
    assert.equal(st.mode & 0o777, 0o777);
    assert.equal(st.gid, gidOf('postgres'));
    await proxy.stop(100);
    await assert.rejects(lstat(file), { code: 'ENOENT' });
  });

  it('a stale socket file nobody listens on is replaced; a live one or a non-socket stops the start with the path and the fix', async () => {
    const dir = path.join(base, 'sock3');
    await mkdir(dir);
    const port = await freePort();
    const file = path.join(dir, `.s.PGSQL.${port}`);
    await staleSocket(file);
    const { proxy } = await startProxy('sock3', null, { listen: `127.0.0.1:${port}`, unix_socket_dir: dir });
    const r = await psql(['-h', dir, '-p', String(port), '-U', 'alice', '-d', 'postgres', '-c', 'SELECT 1'], ROLES.alice);
    assert.equal(r.code, 0, r.stderr);
    await proxy.stop(100);

    // Someone listens there: the proxy must not take the socket away.
    const squatter = createServer((s) => s.destroy());
    squatter.listen(file);
    await once(squatter, 'listening');
    try {
      await assert.rejects(startProxy('sock3b', null, { listen: `127.0.0.1:${port}`, unix_socket_dir: dir }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'CONFIG_INVALID');
        assert.match(e.message, new RegExp(`another process listens on ${file.replace(/\./g, '\\.')}.*choose another unix_socket_dir or listen port`));
        return true;
      });
      assert.ok((await lstat(file)).isSocket(), 'the live socket file is still there');
    } finally {
      squatter.close();
    }
    await writeFile(file, 'not a socket');
    await assert.rejects(startProxy('sock3c', null, { listen: `127.0.0.1:${port}`, unix_socket_dir: dir }), /exists and is not a socket: remove it or choose another unix_socket_dir/);
    await assert.rejects(startProxy('sock3d', null, { unix_socket_dir: path.join(base, 'missing-dir') }), /unix_socket_dir \/.*\/missing-dir cannot be used \(ENOENT\): create the directory/);
  });

  it('with worker threads: Unix-socket clients are handed to the workers, served, and are local connections for auth_hba_file', async () => {
    const dir = path.join(base, 'sock4');
    await mkdir(dir);
    const configPath = path.join(base, 'workers.yml');
    await writeFile(path.join(base, 'workers.hba'), 'local all all trust\nhost all all all reject\n');
    const raw = { listen: '127.0.0.1:0', auth_file: 'userlist.txt', auth_hba_file: 'workers.hba', workers: 2, unix_socket_dir: dir };
    await writeFile(configPath, JSON.stringify(raw));
    const group = new WorkerGroup({ config: loadProxyConfig(configPath), configPath, primary: { host: '127.0.0.1', port: postgres.port }, replicas: [], logger: pino({ level: 'silent' }), logLevel: 'silent' });
    await group.start();
    proxies.add(group);
    const port = group.address.port;
    assert.equal(group.unixSocketPath, path.join(dir, `.s.PGSQL.${port}`));
    // Trust for local: no password; held open together so that both workers get some.
    const clients = Array.from({ length: 6 }, (_, i) => new pg.Client({ host: dir, port, user: i % 2 === 0 ? 'alice' : 'bob', database: 'postgres', connectionTimeoutMillis: 5000 }));
    await Promise.all(clients.map((c) => c.connect()));
    try {
      const rows = await Promise.all(clients.map((c, i) => c.query('SELECT current_user AS who, $1::int * 2 AS twice', [i])));
      assert.deepEqual(rows.map((r) => r.rows[0]), clients.map((_, i) => ({ who: i % 2 === 0 ? 'alice' : 'bob', twice: i * 2 })));
      assert.deepEqual(group.clientsPerWorker(), [3, 3]);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    const r = await psql(['-h', dir, '-p', String(port), '-U', 'carol', '-d', 'postgres', '-c', 'SELECT current_user']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'carol');
    // Over TCP the same user meets the host line: rejected.
    await refused(login(port, 'alice', ROLES.alice), '28000', 'pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "postgres", no encryption');
    const file = group.unixSocketPath!;
    proxies.delete(group);
    await group.stop(100);
    await assert.rejects(lstat(file), { code: 'ENOENT' });
  });
});

describe('proxy auth_hba_file', { timeout: 120_000 }, () => {
  let main: Started;
  let dir: string;

  before(async () => {
    dir = path.join(base, 'hba-sock');
    await mkdir(dir);
    main = await startProxy(
      'main',
      [
        '# the proxy\'s rules',
        'local   all        alice               trust',
        'local   all        all                 scram-sha-256',
        'host    all        mallory  all        reject',
        'host    all        bob      127.0.0.1/32  trust',
        'hostssl all        carol    all        scram-sha-256',
        'host    pgbouncer  alice    127.0.0.1/32  scram-sha-256',
        'host    pgbouncer  all      all        reject',
        'host    postgres   alice    127.0.0.1/32  md5',
        'host    postgres   alice    ::1/128    md5',
      ].join('\n'),
      {
        unix_socket_dir: dir,
        client_tls_cert_file: ca.serverCert,
        client_tls_key_file: ca.serverKey,
      },
    );
  });

  it('a reject line refuses the user with PostgreSQL\'s words and 28000', async () => {
    await refused(login(main.proxy.address.port, 'mallory', ROLES.mallory), '28000', 'pg_hba.conf rejects connection for host "127.0.0.1", user "mallory", database "postgres", no encryption');
  });

  it('the rules are asked before the database: a rejected client learns nothing about which databases exist', async () => {
    const { proxy } = await startProxy('order', 'host all mallory all reject\nhost all all all scram-sha-256\n', { databases: { postgres: null } });
    await refused(login(proxy.address.port, 'mallory', ROLES.mallory, { database: 'nope' }), '28000', 'pg_hba.conf rejects connection for host "127.0.0.1", user "mallory", database "nope", no encryption');
    await refused(login(proxy.address.port, 'bob', ROLES.bob, { database: 'nope' }), '3D000', 'database "nope" does not exist');
  });

  it('no matching line refuses: "no pg_hba.conf entry for host …, no encryption"', async () => {
    // alice has lines only for databases postgres and pgbouncer over TCP.
    await refused(login(main.proxy.address.port, 'alice', ROLES.alice, { database: 'template1' }), '28000', 'no pg_hba.conf entry for host "127.0.0.1", user "alice", database "template1", no encryption');
  });

  it('trust for bob from 127.0.0.1 lets him in without a password; the proxy logs in to PostgreSQL with his auth_file secret', async () => {
    const row = await login(main.proxy.address.port, 'bob', undefined);
    assert.deepEqual(row, { who: 'bob', answer: 42 });
    assert.equal(await firstAuthRequest(main.proxy.address.port, 'bob'), 'ok');
  });

  it('hostssl: carol without TLS has no line; with TLS she logs in with SCRAM', async () => {
    await refused(login(main.proxy.address.port, 'carol', ROLES.carol), '28000', 'no pg_hba.conf entry for host "127.0.0.1", user "carol", database "postgres", no encryption');
    const row = await login(main.proxy.address.port, 'carol', ROLES.carol, { ssl: { ca: readFileSync(ca.caCert), servername: 'localhost' } });
    assert.deepEqual(row, { who: 'carol', answer: 42 });
    await refused(login(main.proxy.address.port, 'carol', 'wrong', { ssl: { ca: readFileSync(ca.caCert), servername: 'localhost' } }), '28P01', 'password authentication failed for user "carol"');
    // TLS shows in the refusal of a user without a line.
    await refused(login(main.proxy.address.port, 'nobody', 'x', { ssl: { ca: readFileSync(ca.caCert), servername: 'localhost' } }), '28000', 'no pg_hba.conf entry for host "127.0.0.1", user "nobody", database "postgres", SSL encryption');
  });

  it('local lines apply to the Unix socket: alice trusted, others asked for SCRAM; TCP goes by the host lines', async () => {
    const port = main.proxy.address.port;
    const trusted = await psql(['-h', dir, '-p', String(port), '-U', 'alice', '-d', 'template1', '-c', 'SELECT current_user']);
    assert.equal(trusted.code, 0, trusted.stderr);
    assert.equal(trusted.stdout.trim(), 'alice');
    const noPassword = await psql(['-h', dir, '-p', String(port), '-U', 'mallory', '-d', 'postgres', '-c', 'SELECT 1']);
    assert.notEqual(noPassword.code, 0);
    assert.match(noPassword.stderr, /password/);
    const withPassword = await psql(['-h', dir, '-p', String(port), '-U', 'mallory', '-d', 'postgres', '-c', 'SELECT current_user'], ROLES.mallory);
    assert.equal(withPassword.code, 0, withPassword.stderr);
    assert.equal(withPassword.stdout.trim(), 'mallory', 'mallory is rejected over TCP only');
  });

  it('md5 and scram-sha-256 per line: alice gets an MD5 request for postgres and SCRAM for pgbouncer, and logs in with md5', async () => {
    const port = main.proxy.address.port;
    assert.equal(await firstAuthRequest(port, 'alice'), 'md5-password');
    const socket = connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    socket.write(m.writeStartupMessage(new MessageWriter(), { user: 'alice', database: 'pgbouncer' }).flush());
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    const framer = new MessageFramer();
    framer.push(chunk);
    assert.ok(framer.next());
    assert.equal(m.decodeAuthentication(framer.buffer, framer.bodyStart, framer.end).kind, 'sasl');
    assert.deepEqual(await login(port, 'alice', ROLES.alice), { who: 'alice', answer: 42 });
    await refused(login(port, 'alice', 'wrong'), '28P01', 'password authentication failed for user "alice"');
  });

  it('the admin console follows the rules: alice (admin) logs in by her line, carol is rejected by the pgbouncer line', async () => {
    const port = main.proxy.address.port;
    const r = await psql(['-h', '127.0.0.1', '-p', String(port), '-U', 'alice', '-d', 'pgbouncer', '-c', 'SHOW VERSION'], ROLES.alice);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /PgBouncer|pgwarden/i);
    await refused(login(port, 'carol', ROLES.carol, { database: 'pgbouncer' }), '28000', 'pg_hba.conf rejects connection for host "127.0.0.1", user "carol", database "pgbouncer", no encryption');
  });

  it('cert: a client certificate signed by client_tls_ca_file whose CN is the user logs in without a password; another CN or none is refused', async () => {
    const certDir = path.join(base, 'client-certs');
    await mkdir(certDir, { recursive: true });
    const make = async (cn: string): Promise<{ cert: string; key: string }> => {
      const key = path.join(certDir, `${cn}.key`);
      const csr = path.join(certDir, `${cn}.csr`);
      const cert = path.join(certDir, `${cn}.crt`);
      await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.caCert, '-CAkey', ca.caKey, '-set_serial', `0x${Date.now().toString(16)}`, '-days', '2', '-out', cert]);
      return { cert, key };
    };
    const alice = await make('alice');
    const bob = await make('bob');
    const { proxy } = await startProxy('cert', 'hostssl all all 127.0.0.1/32 cert\n', {
      client_tls_cert_file: ca.serverCert,
      client_tls_key_file: ca.serverKey,
      client_tls_ca_file: ca.caCert,
    });
    const tls = (files: { cert: string; key: string } | null): pg.ClientConfig['ssl'] => ({
      ca: readFileSync(ca.caCert),
      servername: 'localhost',
      ...(files === null ? {} : { cert: readFileSync(files.cert), key: readFileSync(files.key) }),
    });
    assert.deepEqual(await login(proxy.address.port, 'alice', undefined, { ssl: tls(alice) }), { who: 'alice', answer: 42 });
    await refused(login(proxy.address.port, 'alice', undefined, { ssl: tls(bob) }), '28000', 'certificate authentication failed for user "alice"');
    await refused(login(proxy.address.port, 'alice', undefined, { ssl: tls(null) }), '28000', 'connection requires a valid client certificate');
    await refused(login(proxy.address.port, 'alice', undefined), '28000', 'no pg_hba.conf entry for host "127.0.0.1", user "alice", database "postgres", no encryption');
  });

  it('a bad line at RELOAD is refused with file:line; the running rules stay; a fixed file then applies', async () => {
    const { proxy, hbaPath } = await startProxy('reload', 'host all bob 127.0.0.1/32 trust\nhost all all all scram-sha-256\n');
    const port = proxy.address.port;
    assert.deepEqual(await login(port, 'bob', undefined), { who: 'bob', answer: 42 });
    await writeFile(hbaPath, 'host all bob 127.0.0.1/32 reject\nhost all all 127.0.0.1 scram-sha-256\n');
    // alice is the console's admin (admin_users).
    const reloadAsAdmin = (): Promise<unknown> => login(port, 'alice', ROLES.alice, { database: 'pgbouncer', sql: 'RELOAD' });
    await refused(reloadAsAdmin(), 'F0000', new RegExp(`RELOAD failed, the running config is unchanged: .*auth_hba_file ${hbaPath.replace(/\./g, '\\.')}:2: the address "127\\.0\\.0\\.1" has no mask`));
    assert.deepEqual(await login(port, 'bob', undefined), { who: 'bob', answer: 42 }, 'the old trust line still applies');
    await writeFile(hbaPath, 'host all bob 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 scram-sha-256\n');
    await reloadAsAdmin();
    await refused(login(port, 'bob', undefined), '28000', 'pg_hba.conf rejects connection for host "127.0.0.1", user "bob", database "postgres", no encryption');
  });

  it('a bad rules file stops `pgwarden proxy` at start with file:line and the fix', async () => {
    const configPath = path.join(base, 'bad-start.yml');
    const hbaPath = path.join(base, 'bad-start.hba');
    await writeFile(hbaPath, 'local all all trust\nhost all all 10.0.0.0/8 scram-sha-256\nhost all all all ldap\n');
    await writeFile(configPath, JSON.stringify({ listen: `127.0.0.1:${await freePort()}`, auth_file: 'userlist.txt', auth_hba_file: 'bad-start.hba' }));
    const child = spawn(process.execPath, [CLI, 'proxy', '--config', configPath, '--primary', `127.0.0.1:${postgres.port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.notEqual(code, 0, output);
    assert.ok(output.includes(`auth_hba_file ${hbaPath}:3: authentication method "ldap" is not supported by the proxy; use scram-sha-256 or cert`), output);
    assert.doesNotMatch(output, /proxy listening/);
  });
});
