import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PgwardenError } from '../../src/errors.js';
import {
  type PostgresqlConfSettings,
  quoteConfValue,
  quoteConninfoValue,
  renderConninfo,
  renderPgHba,
  renderPgpass,
  renderPostgresqlConf,
  renderPrimaryConninfo,
  renderSynchronousStandbyNames,
  slotNameFor,
} from '../../src/postgres/conf.js';

/** name -> raw value text of each `name = value` line (last wins, as in PostgreSQL). */
function settingsOf(conf: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of conf.split('\n')) {
    const m = /^([a-z_.]+) = (.*)$/.exec(line);
    if (m) settings.set(m[1], m[2]);
  }
  return settings;
}

const BASE: PostgresqlConfSettings = {
  memberName: 'node-1',
  listenAddresses: '0.0.0.0',
  port: 5433,
  socketDir: '/var/lib/pgwarden/data.run',
  primary: null,
  synchronousStandbyNames: '',
  parameters: {},
};

describe('quoteConfValue', () => {
  it('renders booleans as on/off, numbers bare, strings quoted', () => {
    assert.equal(quoteConfValue(true), 'on');
    assert.equal(quoteConfValue(false), 'off');
    assert.equal(quoteConfValue(100), '100');
    assert.equal(quoteConfValue(0.5), '0.5');
    assert.equal(quoteConfValue('128MB'), "'128MB'");
    assert.equal(quoteConfValue(''), "''");
  });

  it("escapes quotes as '' and backslashes as \\\\", () => {
    assert.equal(quoteConfValue("it's"), "'it''s'");
    assert.equal(quoteConfValue('C:\\dir'), "'C:\\\\dir'");
  });

  it('refuses values postgresql.conf cannot hold', () => {
    assert.throws(() => quoteConfValue('a\nb'), PgwardenError);
    assert.throws(() => quoteConfValue(Number.POSITIVE_INFINITY), PgwardenError);
  });
});

describe('conninfo', () => {
  it('quotes only values that need it', () => {
    assert.equal(quoteConninfoValue('127.0.0.1'), '127.0.0.1');
    assert.equal(quoteConninfoValue(5432), '5432');
    assert.equal(quoteConninfoValue('a b'), "'a b'");
    assert.equal(quoteConninfoValue("o'k\\"), "'o\\'k\\\\'");
    assert.equal(quoteConninfoValue(''), "''");
    assert.equal(renderConninfo({ host: 'h', port: 1, user: 'u v' }), "host=h port=1 user='u v'");
  });

  it('primary_conninfo names this member as application_name and carries no password', () => {
    const conninfo = renderPrimaryConninfo({
      host: '10.0.0.2',
      port: 5432,
      user: 'replicator',
      passfile: '/run/x/replication.pgpass',
      applicationName: 'node 1',
    });
    assert.match(conninfo, /^host=10\.0\.0\.2 port=5432 user=replicator passfile=\/run\/x\/replication\.pgpass application_name='node 1' /);
    assert.doesNotMatch(conninfo, /password=/);
  });

  it('carries the TLS settings towards the primary', () => {
    const conninfo = renderPrimaryConninfo({
      host: 'localhost',
      port: 5432,
      user: 'replicator',
      passfile: '/p',
      applicationName: 'pg2',
      ssl: { sslmode: 'verify-full', sslrootcert: '/etc/pgwarden/ca dir/ca.crt', sslcert: null },
    });
    assert.match(conninfo, / sslmode=verify-full sslrootcert='\/etc\/pgwarden\/ca dir\/ca\.crt'$/);
    assert.doesNotMatch(renderPrimaryConninfo({ host: 'h', port: 1, user: 'u', passfile: '/p', applicationName: 'a' }), /ssl/);
  });
});

describe('slotNameFor', () => {
  it('lowercases and replaces characters PostgreSQL refuses in slot names', () => {
    assert.equal(slotNameFor('Node-1.eu'), 'node_1_eu');
    assert.equal(slotNameFor('pg_0'), 'pg_0');
    assert.equal(slotNameFor('x'.repeat(80)).length, 63);
    assert.throws(() => slotNameFor(''), PgwardenError);
  });
});

describe('renderSynchronousStandbyNames', () => {
  it('lists every named standby as required', () => {
    assert.equal(renderSynchronousStandbyNames([]), '');
    assert.equal(renderSynchronousStandbyNames(['*']), '*');
    assert.equal(renderSynchronousStandbyNames(['a']), 'FIRST 1 ("a")');
    assert.equal(renderSynchronousStandbyNames(['a', 'b-2']), 'FIRST 2 ("a","b-2")');
    assert.equal(renderSynchronousStandbyNames(['we"ird']), 'FIRST 1 ("we""ird")');
  });
});

describe('renderPgpass', () => {
  it('escapes : and \\ and uses * for unspecified fields', () => {
    assert.equal(renderPgpass([{ user: 'rep', password: 'a:b\\c' }]), '*:*:*:rep:a\\:b\\\\c\n');
    assert.equal(renderPgpass([{ host: 'h', port: 5, database: 'db', user: 'u', password: 'p' }]), 'h:5:db:u:p\n');
  });
});

