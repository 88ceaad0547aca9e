/**
 * auth_hba_file, pure part: pg_hba.conf lines parsed (errors name file:line and the fix), matched first-to-last
 * on connection type, TLS, database, user and address (IPv4, IPv6, IPv4-mapped), the method chosen for a login
 * with PostgreSQL's refusal wording, and the config checks around it (auth_type, auth_file, TLS, unix_socket_*).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseProxyConfig } from '../../src/config/proxy.js';
import { type HbaConnection, authMethodFor, matchHba } from '../../src/proxy/auth/hba.js';
import { HbaParseError, parseHba, parseIp } from '../../src/postgres/hba.js';
import { planReload } from '../../src/proxy/admin/reload.js';
import { PgProtocolError } from '../../src/proxy/protocol/errors.js';

const FILE = '/etc/pgwarden/hba.conf';

function conn(over: Partial<HbaConnection> = {}): HbaConnection {
  return { local: false, ssl: false, address: '127.0.0.1', database: 'app', user: 'alice', ...over };
}

/** The line number of the rule that matches, or null. */
function lineOf(text: string, c: HbaConnection, files: Record<string, string> = {}): number | null {
  const rules = parseHba(text, FILE, { readFile: (p) => files[p] ?? (() => { throw Object.assign(new Error('no'), { code: 'ENOENT' }); })() });
  const rule = matchHba(rules, c);
  return rule === null ? null : Number(rule.where.split(':').pop());
}

