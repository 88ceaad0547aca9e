/**
 * pgBackRest's console output read: progress of a backup (lines recorded from a real pgBackRest 2.45 backup) and
 * its errors sorted into pgwarden's codes (messages as pgBackRest 2.45 printed them in the integration test).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BackupProgressReader, classifyFailure, classifyMessage, pgBackRestError, readable } from '../../src/backup/pgbackrest-output.js';

const BACKUP_LINES = `2026-12-07 06:29:30.286 P00   INFO: backup command begin 2.45: --compress-type=lz4 --config=/tmp/b/pgbackrest.conf --stanza=main --start-fast --type=full
2026-12-07 06:29:30.804 P00   INFO: execute non-exclusive backup start: backup begins after the requested immediate checkpoint completes
2026-12-07 06:29:31.308 P00   INFO: backup start archive = 000000010000000000000005, lsn = 0/5000028
2026-12-07 06:29:31.308 P00   INFO: check archive for prior segment 000000010000000000000004
2026-12-07 06:29:41.172 P02 DETAIL: backup file /tmp/b/alpha/data/base/5/16406 (6.4MB, 9.62%) checksum 4054a2f0b950c082fc48586a17d952055baacc52
2026-12-07 06:29:41.181 P02 DETAIL: backup file /tmp/b/alpha/data/base/5/1255 (768KB, 10.74%) checksum 4a94b432ab6d162401df2de41df7678913a79b44
2026-12-07 06:29:35.552 P00 DETAIL: reference pg_data/base/1/112 to 20261207-062930F
2026-12-07 06:29:44.470 P02 DETAIL: backup file /tmp/b/alpha/data/pg_logical/replorigin_checkpoint (8B, 100.00%) checksum 347fc8f2df71bd4436e38bd1516ccd7ea0d46532
2026-12-07 06:29:33.050 P00   INFO: execute non-exclusive backup stop and wait for all WAL segments to archive
2026-12-07 06:29:33.253 P00   INFO: backup stop archive = 000000010000000000000005, lsn = 0/5000100
2026-12-07 06:29:33.254 P00 DETAIL: wrote 'backup_label' file returned from backup stop function
2026-12-07 06:29:33.254 P00   INFO: check archive for segment(s) 000000010000000000000005:000000010000000000000005
2026-12-07 06:29:33.266 P00   INFO: new backup label = 20261207-062930F
2026-12-07 06:29:33.291 P00   INFO: full backup size = 67.0MB, file total = 978
2026-12-07 06:29:33.292 P00   INFO: backup command end: completed successfully (3009ms)`;

const REPO = 'the repository /tmp/b/repo';

describe('BackupProgressReader', () => {
  it('turns a real backup\'s console lines into start, copy shares, stop and the result', () => {
    const reader = new BackupProgressReader();
    const events = BACKUP_LINES.split('\n').flatMap((l) => reader.line(l) ?? []);
    assert.deepEqual(events, [
      { kind: 'started', walSegment: '000000010000000000000005', lsn: '0/5000028' },
      { kind: 'copying', percent: 9.62 },
      { kind: 'copying', percent: 10.74 },
      { kind: 'copying', percent: 100 },
      { kind: 'stopped', walSegment: '000000010000000000000005', lsn: '0/5000100' },
      { kind: 'done', label: '20261207-062930F', size: '67.0MB', files: 978 },
    ]);
  });

  it('a diff backup\'s result line', () => {
    const reader = new BackupProgressReader();
    reader.line('P00   INFO: new backup label = 20261207-062930F_20261207-062934D');
    assert.deepEqual(reader.line('P00   INFO: diff backup size = 45.9MB, file total = 979'), {
      kind: 'done',
      label: '20261207-062930F_20261207-062934D',
      size: '45.9MB',
      files: 979,
    });
  });
});

describe('pgBackRest errors', () => {
  it('takes the ERROR line with its continuation and hints, up to the next log line', () => {
    const output = [
      'P00   INFO: stanza-create command begin 2.45: --stanza=main',
      'P00  ERROR: [028]: backup and archive info files exist but do not match the database',
      '            HINT: is this the correct stanza?',
      '            HINT: did an error occur during stanza-upgrade?',
      'P00   INFO: stanza-create command end: aborted with exception [028]',
    ].join('\n');
    assert.deepEqual(pgBackRestError(output), {
      code: 28,
      message: 'backup and archive info files exist but do not match the database HINT: is this the correct stanza? HINT: did an error occur during stanza-upgrade?',
    });
    assert.deepEqual(pgBackRestError('\nsomething else\nlast words\n'), { code: null, message: 'something else | last words' });
    assert.deepEqual(pgBackRestError(''), { code: null, message: '(no output)' });
  });

  it('drops the undecodable bytes pgBackRest quotes from a file decrypted with a wrong pass', () => {
    assert.equal(
      readable("unable to load info file '/r/backup.info':\nFormatError: key/value found outside of section at line 1: \u000e\ufffd\u00163\ufffd\nHINT: has a stanza-create been performed?"),
      "unable to load info file '/r/backup.info': FormatError: key/value found outside of section at line 1 (undecodable bytes) HINT: has a stanza-create been performed?",
    );
  });

  it('another cluster\'s stanza: BACKUP_STANZA_MISMATCH, from stanza-create, check or archive-push alike', () => {
    const create = classifyFailure('stanza-create', 'P00  ERROR: [028]: backup and archive info files exist but do not match the database\n   HINT: is this the correct stanza?', 'exit 28', REPO);
    assert.equal(create.code, 'BACKUP_STANZA_MISMATCH');
    assert.equal(
      create.message,
      'pgbackrest stanza-create refused: the stanza in the repository /tmp/b/repo belongs to another cluster (another PostgreSQL system identifier or version). ' +
        'Give this cluster its own stanza or repository; never reuse one across clusters. pgBackRest said: [28] backup and archive info files exist but do not match the database HINT: is this the correct stanza?',
    );
    const push = classifyFailure('check', 'ERROR: [044]: PostgreSQL version 15, system-id 7716445369594331139 do not match stanza version 15, system-id 7716444708329419144', 'exit 44', REPO);
    assert.equal(push.code, 'BACKUP_STANZA_MISMATCH');
  });

  it('a wrong cipher pass: BACKUP_CIPHER_MISMATCH, whether 2.45 fails to un-pad (CryptoError) or to parse (FormatError)', () => {
    const crypto = classifyFailure('stanza-create', "ERROR: [095]: unable to load info file '/r/archive.info' or '/r/archive.info.copy':\n  CryptoError: unable to flush\n  HINT: is or was the repo encrypted?", 'exit 95', REPO);
    assert.equal(crypto.code, 'BACKUP_CIPHER_MISMATCH');
    assert.match(crypto.message, /^pgbackrest stanza-create could not decrypt the repository \/tmp\/b\/repo: the cipher pass is wrong/);
    const format = classifyMessage('info', { code: null, message: "[FormatError] unable to load info file '/r/backup.info':\nFormatError: key/value found outside of section at line 1: \u000e\ufffd\nHINT: has a stanza-create been performed?" }, 'status 99', REPO);
    assert.equal(format.code, 'BACKUP_CIPHER_MISMATCH', 'not taken for a missing stanza despite the hint');
    assert.ok(!format.message.includes('\ufffd'));
  });

  it('no stanza yet, a backup already running, an unreachable repository, PostgreSQL unreachable, anything else', () => {
    assert.equal(classifyMessage('info', { code: null, message: 'missing stanza path' }, 'status 1', REPO).code, 'BACKUP_STANZA_MISSING');
    assert.equal(
      classifyFailure('backup', "ERROR: [055]: unable to load info file '/r/backup.info' or '/r/backup.info.copy':\n FileMissingError: unable to open missing file '/r/backup.info' for read\n HINT: has a stanza-create been performed?", 'exit 55', REPO).code,
      'BACKUP_STANZA_MISSING',
    );
    assert.equal(classifyFailure('backup', "ERROR: [050]: unable to acquire lock on file '/l/main-backup.lock': Resource temporarily unavailable", 'exit 50', REPO).code, 'BACKUP_IN_PROGRESS');
    assert.equal(classifyFailure('check', "ERROR: [049]: unable to get address for 's3.invalid': [-2] Name or service not known", 'exit 49', REPO).code, 'BACKUP_REPOSITORY_UNREACHABLE');
    assert.equal(classifyFailure('stanza-create', "ERROR: [047]: unable to create path '/r/archive/main': [13] Permission denied", 'exit 47', REPO).code, 'BACKUP_REPOSITORY_UNREACHABLE');
    assert.equal(
      classifyFailure('stanza-create', "ERROR: [041]: unable to get info for path/file '/tmp/a-file/repo/archive/main/archive.info': [20] Not a directory", 'exit 41', REPO).code,
      'BACKUP_REPOSITORY_UNREACHABLE',
    );
    const db = classifyFailure('backup', "ERROR: [056]: unable to connect to 'dbname='postgres' port=5433 host='/run'': connection refused", 'exit 56', REPO);
    assert.equal(db.code, 'BACKUP_FAILED');
    assert.match(db.message, /could not connect to the PostgreSQL server it backs up/);
    const other = classifyFailure('check', 'ERROR: [087]: archive_mode must be enabled', 'exit 87', REPO);
    assert.equal(other.code, 'BACKUP_FAILED');
    assert.equal(other.message, 'pgbackrest check failed (exit 87). pgBackRest said: [87] archive_mode must be enabled');
  });
});
