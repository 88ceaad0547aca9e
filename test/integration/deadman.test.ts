/**
 * The deadman's way of stopping PostgreSQL, against a real PostgreSQL 15: on time a fast shutdown; late (the host
 * was frozen past the lease, another member may hold the key) every process of the server is killed at once, so
 * no backend can acknowledge another commit. The chaos suite found the need: a primary frozen past its lease
 * acknowledged a write 5 ms after it woke, before a fast shutdown reached its backends.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { DEADMAN_PID_FILE, LeaseDeadman } from '../../src/ha/deadman.js';
import { stopPostgresAfterDeadline } from '../../src/postgres/emergency-stop.js';
import { readControlData } from '../../src/postgres/controldata.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { isAlive as alive, isStopped, readPidFile } from '../../src/processes.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';

function reaped(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

describe('deadman stopping PostgreSQL', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  let server: PostgresServer;

  function client(): pg.Client {
    const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: credentials.superuser.username, password: credentials.superuser.password, database: 'postgres' });
    c.on('error', () => undefined);
    return c;
  }

  /** PIDs of the server's backends, as PostgreSQL lists them. */
  async function backendPids(c: pg.Client): Promise<number[]> {
    const r = await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
    return r.rows.map((x) => x.pid);
  }

  before(async () => {
    server = await makeTestServer('deadman', await makePgTempDir('pgwarden-deadman-'), credentials);
    await server.bootstrap();
  });

  after(async () => {
    await cleanupServers();
  });

  it('on time: a fast shutdown', async () => {
    const how = stopPostgresAfterDeadline(server.dataDir, false);
    assert.match(how ?? '', /fast shutdown of pid \d+/);
    await waitFor('PostgreSQL to stop', async () => (server.postmasterPid() === null ? true : undefined), 20_000);
    // What tells the late case apart: a shutdown leaves pg_control "shut down".
    assert.equal((await readControlData(server.binDir, server.dataDir, null)).state, 'shut down');
    assert.equal(stopPostgresAfterDeadline(server.dataDir, false), null, 'nothing to stop any more');
    await server.start('primary', null);
  });

  it('late: the postmaster and every backend are killed at once; the client is cut off', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: credentials.superuser.username, password: credentials.superuser.password, database: 'postgres' });
    const connectionErrors: Error[] = [];
    c.on('error', (e) => connectionErrors.push(e));
    await c.connect();
    const others = await backendPids(c);
    const postmaster = server.postmasterPid()!;
    const how = stopPostgresAfterDeadline(server.dataDir, true);
    const killed = /killed PostgreSQL \(pid (\d+)\) and its (\d+) processes at once/.exec(how ?? '');
    assert.ok(killed, `got ${how}`);
    assert.equal(Number(killed[1]), postmaster);
    // Killed one by one, not left to exit after the postmaster: our backend and every other one was among them.
    assert.ok(Number(killed[2]) >= others.length + 1, `${killed[2]} processes killed, ${others.length + 1} backends listed`);
    // SIGKILL is delivered asynchronously; the deadline only guards against a hang.
    await waitFor('every process of the server to be gone', async () => ([postmaster, ...others].some(alive) ? undefined : true), 10_000);
    await assert.rejects(c.query('SELECT 1'), 'the open connection is dead');
    await c.end().catch(() => undefined);
    // Not a shutdown of any kind: a fast one would have sent the client FATAL 57P01 and written a shutdown
    // checkpoint; a killed server says nothing and leaves pg_control "in production".
    assert.deepEqual(connectionErrors.filter((e) => (e as { severity?: string }).severity !== undefined), [], 'no backend spoke after the kill');
    assert.equal((await readControlData(server.binDir, server.dataDir, null)).state, 'in production');
  });

  it('an armed deadman runs at real-time priority (SCHED_FIFO), or says why it cannot', async () => {
    const runDir = await mkdtemp(path.join(tmpdir(), 'pgwarden-deadman-rt-'));
    const warnings: string[] = [];
    const deadman = new LeaseDeadman(runDir, server.dataDir, (e) => assert.fail(String(e)), (w) => warnings.push(w));
    deadman.arm(performance.now() + 600_000);
    let pid: number | null = null;
    try {
      await waitFor('the deadman to start', async () => (readPidFile(path.join(runDir, DEADMAN_PID_FILE)) !== null ? true : undefined), 10_000);
      pid = readPidFile(path.join(runDir, DEADMAN_PID_FILE))!;
      // /proc/<pid>/stat field 41 is the scheduling policy: 1 is SCHED_FIFO.
      const policy = (): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[38]);
      await waitFor('real-time priority or a warning', async () => (policy() === 1 || warnings.length > 0 ? true : undefined), 10_000);
      if (warnings.length > 0) assert.match(warnings[0]!, /lease deadman runs at normal priority, not real-time \(chrt -f\): .+/);
      else assert.equal(policy(), 1);
    } finally {
      deadman.disarm();
      if (pid !== null) process.kill(pid, 'SIGKILL');
      await rm(runDir, { recursive: true, force: true });
    }
  });

  // Found by the chaos suite (asynchronous mode): a deadman outside a frozen host sent its on-time fast shutdown
  // to a stopped postmaster; thawed, a backend answered a queued INSERT before the shutdown reached it.
  it('on time but PostgreSQL is stopped (a frozen host): killed at once, nothing left to thaw', async () => {
    // The killed postmaster lingers as a zombie until init reaps it, and PostgreSQL refuses to start while the PID
    // in postmaster.pid answers kill(pid, 0).
    const killed = readPidFile(path.join(server.dataDir, 'postmaster.pid'));
    if (killed !== null) await waitFor('the killed postmaster to be reaped', async () => (reaped(killed) ? true : undefined), 10_000);
    await server.start('primary', null);
    const c = client();
    await c.connect();
    const others = await backendPids(c);
    const postmaster = server.postmasterPid()!;
    const frozen = [postmaster, ...others];
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    await waitFor('the postmaster to be stopped', async () => (isStopped(postmaster) ? true : undefined), 2000);
    const how = stopPostgresAfterDeadline(server.dataDir, false);
    assert.match(how ?? '', /PostgreSQL was stopped .* killed PostgreSQL \(pid \d+\) and its \d+ processes at once/);
    await waitFor('every stopped process of the server to be gone', async () => (frozen.some(alive) ? undefined : true), 2000);
    await assert.rejects(c.query('SELECT 1'), 'the open connection is dead');
    await c.end().catch(() => undefined);
  });
});
