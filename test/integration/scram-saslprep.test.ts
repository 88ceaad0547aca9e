/**
 * One SCRAM derivation for the agent and the proxy, checked against PostgreSQL 15 and libpq (psql): a password
 * that SASLprep and plain NFKC treat differently (a soft hyphen, which SASLprep removes and NFKC keeps) works for
 * a role whose verifier pgwarden wrote, directly and through the proxy; the verifier pgwarden computes equals the
 * one PostgreSQL stores for the same password and salt.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { parseProxyConfig } from '../../src/config/proxy.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { parseScramSecret, scramSha256Verifier } from '../../src/protocol/scram.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { StaticTopology } from '../../src/proxy/topology.js';
import { cleanupServers, makePgTempDir, makeTestServer, psql, tcpConfig, testCredentials } from '../helpers/pg.js';

const run = promisify(execFile);

// U+00AD: SASLprep maps it to nothing, NFKC keeps it; 'ä' makes the password non-ASCII so SASLprep runs at all.
const PASSWORD = `soft\u00ADhyphen-ä-${randomBytes(6).toString('hex')}`;

/** Logs in with libpq (psql) and returns current_user. */
async function psqlWhoAmI(port: number, user: string, password: string): Promise<string> {
  const { stdout } = await run('/usr/bin/psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-c', 'SELECT current_user'], {
    env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' },
  });
  return stdout.trim();
}

describe('SCRAM verifiers for non-ASCII passwords', { timeout: 90_000 }, () => {
  const credentials = testCredentials();
  credentials.rewind.password = PASSWORD;
  let base: string;
  let postgres: PostgresServer;
  let proxy: ProxyServer | undefined;

  before(async () => {
    base = await makePgTempDir('pgwarden-scram-saslprep-');
    postgres = await makeTestServer('saslprep', base, credentials);
    await postgres.bootstrap();
    // The reference: the verifier PostgreSQL itself derives from the plain password.
    await psql(
      tcpConfig(postgres, credentials.superuser.username, credentials.superuser.password),
      `SET password_encryption = 'scram-sha-256'; CREATE ROLE pgown LOGIN PASSWORD ${pg.escapeLiteral(PASSWORD)}`,
    );
  });

  after(async () => {
    await proxy?.stop();
    await cleanupServers();
  });

  it('pgwarden computes the verifier PostgreSQL stores for the same password and salt', async () => {
    const [row] = await psql<{ rolpassword: string }>(
      tcpConfig(postgres, credentials.superuser.username, credentials.superuser.password),
      "SELECT rolpassword FROM pg_authid WHERE rolname = 'pgown'",
    );
    const stored = parseScramSecret(row.rolpassword);
    assert.ok(stored !== null, row.rolpassword);
    assert.equal(scramSha256Verifier(PASSWORD, stored.salt, stored.iterations), row.rolpassword);
  });

  it('psql logs in to PostgreSQL as the role pgwarden wrote the verifier for, as it does for PostgreSQL\'s own', async () => {
    assert.equal(await psqlWhoAmI(postgres.port, 'pgown', PASSWORD), 'pgown');
    assert.equal(await psqlWhoAmI(postgres.port, credentials.rewind.username, PASSWORD), credentials.rewind.username);
  });

  it('psql logs in through the proxy (SCRAM on both sides) as either role', async () => {
    const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
    await writeFile(path.join(base, 'userlist.txt'), `${quote(credentials.rewind.username)} ${quote(PASSWORD)}\n${quote('pgown')} ${quote(PASSWORD)}\n`);
    const config = parseProxyConfig(
      { listen: '127.0.0.1:0', default_pool_size: 2, auth_type: 'scram-sha-256', auth_file: 'userlist.txt', query_wait_timeout: 10 },
      { source: 'test', baseDir: base },
    );
    proxy = new ProxyServer({ config, topology: new StaticTopology({ host: '127.0.0.1', port: postgres.port }), logger: pino({ level: 'silent' }), connectTimeoutMs: 5000 });
    await proxy.start();
    assert.equal(await psqlWhoAmI(proxy.address.port, 'pgown', PASSWORD), 'pgown');
    assert.equal(await psqlWhoAmI(proxy.address.port, credentials.rewind.username, PASSWORD), credentials.rewind.username);
  });
});