describe('renderPostgresqlConf', () => {
  it('writes the HA settings a primary needs and no upstream', () => {
    const s = settingsOf(renderPostgresqlConf(BASE));
    assert.equal(s.get('listen_addresses'), "'0.0.0.0'");
    assert.equal(s.get('port'), '5433');
    assert.equal(s.get('unix_socket_directories'), "'/var/lib/pgwarden/data.run'");
    assert.equal(s.get('wal_level'), "'replica'");
    assert.equal(s.get('hot_standby'), 'on');
    assert.equal(s.get('wal_log_hints'), 'on');
    assert.equal(s.get('hot_standby_feedback'), 'on');
    assert.equal(s.get('wal_keep_size'), "'128MB'");
    assert.equal(s.get('wal_receiver_status_interval'), "'1s'");
    assert.equal(s.get('wal_retrieve_retry_interval'), "'1s'");
    assert.equal(s.get('recovery_target_timeline'), "'latest'");
    assert.equal(s.get('password_encryption'), "'scram-sha-256'");
    assert.equal(s.get('primary_conninfo'), "''");
    assert.equal(s.get('primary_slot_name'), "''");
    assert.equal(s.get('synchronous_standby_names'), "''");
    assert.equal(s.get('cluster_name'), "'node-1'");
    assert.ok(Number(s.get('max_wal_senders')) > 0);
    assert.ok(Number(s.get('max_replication_slots')) > 0);
  });

  it('writes primary_conninfo and the slot when following', () => {
    const conf = renderPostgresqlConf({
      ...BASE,
      primary: { conninfo: "host=10.0.0.2 port=5432 application_name='node 1'", slotName: 'node_1' },
      synchronousStandbyNames: 'FIRST 1 ("b")',
    });
    const s = settingsOf(conf);
    assert.equal(s.get('primary_conninfo'), "'host=10.0.0.2 port=5432 application_name=''node 1'''");
    assert.equal(s.get('primary_slot_name'), "'node_1'");
    assert.equal(s.get('synchronous_standby_names'), `'FIRST 1 ("b")'`);
  });

  it('applies user parameters over the defaults but never over what pgwarden manages', () => {
    const conf = renderPostgresqlConf({
      ...BASE,
      parameters: { max_wal_senders: 20, shared_buffers: '1GB', Port: 1, primary_conninfo: 'host=evil', log_line_prefix: "%m '%a' " },
    });
    const s = settingsOf(conf);
    assert.equal(s.get('max_wal_senders'), '20');
    assert.equal(s.get('shared_buffers'), "'1GB'");
    assert.equal(s.get('log_line_prefix'), "'%m ''%a'' '");
    assert.equal(s.get('port'), '5433');
    assert.equal(s.get('primary_conninfo'), "''");
    assert.match(conf, /# ignored user parameter primary_conninfo/);
    assert.match(conf, /# ignored user parameter port/);
    assert.equal(conf.match(/^max_wal_senders = /gm)?.length, 1, 'each parameter appears once');
  });

  it('refuses parameter names that could inject lines', () => {
    assert.throws(() => renderPostgresqlConf({ ...BASE, parameters: { 'a = 1\nfsync': 'off' } }), PgwardenError);
  });
});

describe('renderPgHba', () => {
  const rows = (hba: string) =>
    hba
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
      .map((l) => l.split(/\s+/));

  it('uses scram-sha-256 on every line and never trust', () => {
    const hba = renderPgHba({ replicationUser: 'replicator', extraCidrs: [] });
    assert.doesNotMatch(hba, /trust|md5|password\b|peer|ident/);
    for (const r of rows(hba)) assert.equal(r.at(-1), 'scram-sha-256');
  });

  it('allows local and loopback for all, replication only for the replication user, plus extra networks', () => {
    const r = rows(renderPgHba({ replicationUser: 'replicator', extraCidrs: ['10.0.0.0/8', 'fd00::/8'] }));
    const has = (...cols: string[]) => r.some((row) => cols.every((c, i) => row[i] === c));
    assert.ok(has('local', 'all', 'all', 'scram-sha-256'));
    assert.ok(has('host', 'all', 'all', '127.0.0.1/32'));
    assert.ok(has('host', 'all', 'all', '::1/128'));
    assert.ok(has('host', 'all', 'all', '10.0.0.0/8'));
    assert.ok(has('host', 'all', 'all', 'fd00::/8'));
    assert.ok(has('local', 'replication', 'replicator', 'scram-sha-256'));
    assert.ok(has('host', 'replication', 'replicator', '127.0.0.1/32'));
    assert.ok(has('host', 'replication', 'replicator', '10.0.0.0/8'));
    assert.ok(has('host', 'replication', 'replicator', 'fd00::/8'));
    assert.equal(r.filter((row) => row[1] === 'replication' && row[2] !== 'replicator').length, 0);
  });

  it('quotes unusual user names and refuses a network that is not CIDR', () => {
    assert.match(renderPgHba({ replicationUser: 'Repl User', extraCidrs: [] }), /replication\s+"Repl User"/);
    assert.throws(() => renderPgHba({ replicationUser: 'r', extraCidrs: ['0.0.0.0/0 trust\nhost all all'] }), PgwardenError);
    assert.throws(() => renderPgHba({ replicationUser: 'r', extraCidrs: ['example.com'] }), PgwardenError);
  });
});
