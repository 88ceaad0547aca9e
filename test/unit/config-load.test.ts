import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { cliClusterFromEnv } from '../../src/config/cli-env.js';
import { applyEnvOverrides, loadAgentConfig, parseAgentConfig } from '../../src/config/load.js';
import { PgwardenError, type ErrorCode } from '../../src/errors.js';
import { DEFAULT_TAGS } from '../../src/cluster/types.js';
import { expectPgwardenError } from '../helpers/errors.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgwarden-config-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let fileCounter = 0;
/** Writes `contents` (YAML text, or an object serialised as YAML) to a new file and returns its path. */
function file(contents: string | object, name?: string): string {
  const path = join(dir, name ?? `agent-${fileCounter++}.yml`);
  writeFileSync(path, typeof contents === 'string' ? contents : YAML.stringify(contents));
  return path;
}

/** The smallest valid file. */
function minimal(): Record<string, any> {
  return {
    cluster: 'main',
    name: 'pg1',
    api: { username: 'admin', password: 'api-secret' },
    postgresql: {
      data_dir: '/var/lib/pgwarden/pg1',
      superuser: { password: 'su-secret' },
      replication: { password: 'repl-secret' },
      rewind: { password: 'rewind-secret' },
    },
  };
}

function fails(code: ErrorCode, fn: () => unknown, ...patterns: RegExp[]): string {
  return expectPgwardenError(code, fn, ...patterns);
}

describe('loadAgentConfig: TLS between members', () => {
  it('takes libpq ssl settings for replication and rewind, with paths from the file\'s directory', () => {
    const raw = minimal();
    raw.postgresql.replication = { password: 'r', sslmode: 'verify-full', sslrootcert: 'tls/ca.crt', sslcert: '/t/pg1.crt', sslkey: '/t/pg1.key' };
    raw.postgresql.rewind = { password: 'w', sslmode: 'require' };
    raw.postgresql.parameters = { ssl: 'on', ssl_cert_file: '/t/pg1.crt', ssl_key_file: '/t/pg1.key', ssl_ca_file: '/t/ca.crt' };
    const config = loadAgentConfig(file(raw), {});
    assert.deepEqual(config.postgresql.replication, {
      username: 'replicator',
      password: 'r',
      sslmode: 'verify-full',
      sslrootcert: join(dir, 'tls/ca.crt'),
      sslcert: '/t/pg1.crt',
      sslkey: '/t/pg1.key',
    });
    assert.equal(config.postgresql.rewind.sslmode, 'require');
    assert.equal(config.postgresql.rewind.sslrootcert, null);
    assert.equal(config.postgresql.parameters.ssl, 'on');
  });

  it('names the key to fix', () => {
    const raw = minimal();
    raw.postgresql.replication = { password: 'r', sslmode: 'verify-full' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.replication\.sslrootcert.*required with sslmode verify-full/);
    raw.postgresql.replication = { password: 'r', sslmode: 'verify_full' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.replication\.sslmode.*verify-full/);
    raw.postgresql.replication = { password: 'r', sslcert: '/t/c.crt' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.replication\.sslkey.*set both/);
    raw.postgresql.replication = { password: 'r' };
    raw.postgresql.parameters = { ssl: true, ssl_cert_file: '/t/pg1.crt' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.parameters\.ssl_key_file.*required when ssl is on/);
    raw.postgresql.parameters = { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: '/t/k' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.parameters\.ssl_cert_file.*absolute path/);
    raw.postgresql.parameters = { ssl: 'off', ssl_cert_file: 'server.crt' };
    loadAgentConfig(file(raw), {});
  });
});

describe('loadAgentConfig: REST API over HTTPS', () => {
  it('serves HTTPS with certfile and keyfile: the advertised URL is https, paths from the file\'s directory', () => {
    const raw = minimal();
    raw.api = { ...raw.api, certfile: 'tls/pg1.crt', keyfile: '/t/pg1.key', cafile: '/t/ca.crt', verify_client: 'required' };
    const config = loadAgentConfig(file(raw), {});
    assert.equal(config.api.connect_url, 'https://127.0.0.1:8008');
    assert.deepEqual(config.api.tls, { certfile: join(dir, 'tls/pg1.crt'), keyfile: '/t/pg1.key', cafile: '/t/ca.crt', verify_client: 'required' });
  });

  it('names the key to fix', () => {
    const raw = minimal();
    raw.api = { ...raw.api, certfile: '/t/pg1.crt' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /api\.keyfile.*set both/);
    raw.api = { ...raw.api, keyfile: '/t/pg1.key', connect_url: 'http://10.0.0.5:8008' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /api\.connect_url.*https:\/\/10\.0\.0\.5:8008/);
    raw.api = { username: 'a', password: 'p', verify_client: 'required', certfile: '/c', keyfile: '/k' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /api\.cafile.*verify_client required/);
  });
});

