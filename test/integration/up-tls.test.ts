/**
 * TLS inside a `pgwarden up` cluster (2 nodes, real etcd, agents, PostgreSQL 15 and the proxy): every member
 * serves TLS with a certificate from the local CA, the replica streams over TLS checked with verify-full, and the
 * proxy's connections to PostgreSQL are TLS too (pg_stat_ssl on the servers). Without openssl a (1-node) cluster
 * still comes up, in plaintext, and says so once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { psql, waitFor } from '../helpers/pg.js';

interface Connection {
  pid: number;
  backend_type: string;
  usename: string;
  ssl: boolean;
}

/** The TCP connections a server has from others (the query's own connection left out), with their TLS state. */
const REMOTE_CONNECTIONS = `
SELECT a.pid, a.backend_type, a.usename, s.ssl
  FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
 WHERE a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()
 ORDER BY a.backend_type, a.pid`;

let dir: string;
let lc: LocalCluster;
let primary: string;
let replica: string;
const upLines: string[] = [];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-uptls-'));
  lc = await LocalCluster.open({ dir, nodes: 2, cluster: 'tlstest', parameters: { fsync: 'off', shared_buffers: '32MB' }, log: (l) => upLines.push(l) });
  await lc.start();
  const view = await lc.waitHealthy(90_000);
  primary = view.leader!.name;
  replica = lc.members().find((m) => m !== primary)!;
});

after(async () => {
  await lc?.stop().catch(() => undefined);
  await lc?.close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('pgwarden up: TLS inside the cluster', { timeout: 120_000 }, () => {
  it('writes agent files with ssl on and verify-full replication against the local CA', async () => {
    for (const m of lc.members()) {
      const config = YAML.parse(await readFile(lc.configFile(m), 'utf8')) as Record<string, any>;
      assert.equal(config.postgresql.parameters.ssl, 'on');
      assert.equal(config.postgresql.parameters.ssl_cert_file, path.join(lc.memberDir(m), 'tls', 'server.crt'));
      assert.equal(config.postgresql.replication.sslmode, 'verify-full');
      assert.equal(config.postgresql.rewind.sslmode, 'verify-full');
    }
    assert.ok(upLines.some((l) => /^TLS inside the cluster: .*verify-full against .*tls\/ca\.crt$/.test(l)), upLines.join('\n'));
  });

  it('streams the replica over TLS', async () => {
    const rows = await waitFor('the replica\'s walsender', async () => {
      const r = await psql<Connection>({ connectionString: lc.connectionString(primary) }, REMOTE_CONNECTIONS);
      return r.some((c) => c.backend_type === 'walsender') ? r : undefined;
    });
    const walsenders = rows.filter((c) => c.backend_type === 'walsender');
    assert.equal(walsenders.length, 1);
    assert.ok(walsenders.every((c) => c.ssl), JSON.stringify(walsenders));
  });

  it('connects the proxy to the primary and to the replica over TLS', async () => {
    for (const [kind, member] of [['rw', primary], ['ro', replica]] as const) {
      const [row] = await psql<{ in_recovery: boolean }>({ connectionString: lc.proxyConnectionString(kind) }, 'SELECT pg_is_in_recovery() AS in_recovery');
      assert.equal(row.in_recovery, kind === 'ro');
      const backends = (await psql<Connection>({ connectionString: lc.connectionString(member) }, REMOTE_CONNECTIONS)).filter(
        (c) => c.backend_type === 'client backend',
      );
      assert.ok(backends.length > 0, `no proxy connection on ${member}`);
      assert.ok(backends.every((c) => c.ssl), `${member}: ${JSON.stringify(backends)}`);
    }
    const proxyConfig = YAML.parse(await readFile(lc.proxyConfigFile(), 'utf8')) as Record<string, unknown>;
    assert.equal(proxyConfig.server_tls_sslmode, 'verify-full');
  });
});

describe('pgwarden up without openssl', { timeout: 120_000 }, () => {
  let plainDir: string;
  let plain: LocalCluster | null = null;

  after(async () => {
    await plain?.stop().catch(() => undefined);
    await plain?.close().catch(() => undefined);
    if (plainDir) await rm(plainDir, { recursive: true, force: true });
  });

  it('comes up in plaintext and says once why', async () => {
    plainDir = await mkdtemp(path.join(tmpdir(), 'pgwarden-upplain-'));
    const lines: string[] = [];
    const savedPath = process.env.PATH;
    // openssl is looked up on the PATH; every other program pgwarden up runs has an absolute path.
    process.env.PATH = path.join(plainDir, 'no-bin');
    try {
      plain = await LocalCluster.open({ dir: plainDir, nodes: 1, cluster: 'plain', parameters: { fsync: 'off', shared_buffers: '32MB' }, log: (l) => lines.push(l) });
      await plain.start();
    } finally {
      process.env.PATH = savedPath;
    }
    await plain.waitHealthy(60_000);
    const said = lines.filter((l) => l.includes('TLS skipped'));
    assert.equal(said.length, 1, lines.join('\n'));
    assert.match(said[0], /openssl is not installed; PostgreSQL, replication and the proxy talk plaintext/);
    const config = YAML.parse(await readFile(plain.configFile('pg1'), 'utf8')) as Record<string, any>;
    assert.equal(config.postgresql.parameters.ssl, undefined);
    assert.equal(config.postgresql.replication.sslmode, undefined);
    const proxyConfig = YAML.parse(await readFile(plain.proxyConfigFile(), 'utf8')) as Record<string, unknown>;
    assert.equal(proxyConfig.server_tls_sslmode, undefined);
    const [row] = await psql<{ ssl: boolean }>(
      { connectionString: plain.proxyConnectionString('rw') },
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    assert.equal(row.ssl, false);
  });
});
