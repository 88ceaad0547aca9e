/**
 * The REST API over HTTPS (api.certfile, api.keyfile; api.cafile with verify_client) on a real fastify server,
 * with certificates from a local CA made by openssl: curl and node's https client verify it, a wrong CA is
 * refused, the agents' peer probe and the CLI's REST client talk HTTPS with the CA, and a client certificate is
 * required under verify_client: required.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { ApiBackend } from '../../src/ha/api-backend.js';
import { apiRequest } from '../../src/api/client.js';
import { startApi, type ApiServer } from '../../src/api/server.js';
import { type ApiClientTls, loadApiClientTls, loadApiHttps } from '../../src/config/api-tls.js';
import { postToMember } from '../../src/cli/rest.js';
import { PgwardenError } from '../../src/errors.js';
import { probePeers } from '../../src/api/peer-probe.js';
import type { ClusterView, MemberStatus } from '../../src/cluster/types.js';
import { type LocalCaFiles, ensureLocalCa } from '../../src/proxy/tls.js';
import { type CertificateFiles, issueCertificate } from '../../src/up/cluster-tls.js';
import { member, viewOf } from '../unit/api-fixtures.js';

const run = promisify(execFile);
const AUTH = { username: 'admin', password: 'secret' };

class Backend implements ApiBackend {
  readonly cluster = 'main';
  reloads = 0;
  constructor(
    readonly memberName: string,
    private readonly current: ClusterView,
  ) {}
  status(): MemberStatus | null {
    return this.current.members[this.memberName] ?? null;
  }
  view(): ClusterView {
    return this.current;
  }
  pgRunning(): boolean {
    return true;
  }
  async requestFailover(): Promise<void> {}
  async setDynamicConfig(): Promise<void> {}
  requestRestart(): void {}
  requestReload(): void {
    this.reloads++;
  }
  requestReinitialize(): void {}
  async metrics(): Promise<string> {
    return '';
  }
  readonly metricsContentType = 'text/plain';
}

let dir: string;
let ca: LocalCaFiles;
let wrongCa: LocalCaFiles;
let serverCert: CertificateFiles;
let clientCert: CertificateFiles;
let strangerCert: CertificateFiles;
let backend: Backend;
let api: ApiServer;
let mtlsApi: ApiServer;
let trusting: ApiClientTls;
let distrusting: ApiClientTls;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-apitls-'));
  ca = await ensureLocalCa(path.join(dir, 'ca'));
  wrongCa = await ensureLocalCa(path.join(dir, 'wrong'));
  const certs = path.join(dir, 'certs');
  serverCert = await issueCertificate(ca, certs, { name: 'pg1', commonName: 'pg1', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'both' });
  clientCert = await issueCertificate(ca, certs, { name: 'cli', commonName: 'cli', usage: 'client' });
  strangerCert = await issueCertificate(wrongCa, certs, { name: 'stranger', commonName: 'stranger', usage: 'client' });
  backend = new Backend('pg1', viewOf([member('pg1', 'primary'), member('pg2', 'replica')]));
  const https = loadApiHttps({ certfile: serverCert.cert, keyfile: serverCert.key, cafile: null, verify_client: 'none' });
  api = await startApi({ listen: '127.0.0.1:0', backend, auth: AUTH, https });
  const mtls = loadApiHttps({ certfile: serverCert.cert, keyfile: serverCert.key, cafile: ca.caCert, verify_client: 'required' });
  mtlsApi = await startApi({ listen: '127.0.0.1:0', backend, auth: AUTH, https: mtls });
  trusting = loadApiClientTls({ cafile: ca.caCert, certfile: null, keyfile: null })!;
  distrusting = loadApiClientTls({ cafile: wrongCa.caCert, certfile: null, keyfile: null })!;
});

after(async () => {
  await Promise.all([api?.close(), mtlsApi?.close()]);
  await rm(dir, { recursive: true, force: true });
});

describe('REST API over HTTPS', () => {
  it('serves HTTPS that curl verifies against the CA, and that it refuses with another CA', async () => {
    assert.match(api.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ok = await run('/usr/bin/curl', ['-sS', '--cacert', ca.caCert, `${api.url}/patroni`]);
    assert.equal((JSON.parse(ok.stdout) as { role: string }).role, 'primary');
    // localhost is in the certificate too.
    const byName = await run('/usr/bin/curl', ['-sS', '--cacert', ca.caCert, `${api.url.replace('127.0.0.1', 'localhost')}/liveness`]);
    assert.equal(byName.stderr, '');
    await assert.rejects(run('/usr/bin/curl', ['-sS', '--cacert', wrongCa.caCert, `${api.url}/patroni`]), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 60, e.stderr); // curl: peer certificate cannot be authenticated with given CA certificates
      return true;
    });
  });

  it('node\'s HTTPS client: verified with the CA, refused with the wrong CA and without one', async () => {
    const answer = await apiRequest(`${api.url}/patroni`, { timeoutMs: 3000, tls: trusting });
    assert.equal(answer.status, 200);
    await assert.rejects(apiRequest(`${api.url}/patroni`, { timeoutMs: 3000, tls: distrusting }), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    await assert.rejects(apiRequest(`${api.url}/patroni`, { timeoutMs: 3000 }), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  it('peer probes reach an HTTPS member with the CA, and count it unreachable with the wrong CA', async () => {
    const view = viewOf([member('pg1', 'primary', { apiUrl: api.url }), member('pg2', 'replica')]);
    const probed = await probePeers(view, 'pg2', 2000, trusting);
    assert.equal(probed.pg1?.reachable, true);
    assert.equal(probed.pg1?.role, 'primary');
    assert.equal((await probePeers(view, 'pg2', 2000, distrusting)).pg1?.reachable, false);
  });

  it('the CLI\'s REST client posts over HTTPS with the CA, and names the setting to fix with the wrong CA', async () => {
    const before = backend.reloads;
    const answer = await postToMember('pg1', api.url, 'reload', AUTH, {}, trusting);
    assert.equal(answer.status, 202);
    assert.equal(backend.reloads, before + 1);
    await assert.rejects(postToMember('pg1', api.url, 'reload', AUTH, {}, distrusting), (e: unknown) => {
      assert.ok(e instanceof PgwardenError);
      assert.equal(e.code, 'CONFIG_INVALID');
      assert.match(e.message, /does not trust .*api\.cafile .*PGWARDEN_API_CAFILE/);
      return true;
    });
    assert.equal(backend.reloads, before + 1);
  });

  it('verify_client required: a client certificate signed by api.cafile is needed', async () => {
    const withCert = loadApiClientTls({ cafile: ca.caCert, certfile: clientCert.cert, keyfile: clientCert.key })!;
    assert.equal((await apiRequest(`${mtlsApi.url}/patroni`, { timeoutMs: 3000, tls: withCert })).status, 200);
    await assert.rejects(apiRequest(`${mtlsApi.url}/patroni`, { timeoutMs: 3000, tls: trusting }));
    const stranger = loadApiClientTls({ cafile: ca.caCert, certfile: strangerCert.cert, keyfile: strangerCert.key })!;
    await assert.rejects(apiRequest(`${mtlsApi.url}/patroni`, { timeoutMs: 3000, tls: stranger }));
  });

  it('names the file setting that cannot be read', () => {
    assert.throws(
      () => loadApiHttps({ certfile: path.join(dir, 'missing.crt'), keyfile: serverCert.key, cafile: null, verify_client: 'none' }),
      (e: unknown) => e instanceof PgwardenError && e.code === 'CONFIG_INVALID' && /^api\.certfile .*missing\.crt could not be read \(ENOENT\)/.test(e.message),
    );
  });
});