describe('loadAgentConfig: etcd over TLS', () => {
  it('takes etcd.cacert, cert and key, with paths from the file\'s directory', () => {
    const raw = minimal();
    raw.etcd = { endpoints: ['https://e1:2379'], cacert: 'tls/ca.crt', cert: '/t/c.crt', key: '/t/c.key' };
    const config = loadAgentConfig(file(raw), {});
    assert.deepEqual(config.etcd.tls, { cacert: join(dir, 'tls/ca.crt'), cert: '/t/c.crt', key: '/t/c.key' });
  });

  it('names the key to fix', () => {
    const raw = minimal();
    raw.etcd = { endpoints: ['https://e1:2379'], cert: '/t/c.crt' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /etcd\.key.*set both/);
    raw.etcd = { endpoints: ['http://e1:2379', 'https://e2:2379'], cacert: '/t/ca.crt' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /etcd\.endpoints.*https:\/\/ URLs .*write them as https:\/\/e1:2379/);
  });
});

describe('loadAgentConfig: defaults', () => {
  it('fills every default from a minimal file', () => {
    const config = loadAgentConfig(file(minimal()), {});
    assert.deepEqual(config, {
      cluster: 'main',
      name: 'pg1',
      etcd: {
        endpoints: ['http://127.0.0.1:2379'],
        username: null,
        password: null,
        call_timeout_ms: 1000,
        tls: { cacert: null, cert: null, key: null },
      },
      api: {
        listen: '127.0.0.1:8008',
        connect_url: 'http://127.0.0.1:8008',
        username: 'admin',
        password: 'api-secret',
        tls: { certfile: null, keyfile: null, cafile: null, verify_client: 'none' },
      },
      postgresql: {
        data_dir: '/var/lib/pgwarden/pg1',
        bin_dir: '/usr/lib/postgresql/15/bin',
        listen: '127.0.0.1:5432',
        connect_address: '127.0.0.1:5432',
        run_as: 'postgres',
        log_file: null,
        parameters: {},
        pg_hba_extra: [],
        superuser: { username: 'postgres', password: 'su-secret' },
        replication: { username: 'replicator', password: 'repl-secret', sslmode: null, sslrootcert: null, sslcert: null, sslkey: null },
        rewind: { username: 'rewind_user', password: 'rewind-secret', sslmode: null, sslrootcert: null, sslcert: null, sslkey: null },
      },
      tags: DEFAULT_TAGS,
      bootstrap: { dcs: {} },
      log: { level: 'info' },
    });
  });

  it('derives the advertised addresses from the listen addresses', () => {
    const raw = minimal();
    raw.api.listen = '10.1.2.3:9008';
    raw.postgresql.listen = '10.1.2.3:6432';
    const config = loadAgentConfig(file(raw), {});
    assert.equal(config.api.connect_url, 'http://10.1.2.3:9008');
    assert.equal(config.postgresql.connect_address, '10.1.2.3:6432');
  });

  it('keeps explicit values', () => {
    const raw = minimal();
    raw.etcd = { endpoints: ['https://e1:2379', 'e2:2379'], call_timeout_ms: 2500 };
    raw.tags = { nofailover: true, failover_priority: 0 };
    raw.postgresql.parameters = { max_connections: 300, work_mem: '8MB', fsync: true };
    raw.postgresql.pg_hba_extra = ['host all all 10.0.0.0/8 scram-sha-256'];
    raw.bootstrap = { dcs: { ttl: 10, synchronous_mode: true } };
    raw.log = { level: 'debug' };
    const config = loadAgentConfig(file(raw), {});
    assert.deepEqual(config.etcd.endpoints, ['https://e1:2379', 'http://e2:2379']);
    assert.equal(config.etcd.call_timeout_ms, 2500);
    assert.deepEqual(config.tags, { nofailover: true, noloadbalance: false, nosync: false, failover_priority: 0 });
    assert.deepEqual(config.postgresql.parameters, { max_connections: 300, work_mem: '8MB', fsync: true });
    assert.deepEqual(config.postgresql.pg_hba_extra, ['host all all 10.0.0.0/8 scram-sha-256']);
    assert.deepEqual(config.bootstrap.dcs, { ttl: 10, synchronous_mode: true });
    assert.equal(config.log.level, 'debug');
  });

  it('takes relative paths from the file\'s directory', () => {
    const raw = minimal();
    raw.postgresql.data_dir = 'data/pg1';
    raw.postgresql.log_file = 'logs/pg.log';
    const config = loadAgentConfig(file(raw), {});
    assert.equal(config.postgresql.data_dir, join(dir, 'data/pg1'));
    assert.equal(config.postgresql.log_file, join(dir, 'logs/pg.log'));
  });
});

