/**
 * TLS between members against real PostgreSQL 15: a primary with ssl = on (postgresql.parameters ssl*), a replica
 * cloned and streaming with sslmode verify-full against the local CA, a replica given the wrong CA that can
 * neither clone nor stream, and says why, and pg_rewind under the same rules.
 */
import assert from 'node:assert/strict';
import { chown, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PgwardenError } from '../../src/errors.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { runAsIdentity } from '../../src/postgres/run.js';
import { ensureLocalCa } from '../../src/proxy/tls.js';
import { issueCertificate } from '../../src/up/cluster-tls.js';
import { addressOf, cleanupServers, makePgTempDir, makeTestServer, psql, tcpConfig, testCredentials, waitFor } from '../helpers/pg.js';

describe('PostgreSQL TLS between members (real PostgreSQL 15)', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  let base: string;
  let ca: string;
  let wrongCa: string;
  let alpha: PostgresServer;
  let beta: PostgresServer;

  const superuserOn = (server: PostgresServer) => tcpConfig(server, credentials.superuser.username, credentials.superuser.password);
  const verifyFull = (rootcert: string) => ({ ...credentials.replication, sslmode: 'verify-full' as const, sslrootcert: rootcert });

  before(async () => {
    base = await makePgTempDir('pgwarden-pgtls-');
    const owner = runAsIdentity('postgres');
    const local = await ensureLocalCa(path.join(base, 'tls'));
    ca = local.caCert;
    const server = await issueCertificate(local, path.join(base, 'tls'), {
      name: 'alpha',
      commonName: 'alpha',
      dns: ['localhost'],
      ips: ['127.0.0.1'],
      usage: 'both',
    });
    wrongCa = (await ensureLocalCa(path.join(base, 'other-ca'))).caCert;
    // PostgreSQL refuses a key that its own user does not own (or root with 0640).
    if (owner) for (const f of [server.cert, server.key, ca, wrongCa, path.join(base, 'tls'), path.join(base, 'other-ca')]) await chown(f, owner.uid, owner.gid);
    alpha = await makeTestServer('alpha', base, credentials, {
      parameters: { ssl: 'on', ssl_cert_file: server.cert, ssl_key_file: server.key },
    });
    beta = await makeTestServer('beta', base, credentials, { replication: verifyFull(ca) });
    await alpha.bootstrap();
    await alpha.manageSlots(['beta'], []);
  });

  after(async () => {
    await cleanupServers();
  });

  it('clones and streams over TLS, checked with verify-full against the CA', async () => {
    await beta.clone(addressOf(alpha));
    await beta.start('replica', addressOf(alpha));
    await waitFor('beta streaming', async () => (await beta.observe()).streaming);
    const rows = await psql<{ application_name: string; ssl: boolean; version: string | null }>(
      superuserOn(alpha),
      'SELECT r.application_name, s.ssl, s.version FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)',
    );
    assert.deepEqual(rows.map((r) => [r.application_name, r.ssl]), [['beta', true]]);
    assert.match(rows[0].version ?? '', /^TLSv1\.[23]$/);
    const [conninfo] = await psql<{ primary_conninfo: string }>(superuserOn(beta), 'SHOW primary_conninfo');
    assert.match(conninfo.primary_conninfo, /sslmode=verify-full sslrootcert=\S*tls\/ca\.crt/);
  });

  it('refuses to clone from a primary whose certificate the configured CA did not sign', async () => {
    const gamma = await makeTestServer('gamma', base, credentials, { replication: verifyFull(wrongCa) });
    await assert.rejects(gamma.clone(addressOf(alpha)), (e: unknown) => {
      assert.ok(e instanceof PgwardenError, String(e));
      assert.equal(e.code, 'PG_COMMAND_FAILED');
      assert.match(e.message, /pg_basebackup failed .*certificate verify failed/);
      return true;
    });
  });

  it('does not stream with the wrong CA: the replica logs the certificate failure', async () => {
    await beta.stop('fast');
    const wrong = await makeTestServer('beta', base, credentials, { port: beta.port, replication: verifyFull(wrongCa) });
    await wrong.start('replica', addressOf(alpha));
    await waitFor('the certificate failure in beta\'s log', async () => /certificate verify failed/.test(await readFile(wrong.logFile, 'utf8')));
    const streaming = await psql(superuserOn(alpha), "SELECT 1 FROM pg_stat_replication WHERE application_name = 'beta'");
    assert.deepEqual(streaming, []);
    assert.equal((await wrong.observe()).streaming, false);
    await wrong.stop('fast');
  });

  it('runs pg_rewind over TLS: refused with the wrong CA, through with the right one', async () => {
    const rewindWith = (rootcert: string) =>
      makeTestServer('beta', base, credentials, {
        port: beta.port,
        replication: verifyFull(ca),
        rewind: { ...credentials.rewind, sslmode: 'verify-full', sslrootcert: rootcert },
      });
    const wrong = await rewindWith(wrongCa);
    await assert.rejects(wrong.rewind(addressOf(alpha)), /pg_rewind failed .*certificate verify failed/);
    const right = await rewindWith(ca);
    await right.rewind(addressOf(alpha));
    await right.start('replica', addressOf(alpha));
    await waitFor('beta streaming after the rewind', async () => (await right.observe()).streaming);
  });
});
