/**
 * Proxy authentication against a real PostgreSQL 15 (ssl on, a local CA's certificate) with node-postgres and
 * psql: auth_query through a SECURITY DEFINER function (SCRAM pass-through for its SCRAM secrets, md5 secrets,
 * VALID UNTIL, unknown users, a login storm answered by one query), auth_type md5 and trust, and TLS from the
 * proxy to PostgreSQL under require / verify-ca / verify-full (pg_stat_ssl shows the proxy's connections).
 * One PostgreSQL server is shared by the whole file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chown, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { parseProxyConfig } from '../../src/config/proxy.js';
import { runAsIdentity } from '../../src/postgres/run.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { md5Secret } from '../../src/proxy/auth/md5.js';
import { ServerConn } from '../../src/proxy/pool/server-conn.js';
import { PgProtocolError } from '../../src/proxy/protocol/errors.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { loadServerTls } from '../../src/proxy/server-tls.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { type LocalCaFiles, ensureLocalCa } from '../../src/proxy/tls.js';
import { cleanupServers, makePgTempDir, makeTestServer, psql, tcpConfig, testCredentials, waitFor } from '../helpers/pg.js';
import { firstAuthRequest } from '../helpers/raw-client.js';

const run = promisify(execFile);

/** The recommended auth_query setup: only the function sees pg_shadow, and only auth_user may call it. */
const LOOKUP_FUNCTION_SQL = `
CREATE ROLE pgwarden_auth LOGIN PASSWORD 'auth-user-pw';
CREATE SCHEMA pgwarden;
REVOKE ALL ON SCHEMA pgwarden FROM PUBLIC;
GRANT USAGE ON SCHEMA pgwarden TO pgwarden_auth;
CREATE FUNCTION pgwarden.user_lookup(i_username text)
  RETURNS TABLE (usename text, passwd text, valuntil timestamptz)
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT usename::text, passwd::text, valuntil FROM pg_catalog.pg_shadow WHERE usename = i_username $$;
REVOKE ALL ON FUNCTION pgwarden.user_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgwarden.user_lookup(text) TO pgwarden_auth;
`;

const RECOMMENDED_QUERY = 'SELECT usename, passwd, valuntil FROM pgwarden.user_lookup($1)';

/** The same lookup, counting its calls in a sequence (not transactional: every call shows at once); slow for slow*. */
const COUNTING_FUNCTION_SQL = `
CREATE SEQUENCE pgwarden.lookups;
CREATE FUNCTION pgwarden.counting_lookup(i_username text)
  RETURNS TABLE (usename text, passwd text, valuntil timestamptz)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS
$$ BEGIN
  PERFORM nextval('pgwarden.lookups');
  IF i_username LIKE 'slow%' THEN PERFORM pg_sleep(2); END IF;
  RETURN QUERY SELECT s.usename::text, s.passwd::text, s.valuntil FROM pg_catalog.pg_shadow s WHERE s.usename = i_username;
END $$;
REVOKE ALL ON FUNCTION pgwarden.counting_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgwarden.counting_lookup(text) TO pgwarden_auth;
`;

function is28P01(user: string) {
  return (e: unknown): boolean => {
    assert.equal((e as { code?: string }).code, '28P01');
    assert.equal((e as Error).message, `password authentication failed for user "${user}"`);
    return true;
  };
}