describe('loadAgentConfig: environment overrides', () => {
  it('named variables override the file', () => {
    const config = loadAgentConfig(file(minimal()), {
      PGWARDEN_CLUSTER: 'other',
      PGWARDEN_NAME: 'pg9',
      PGWARDEN_ETCD: 'http://e1:2379, http://e2:2379,,',
      PGWARDEN_API_LISTEN: '127.0.0.1:9999',
      PGWARDEN_PG_DATA_DIR: '/data/pg9',
      PGWARDEN_PG_LISTEN: '127.0.0.1:6543',
      PGWARDEN_LOG_LEVEL: 'warn',
      UNRELATED: 'x',
    });
    assert.equal(config.cluster, 'other');
    assert.equal(config.name, 'pg9');
    assert.deepEqual(config.etcd.endpoints, ['http://e1:2379', 'http://e2:2379']);
    assert.equal(config.api.listen, '127.0.0.1:9999');
    assert.equal(config.api.connect_url, 'http://127.0.0.1:9999');
    assert.equal(config.postgresql.data_dir, '/data/pg9');
    assert.equal(config.postgresql.listen, '127.0.0.1:6543');
    assert.equal(config.log.level, 'warn');
  });

  it('PGWARDEN__section__key reaches any setting, typed as YAML', () => {
    const config = loadAgentConfig(file(minimal()), {
      PGWARDEN__etcd__call_timeout_ms: '2000',
      PGWARDEN__TAGS__NOFAILOVER: 'true',
      PGWARDEN__postgresql__parameters__work_mem: '64MB',
      PGWARDEN__postgresql__parameters__max_connections: '250',
      PGWARDEN__postgresql__superuser__password: '"0123"',
      PGWARDEN__bootstrap__dcs__ttl: '9',
      PGWARDEN__postgresql__pg_hba_extra: '["host all all 0.0.0.0/0 scram-sha-256"]',
    });
    assert.equal(config.etcd.call_timeout_ms, 2000);
    assert.equal(config.tags.nofailover, true);
    assert.equal(config.postgresql.parameters.work_mem, '64MB');
    assert.equal(config.postgresql.parameters.max_connections, 250);
    assert.equal(config.postgresql.superuser.password, '0123');
    assert.deepEqual(config.bootstrap.dcs, { ttl: 9 });
    assert.deepEqual(config.postgresql.pg_hba_extra, ['host all all 0.0.0.0/0 scram-sha-256']);
  });

  it('a named variable wins over the generic form for the same field', () => {
    const config = loadAgentConfig(file(minimal()), { PGWARDEN__name: 'generic', PGWARDEN_NAME: 'named' });
    assert.equal(config.name, 'named');
  });

  it('can supply what the file leaves out', () => {
    const raw = minimal();
    delete raw.cluster;
    delete raw.postgresql.data_dir;
    const config = loadAgentConfig(file(raw), { PGWARDEN_CLUSTER: 'envcluster', PGWARDEN_PG_DATA_DIR: '/d' });
    assert.equal(config.cluster, 'envcluster');
    assert.equal(config.postgresql.data_dir, '/d');
  });

  it('a bad value from the environment names the variable', () => {
    fails('CONFIG_INVALID', () => loadAgentConfig(file(minimal()), { PGWARDEN_PG_LISTEN: '5432' }),
      /postgresql\.listen: expected "host:port".*like 127\.0\.0\.1:5432; got "5432" \(value from environment variable PGWARDEN_PG_LISTEN\)/);
    fails('CONFIG_INVALID', () => loadAgentConfig(file(minimal()), { PGWARDEN_ETCD: 'http://ok:2379,ftp://bad:1' }),
      /etcd\.endpoints\[1\]: expected a URL.*environment variable PGWARDEN_ETCD/);
    fails('CONFIG_INVALID', () => loadAgentConfig(file(minimal()), { PGWARDEN__etcd__call_timeout_ms: 'soon' }),
      /etcd\.call_timeout_ms: expected a number of milliseconds like 1000, got "soon" \(value from environment variable PGWARDEN__etcd__call_timeout_ms\)/);
    fails('CONFIG_INVALID', () => loadAgentConfig(file(minimal()), { PGWARDEN__api____listen: 'x' }), /empty level/);
    fails('CONFIG_INVALID', () => loadAgentConfig(file(minimal()), { PGWARDEN__log__level: '[unclosed' }), /not a valid YAML value: quote it/);
  });

  it('applyEnvOverrides leaves its input alone', () => {
    const raw = { cluster: 'a', api: { listen: 'x' } };
    const { config, origins } = applyEnvOverrides(raw, { PGWARDEN_CLUSTER: 'b', PGWARDEN__api__listen: 'y' });
    assert.deepEqual(raw, { cluster: 'a', api: { listen: 'x' } });
    assert.deepEqual(config, { cluster: 'b', api: { listen: 'y' } });
    assert.equal(origins.get('cluster'), 'environment variable PGWARDEN_CLUSTER');
    assert.equal(origins.get('api.listen'), 'environment variable PGWARDEN__api__listen');
  });
});

