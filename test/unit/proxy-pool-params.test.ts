/** Pure pieces of the pooler: startup settings → SQL, the userlist format, the proxy config's defaults and errors. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availableParallelism } from 'node:os';
import { AUTO_WORKERS_MAX, parseProxyConfig, parseUserlist } from '../../src/config/proxy.js';
import { PgwardenError } from '../../src/errors.js';
import { applySettingsSql, clientSettings, settingsFromOptions, settingsKey, splitOptions } from '../../src/proxy/pool/session-params.js';

describe('session settings from startup parameters', () => {
  it('splits options like the backend and reads -c and --name=value', () => {
    assert.deepEqual(splitOptions('-c a=b\\ c  --x-y=1'), ['-c', 'a=b c', '--x-y=1']);
    assert.deepEqual([...settingsFromOptions('-c statement_timeout=5s -csearch_path=s1 --my.guc=v')], [
      ['statement_timeout', '5s'],
      ['search_path', 's1'],
      ['my.guc', 'v'],
    ]);
    assert.throws(() => settingsFromOptions('-d 5'), /unsupported option "-d"/);
    assert.throws(() => settingsFromOptions('-c novalue'), /expected name=value/);
  });

  it('keeps settings only, sorted, so that equal sets have equal keys', () => {
    const a = clientSettings(new Map([['user', 'u'], ['database', 'd'], ['application_name', 'app'], ['options', '-c x.y=1']]));
    const b = clientSettings(new Map([['options', '-c x.y=1'], ['application_name', 'app'], ['user', 'other']]));
    assert.deepEqual([...a.keys()], ['application_name', 'x.y']);
    assert.equal(settingsKey(a), settingsKey(b));
    assert.notEqual(settingsKey(a), settingsKey(new Map()));
  });

  it('builds one query that resets and applies, quoting values', () => {
    assert.equal(applySettingsSql(new Map()), 'RESET ALL');
    assert.equal(
      applySettingsSql(new Map([['application_name', "it's"], ['x.y', '1']])),
      "RESET ALL; SELECT pg_catalog.set_config('application_name', 'it''s', false), pg_catalog.set_config('x.y', '1', false)",
    );
  });
});

describe('proxy config', () => {
  const read = (text: string) => () => text;

  it('reads PgBouncer userlists with escaped quotes and comments', () => {
    const users = parseUserlist('; comment\n"alice" "pa""ss"\n"bob" "SCRAM-SHA-256$4096:abc"\n\n', 'test');
    assert.equal(users.get('alice'), 'pa"ss');
    assert.equal(users.get('bob'), 'SCRAM-SHA-256$4096:abc');
    assert.throws(() => parseUserlist('"alice" "unclosed\n', 'userlist'), /userlist line 1 is invalid/);
  });

  it('applies PgBouncer defaults', () => {
    const config = parseProxyConfig({ auth_file: 'u.txt' }, { source: 'test', baseDir: '/etc/x', readFile: read('"a" "b"') });
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 6432 });
    assert.equal(config.pool_mode, 'transaction');
    assert.equal(config.default_pool_size, 20);
    assert.equal(config.max_client_conn, 1000);
    assert.equal(config.query_wait_timeout, 120);
    assert.equal(config.client_login_timeout, 60);
    assert.equal(config.auth_type, 'scram-sha-256');
    assert.equal(config.max_message_length, 0x3fffffff);
    assert.equal(config.authFilePath, '/etc/x/u.txt');
    assert.equal(config.users.get('a'), 'b');
  });

  it('names the field in errors and requires auth_file unless trust', () => {
    const bad = (raw: unknown) => () => parseProxyConfig(raw, { source: 'proxy.yml', baseDir: '/', readFile: read('') });
    assert.throws(bad({ auth_file: 'u', pool_mode: 'statement' }), (e: unknown) => e instanceof PgwardenError && e.code === 'CONFIG_INVALID' && /pool_mode/.test(e.message));
    assert.throws(bad({ auth_file: 'u', listen: 'nohost' }), /listen/);
    assert.throws(bad({}), /auth_file is required/);
    assert.throws(bad({ auth_file: 'u', client_login_timeout: -1 }), (e: unknown) => e instanceof PgwardenError && e.code === 'CONFIG_INVALID' && /client_login_timeout/.test(e.message));
    assert.throws(bad({ auth_file: 'u', client_login_timeout: '60s' }), /client_login_timeout[^\n]*number of seconds/);
    assert.equal(parseProxyConfig({ auth_type: 'trust', client_login_timeout: 0 }, { source: 't', baseDir: '/' }).client_login_timeout, 0);
    assert.equal(parseProxyConfig({ auth_type: 'trust' }, { source: 't', baseDir: '/' }).users.size, 0);
  });

  it('takes workers from 1 to 64 or "auto" (the default) and names what more than one cannot be combined with yet', () => {
    const parse = (raw: Record<string, unknown>) => parseProxyConfig({ auth_type: 'trust', ...raw }, { source: 'proxy.yml', baseDir: '/' });
    assert.equal(parse({}).workers, 'auto');
    assert.equal(parse({}).workerThreads, Math.min(AUTO_WORKERS_MAX, availableParallelism()), 'auto: one per CPU');
    assert.equal(parse({ native_io: false }).workerThreads, 1, 'auto: one where more cannot be used');
    assert.equal(parse({ max_db_connections: 5 }).workerThreads, Math.min(AUTO_WORKERS_MAX, availableParallelism()), 'max_db_connections is counted across workers');
    assert.equal(parse({ workers: 4 }).workerThreads, 4);
    assert.throws(() => parse({ workers: 'many' }), /workers[^\n]*"auto"/);
    assert.throws(() => parse({ workers: 0 }), /workers/);
    assert.throws(() => parse({ workers: 65 }), /workers/);
    assert.throws(() => parse({ workers: 1.5 }), /workers/);
    const refused = (raw: Record<string, unknown>, named: RegExp) =>
      assert.throws(() => parse({ workers: 2, ...raw }), (e: unknown) => e instanceof PgwardenError && /workers: 2 cannot be combined with/.test(e.message) && named.test(e.message) && /set workers: 1/.test(e.message));
    refused({ native_io: false }, /native_io/);
    // With one worker, all of them are fine; max_db_connections and metrics_listen are fine with any number.
    assert.equal(parse({ workers: 1, native_io: false, max_db_connections: 5 }).workers, 1);
    assert.equal(parse({ workers: 2, databases: { app: { max_db_connections: 5 } } }).workerThreads, 2);
    assert.equal(parse({ workers: 2, metrics_listen: '127.0.0.1:0', etcd: { endpoints: ['http://127.0.0.1:2379'], cluster: 'c' } }).workers, 2);
  });
});
