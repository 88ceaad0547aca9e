/**
 * etcd over TLS with client certificates (etcd.cacert, cert, key) against a real etcd started with --cert-file,
 * --key-file, --client-cert-auth and --trusted-ca-file: the client connects with a certificate from the CA and is
 * refused, with a message naming the settings, without one or with another CA's; a real agent (with its
 * PostgreSQL), the CLI and the proxy all reach the cluster through it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { agentChildEnv } from '../../src/config/cli.js';
import { EtcdDcs } from '../../src/dcs/etcd.js';
import { type EtcdTls, loadEtcdTls } from '../../src/dcs/etcd-tls.js';
import { PgwardenError } from '../../src/errors.js';
import { type LocalCaFiles, ensureLocalCa } from '../../src/proxy/tls.js';
import { type CertificateFiles, issueCertificate } from '../../src/up/cluster-tls.js';
import { startEtcd, type EtcdInstance } from '../helpers/etcd.js';
import { psql, waitFor } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const CLUSTER = 'etcdtls';

let dir: string;
let ca: LocalCaFiles;
let wrongCa: LocalCaFiles;
let client: CertificateFiles;
let stranger: CertificateFiles;
let etcd: EtcdInstance;
let good: EtcdTls;
const children: ChildProcess[] = [];

function spawnCli(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [MAIN, ...args], { env: agentChildEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: agentChildEnv(), timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function stopChild(child: ChildProcess, timeoutMs = 40_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

const connect = (tls: EtcdTls | null) => EtcdDcs.connect({ endpoints: [etcd.endpoint], cluster: CLUSTER, callTimeoutMs: 2000, tls });

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-etcdtls-'));
  // The agent's PostgreSQL (the postgres user) must pass through to its data directory.
  await chmod(dir, 0o755);
  ca = await ensureLocalCa(path.join(dir, 'ca'));
  wrongCa = await ensureLocalCa(path.join(dir, 'wrong'));
  client = await issueCertificate(ca, path.join(dir, 'certs'), { name: 'client', commonName: 'pgwarden', usage: 'client' });
  stranger = await issueCertificate(wrongCa, path.join(dir, 'certs'), { name: 'stranger', commonName: 'pgwarden', usage: 'client' });
  etcd = await startEtcd({ tls: { certFile: ca.serverCert, keyFile: ca.serverKey, trustedCaFile: ca.caCert } });
  good = loadEtcdTls({ cacert: ca.caCert, cert: client.cert, key: client.key })!;
});

after(async () => {
  for (const child of children.reverse()) await stopChild(child);
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('etcd over TLS with client certificates', { timeout: 120_000 }, () => {
  it('connects with a client certificate signed by the CA etcd trusts', async () => {
    assert.match(etcd.endpoint, /^https:/);
    const dcs = await connect(good);
    try {
      await dcs.setConfig({ ...(await dcs.load()).config, ttl: 7 });
      assert.equal((await dcs.load()).config.ttl, 7);
    } finally {
      await dcs.close();
    }
  });

  it('is refused without a client certificate, with another CA\'s, and without the CA: the message names the settings', async () => {
    const refusals: Array<[string, EtcdTls | null]> = [
      ['no client certificate', loadEtcdTls({ cacert: ca.caCert, cert: null, key: null })],
      ['a certificate of another CA', loadEtcdTls({ cacert: ca.caCert, cert: stranger.cert, key: stranger.key })],
      ['no CA (system CAs)', loadEtcdTls({ cacert: null, cert: client.cert, key: client.key })],
    ];
    for (const [what, tls] of refusals) {
      await assert.rejects(connect(tls), (e: unknown) => {
        assert.ok(e instanceof PgwardenError, `${what}: ${String(e)}`);
        assert.equal(e.code, 'DCS_UNAVAILABLE', what);
        assert.match(e.message, /etcd\.cacert, etcd\.cert and etcd\.key/, `${what}: ${e.message}`);
        return true;
      });
    }
  });

  it('an agent, the CLI and the proxy reach the cluster through TLS etcd', async () => {
    const [pgPort, apiPort, proxyPort] = [await freePort(), await freePort(), await freePort()];
    const etcdSection = { endpoints: [etcd.endpoint], cacert: ca.caCert, cert: client.cert, key: 'certs/client.key' };
    const agentFile = path.join(dir, 'pg1.yml');
    await writeFile(
      agentFile,
      YAML.stringify({
        cluster: CLUSTER,
        name: 'pg1',
        etcd: etcdSection,
        api: { listen: `127.0.0.1:${apiPort}`, username: 'admin', password: 'api-secret' },
        postgresql: {
          data_dir: path.join(dir, 'pg1', 'data'),
          listen: `127.0.0.1:${pgPort}`,
          parameters: { fsync: 'off', shared_buffers: '32MB', max_connections: 20 },
          superuser: { password: 'su-secret' },
          replication: { password: 'repl-secret' },
          rewind: { password: 'rewind-secret' },
        },
      }),
      { mode: 0o600 },
    );
    const agent = spawnCli(['agent', '--config', agentFile]);
    const dcs = await connect(good);
    try {
      await waitFor('pg1 leading the cluster', async () => {
        if (agent.child.exitCode !== null) throw new Error(`the agent exited: ${agent.output()}`);
        const view = await dcs.load();
        return view.leader?.name === 'pg1' && view.members.pg1?.state === 'running';
      }, 60_000);

      const list = await runCli(['list', '--format', 'json', '--config', agentFile]);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual((JSON.parse(list.stdout) as { members: Array<{ name: string; role: string }> }).members.map((m) => [m.name, m.role]), [['pg1', 'primary']]);

      await writeFile(path.join(dir, 'userlist.txt'), '"postgres" "su-secret"\n', { mode: 0o600 });
      const proxyFile = path.join(dir, 'proxy.yml');
      await writeFile(
        proxyFile,
        YAML.stringify({ id: 'tlsproxy', listen: `127.0.0.1:${proxyPort}`, auth_type: 'scram-sha-256', auth_file: 'userlist.txt', etcd: { ...etcdSection, cluster: CLUSTER } }),
      );
      const proxy = spawnCli(['proxy', '--config', proxyFile]);
      await waitFor('the proxy registered in etcd', async () => {
        if (proxy.child.exitCode !== null) throw new Error(`the proxy exited: ${proxy.output()}`);
        return (await dcs.loadProxies()).some((p) => p.id === 'tlsproxy');
      }, 20_000);
      const [row] = await waitFor('a query through the proxy', async () =>
        psql<{ primary: boolean }>({ host: '127.0.0.1', port: proxyPort, user: 'postgres', password: 'su-secret', database: 'postgres' }, 'SELECT NOT pg_is_in_recovery() AS primary'),
      );
      assert.equal(row.primary, true);
    } finally {
      await dcs.close();
    }
  });
});
