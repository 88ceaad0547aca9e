/**
 * `pgbackrest info --output=json` read into typed backups and the recoverable window, on the output recorded from
 * the integration test (test/fixtures/pgbackrest-info-2.45.json: a full and a diff backup of pgbench data) and on
 * variations of it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseInfoJson, segmentEndLsn, timelineOfSegment } from '../../src/backup/pgbackrest-info.js';
import { isPgwardenError } from '../../src/errors.js';

const recorded = readFileSync(new URL('../../../test/fixtures/pgbackrest-info-2.45.json', import.meta.url), 'utf8');

/** The recorded output with its one stanza changed by `edit` (the system-id stays as printed: a 64-bit integer). */
function variant(edit: (stanza: Record<string, any>) => void): string {
  const stanza = JSON.parse(recorded.replace(/"system-id":(\d+)/g, '"system-id":"$1"'))[0];
  edit(stanza);
  return JSON.stringify([stanza]).replace(/"system-id":"(\d+)"/g, '"system-id":$1');
}

describe('parseInfoJson (pgBackRest 2.45)', () => {
  it('reads the recorded full and diff backups', () => {
    const info = parseInfoJson(recorded, 'main');
    assert.equal(info.name, 'main');
    assert.deepEqual(info.status, { code: 0, message: 'ok' });
    assert.deepEqual(info.repositoryStatus, [{ key: 1, code: 0, message: 'ok' }]);
    assert.equal(info.backupRunning, false);
    assert.equal(info.cipher, 'none');
    // Exactly as printed: 7716445369594331139 is beyond Number.MAX_SAFE_INTEGER and JSON.parse would round it.
    assert.deepEqual(info.database, { id: 1, systemId: '7716445369594331139', version: '15' });
    assert.deepEqual(info.archive, { min: '000000010000000000000001', max: '000000010000000000000007' });
    assert.deepEqual(info.backups, [
      {
        label: '20261207-062906F',
        type: 'full',
        prior: null,
        startTime: new Date(1796624946_000),
        stopTime: new Date(1796624947_000),
        size: 70219364,
        repoSize: 9641896,
        repoSizeTotal: 9641896,
        checksumErrors: false,
        walStart: '000000010000000000000005',
        walStop: '000000010000000000000005',
        lsnStart: '0/5000028',
        lsnStop: '0/5000100',
        timeline: 1,
        databaseId: 1,
      },
      {
        label: '20261207-062906F_20261207-062908D',
        type: 'diff',
        prior: '20261207-062906F',
        startTime: new Date(1796624948_000),
        stopTime: new Date(1796624950_000),
        size: 70415972,
        repoSize: 5382628,
        repoSizeTotal: 9751726,
        checksumErrors: false,
        walStart: '000000010000000000000007',
        walStop: '000000010000000000000007',
        lsnStart: '0/7000028',
        lsnStop: '0/7000100',
        timeline: 1,
        databaseId: 1,
      },
    ]);
  });

  it('the recoverable window runs from the oldest backup\'s stop to the end of the newest archived segment', () => {
    const info = parseInfoJson(recorded, 'main');
    assert.deepEqual(info.window, {
      from: { time: new Date(1796624947_000), lsn: '0/5000100', label: '20261207-062906F', timeline: 1 },
      to: { walSegment: '000000010000000000000007', timeline: 1, lsnBefore: '0/8000000' },
    });
  });

  it('no backup yet: no window, even with archived WAL', () => {
    const info = parseInfoJson(variant((s) => {
      s.backup = [];
      s.status = { code: 2, lock: { backup: { held: false } }, message: 'no valid backups' };
    }), 'main');
    assert.equal(info.backups.length, 0);
    assert.equal(info.window, null);
    assert.equal(info.status.code, 2);
    assert.ok(info.archive !== null);
  });

  it('backups come oldest first whatever the order printed; a running backup shows in its lock', () => {
    const info = parseInfoJson(variant((s) => {
      s.backup.reverse();
      s.status.lock.backup.held = true;
    }), 'main');
    assert.deepEqual(info.backups.map((b) => b.type), ['full', 'diff']);
    assert.equal(info.backupRunning, true);
  });

  it('after a stanza-upgrade only the current database\'s backups and archive make the window', () => {
    const info = parseInfoJson(variant((s) => {
      s.db.push({ id: 2, 'repo-key': 1, 'system-id': '7716445369594331140', version: '16' });
      s.archive.push({ database: { id: 2, 'repo-key': 1 }, id: '16-2', min: '000000010000000000000001', max: '000000010000000000000003' });
    }), 'main');
    assert.deepEqual(info.database, { id: 2, systemId: '7716445369594331140', version: '16' });
    assert.deepEqual(info.archive, { min: '000000010000000000000001', max: '000000010000000000000003' });
    assert.equal(info.window, null, 'no backup of database 2 yet');
  });

  it('a backup on timeline 2 says so', () => {
    const info = parseInfoJson(variant((s) => {
      s.backup[1].archive = { start: '00000002000000000000000A', stop: '00000002000000000000000A' };
      s.archive[0].max = '00000002000000000000000C';
    }), 'main');
    assert.equal(info.backups[1].timeline, 2);
    assert.deepEqual(info.window?.to, { walSegment: '00000002000000000000000C', timeline: 2, lsnBefore: '0/D000000' });
  });

  it('reads output that holds raw control characters (a message quoting a file decrypted with a wrong pass)', () => {
    const garbled = variant((s) => {
      s.status = { code: 99, lock: { backup: { held: false } }, message: 'other' };
      s.repo[0].status = { code: 99, message: 'FormatError: key/value found outside of section at line 1: XX' };
    }).replace('line 1: XX', 'line 1: \u000e\u0016\u00033\ufffd');
    const info = parseInfoJson(garbled, 'main');
    assert.equal(info.status.code, 99);
    assert.match(info.repositoryStatus[0].message, /^FormatError: key\/value found outside of section at line 1: /);
  });

  it('refuses what is not pgBackRest\'s info output, saying what is wrong', () => {
    const refused = (text: string, stanza: string, problem: RegExp) =>
      assert.throws(() => parseInfoJson(text, stanza), (e: unknown) => isPgwardenError(e) && e.code === 'BACKUP_FAILED' && problem.test(e.message));
    refused('ERROR: [031]: invalid option', 'main', /gave unexpected output: not JSON$/);
    refused(recorded, 'other', /no stanza named "other"$/);
    refused(variant((s) => (s.backup[0].type = 'snapshot')), 'main', /backup\[0\]\.type is "snapshot"$/);
    refused(variant((s) => delete s.backup[1].timestamp), 'main', /backup\[1\]\.timestamp is not an object$/);
  });
});

describe('WAL segment names', () => {
  it('timeline and end LSN of a segment (16 MiB segments unless told)', () => {
    assert.equal(timelineOfSegment('000000010000000000000005'), 1);
    assert.equal(timelineOfSegment('0000000A00000003000000FF'), 10);
    assert.equal(segmentEndLsn('000000010000000000000005'), '0/6000000');
    assert.equal(segmentEndLsn('0000000100000003000000FF'), '4/0');
    assert.equal(segmentEndLsn('000000010000000000000005', 64 * 1024 * 1024), '0/18000000');
    assert.throws(() => timelineOfSegment('00000001.history'), /is not a WAL segment name/);
  });
});
