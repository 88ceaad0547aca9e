/** pgbackrest.conf as rendered from the typed settings: every option in its section, secrets only as values. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMPRESS_TYPES, renderPgBackRestConf, type BackupRepositorySettings } from '../../src/backup/pgbackrest-conf.js';
import { isPgwardenError } from '../../src/errors.js';

const posix: BackupRepositorySettings = {
  stanza: 'main',
  repository: { type: 'posix', path: '/var/lib/pgwarden/backups' },
  retention: { full: { count: 2 } },
  compressType: 'zst',
  encrypted: false,
  processMax: 2,
  startFast: true,
  postgres: { dataDir: '/srv/c/alpha/data', port: 5433, socketDir: '/srv/c/alpha/data.run', user: 'postgres' },
  workDir: '/srv/c/alpha/pgbackrest',
};

function invalid(work: () => unknown, field: RegExp): void {
  assert.throws(work, (e: unknown) => {
    assert.ok(isPgwardenError(e));
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.match(e.message, field);
    return true;
  });
}

describe('renderPgBackRestConf', () => {
  it('renders a posix repository: global options, then the stanza with the PostgreSQL server', () => {
    assert.equal(
      renderPgBackRestConf(posix, {}),
      [
        '# Written by pgwarden: changes are overwritten.',
        '[global]',
        'repo1-type=posix',
        'repo1-path=/var/lib/pgwarden/backups',
        'repo1-retention-full-type=count',
        'repo1-retention-full=2',
        'compress-type=zst',
        'process-max=2',
        'start-fast=y',
        'archive-async=y',
        'spool-path=/srv/c/alpha/pgbackrest/spool',
        'log-path=/srv/c/alpha/pgbackrest/log',
        'lock-path=/srv/c/alpha/pgbackrest/lock',
        'log-level-file=info',
        '',
        '[main]',
        'pg1-path=/srv/c/alpha/data',
        'pg1-port=5433',
        'pg1-socket-path=/srv/c/alpha/data.run',
        'pg1-user=postgres',
        '',
      ].join('\n'),
    );
  });

  it('renders an S3 repository with its keys, URI style, TLS verification and CA file', () => {
    const text = renderPgBackRestConf(
      {
        ...posix,
        repository: {
          type: 's3',
          endpoint: 's3.local:9000',
          bucket: 'pg-backups',
          region: 'eu-west-1',
          path: '/cluster-a',
          keyFile: '/etc/pgwarden/s3.key',
          secretFile: '/etc/pgwarden/s3.secret',
          uriStyle: 'path',
          verifyTls: true,
          caFile: '/etc/pgwarden/ca.pem',
        },
      },
      { s3Key: 'AKIA-KEY', s3KeySecret: 's3-secret/value' },
    );
    const global = text.slice(text.indexOf('[global]'), text.indexOf('[main]'));
    for (const line of [
      'repo1-type=s3',
      'repo1-path=/cluster-a',
      'repo1-s3-endpoint=s3.local:9000',
      'repo1-s3-bucket=pg-backups',
      'repo1-s3-region=eu-west-1',
      'repo1-s3-key=AKIA-KEY',
      'repo1-s3-key-secret=s3-secret/value',
      'repo1-s3-uri-style=path',
      'repo1-storage-verify-tls=y',
      'repo1-storage-ca-file=/etc/pgwarden/ca.pem',
    ]) {
      assert.ok(global.includes(`\n${line}\n`), `${line} in [global]:\n${global}`);
    }
    const noVerify = renderPgBackRestConf(
      { ...posix, repository: { type: 's3', endpoint: 'minio', bucket: 'b', region: 'us-east-1', keyFile: '/k', secretFile: '/s', uriStyle: 'host', verifyTls: false } },
      { s3Key: 'k', s3KeySecret: 's' },
    );
    assert.match(noVerify, /\nrepo1-path=\/\n/);
    assert.match(noVerify, /\nrepo1-s3-uri-style=host\n/);
    assert.match(noVerify, /\nrepo1-storage-verify-tls=n\n/);
    assert.doesNotMatch(noVerify, /ca-file/);
  });

  it('retention by window of days, and differential backups by count', () => {
    const text = renderPgBackRestConf({ ...posix, retention: { full: { days: 14 }, diffCount: 6 } }, {});
    assert.match(text, /\nrepo1-retention-full-type=time\nrepo1-retention-full=14\nrepo1-retention-diff=6\n/);
  });

  it('encryption: aes-256-cbc with the cipher pass; none without', () => {
    const text = renderPgBackRestConf({ ...posix, encrypted: true }, { cipherPass: 'correct horse battery staple' });
    assert.match(text, /\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=correct horse battery staple\n/);
    assert.doesNotMatch(renderPgBackRestConf(posix, { cipherPass: 'unused' }), /cipher/);
  });

  it('every compression type of pgBackRest 2.45 renders; others are refused', () => {
    assert.deepEqual([...COMPRESS_TYPES], ['none', 'bz2', 'gz', 'lz4', 'zst']);
    for (const type of COMPRESS_TYPES) assert.match(renderPgBackRestConf({ ...posix, compressType: type }, {}), new RegExp(`\\ncompress-type=${type}\\n`));
    invalid(() => renderPgBackRestConf({ ...posix, compressType: 'xz' as never }, {}), /^backup compression: "xz" is not one of none, bz2, gz, lz4, zst$/);
  });

  it('start-fast off waits for the next scheduled checkpoint', () => {
    assert.match(renderPgBackRestConf({ ...posix, startFast: false }, {}), /\nstart-fast=n\n/);
  });

  it('refuses what cannot be written, naming the field and never repeating a secret', () => {
    invalid(() => renderPgBackRestConf({ ...posix, stanza: 'main]\n[evil' }, {}), /^backup stanza: /);
    invalid(() => renderPgBackRestConf({ ...posix, stanza: '' }, {}), /^backup stanza: /);
    invalid(() => renderPgBackRestConf({ ...posix, repository: { type: 'posix', path: 'relative/dir' } }, {}), /^backup repository path: "relative\/dir" must be an absolute path$/);
    invalid(() => renderPgBackRestConf({ ...posix, workDir: '/a\nlog-path=/elsewhere' }, {}), /^backup work directory: /);
    invalid(() => renderPgBackRestConf({ ...posix, processMax: 0 }, {}), /^backup process max: 0 must be an integer from 1 to 999$/);
    invalid(() => renderPgBackRestConf({ ...posix, retention: { full: { count: 1.5 } } }, {}), /^backup retention full count: /);
    invalid(() => renderPgBackRestConf({ ...posix, encrypted: true }, {}), /^backup encryption: an encrypted repository needs its cipher pass$/);
    assert.throws(
      () => renderPgBackRestConf({ ...posix, encrypted: true }, { cipherPass: 'line one\nrepo1-path=/stolen' }),
      (e: Error) => /^backup cipher pass: the value must be one non-empty line/.test(e.message) && !e.message.includes('stolen'),
    );
    const s3 = { type: 's3', endpoint: 'https://s3.local', bucket: 'b', region: 'r', keyFile: '/k', secretFile: '/s', uriStyle: 'path', verifyTls: true } as const;
    invalid(() => renderPgBackRestConf({ ...posix, repository: s3 }, { s3Key: 'k', s3KeySecret: 's' }), /^backup repository endpoint: "https:\/\/s3.local" must be a host name without a scheme/);
    invalid(() => renderPgBackRestConf({ ...posix, repository: { ...s3, endpoint: 's3.local' } }, {}), /^backup repository: an S3 repository needs its access key and secret key \(read from \/k and \/s\)$/);
  });
});
