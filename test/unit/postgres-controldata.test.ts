import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseControlData } from '../../src/postgres/controldata.js';

/** Real `LC_ALL=C pg_controldata` output of a PostgreSQL 15 cluster (trimmed). */
const SHUT_DOWN = `pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7642011472967116994
Database cluster state:               shut down
pg_control last modified:             Wed May 20 16:27:30 2026
Latest checkpoint location:           0/1500718
Latest checkpoint's REDO location:    0/1500718
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Latest checkpoint's oldestCommitTsXid:0
Latest checkpoint's newestCommitTsXid:0
Time of latest checkpoint:            Wed May 20 16:27:30 2026
Minimum recovery ending location:     0/0
wal_level setting:                    replica
wal_log_hints setting:                off
Data page checksum version:           0
Mock authentication nonce:            1ac5a5573661edc753938a3ae00c1de0627abb9f90164c6ff5e8fbc5084db297
`;

describe('parseControlData', () => {
  it('reads state, checkpoint timeline, system identifier and checksum version', () => {
    const c = parseControlData(SHUT_DOWN);
    assert.equal(c.state, 'shut down');
    assert.equal(c.timeline, 1);
    assert.equal(c.systemId, '7642011472967116994', 'kept as text: it exceeds Number.MAX_SAFE_INTEGER');
    assert.equal(c.checksumVersion, 0);
    assert.equal(c.checkpointLsn, 0x1500718);
    assert.equal(c.walLogHints, false);
  });

  it('keeps values that contain colons and labels followed by no space', () => {
    const c = parseControlData(SHUT_DOWN);
    assert.equal(c.fields['pg_control last modified'], 'Wed May 20 16:27:30 2026');
    assert.equal(c.fields["Latest checkpoint's oldestCommitTsXid"], '0');
  });

  it('recognises every cluster state and a later timeline', () => {
    for (const state of ['starting up', 'shut down in recovery', 'shutting down', 'in crash recovery', 'in archive recovery', 'in production']) {
      const c = parseControlData(
        SHUT_DOWN.replace('cluster state:               shut down', `cluster state:               ${state}`).replace(
          "TimeLineID:       1",
          'TimeLineID:       12',
        ),
      );
      assert.equal(c.state, state);
      assert.equal(c.timeline, 12);
    }
  });

  it('returns nulls for output it does not understand', () => {
    const c = parseControlData('pg_controldata: error: could not open file "global/pg_control"\n');
    assert.equal(c.state, null);
    assert.equal(c.timeline, null);
    assert.equal(c.systemId, null);
    assert.equal(c.checksumVersion, null);
    assert.equal(parseControlData(SHUT_DOWN.replace('shut down\n', 'arrêté\n')).state, null);
  });
});
