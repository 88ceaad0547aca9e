/**
 * What a postmaster killed with -9 leaves behind, against real PostgreSQL 15: postmaster.pid and the socket lock
 * naming a zombie or a reused PID, orphaned backends holding the shared memory, standby.signal in a former primary.
 * The next pg_ctl start, and pg_rewind's single-user crash recovery, must work the first time; a live postmaster
 * of the data directory must never be touched. The steps share two servers and build on each other.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { stopPostgresAfterDeadline } from '../../src/postgres/emergency-stop.js';
import { livePostmasterPid } from '../../src/postgres/lock-files.js';
import { runAsIdentity } from '../../src/postgres/run.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { addressOf, cleanupServers, makePgTempDir, makeTestServer, PG_BIN_DIR, psql, serverProcesses, tcpConfig, testCredentials, waitFor } from '../helpers/pg.js';

/**
 * Runs a command as the postgres user under a subreaper that never reaps anything but that command: a postmaster it
 * started (pg_ctl start exits, the postmaster is re-parented to the subreaper) stays a zombie once killed, as under
 * a container's PID 1 that does not reap.
 */
const SUBREAPER = `
import ctypes, pwd, subprocess, sys, time
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit('prctl failed')
pw = pwd.getpwnam('postgres')
rc = subprocess.call(sys.argv[1:], user=pw.pw_uid, group=pw.pw_gid, cwd='/', env={'PATH': '/usr/bin:/bin', 'LC_ALL': 'C'})
print('started' if rc == 0 else 'failed %d' % rc, flush=True)
while True:
    time.sleep(3600)
`;

function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2);
  } catch {
    return null;
  }
}

