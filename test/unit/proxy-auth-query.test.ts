/**
 * The pure parts of auth_query and server TLS: reading the query's rows and VALID UNTIL, which secret still
 * works, what the proxy can prove to PostgreSQL with a secret, and the config checks of auth_* / server_tls_*.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSecureContext } from 'node:tls';
import { DEFAULT_AUTH_QUERY, parseProxyConfig } from '../../src/config/proxy.js';
import { PgwardenError } from '../../src/errors.js';
import { parseTimestamp, storedUserFromRows, usableSecret } from '../../src/proxy/auth/auth-query.js';
import { serverCredentials } from '../../src/proxy/auth/credentials.js';
import { serverTlsConnectOptions } from '../../src/proxy/server-tls.js';

const SCRAM = 'SCRAM-SHA-256$4096:c2FsdA==$dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=:dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=';
const MD5 = 'md5' + '0123456789abcdef'.repeat(2);

describe('auth_query rows and VALID UNTIL', () => {
  it('reads PostgreSQL ISO timestamps with any offset, infinity and BC', () => {
    assert.equal(parseTimestamp('2001-02-03 04:05:06+00'), Date.UTC(2001, 1, 3, 4, 5, 6));
    assert.equal(parseTimestamp('2001-02-03 04:05:06.25+02'), Date.UTC(2001, 1, 3, 2, 5, 6, 250));
    assert.equal(parseTimestamp('2001-02-03 04:05:06-05:30'), Date.UTC(2001, 1, 3, 9, 35, 6));
    assert.equal(parseTimestamp('2001-02-03 04:05:06'), Date.UTC(2001, 1, 3, 4, 5, 6));
    assert.equal(parseTimestamp('infinity'), Infinity);
    assert.equal(parseTimestamp('-infinity'), -Infinity);
    assert.equal(parseTimestamp('0044-03-15 00:00:00+00 BC'), -Infinity);
    assert.throws(() => parseTimestamp('Sat Feb 03 04:05:06 2001'), /VALID UNTIL\) is not a timestamp/);
  });

  it('zero rows is an unknown user; one row gives the secret and expiry; more rows is a broken query', () => {
    assert.equal(storedUserFromRows([]), null);
    assert.deepEqual(storedUserFromRows([['alice', SCRAM]]), { secret: SCRAM, validUntil: null });
    assert.deepEqual(storedUserFromRows([['alice', SCRAM, null]]), { secret: SCRAM, validUntil: null });
    assert.deepEqual(storedUserFromRows([['alice', MD5, 'infinity']]), { secret: MD5, validUntil: Infinity });
    assert.deepEqual(storedUserFromRows([[null, null, null]]), { secret: null, validUntil: null });
    assert.throws(() => storedUserFromRows([['a', 'x'], ['b', 'y']]), /returned 2 rows/);
    assert.throws(() => storedUserFromRows([['a']]), /returned 1 column/);
  });

  it('an expired password, no password or no user leave nothing to check against', () => {
    const now = Date.UTC(2020, 0, 1);
    assert.equal(usableSecret(null, now), null);
    assert.equal(usableSecret({ secret: null, validUntil: null }, now), null);
    assert.equal(usableSecret({ secret: '', validUntil: null }, now), null);
    assert.equal(usableSecret({ secret: SCRAM, validUntil: now - 1 }, now), null);
    assert.equal(usableSecret({ secret: SCRAM, validUntil: -Infinity }, now), null);
    assert.equal(usableSecret({ secret: SCRAM, validUntil: now }, now), SCRAM);
    assert.equal(usableSecret({ secret: SCRAM, validUntil: Infinity }, now), SCRAM);
    assert.equal(usableSecret({ secret: MD5, validUntil: null }, now), MD5);
  });
});

describe('server credentials from a secret', () => {
  const keys = { iterations: 4096, salt: Buffer.from('s'), clientKey: Buffer.alloc(32, 1), serverKey: Buffer.alloc(32, 2) };
  it('a password works for everything, an md5 secret for md5, a SCRAM secret only with pass-through keys', () => {
    assert.deepEqual(serverCredentials('pw', null), { password: 'pw' });
    assert.deepEqual(serverCredentials(MD5, null), { md5Secret: MD5 });
    assert.deepEqual(serverCredentials(MD5, keys), { md5Secret: MD5, scramKeys: keys });
    assert.deepEqual(serverCredentials(SCRAM, null), {});
    assert.deepEqual(serverCredentials(SCRAM, keys), { scramKeys: keys });
    assert.deepEqual(serverCredentials(null, keys), { scramKeys: keys });
  });
});

describe('auth_* and server_tls_* settings', () => {
  const read = (text: string) => () => text;
  const parse = (raw: Record<string, unknown>, userlist = '"auth" "pw"\n"scram" "' + SCRAM + '"\n') =>
    parseProxyConfig({ auth_file: 'u.txt', ...raw }, { source: 'proxy.yml', baseDir: '/etc/pgw', readFile: read(userlist) });
  const invalid = (raw: Record<string, unknown>, pattern: RegExp) =>
    assert.throws(() => parse(raw), (e: unknown) => e instanceof PgwardenError && e.code === 'CONFIG_INVALID' && pattern.test(e.message));

  it('auth_user turns auth_query on, with the default query and cache', () => {
    assert.equal(parse({}).authQuery, null);
    assert.deepEqual(parse({ auth_user: 'auth' }).authQuery, { user: 'auth', secret: 'pw', query: DEFAULT_AUTH_QUERY, dbname: null, cacheTtlMs: 5000 });
    assert.deepEqual(parse({ auth_user: 'auth', auth_query: 'SELECT 1, 2', auth_dbname: 'postgres', auth_query_cache_ttl: 0.5 }).authQuery, {
      user: 'auth',
      secret: 'pw',
      query: 'SELECT 1, 2',
      dbname: 'postgres',
      cacheTtlMs: 500,
    });
  });

  it('refuses auth_query without auth_user, an auth_user missing from auth_file or with a SCRAM secret', () => {
    invalid({ auth_query: 'SELECT 1, 2' }, /auth_query needs auth_user: set auth_user/);
    invalid({ auth_dbname: 'x' }, /auth_dbname needs auth_user/);
    invalid({ auth_user: 'ghost' }, /auth_user "ghost" has no entry in auth_file: add the line "ghost" "<its password>"/);
    invalid({ auth_user: 'scram' }, /auth_user "scram" has a SCRAM secret in auth_file.*put the password itself/);
  });

  it('server TLS: disabled by default; files resolved; mistakes named', () => {
    assert.equal(parse({}).serverTls, null);
    assert.deepEqual(parse({ server_tls_sslmode: 'verify-full', server_tls_ca_file: 'ca.crt' }).serverTls, {
      sslmode: 'verify-full',
      caFile: '/etc/pgw/ca.crt',
      certFile: null,
      keyFile: null,
    });
    invalid({ server_tls_ca_file: 'ca.crt' }, /server_tls_ca_file is set but server_tls_sslmode is disable/);
    invalid({ server_tls_sslmode: 'require', server_tls_cert_file: 'c.crt' }, /server_tls_cert_file and server_tls_key_file go together/);
    invalid({ server_tls_sslmode: 'allow' }, /server_tls_sslmode/);
  });

  it('verify-full checks the host the proxy connects to; require and verify-ca do not', () => {
    const secureContext = createSecureContext();
    const full = serverTlsConnectOptions({ host: 'db.example', port: 5432 }, { sslmode: 'verify-full', secureContext });
    assert.equal(full.servername, 'db.example');
    assert.equal(full.rejectUnauthorized, true);
    const cert = { subject: { CN: 'other.example' }, subjectaltname: 'DNS:other.example' } as never;
    assert.match(String(full.checkServerIdentity?.('ignored', cert)), /does not match certificate's altnames/);
    const byIp = serverTlsConnectOptions({ host: '10.0.0.1', port: 5432 }, { sslmode: 'verify-full', secureContext });
    assert.equal(byIp.servername, undefined, 'no IP address in SNI');
    const ca = serverTlsConnectOptions({ host: 'db.example', port: 5432 }, { sslmode: 'verify-ca', secureContext });
    assert.equal(ca.rejectUnauthorized, true);
    assert.equal(ca.checkServerIdentity?.('db.example', cert), undefined);
    assert.equal(serverTlsConnectOptions({ host: 'db.example', port: 5432 }, { sslmode: 'require', secureContext }).rejectUnauthorized, false);
  });
});