describe('loadAgentConfig: errors name the file, the field and the fix', () => {
  const load = (raw: unknown) => () => loadAgentConfig(file(raw as object), {});

  it('a missing file is CONFIG_NOT_FOUND', () => {
    fails('CONFIG_NOT_FOUND', () => loadAgentConfig(join(dir, 'nope.yml'), {}), /nope\.yml does not exist/, /--config/);
  });

  it('a directory is unreadable', () => {
    fails('CONFIG_INVALID', () => loadAgentConfig(dir, {}), /could not be read \(EISDIR\)/);
  });

  it('YAML syntax errors give the line', () => {
    const path = file('cluster: main\nname: pg1\npostgresql:\n  data_dir: /x\n   bad: indent\n');
    fails('CONFIG_INVALID', () => loadAgentConfig(path, {}), new RegExp(`config file ${path} is not valid YAML at line \\d+`));
  });

  it('duplicate keys are refused', () => {
    fails('CONFIG_INVALID', () => loadAgentConfig(file('cluster: a\ncluster: b\n'), {}), /not valid YAML/);
  });

  it('the top level must be a mapping', () => {
    fails('CONFIG_INVALID', () => loadAgentConfig(file('- a\n- b\n'), {}), /expected a YAML mapping.*got a list/);
  });

  it('an empty file lists the required fields', () => {
    const path = file('');
    fails('CONFIG_INVALID', () => loadAgentConfig(path, {}), new RegExp(`config file ${path} is invalid \\(3 problems\\)`),
      /cluster: is required: set it to a cluster name like "main"/, /name: is required/, /postgresql: is required: set it to a mapping with at least \{data_dir/);
  });

  it('a number where "host:port" belongs', () => {
    const raw = minimal();
    raw.postgresql.listen = 5432;
    fails('CONFIG_INVALID', load(raw), /postgresql\.listen: expected "host:port" like 127\.0\.0\.1:5432, got 5432/);
  });

  it('a port out of range', () => {
    const raw = minimal();
    raw.api.listen = '127.0.0.1:70000';
    fails('CONFIG_INVALID', load(raw), /api\.listen: expected "host:port" with a port from 1 to 65535/);
  });

  it('unknown keys suggest the closest (or Patroni\'s equivalent)', () => {
    const raw = minimal();
    raw.postgresql.port = 5432;
    raw.postgresql.data_dri = '/x';
    raw.scope = 'main';
    raw.tgas = {};
    raw.etcd = { endpoint: ['http://e:2379'] };
    const message = fails('CONFIG_INVALID', load(raw),
      /postgresql\.port: unknown key; did you mean "listen"\?/,
      /postgresql\.data_dri: unknown key; did you mean "data_dir"\?/,
      /scope: unknown key; did you mean "cluster"\?/,
      /tgas: unknown key; did you mean "tags"\?/,
      /etcd\.endpoint: unknown key; did you mean "endpoints"\?/);
    assert.match(message, /5 problems/);
  });

  it('names that would break etcd keys', () => {
    const raw = minimal();
    raw.cluster = 'My Cluster';
    raw.name = 'pg/1';
    fails('CONFIG_INVALID', load(raw), /cluster: expected lower-case letters, digits, "-" and "_" only.*got "My Cluster"/, /name: expected lower-case letters.*got "pg\/1"/);
  });

  it('wrong types in nested sections', () => {
    const raw = minimal();
    raw.tags = { nofailover: 'yes', failover_priority: -1 };
    raw.log = { level: 'verbose' };
    raw.etcd = { endpoints: [] };
    raw.postgresql.pg_hba_extra = 'host all all all trust';
    fails('CONFIG_INVALID', load(raw),
      /tags\.nofailover: expected true or false, got "yes"/,
      /tags\.failover_priority: must be 0 \(never promote\) or more/,
      /log\.level: expected one of debug, info, warn, error; got "verbose"/,
      /etcd\.endpoints: must list at least one etcd URL/,
      /postgresql\.pg_hba_extra: expected a list of networks in CIDR form/);
  });

  it('bootstrap.dcs is validated field by field and across fields', () => {
    const raw = minimal();
    raw.bootstrap = { dcs: { ttl: 3, loop_wiat: 1, synchronous_node_count: 0 } };
    fails('CONFIG_INVALID', load(raw),
      /bootstrap\.dcs\.loop_wiat: unknown key; did you mean "loop_wait"\?/,
      /bootstrap\.dcs\.synchronous_node_count: must be at least 1/);
    raw.bootstrap = { dcs: { ttl: 3 } };
    fails('CONFIG_INVALID', load(raw), /bootstrap\.dcs\.ttl: must be at least loop_wait \+ 2 \* retry_timeout = 1 \+ 2 \* 2 = 5 seconds \(got 3\)/);
    raw.bootstrap = { dcs: { ttl: 3, retry_timeout: 1 } };
    assert.doesNotThrow(load(raw));
  });

  it('parameters pgwarden manages are refused in the file too', () => {
    const raw = minimal();
    raw.postgresql.parameters = { port: 5433 };
    fails('CONFIG_INVALID', load(raw), /postgresql\.parameters\.port: is managed by pgwarden.*postgresql\.listen/);
  });

  it('binding every interface needs an advertised address', () => {
    const raw = minimal();
    raw.api.listen = '0.0.0.0:8008';
    raw.postgresql.listen = '0.0.0.0:5432';
    fails('CONFIG_INVALID', load(raw),
      /api\.connect_url: is required when api\.listen binds every interface.*like http:\/\/10\.0\.0\.5:8008/,
      /postgresql\.connect_address: is required when postgresql\.listen binds every interface/);
    raw.api.connect_url = 'http://10.0.0.5:8008';
    raw.postgresql.connect_address = '10.0.0.5:5432';
    const config = loadAgentConfig(file(raw), {});
    assert.equal(config.api.connect_url, 'http://10.0.0.5:8008');
    assert.equal(config.postgresql.connect_address, '10.0.0.5:5432');
  });

  it('a bad connect_url', () => {
    const raw = minimal();
    raw.api.connect_url = 'ftp://x';
    fails('CONFIG_INVALID', load(raw), /api\.connect_url: expected an http\(s\) URL/);
  });
});

describe('loadAgentConfig: secrets', () => {
  it('reads *_file secrets, trimmed, relative to the file', () => {
    writeFileSync(join(dir, 'su.pass'), '  from-file-su \n');
    writeFileSync(join(dir, 'api.pass'), 'from-file-api\n');
    writeFileSync(join(dir, 'etcd.pass'), 'from-file-etcd\n');
    const raw = minimal();
    raw.postgresql.superuser = { username: 'admin', password_file: 'su.pass' };
    raw.api = { username: 'ops', password_file: join(dir, 'api.pass') };
    raw.etcd = { username: 'root', password_file: './etcd.pass' };
    const config = loadAgentConfig(file(raw), {});
    assert.deepEqual(config.postgresql.superuser, { username: 'admin', password: 'from-file-su' });
    assert.deepEqual([config.api.username, config.api.password], ['ops', 'from-file-api']);
    assert.deepEqual([config.etcd.username, config.etcd.password], ['root', 'from-file-etcd']);
  });

  it('a missing password says how to give one', () => {
    for (const role of ['superuser', 'replication', 'rewind'] as const) {
      const raw = minimal();
      delete raw.postgresql[role].password;
      fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}),
        new RegExp(`postgresql\\.${role}\\.password is required: set postgresql\\.${role}\\.password, or postgresql\\.${role}\\.password_file`));
    }
    const raw = minimal();
    delete raw.api.password;
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /api\.password is required/);
  });

  it('the API needs a user name (its mutations are authenticated)', () => {
    const raw = minimal();
    delete raw.api.username;
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /api\.username is required.*HTTP Basic authentication/);
  });

  it('a password file that does not exist or is empty', () => {
    const raw = minimal();
    raw.postgresql.replication = { password_file: 'missing.pass' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.replication\.password_file .*missing\.pass could not be read \(ENOENT\)/);
    writeFileSync(join(dir, 'empty.pass'), ' \n');
    raw.postgresql.replication = { password_file: 'empty.pass' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /empty\.pass is empty: write the password into it/);
  });

  it('password and password_file together are ambiguous', () => {
    const raw = minimal();
    raw.postgresql.rewind = { password: 'a', password_file: 'b' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /postgresql\.rewind\.password and postgresql\.rewind\.password_file are both set: keep only one/);
  });

  it('etcd credentials come in pairs; none at all is fine', () => {
    const raw = minimal();
    raw.etcd = { username: 'root' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /etcd\.password is required/);
    raw.etcd = { password: 'x' };
    fails('CONFIG_INVALID', () => loadAgentConfig(file(raw), {}), /etcd\.password is set but etcd\.username is not/);
  });

  it('parseAgentConfig can read secrets through an injected reader', () => {
    const raw = minimal();
    raw.postgresql.superuser = { password_file: '/secrets/su' };
    const config = parseAgentConfig(raw, { source: 'test', baseDir: '/', readFile: (p) => `secret-of:${p}\n` });
    assert.equal(config.postgresql.superuser.password, 'secret-of:/secrets/su');
  });
});