function parseError(text: string, files: Record<string, string> = {}): HbaParseError {
  try {
    parseHba(text, FILE, { readFile: (p) => files[p] ?? (() => { throw Object.assign(new Error('no'), { code: 'ENOENT' }); })() });
  } catch (e) {
    assert.ok(e instanceof HbaParseError, String(e));
    return e;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

describe('auth_hba_file: parsing', () => {
  it('reads every line type, method, comment, quoted name, list and continuation', () => {
    const rules = parseHba(
      [
        '# TYPE  DATABASE  USER  ADDRESS  METHOD',
        '',
        'local   all       all            trust   # Unix socket',
        'host    app,"all" alice,bob 10.0.0.0/8 md5',
        'hostssl sameuser  all   ::1/128  cert',
        'hostnossl replication all 192.168.1.0 255.255.255.0 reject',
        'host    "my db"   "Carol" all \\',
        '        scram-sha-256',
      ].join('\n'),
      FILE,
    );
    assert.deepEqual(
      rules.rules.map((r) => [r.where, r.type, r.method]),
      [
        [`${FILE}:3`, 'local', 'trust'],
        [`${FILE}:4`, 'host', 'md5'],
        [`${FILE}:5`, 'hostssl', 'cert'],
        [`${FILE}:6`, 'hostnossl', 'reject'],
        [`${FILE}:7`, 'host', 'scram-sha-256'],
      ],
    );
    assert.deepEqual(rules.rules[1]!.databases, [{ kind: 'name', name: 'app' }, { kind: 'name', name: 'all' }]);
    assert.deepEqual(rules.rules[1]!.users, [{ kind: 'name', name: 'alice' }, { kind: 'name', name: 'bob' }]);
    assert.deepEqual(rules.rules[1]!.address, { kind: 'net', bytes: [10, 0, 0, 0], mask: [255, 0, 0, 0] });
    assert.deepEqual(rules.rules[2]!.databases, [{ kind: 'sameuser' }]);
    assert.deepEqual(rules.rules[3]!.address, { kind: 'net', bytes: [192, 168, 1, 0], mask: [255, 255, 255, 0] });
    assert.deepEqual(rules.rules[4]!.databases, [{ kind: 'name', name: 'my db' }]);
    assert.deepEqual(rules.rules[4]!.users, [{ kind: 'name', name: 'Carol' }]);
    assert.equal(rules.rules[0]!.address, null);
    // The rules are plain data: they survive JSON (planReload) and structured clone (worker threads).
    assert.deepEqual(JSON.parse(JSON.stringify(rules)), rules);
    assert.deepEqual(structuredClone(rules), rules);
  });

  it('bad lines: file:line, what is wrong and the fix', () => {
    const cases: [string, number, RegExp][] = [
      ['host all all 127.0.0.1/32 trust\nhots all all 127.0.0.1/32 trust', 2, /invalid connection type "hots": use local, host, hostssl or hostnossl/],
      ['host all all', 1, /ends before the address/],
      ['local all', 1, /ends after the database/],
      ['local', 1, /ends after the connection type/],
      ['host all all 127.0.0.1/32', 1, /ends before the authentication method/],
      ['host all all 127.0.0.1/33 trust', 1, /invalid CIDR mask in address "127.0.0.1\/33": the prefix length must be 0 to 32/],
      ['host all all ::1/129 trust', 1, /prefix length must be 0 to 128/],
      ['host all all 127.0.0.1 trust', 1, /has no mask: write it in CIDR form \(e\.g\. 127\.0\.0\.1\/32\)/],
      ['host all all 127.0.0.1 ffff:: trust', 1, /not of the same family/],
      ['host all all 300.0.0.1/32 trust', 1, /invalid IP address "300\.0\.0\.1"/],
      ['host all all db.example.com trust', 1, /host names are not supported/],
      ['host all all samehost trust', 1, /address keyword samehost is not supported/],
      ['host all all samenet trust', 1, /address keyword samenet is not supported/],
      ['host all +admins all trust', 1, /group membership \("\+admins"\) is not supported/],
      ['host samerole all all trust', 1, /database keyword samerole is not supported/],
      ['host all all all password', 1, /"password" sends the password in clear text; use scram-sha-256/],
      ['local all all peer', 1, /"peer" is not supported by the proxy/],
      ['host all all all gss', 1, /"gss" is not supported/],
      ['host all all all foo', 1, /invalid authentication method "foo": use trust, reject, md5, scram-sha-256 or cert/],
      ['host all all all cert', 1, /cert authentication is only supported on hostssl lines/],
      ['host all all all md5 clientcert=verify-full', 1, /authentication options are not supported \(got "clientcert=verify-full"\)/],
      ['host a,,b all all md5', 1, /empty name in a comma-separated list/],
      ['host a, all all md5', 1, /^(?!x)/], // "a, all" is the list a,all: valid, checked below
      ['host "a all all md5', 1, /quoted name is not closed/],
      ['host a,b, # c\nlocal all all trust', 1, /ends with a comma/],
      ['hostgssenc all all all md5', 1, /hostgssenc is not supported/],
      ['include other.conf', 1, /include is not supported/],
      ['host all all all,127.0.0.1/32 md5', 1, /address cannot be a comma-separated list/],
      ['# nothing\n\n', 3, /holds no rule, so every client would be refused/],
      ['host @missing all all md5', 1, /database file \/etc\/pgwarden\/missing could not be read \(ENOENT\)/],
    ];
    for (const [text, line, pattern] of cases) {
      if (text === 'host a, all all md5') {
        const rules = parseHba('host a, all all all md5', FILE);
        assert.deepEqual(rules.rules[0]!.databases, [{ kind: 'name', name: 'a' }, { kind: 'all' }]);
        continue;
      }
      const e = parseError(text);
      assert.equal(e.line, line, text);
      assert.equal(e.file, FILE);
      assert.match(e.message, pattern, text);
      assert.ok(e.message.startsWith(`${FILE}:${line}: `), e.message);
    }
  });

  it('a continued line is reported at the line it began on', () => {
    const e = parseError('local all all trust\nhost all all \\\n  127.0.0.1/32 \\\n  bogus');
    assert.equal(e.line, 2);
  });

  it('@file: names from a file next to the rules file; keywords and nesting in it refused', () => {
    const files = { '/etc/pgwarden/admins': '# admins\nalice, bob\n"carol"\n' };
    assert.equal(lineOf('host all @admins all trust\nhost all all all reject', conn({ user: 'bob' }), files), 1);
    assert.equal(lineOf('host all @admins all trust\nhost all all all reject', conn({ user: 'carol' }), files), 1);
    assert.equal(lineOf('host all @admins all trust\nhost all all all reject', conn({ user: 'dave' }), files), 2);
    assert.match(parseError('host all @admins all trust', { '/etc/pgwarden/admins': '@more' }).message, /nested @files are not supported/);
    assert.match(parseError('host all @admins all trust', { '/etc/pgwarden/admins': 'all' }).message, /may hold only names/);
  });

  it('IP addresses: IPv4, IPv6 with ::, embedded IPv4 and zones; garbage refused', () => {
    assert.deepEqual(parseIp('10.1.2.3'), [10, 1, 2, 3]);
    assert.deepEqual(parseIp('::1'), [...new Array(15).fill(0), 1]);
    assert.deepEqual(parseIp('::'), new Array(16).fill(0));
    assert.deepEqual(parseIp('fe80::1%eth0'), [0xfe, 0x80, ...new Array(13).fill(0), 1]);
    assert.deepEqual(parseIp('::ffff:127.0.0.1'), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
    assert.deepEqual(parseIp('2001:db8:0:0:0:0:0:1'), parseIp('2001:db8::1'));
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1::2::3', '1:2:3:4:5:6:7:8:9', 'gggg::1', '', 'localhost', '1:2:3:4:5:6:7:8::']) {
      assert.equal(parseIp(bad), null, bad);
    }
  });
});

describe('auth_hba_file: matching', () => {
  it('the first matching line wins; none matches: null', () => {
    const text = ['host app alice 127.0.0.1/32 trust', 'host all alice 127.0.0.0/8 reject', 'host all all 0.0.0.0/0 md5'].join('\n');
    assert.equal(lineOf(text, conn()), 1);
    assert.equal(lineOf(text, conn({ database: 'other' })), 2);
    assert.equal(lineOf(text, conn({ address: '127.0.0.2' })), 2);
    assert.equal(lineOf(text, conn({ user: 'bob' })), 3);
    assert.equal(lineOf(text, conn({ address: '::1' })), null, 'an IPv4 range never matches an IPv6 client');
    assert.equal(lineOf(text, conn({ local: true, address: undefined })), null, 'host lines never match local');
  });

  it('local lines match only Unix-socket clients, host lines only TCP ones', () => {
    const text = 'local all all trust\nhost all all all md5';
    assert.equal(lineOf(text, conn({ local: true, address: undefined })), 1);
    assert.equal(lineOf(text, conn()), 2);
  });

  it('hostssl matches only TLS clients, hostnossl only plaintext, host both', () => {
    const text = 'hostssl all all all md5\nhostnossl all all all reject';
    assert.equal(lineOf(text, conn({ ssl: true })), 1);
    assert.equal(lineOf(text, conn({ ssl: false })), 2);
    assert.equal(lineOf('host all all all md5', conn({ ssl: true })), 1);
    assert.equal(lineOf('host all all all md5', conn({ ssl: false })), 1);
    assert.equal(lineOf('hostssl all all all md5', conn({ ssl: true, local: true, address: undefined })), null);
  });

  it('IPv4 ranges match IPv4-mapped IPv6 clients; IPv6 ranges IPv6 clients; masks', () => {
    assert.equal(lineOf('host all all 127.0.0.1/32 trust', conn({ address: '::ffff:127.0.0.1' })), 1);
    assert.equal(lineOf('host all all 10.0.0.0/8 trust', conn({ address: '::ffff:10.200.3.4' })), 1);
    assert.equal(lineOf('host all all 10.0.0.0/8 trust', conn({ address: '::ffff:11.0.0.1' })), null);
    assert.equal(lineOf('host all all ::1/128 trust', conn({ address: '::1' })), 1);
    assert.equal(lineOf('host all all ::1/128 trust', conn({ address: '127.0.0.1' })), null);
    assert.equal(lineOf('host all all ::ffff:0:0/96 trust', conn({ address: '::ffff:1.2.3.4' })), 1);
    assert.equal(lineOf('host all all fd00::/8 trust', conn({ address: 'fdab:1::5' })), 1);
    assert.equal(lineOf('host all all fd00::/8 trust', conn({ address: 'fe80::5' })), null);
    assert.equal(lineOf('host all all 192.168.0.0 255.255.0.0 trust', conn({ address: '192.168.77.1' })), 1);
    assert.equal(lineOf('host all all 192.168.0.0 255.255.0.0 trust', conn({ address: '192.169.0.1' })), null);
    // Host bits in the rule are masked off, as with PostgreSQL's ranges.
    assert.equal(lineOf('host all all 10.1.2.3/8 trust', conn({ address: '10.9.9.9' })), 1);
    assert.equal(lineOf('host all all 0.0.0.0/0 trust', conn({ address: '8.8.8.8' })), 1);
    assert.equal(lineOf('host all all all trust', conn({ address: '2001:db8::7' })), 1);
    // An address Node could not tell matches only `all`.
    assert.equal(lineOf('host all all 0.0.0.0/0 trust', conn({ address: undefined })), null);
    assert.equal(lineOf('host all all all trust', conn({ address: undefined })), 1);
  });

  it('databases and users: all, sameuser, replication, quoted keywords as names, exact case', () => {
    assert.equal(lineOf('host sameuser all all trust', conn({ database: 'alice' })), 1);
    assert.equal(lineOf('host sameuser all all trust', conn({ database: 'app' })), null);
    assert.equal(lineOf('host replication all all trust', conn({ database: 'replication' })), null, 'the keyword is for replication connections');
    assert.equal(lineOf('host "replication" all all trust', conn({ database: 'replication' })), 1);
    assert.equal(lineOf('host "all" all all trust', conn({ database: 'app' })), null);
    assert.equal(lineOf('host all "all" all trust', conn({ user: 'all' })), 1);
    assert.equal(lineOf('host all Alice all trust', conn({ user: 'alice' })), null);
    assert.equal(lineOf('host db1,db2,app all all trust', conn()), 1);
    assert.equal(lineOf('host pgbouncer admin all trust', conn({ database: 'pgbouncer', user: 'admin' })), 1);
  });
});

describe('auth_hba_file: the method of a login', () => {
  const rules = parseHba(
    ['local all all trust', 'host all mallory all reject', 'hostssl all all all scram-sha-256', 'host all carol 127.0.0.1/32 md5'].join('\n'),
    FILE,
  );

  it('without rules, auth_type is every client\'s method', () => {
    for (const t of ['scram-sha-256', 'md5', 'trust'] as const) assert.equal(authMethodFor(t, null, conn()), t);
    // A rules file present but auth_type not hba (cannot come from the config) still goes by auth_type.
    assert.equal(authMethodFor('scram-sha-256', rules, conn({ local: true })), 'scram-sha-256');
  });

  it('with rules: the line\'s method; reject and no line refuse with PostgreSQL\'s words and 28000', () => {
    assert.equal(authMethodFor('hba', rules, conn({ local: true, address: undefined })), 'trust');
    assert.equal(authMethodFor('hba', rules, conn({ ssl: true })), 'scram-sha-256');
    assert.equal(authMethodFor('hba', rules, conn({ user: 'carol' })), 'md5');
    const refused = (c: HbaConnection, by = rules): PgProtocolError => {
      try {
        authMethodFor('hba', by, c);
      } catch (e) {
        assert.ok(e instanceof PgProtocolError);
        assert.equal(e.sqlstate, '28000');
        return e;
      }
      assert.fail('not refused');
    };
    assert.equal(refused(conn({ user: 'bob' })).message, 'no pg_hba.conf entry for host "127.0.0.1", user "bob", database "app", no encryption');
    assert.equal(refused(conn({ user: 'mallory', ssl: true })).message, 'pg_hba.conf rejects connection for host "127.0.0.1", user "mallory", database "app", SSL encryption');
    assert.equal(
      refused({ local: true, ssl: false, address: undefined, user: 'x', database: 'y' }, parseHba('host all all all trust', FILE)).message,
      'no pg_hba.conf entry for host "[local]", user "x", database "y", no encryption',
    );
  });
});

describe('auth_hba_file and unix_socket_* in the proxy config', () => {
  const files: Record<string, string> = {
    '/cfg/users.txt': '"alice" "secret"\n',
    '/cfg/hba.conf': 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n',
    '/cfg/trust.conf': 'host all all 127.0.0.1/32 trust\n',
    '/cfg/ssl.conf': 'hostssl all all all scram-sha-256\n',
    '/cfg/cert.conf': 'hostssl all all all cert\n',
    '/cfg/bad.conf': 'host all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 sha256\n',
  };
  const read = (p: string): string => {
    const text = files[p];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return text;
  };
  const parse = (raw: Record<string, unknown>) => parseProxyConfig(raw, { source: 'proxy.yml', baseDir: '/cfg', readFile: read });

  it('auth_hba_file sets auth_type hba and holds the rules; default stays scram-sha-256 without rules', () => {
    const config = parse({ auth_file: 'users.txt', auth_hba_file: 'hba.conf' });
    assert.equal(config.auth_type, 'hba');
    assert.equal(config.hba?.file, '/cfg/hba.conf');
    assert.equal(config.hba?.rules.length, 2);
    const plain = parse({ auth_file: 'users.txt' });
    assert.equal(plain.auth_type, 'scram-sha-256');
    assert.equal(plain.hba, null);
    assert.equal(parse({ auth_file: 'users.txt', auth_type: 'hba', auth_hba_file: 'hba.conf' }).auth_type, 'hba');
  });

  it('refuses: a bad line with file:line, auth_type conflicts, missing files, hostssl without TLS, cert without a CA', () => {
    assert.throws(() => parse({ auth_file: 'users.txt', auth_hba_file: 'bad.conf' }), /proxy\.yml is invalid: auth_hba_file \/cfg\/bad\.conf:2: invalid authentication method "sha256"/);
    assert.throws(() => parse({ auth_file: 'users.txt', auth_type: 'md5', auth_hba_file: 'hba.conf' }), /auth_type md5 and auth_hba_file cannot be combined .*remove auth_type or set it to hba/);
    assert.throws(() => parse({ auth_file: 'users.txt', auth_type: 'hba' }), /auth_type hba needs auth_hba_file/);
    assert.throws(() => parse({ auth_file: 'users.txt', auth_hba_file: 'nope.conf' }), /auth_hba_file \/cfg\/nope\.conf could not be read \(ENOENT\)/);
    assert.throws(() => parse({ auth_hba_file: 'hba.conf' }), /auth_file is required: auth_hba_file \/cfg\/hba\.conf:2 asks for scram-sha-256 passwords/);
    assert.equal(parse({ auth_hba_file: 'trust.conf' }).users.size, 0, 'trust-only rules need no auth_file');
    assert.throws(() => parse({ auth_file: 'users.txt', auth_hba_file: 'ssl.conf' }), /\/cfg\/ssl\.conf:1: a hostssl line can never match because clients get no TLS/);
    assert.throws(
      () => parse({ auth_file: 'users.txt', auth_hba_file: 'cert.conf', client_tls_cert_file: 'c.crt', client_tls_key_file: 'c.key' }),
      /\/cfg\/cert\.conf:1: cert needs client certificates verified by a CA: set client_tls_ca_file/,
    );
    assert.equal(
      parse({ auth_file: 'users.txt', auth_hba_file: 'cert.conf', client_tls_cert_file: 'c.crt', client_tls_key_file: 'c.key', client_tls_ca_file: 'ca.crt' }).hba?.rules[0]?.method,
      'cert',
    );
  });

  it('RELOAD: changed rules are reported applied as auth_hba_file; unix_socket_* need a restart', () => {
    const running = parse({ auth_file: 'users.txt', auth_hba_file: 'hba.conf', unix_socket_dir: '/run/a' });
    files['/cfg/hba2.conf'] = 'host all all 127.0.0.1/32 md5\n';
    const next = parse({ auth_file: 'users.txt', auth_hba_file: 'hba2.conf', unix_socket_dir: '/run/b' });
    const plan = planReload(running, next);
    assert.ok(plan.applied.includes('auth_hba_file'), plan.applied.join());
    assert.deepEqual(plan.config.hba, next.hba);
    assert.deepEqual(plan.needRestart, ['unix_socket_dir']);
    assert.equal(plan.config.unixSocket?.dir, '/run/a');
    // Same file name, other contents: still applied.
    files['/cfg/hba2.conf'] = 'host all all 127.0.0.1/32 trust\n';
    const again = planReload(next, parse({ auth_file: 'users.txt', auth_hba_file: 'hba2.conf', unix_socket_dir: '/run/b' }));
    assert.deepEqual(again.applied, ['auth_hba_file']);
  });

  it('unix_socket_*: directory resolved, mode as a quoted octal string, group needs a directory, path length', () => {
    const config = parse({ auth_file: 'users.txt', unix_socket_dir: 'run', unix_socket_mode: '0770', unix_socket_group: 'postgres' });
    assert.deepEqual(config.unixSocket, { dir: '/cfg/run', mode: 0o770, group: 'postgres' });
    assert.deepEqual(parse({ auth_file: 'users.txt', unix_socket_dir: '/tmp' }).unixSocket, { dir: '/tmp', mode: 0o777, group: null });
    assert.equal(parse({ auth_file: 'users.txt' }).unixSocket, null);
    assert.equal(parse({ auth_file: 'users.txt', unix_socket_dir: '' }).unixSocket, null);
    assert.equal(parse({ auth_file: 'users.txt', unix_socket_dir: '/tmp', unix_socket_mode: '600' }).unixSocket?.mode, 0o600);
    assert.throws(() => parse({ auth_file: 'users.txt', unix_socket_dir: '/tmp', unix_socket_mode: 777 }), /unix_socket_mode.*expected an octal mode in quotes.*YAML reads 0777 as the decimal number 777/);
    assert.throws(() => parse({ auth_file: 'users.txt', unix_socket_dir: '/tmp', unix_socket_mode: '0999' }), /unix_socket_mode.*octal mode of three digits/);
    assert.throws(() => parse({ auth_file: 'users.txt', unix_socket_group: 'postgres' }), /unix_socket_group is set but unix_socket_dir is not/);
    assert.throws(() => parse({ auth_file: 'users.txt', unix_socket_dir: `/${'d'.repeat(100)}` }), /too long for a socket path/);
  });
});