describe('proxy authentication: auth_query, md5, trust, TLS to PostgreSQL', { timeout: 180_000 }, () => {
  const credentials = testCredentials();
  const superuser = credentials.superuser;
  let postgres: PostgresServer;
  let base: string;
  let ca: LocalCaFiles;
  let otherCa: LocalCaFiles;
  const proxies: ProxyServer[] = [];
  const logLines: string[] = [];

  const admin = <T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> =>
    psql<T>(tcpConfig(postgres, superuser.username, superuser.password), sql, params);

  async function startProxy(settings: Record<string, unknown>, host = '127.0.0.1'): Promise<ProxyServer> {
    const config = parseProxyConfig({ listen: '127.0.0.1:0', default_pool_size: 3, auth_file: 'userlist.txt', query_wait_timeout: 10, ...settings }, { source: 'test', baseDir: base });
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => logLines.push(...chunk.toString().split('\n').filter((l) => l !== '')));
    const proxy = new ProxyServer({ config, topology: new StaticTopology({ host, port: postgres.port }), logger: pino({ level: 'info' }, stream), connectTimeoutMs: 5000 });
    await proxy.start();
    proxies.push(proxy);
    return proxy;
  }

  function client(proxy: ProxyServer, user: string, password: string): pg.Client {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.address.port, user, password, database: 'postgres', connectionTimeoutMillis: 10_000 });
    c.on('error', () => undefined);
    return c;
  }

  /** Logs in through the proxy and returns who PostgreSQL says we are and whether the proxy's connection is TLS. */
  async function whoAmI(proxy: ProxyServer, user: string, password: string): Promise<{ user: string; ssl: boolean }> {
    const c = client(proxy, user, password);
    await c.connect();
    try {
      const row = (await c.query('SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0];
      return { user: row.who, ssl: row.ssl };
    } finally {
      await c.end();
    }
  }

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-auth-');
    ca = await ensureLocalCa(path.join(base, 'tls'));
    otherCa = await ensureLocalCa(path.join(base, 'other-tls'));
    const owner = runAsIdentity('postgres');
    if (owner) for (const file of [ca.dir, ca.serverCert, ca.serverKey]) await chown(file, owner.uid, owner.gid);
    postgres = await makeTestServer('auth', base, credentials, {
      parameters: { ssl: 'on', ssl_cert_file: ca.serverCert, ssl_key_file: ca.serverKey, max_connections: 50 },
    });
    await postgres.bootstrap();
    // md5 in pg_hba.conf: md5-stored passwords use md5, SCRAM-stored ones still SCRAM (PostgreSQL's rule).
    const hbaFile = path.join(postgres.dataDir, 'pg_hba.conf');
    const hba = await readFile(hbaFile, 'utf8');
    await writeFile(hbaFile, hba.replace(/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)scram-sha-256$/m, '$1md5'));
    await admin('SELECT pg_reload_conf()');
    for (const statement of [
      LOOKUP_FUNCTION_SQL,
      COUNTING_FUNCTION_SQL,
      "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'",
      "CREATE ROLE bob LOGIN PASSWORD 'bob-pw'",
      "CREATE ROLE expired LOGIN PASSWORD 'expired-pw' VALID UNTIL '2001-02-03 04:05:06+00'",
      "CREATE ROLE future LOGIN PASSWORD 'future-pw' VALID UNTIL '2999-01-01 00:00:00+00'",
      "CREATE ROLE plainuser LOGIN PASSWORD 'plain-pw'",
      "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'; CREATE ROLE md5user LOGIN PASSWORD 'md5user-pw'",
    ]) {
      await admin(statement);
    }
    await writeFile(
      path.join(base, 'userlist.txt'),
      [
        `"pgwarden_auth" "auth-user-pw"`,
        `"plainuser" "plain-pw"`,
        `"md5user" "${md5Secret('md5user-pw', 'md5user')}"`,
        `"${superuser.username}" "${superuser.password}"`,
      ].join('\n'),
    );
  });

  after(async () => {
    for (const proxy of proxies) await proxy.stop(100);
    await cleanupServers();
  });

  describe('auth_type scram-sha-256 with auth_query, TLS verify-full', () => {
    let proxy: ProxyServer;
    before(async () => {
      proxy = await startProxy({
        auth_user: 'pgwarden_auth',
        auth_query: RECOMMENDED_QUERY,
        server_tls_sslmode: 'verify-full',
        server_tls_ca_file: path.relative(base, ca.caCert),
      });
    });

    it('a user missing from auth_file logs in with the SCRAM secret from pg_shadow (pass-through), over TLS', async () => {
      assert.equal(await firstAuthRequest(proxy.address.port, 'alice'), 'sasl');
      assert.deepEqual(await whoAmI(proxy, 'alice', 'alice-pw'), { user: 'alice', ssl: true });
      // A second client reuses the pooled connection and the cached answer.
      assert.deepEqual(await whoAmI(proxy, 'alice', 'alice-pw'), { user: 'alice', ssl: true });
    });

    it('psql logs in through auth_query', async () => {
      const { stdout } = await run('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(proxy.address.port), '-U', 'alice', '-d', 'postgres', '-c', 'SELECT current_user'], {
        env: { ...process.env, PGPASSWORD: 'alice-pw', PGCONNECT_TIMEOUT: '10' },
      });
      assert.equal(stdout.trim(), 'alice');
    });

    it('wrong password, unknown user and an expired password all get 28P01 in PostgreSQL\'s words', async () => {
      await assert.rejects(client(proxy, 'alice', 'wrong').connect(), is28P01('alice'));
      await assert.rejects(client(proxy, 'nobody', 'whatever').connect(), is28P01('nobody'));
      await assert.rejects(client(proxy, 'expired', 'expired-pw').connect(), is28P01('expired'));
      // Unknown users get the same SASL exchange as known ones: nothing tells them apart before the proof.
      assert.equal(await firstAuthRequest(proxy.address.port, 'nobody'), 'sasl');
      assert.deepEqual(await whoAmI(proxy, 'future', 'future-pw'), { user: 'future', ssl: true });
    });

    it('a password that expires is refused from then on, even with a pooled connection open', async () => {
      assert.deepEqual(await whoAmI(proxy, 'bob', 'bob-pw'), { user: 'bob', ssl: true });
      await admin("ALTER ROLE bob VALID UNTIL '2001-01-01'");
      try {
        // The cached answer lives auth_query_cache_ttl (5 s by default).
        const deadline = Date.now() + 12_000;
        for (;;) {
          try {
            await whoAmI(proxy, 'bob', 'bob-pw');
          } catch (e) {
            is28P01('bob')(e);
            break;
          }
          assert.ok(Date.now() < deadline, 'bob was still let in 12 s after his password expired');
          await new Promise((r) => setTimeout(r, 500));
        }
      } finally {
        await admin("ALTER ROLE bob VALID UNTIL 'infinity'");
      }
    });

    it("the proxy's server connections show up in pg_stat_ssl as TLS", async () => {
      const rows = await admin<{ usename: string; ssl: boolean; application_name: string }>(
        "SELECT a.usename, s.ssl, a.application_name FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename IN ('alice', 'pgwarden_auth')",
      );
      assert.ok(rows.some((r) => r.usename === 'alice'), 'a pooled connection of alice is open');
      assert.ok(rows.some((r) => r.usename === 'pgwarden_auth' && r.application_name === 'pgwarden-auth-query'), 'the auth_query connection is open');
      for (const row of rows) assert.equal(row.ssl, true, `${row.usename}'s connection from the proxy uses TLS`);
    });
  });

  describe('auth_type md5 with auth_query, TLS require', () => {
    let proxy: ProxyServer;
    before(async () => {
      proxy = await startProxy({
        auth_type: 'md5',
        auth_user: 'pgwarden_auth',
        auth_query: 'SELECT usename, passwd, valuntil FROM pgwarden.counting_lookup($1)',
        server_tls_sslmode: 'require',
      });
    });

    it('auth_file users with a plain password or an md5 secret log in with md5', async () => {
      assert.equal(await firstAuthRequest(proxy.address.port, 'plainuser'), 'md5-password');
      assert.deepEqual(await whoAmI(proxy, 'plainuser', 'plain-pw'), { user: 'plainuser', ssl: true });
      assert.equal(await firstAuthRequest(proxy.address.port, 'md5user'), 'md5-password');
      assert.deepEqual(await whoAmI(proxy, 'md5user', 'md5user-pw'), { user: 'md5user', ssl: true });
    });

    it('auth_query users: an md5 secret gets md5; a SCRAM secret makes the client use SCRAM', async () => {
      assert.equal(await firstAuthRequest(proxy.address.port, 'legacy'), 'md5-password');
      assert.deepEqual(await whoAmI(proxy, 'legacy', 'legacy-pw'), { user: 'legacy', ssl: true });
      assert.equal(await firstAuthRequest(proxy.address.port, 'alice'), 'sasl');
      assert.deepEqual(await whoAmI(proxy, 'alice', 'alice-pw'), { user: 'alice', ssl: true });
    });

    it('psql logs in with md5 through the proxy', async () => {
      const { stdout } = await run('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(proxy.address.port), '-U', 'legacy', '-d', 'postgres', '-c', 'SELECT current_user'], {
        env: { ...process.env, PGPASSWORD: 'legacy-pw', PGCONNECT_TIMEOUT: '10' },
      });
      assert.equal(stdout.trim(), 'legacy');
    });

    it('wrong password, unknown user and an expired password get 28P01', async () => {
      await assert.rejects(client(proxy, 'legacy', 'wrong').connect(), is28P01('legacy'));
      await assert.rejects(client(proxy, 'plainuser', 'wrong').connect(), is28P01('plainuser'));
      await assert.rejects(client(proxy, 'nobody', 'x').connect(), is28P01('nobody'));
      await assert.rejects(client(proxy, 'expired', 'expired-pw').connect(), is28P01('expired'));
    });

    it('a storm of 30 logins of one user asks the primary once', async () => {
      const before = Number((await admin<{ n: string }>('SELECT last_value AS n FROM pgwarden.lookups'))[0].n);
      const clients = Array.from({ length: 30 }, () => client(proxy, 'future', 'future-pw'));
      await Promise.all(clients.map((c) => c.connect()));
      const users = await Promise.all(clients.map(async (c) => (await c.query('SELECT current_user AS u')).rows[0].u as string));
      await Promise.all(clients.map((c) => c.end()));
      assert.deepEqual(new Set(users), new Set(['future']));
      const afterwards = Number((await admin<{ n: string }>('SELECT last_value AS n FROM pgwarden.lookups'))[0].n);
      assert.equal(afterwards - before, 1);
    });

    it('a slow auth_query blocks only the clients waiting for it', async () => {
      // The lookup of slow-nobody takes 2 s; plainuser comes from auth_file and must not wait for it.
      const lookupsRunning = async (): Promise<number> =>
        Number((await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'pgwarden_auth' AND state = 'active' AND query LIKE '%counting_lookup%'"))[0]!.n);
      let slowSettled = false;
      const slowLogin = assert.rejects(client(proxy, 'slow-nobody', 'x').connect(), is28P01('slow-nobody')).finally(() => {
        slowSettled = true;
      });
      await waitFor("slow-nobody's lookup to run", async () => (await lookupsRunning()) === 1);
      assert.deepEqual(await whoAmI(proxy, 'plainuser', 'plain-pw'), { user: 'plainuser', ssl: true });
      // plainuser got in while the slow lookup still ran: it did not wait for it.
      assert.equal(slowSettled, false, "slow-nobody's login was still waiting for its lookup");
      assert.equal(await lookupsRunning(), 1, "slow-nobody's lookup was still running");
      await slowLogin;
    });
  });

  describe('auth_query that cannot run', () => {
    it("a wrong auth_user password fails the lookup: 08006 to the client, the reason in the proxy's log", async () => {
      await writeFile(path.join(base, 'userlist-bad.txt'), '"pgwarden_auth" "not-the-password"\n');
      const proxy = await startProxy({ auth_file: 'userlist-bad.txt', auth_user: 'pgwarden_auth', auth_query: RECOMMENDED_QUERY });
      await assert.rejects(client(proxy, 'alice', 'alice-pw').connect(), (e: unknown) => {
        assert.equal((e as { code?: string }).code, '08006');
        assert.equal((e as Error).message, 'could not look up the password: auth_query failed');
        return true;
      });
      const logged = logLines.map((line) => JSON.parse(line) as { msg: string; err?: string; user?: string }).find((entry) => entry.msg === 'auth_query failed' && entry.user === 'alice');
      assert.match(logged?.err ?? '', /password authentication failed for user "pgwarden_auth"/);
    });
  });

  describe('auth_type trust', () => {
    it('logs a warning at start and lets a user in without a password', async () => {
      const proxy = await startProxy({ auth_type: 'trust' });
      assert.ok(
        logLines.some((line) => {
          const entry = JSON.parse(line) as { level: number; msg: string };
          return entry.level === 40 && /auth_type is trust/.test(entry.msg);
        }),
        'a warning about trust was logged',
      );
      assert.equal(await firstAuthRequest(proxy.address.port, 'plainuser'), 'ok');
      assert.deepEqual(await whoAmI(proxy, 'plainuser', 'anything at all'), { user: 'plainuser', ssl: false });
    });
  });

  describe('TLS to PostgreSQL', () => {
    const login = (host: string, sslmode: 'prefer' | 'require' | 'verify-ca' | 'verify-full', caFile: string | null) => {
      const tls = loadServerTls({ sslmode, caFile, certFile: null, keyFile: null });
      const conn = new ServerConn({ host, port: postgres.port });
      return conn
        .login({ user: superuser.username, database: 'postgres', credentials: { password: superuser.password }, connectTimeoutMs: 5000, tls })
        .then(() => {
          const encrypted = 'encrypted' in conn.socket;
          conn.close();
          return encrypted;
        });
    };

    it('require, prefer, verify-ca and verify-full with the right CA connect over TLS', async () => {
      assert.equal(await login('127.0.0.1', 'require', null), true);
      assert.equal(await login('127.0.0.1', 'prefer', null), true);
      assert.equal(await login('127.0.0.1', 'verify-ca', ca.caCert), true);
      assert.equal(await login('127.0.0.1', 'verify-full', ca.caCert), true);
      // "127.1" reaches 127.0.0.1 but is not a name the certificate carries: verify-ca does not care.
      assert.equal(await login('127.1', 'verify-ca', ca.caCert), true);
    });

    it('verify-full refuses a host name the certificate does not carry, with a clear error', async () => {
      await assert.rejects(login('127.1', 'verify-full', ca.caCert), (e: unknown) => {
        assert.ok(e instanceof PgProtocolError);
        assert.equal(e.sqlstate, '08006');
        assert.match(e.message, /^TLS to server 127\.1:\d+ failed \(server_tls_sslmode verify-full\): Hostname\/IP does not match certificate's altnames/);
        assert.match(e.hint ?? '', /name the host/);
        return true;
      });
    });

    it('verify-ca refuses a certificate from another CA', async () => {
      await assert.rejects(login('127.0.0.1', 'verify-ca', otherCa.caCert), (e: unknown) => {
        assert.ok(e instanceof PgProtocolError);
        assert.match(e.message, /TLS to server 127\.0\.0\.1:\d+ failed \(server_tls_sslmode verify-ca\): .*certificate/);
        return true;
      });
    });

    it('a client of a verify-full proxy that connects to PostgreSQL by a wrong name gets 08006, not a plaintext connection', async () => {
      const proxy = await startProxy({ server_tls_sslmode: 'verify-full', server_tls_ca_file: ca.caCert, query_wait_timeout: 2 }, '127.1');
      const c = client(proxy, 'plainuser', 'plain-pw');
      await assert.rejects(c.connect(), (e: unknown) => {
        assert.equal((e as { code?: string }).code, '08006');
        assert.match((e as Error).message, /Hostname\/IP does not match certificate's altnames/);
        return true;
      });
    });
  });
});
