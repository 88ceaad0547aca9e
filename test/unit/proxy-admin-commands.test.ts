import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COLUMNS, parseAdminCommand, validCommandsHint } from '../../src/proxy/admin/commands.js';

describe('admin console command parsing', () => {
  it('reads SHOW and control commands case-insensitively, with or without a semicolon', () => {
    assert.deepEqual(parseAdminCommand('show pools;'), { kind: 'show', subject: 'POOLS' });
    assert.deepEqual(parseAdminCommand('  SHOW   stats_totals  '), { kind: 'show', subject: 'STATS_TOTALS' });
    assert.deepEqual(parseAdminCommand('pause'), { kind: 'control', verb: 'PAUSE', database: null });
    assert.deepEqual(parseAdminCommand('KILL "app";'), { kind: 'control', verb: 'KILL', database: 'app' });
    assert.deepEqual(parseAdminCommand(';'), { kind: 'empty' });
  });

  it('calls malformed commands unknown', () => {
    assert.equal(parseAdminCommand('SHOW TABLES').kind, 'unknown');
    assert.equal(parseAdminCommand('KILL').kind, 'unknown');
    assert.equal(parseAdminCommand('RELOAD now').kind, 'unknown');
    assert.equal(parseAdminCommand('select 1').kind, 'unknown');
    assert.match(validCommandsHint(), /SHOW POOLS.*PAUSE.*SHUTDOWN/);
  });

  it("keeps PgBouncer 1.18's column order", () => {
    assert.deepEqual(COLUMNS.STATS_TOTALS, ['database', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time']);
    assert.equal(COLUMNS.POOLS.at(-1), 'pool_mode');
    assert.deepEqual(COLUMNS.LISTS, ['list', 'items']);
  });
});