function pidFileLine(server: PostgresServer): number {
  return Number(readFileSync(path.join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** Rewrites the PID (first line) of a lock file, keeping the rest as PostgreSQL wrote it. */
async function setLockPid(file: string, pid: number): Promise<void> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  lines[0] = String(pid);
  await writeFile(file, lines.join('\n'));
}

describe('stale lock files after kill -9 of a postmaster (real PostgreSQL 15)', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  let alpha: PostgresServer;
  let beta: PostgresServer;
  const spawned: ChildProcess[] = [];
  const repairs: string[] = [];

  const superuserOn = (server: PostgresServer) => tcpConfig(server, credentials.superuser.username, credentials.superuser.password);
  const socketLock = (server: PostgresServer) => path.join(server.runDir, `.s.PGSQL.${server.port}.lock`);
  const ids = async (server: PostgresServer) => (await psql<{ id: number }>(superuserOn(server), 'SELECT id FROM items ORDER BY id')).map((r) => r.id);

  /**
   * A process of ours that lives until the test ends: an unrelated program that reused the PID. It runs as the
   * postgres user, as PostgreSQL takes a process it may not signal (EPERM) for stale by itself.
   */
  function unrelatedProcess(): number {
    const owner = runAsIdentity('postgres');
    const child = spawn('sleep', ['600'], { stdio: 'ignore', ...(owner ? { uid: owner.uid, gid: owner.gid } : {}) });
    spawned.push(child);
    assert.ok(child.pid !== undefined);
    return child.pid;
  }

  /** SIGKILL of the postmaster alone, as `kill -9 <postmaster>`; waits until it is no longer running. */
  async function killPostmaster(server: PostgresServer): Promise<number> {
    const pid = server.postmasterPid();
    assert.ok(pid !== null, `${server.name} runs`);
    process.kill(pid, 'SIGKILL');
    await waitFor(`postmaster ${pid} dead`, async () => procState(pid) === null || procState(pid) === 'Z');
    return pid;
  }

  before(async () => {
    const base = await makePgTempDir();
    const onRepair = (message: string) => repairs.push(message);
    alpha = await makeTestServer('alpha', base, credentials, { onRepair });
    beta = await makeTestServer('beta', base, credentials, { onRepair });
    await alpha.bootstrap();
    await psql(superuserOn(alpha), 'CREATE TABLE items (id int PRIMARY KEY)');
    await psql(superuserOn(alpha), 'INSERT INTO items VALUES (1)');
  });

  after(async () => {
    for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await cleanupServers();
  });

  it('starts on the first pg_ctl start when postmaster.pid and the socket lock name a live unrelated process (PID reuse)', async () => {
    const killed = await killPostmaster(alpha);
    assert.ok(existsSync(socketLock(alpha)), 'the killed postmaster left its socket lock');
    const other = unrelatedProcess();
    await setLockPid(path.join(alpha.dataDir, 'postmaster.pid'), other);
    await setLockPid(socketLock(alpha), other);
    assert.equal(alpha.postmasterPid(), null, 'a sleep is not a postmaster');
    repairs.length = 0;

    await alpha.start('primary', null);

    assert.notEqual(alpha.postmasterPid(), killed);
    assert.equal(procState(other) !== null && procState(other) !== 'Z', true, 'the unrelated process was not signalled');
    assert.deepEqual(await ids(alpha), [1]);
    assert.ok(repairs.some((r) => /stale postmaster\.pid \(pid \d+ is now sleep\)/.test(r)), repairs.join('; '));
    assert.ok(repairs.some((r) => /stale socket lock/.test(r)), repairs.join('; '));
  });

  it('ends orphaned backends of the killed postmaster (a stopped one included) that keep its shared memory, then starts', async () => {
    const client = new pg.Client(superuserOn(alpha));
    client.on('error', () => undefined);
    await client.connect();
    const [{ pid: backend }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
    try {
      // Stopped, it cannot notice that its postmaster died and exit by itself.
      process.kill(backend, 'SIGSTOP');
      await killPostmaster(alpha);
      assert.equal(procState(backend), 'T');
      repairs.length = 0;

      await alpha.start('primary', null);

      assert.ok(procState(backend) === null || procState(backend) === 'Z', 'the orphaned backend is gone');
      assert.deepEqual(await ids(alpha), [1]);
      assert.ok(repairs.some((r) => /ended \d+ orphaned process/.test(r) && r.includes(String(backend))), repairs.join('; '));
    } finally {
      // The backend of our test server, should the start have left it stopped.
      if (procState(backend) === 'T') process.kill(backend, 'SIGKILL');
      client.end().catch(() => undefined);
    }
  });

  it('starts on the first pg_ctl start when the killed postmaster is a zombie (a parent that does not reap)', async () => {
    await alpha.stop('fast');
    const reaper = spawn('/usr/bin/python3', ['-c', SUBREAPER, path.join(PG_BIN_DIR, 'pg_ctl'), 'start', '-D', alpha.dataDir, '-w', '-t', '30', '-l', alpha.logFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    spawned.push(reaper);
    try {
      await startedUnderReaper(reaper);
    } finally {
      reaper.kill('SIGKILL');
    }
  });

  async function startedUnderReaper(reaper: ChildProcess): Promise<void> {
    let said = '';
    reaper.stdout!.on('data', (chunk: Buffer) => (said += chunk.toString()));
    await waitFor('pg_ctl start under the subreaper', async () => said.includes('started'), 30_000);
    const pid = pidFileLine(alpha);
    process.kill(pid, 'SIGKILL');
    await waitFor(`postmaster ${pid} a zombie`, async () => procState(pid) === 'Z');
    assert.equal(alpha.postmasterPid(), null, 'a zombie serves nothing');

    await alpha.start('primary', null);

    assert.equal(procState(pid), 'Z', 'still the zombie: PostgreSQL started beside it');
    assert.deepEqual(await ids(alpha), [1]);
  }

  it('never touches a live postmaster of the data directory, even when postmaster.pid names another process', async () => {
    const pid = alpha.postmasterPid();
    assert.ok(pid !== null);
    const before = (await serverProcesses(pid)).sort();
    const pidFile = path.join(alpha.dataDir, 'postmaster.pid');
    const original = await readFile(pidFile, 'utf8');
    const lockBefore = await readFile(socketLock(alpha), 'utf8');
    const dead = spawn('true');
    await new Promise((resolve) => dead.on('exit', resolve));
    await setLockPid(pidFile, dead.pid!);
    try {
      assert.equal(alpha.postmasterPid(), null);
      await assert.rejects(alpha.start('primary', null), new RegExp(`PostgreSQL server \\(pid ${pid}\\) is still running`));
    } finally {
      await writeFile(pidFile, original);
    }
    assert.equal(alpha.postmasterPid(), pid);
    for (const p of before) assert.ok(procState(p) !== null && procState(p) !== 'Z', `process ${p} of the live server untouched`);
    assert.equal(await readFile(socketLock(alpha), 'utf8'), lockBefore, 'its socket lock untouched');
    assert.deepEqual(await ids(alpha), [1]);
  });

  it('rewinds a former primary killed with -9 whose data directory has standby.signal, and it streams without its diverged rows', async () => {
    await alpha.manageSlots(['beta'], []);
    await beta.clone(addressOf(alpha));
    await beta.start('replica', addressOf(alpha));
    await waitFor('beta streaming', async () => (await beta.observe()).streaming);
    await beta.promote();
    await beta.checkpoint();
    await psql(superuserOn(beta), 'INSERT INTO items VALUES (2)');
    await psql(superuserOn(alpha), 'INSERT INTO items VALUES (3)');
    await killPostmaster(alpha);
    // As left by an agent that began rejoining (it writes standby.signal before pg_ctl start) or by a diverged replica.
    await writeFile(path.join(alpha.dataDir, 'standby.signal'), '');
    assert.equal((await alpha.observe()).controlState, 'in production', 'not shut down cleanly: pg_rewind runs crash recovery');
    await beta.manageSlots(['alpha'], []);

    await alpha.rewind(addressOf(beta));

    assert.ok(existsSync(path.join(alpha.dataDir, 'standby.signal')));
    await alpha.start('replica', addressOf(beta));
    await waitFor('alpha streaming from beta', async () => {
      const o = await alpha.observe();
      return o.streaming && o.timeline === 2;
    });
    await psql(superuserOn(beta), 'INSERT INTO items VALUES (4)');
    await waitFor('row 4 on alpha', async () => (await ids(alpha)).includes(4));
    assert.deepEqual(await ids(alpha), [1, 2, 4], 'the diverged row 3 is gone');
  });

  it('rewinds a former primary killed with -9 whose lock files name a live unrelated process', async () => {
    await alpha.promote({ timelinesTaken: 2 });
    await alpha.checkpoint();
    await psql(superuserOn(alpha), 'INSERT INTO items VALUES (5)');
    await psql(superuserOn(beta), 'INSERT INTO items VALUES (6)');
    await killPostmaster(beta);
    const other = unrelatedProcess();
    await setLockPid(path.join(beta.dataDir, 'postmaster.pid'), other);
    await setLockPid(socketLock(beta), other);
    await alpha.manageSlots(['beta'], []);

    await beta.rewind(addressOf(alpha));

    await beta.start('replica', addressOf(alpha));
    await waitFor('beta streaming from alpha', async () => {
      const o = await beta.observe();
      return o.streaming && o.timeline === 3;
    });
    await waitFor('row 5 on beta', async () => (await ids(beta)).includes(5));
    assert.deepEqual(await ids(beta), [1, 2, 4, 5], 'the diverged row 6 is gone');
    assert.ok(procState(other) !== null && procState(other) !== 'Z', 'the unrelated process was not signalled');
  });

  it('the emergency stop never takes another data directory\'s live postmaster for its own (a PID reused by another cluster)', async () => {
    const victim = alpha.postmasterPid();
    assert.ok(victim !== null, 'alpha runs');
    // A data directory whose server died long ago, its postmaster.pid naming a PID that alpha's postmaster now has.
    const elsewhere = await mkdtemp(path.join(tmpdir(), 'pgwarden-elsewhere-'));
    try {
      await writeFile(path.join(elsewhere, 'postmaster.pid'), await readFile(path.join(alpha.dataDir, 'postmaster.pid'), 'utf8'));
      assert.equal(livePostmasterPid(elsewhere), null, 'the PID works in another data directory');
      assert.equal(stopPostgresAfterDeadline(elsewhere, true), null, 'nothing to stop there');
      assert.equal(stopPostgresAfterDeadline(elsewhere, false), null, 'nothing to stop there');
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
    assert.equal(livePostmasterPid(alpha.dataDir), victim);
    assert.ok(procState(victim) !== null && procState(victim) !== 'Z' && procState(victim) !== 'T', 'alpha\'s postmaster was not signalled');
    assert.deepEqual(await psql(superuserOn(alpha), 'SELECT 1 AS one'), [{ one: 1 }]);
  });
});
