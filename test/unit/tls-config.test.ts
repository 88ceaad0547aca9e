import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cliApiCaFileFromEnv, cliEtcdTlsFromEnv } from '../../src/config/cli.js';
import { parseProxyConfig } from '../../src/config/proxy.js';
import { loadEtcdTls } from '../../src/dcs/etcd-tls.js';
import { PgwardenError } from '../../src/errors.js';
import { leafExtensions } from '../../src/up/cluster-tls.js';

const proxy = (etcd: Record<string, unknown>) =>
  parseProxyConfig({ listen: '127.0.0.1:6432', auth_type: 'trust', etcd: { cluster: 'main', ...etcd } }, { source: 'proxy.yml', baseDir: '/etc/pgwarden' });

function failsWith(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof PgwardenError && e.code === 'CONFIG_INVALID' && pattern.test(e.message));
}

describe('proxy etcd TLS settings', () => {
  it('resolves etcd.cacert, cert and key against the file\'s directory', () => {
    const config = proxy({ endpoints: ['https://127.0.0.1:2379'], cacert: 'ca.crt', cert: '/t/c.crt', key: 'c.key' });
    assert.deepEqual(config.etcdTls, { cacert: '/etc/pgwarden/ca.crt', cert: '/t/c.crt', key: '/etc/pgwarden/c.key' });
    assert.equal(proxy({ endpoints: ['http://127.0.0.1:2379'] }).etcdTls, null);
  });

  it('names the setting to fix', () => {
    failsWith(() => proxy({ endpoints: ['http://127.0.0.1:2379'], cacert: 'ca.crt' }), /etcd\.endpoints: must be https:\/\/ URLs/);
    failsWith(() => proxy({ endpoints: ['https://127.0.0.1:2379'], key: 'c.key' }), /etcd\.cert: etcd\.cert and etcd\.key go together/);
  });
});

describe('CLI TLS environment', () => {
  it('reads PGWARDEN_ETCD_CACERT/CERT/KEY and PGWARDEN_API_CAFILE', () => {
    assert.equal(cliEtcdTlsFromEnv({}), null);
    assert.deepEqual(cliEtcdTlsFromEnv({ PGWARDEN_ETCD_CACERT: '/ca.crt' }), { cacert: '/ca.crt', cert: null, key: null });
    failsWith(() => cliEtcdTlsFromEnv({ PGWARDEN_ETCD_CERT: '/c.crt' }), /PGWARDEN_ETCD_CERT is set but PGWARDEN_ETCD_KEY is not/);
    assert.equal(cliApiCaFileFromEnv({ PGWARDEN_API_CAFILE: ' /ca.crt ' }), '/ca.crt');
    assert.equal(cliApiCaFileFromEnv({}), null);
  });

  it('names the unreadable file by its setting', () => {
    const missing = () => {
      throw Object.assign(new Error('nope'), { code: 'ENOENT' });
    };
    failsWith(() => loadEtcdTls({ cacert: '/x/ca.crt', cert: null, key: null }, 'PGWARDEN_ETCD_', missing), /^PGWARDEN_ETCD_CACERT \/x\/ca\.crt could not be read \(ENOENT\)/);
    failsWith(() => loadEtcdTls({ cacert: null, cert: '/x/c.crt', key: '/x/c.key' }, 'etcd.', missing), /^etcd\.cert \/x\/c\.crt could not be read/);
  });
});

describe('leafExtensions', () => {
  it('names the addresses a client dials and the certificate\'s use', () => {
    const text = leafExtensions({ name: 'pg1', commonName: 'pg1', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'both' });
    assert.match(text, /^extendedKeyUsage=serverAuth,clientAuth$/m);
    assert.match(text, /^subjectAltName=DNS:localhost,IP:127\.0\.0\.1$/m);
    assert.doesNotMatch(leafExtensions({ name: 'c', commonName: 'c', usage: 'client' }), /subjectAltName/);
  });
});
