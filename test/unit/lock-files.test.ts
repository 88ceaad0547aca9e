import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyDataDirProcesses, mayServeDataDir, type ProcessInfo } from '../../src/postgres/lock-files.js';
import { rewindErrorSummary } from '../../src/ha/executor.js';

const DIR = '/var/lib/pg/data';
const proc = (pid: number, over: Partial<ProcessInfo> = {}): ProcessInfo => ({
  pid,
  state: 'running',
  comm: 'postgres',
  cwd: DIR,
  title: 'postgres: m1: checkpointer ',
  ...over,
});

describe('mayServeDataDir: proof that a lock file PID is stale', () => {
  it('is stale when gone, a zombie, another program, or working in another directory', () => {
    assert.equal(mayServeDataDir(proc(1, { state: 'gone' }), DIR), false);
    assert.equal(mayServeDataDir(proc(1, { state: 'zombie' }), DIR), false);
    assert.equal(mayServeDataDir(proc(1, { comm: 'sleep' }), DIR), false);
    assert.equal(mayServeDataDir(proc(1, { cwd: '/var/lib/pg/other' }), DIR), false);
  });

  it('is held by a live postgres in the directory, and when /proc cannot tell', () => {
    assert.equal(mayServeDataDir(proc(1), DIR), true);
    assert.equal(mayServeDataDir(proc(1, { cwd: null }), DIR), true);
    assert.equal(mayServeDataDir(proc(1, { comm: null, cwd: null }), DIR), true);
  });
});

describe('classifyDataDirProcesses', () => {
  it('finds a live postmaster by its unchanged title and then calls nothing an orphan', () => {
    const postmaster = proc(10, { title: '/usr/lib/postgresql/15/bin/postgres' });
    const found = classifyDataDirProcesses([proc(11), postmaster, proc(12)], DIR);
    assert.equal(found.server?.pid, 10);
    assert.deepEqual(found.orphans, []);
  });

  it('takes the live children of a dead postmaster for orphans, ignoring zombies and other directories', () => {
    const found = classifyDataDirProcesses([proc(11), proc(12, { state: 'zombie' }), proc(13, { cwd: '/elsewhere' }), proc(14, { comm: 'bash', title: 'bash' })], DIR);
    assert.equal(found.server, null);
    assert.deepEqual(found.orphans.map((p) => p.pid), [11]);
  });

  it('counts a single-user server (pg_rewind crash recovery) as a server', () => {
    assert.equal(classifyDataDirProcesses([proc(20, { title: '/usr/lib/postgresql/15/bin/postgres' })], DIR).server?.pid, 20);
  });
});

describe('rewindErrorSummary', () => {
  it('keeps the error and FATAL lines of pg_rewind, not the progress or the hint', () => {
    const message =
      'pg_rewind failed (exit 1): pg_rewind: executing "/usr/lib/postgresql/15/bin/postgres" for target server to complete crash recovery | ' +
      '2026-12-07 03:06:03.997 GMT [28898] FATAL:  standby mode is not supported by single-user servers | ' +
      'pg_rewind: error: postgres single-user mode in target cluster failed | pg_rewind: detail: Command was: postgres --single. ' +
      'Rewinding from member beta (127.0.0.1:42949) failed: reinitialize this member by cloning it.';
    assert.equal(
      rewindErrorSummary(message),
      'FATAL:  standby mode is not supported by single-user servers; pg_rewind: error: postgres single-user mode in target cluster failed',
    );
  });

  it('falls back to the message, cut to 300 characters', () => {
    assert.equal(rewindErrorSummary('pg_rewind failed (exit 1): something odd'), 'something odd');
    assert.equal(rewindErrorSummary(`pg_rewind failed (exit 1): ${'x'.repeat(400)}`).length, 300);
  });
});
