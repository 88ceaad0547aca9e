/**
 * `pgwarden proxy` without a config file (run.ts proxyConfigFromOptions): the defaults it picks (loopback, PgBouncer's
 * port, SCRAM against --auth-file, never trust) and the errors that name the missing or misplaced option.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { proxyConfigFromOptions } from '../../src/proxy/run.js';

describe('pgwarden proxy options without --config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-proxy-cli-'));
    await writeFile(path.join(dir, 'users.txt'), '"alice" "secret"\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('listens on 127.0.0.1:6432 with SCRAM against the users of --auth-file (relative to the current directory)', () => {
    const config = proxyConfigFromOptions({ primary: '10.0.0.1:5432', authFile: 'users.txt' }, dir);
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 6432 });
    assert.equal(config.listen_ro, undefined, 'no read-only listener without replicas');
    assert.equal(config.auth_type, 'scram-sha-256');
    assert.equal(config.authFilePath, path.join(dir, 'users.txt'));
    assert.deepEqual([...config.users.keys()], ['alice']);
    assert.equal(config.pool_mode, 'transaction');
    assert.deepEqual(config.admin_users, []);
  });

  it('opens the read-only listener on the next port when replicas are given, and takes the listed settings', () => {
    const withReplica = proxyConfigFromOptions({ primary: '10.0.0.1:5432', replica: ['10.0.0.2:5432'], authFile: 'users.txt', listen: '0.0.0.0:7000' }, dir);
    assert.deepEqual(withReplica.listen, { host: '0.0.0.0', port: 7000 });
    assert.deepEqual(withReplica.listen_ro, { host: '0.0.0.0', port: 7001 });
    const explicit = proxyConfigFromOptions(
      { primary: '10.0.0.1:5432', replica: ['10.0.0.2:5432'], authFile: path.join(dir, 'users.txt'), listenRo: '127.0.0.1:7100', poolMode: 'session', adminUser: ['alice'] },
      '/',
    );
    assert.deepEqual(explicit.listen_ro, { host: '127.0.0.1', port: 7100 });
    assert.equal(explicit.pool_mode, 'session');
    assert.deepEqual(explicit.admin_users, ['alice']);
  });

  it('names the missing or misplaced option', () => {
    assert.throws(() => proxyConfigFromOptions({}, dir), /needs --primary host:port \(and --auth-file FILE\), or --config proxy\.yml/);
    assert.throws(() => proxyConfigFromOptions({ primary: '10.0.0.1:5432' }, dir), /without --config needs --auth-file FILE/);
    assert.throws(() => proxyConfigFromOptions({ primary: '10.0.0.1:5432', authFile: 'missing.txt' }, dir), /auth_file .*missing\.txt could not be read/);
    assert.throws(() => proxyConfigFromOptions({ primary: '10.0.0.1:5432', authFile: 'users.txt', listen: 'nowhere' }, dir), /--listen "nowhere" is invalid: expected host:port/);
    assert.throws(() => proxyConfigFromOptions({ config: 'proxy.yml', listen: '127.0.0.1:1' }, dir), /--listen cannot be combined with --config: set listen in proxy\.yml/);
    assert.throws(() => proxyConfigFromOptions({ config: 'proxy.yml', adminUser: ['alice'] }, dir), /--admin-user cannot be combined with --config: set admin_users/);
  });
});