describe('cliClusterFromEnv', () => {
  it('null when neither variable is set', () => {
    assert.equal(cliClusterFromEnv({}), null);
    assert.equal(cliClusterFromEnv({ PGWARDEN_CLUSTER: '', PGWARDEN_ETCD: ' ' }), null);
  });

  it('reads both, splitting and normalising endpoints', () => {
    assert.deepEqual(cliClusterFromEnv({ PGWARDEN_CLUSTER: 'main', PGWARDEN_ETCD: 'http://a:2379, b:2379' }), {
      cluster: 'main',
      etcd: ['http://a:2379', 'http://b:2379'],
    });
  });

  it('defaults etcd to the local one', () => {
    assert.deepEqual(cliClusterFromEnv({ PGWARDEN_CLUSTER: 'main' }), { cluster: 'main', etcd: ['http://127.0.0.1:2379'] });
  });

  it('refuses etcd without a cluster, and bad values, naming the variable', () => {
    fails('CLUSTER_NOT_FOUND', () => cliClusterFromEnv({ PGWARDEN_ETCD: 'http://a:2379' }), /PGWARDEN_CLUSTER is not/);
    fails('CONFIG_INVALID', () => cliClusterFromEnv({ PGWARDEN_CLUSTER: 'Main Cluster' }), /cluster: expected lower-case.*PGWARDEN_CLUSTER/);
    fails('CONFIG_INVALID', () => cliClusterFromEnv({ PGWARDEN_CLUSTER: 'main', PGWARDEN_ETCD: 'http://a' }), /etcd\[0\]: expected a URL with a port.*PGWARDEN_ETCD/);
  });
});
