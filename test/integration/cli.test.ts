/**
 * The built `pgwarden` executable against a real local cluster (etcd + 3 agents with PostgreSQL 15) in a temp
 * dir: `up --detach`, list, edit-config/show-config, switchover, history, pause/resume, the error paths, and
 * `down`, which must end every process it started. The tests run in order and share the cluster.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentChildEnv } from '../../src/config/cli.js';
import type { ListJson } from '../../src/cli/format.js';
import { LocalCluster } from '../../src/up/local-cluster.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with stdin closed (not a terminal) and no PGWARDEN_* variables from the test's environment. */
function cli(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: options.cwd, env: agentChildEnv(), timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

function assertNoStack(run: Run): void {
  assert.doesNotMatch(run.stderr, /\n\s+at .+:\d+:\d+/, `stack trace in stderr:\n${run.stderr}`);
}

/** Running, not exited: an exited process may stay a zombie until PID 1 reaps it. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

let base: string;
let dir: string;
let cluster: LocalCluster | null = null;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'pgwarden-cli-'));
  // mkdtemp makes 0700 directories; PostgreSQL (the postgres user) must be able to pass through.
  await chmod(base, 0o755);
  dir = path.join(base, 'cluster');
});

after(async () => {
  // Whatever a failed test left running is stopped by PID; `down` normally did it already.
  try {
    const leftover = await LocalCluster.open({ dir, mustExist: true });
    if (!leftover.isStopped()) await leftover.stop();
    await leftover.close();
  } catch {
    // No cluster was created.
  }
  await cluster?.close();
  await rm(base, { recursive: true, force: true });
});

describe('pgwarden CLI against a local 3-node cluster', () => {
  const d = () => ['--dir', dir];

  it('up --detach starts etcd and three agents and waits until the cluster is healthy', async () => {
    const run = await cli(['up', '--detach', '--nodes', '3', ...d()], { timeoutMs: 150_000 });
    assert.equal(run.code, 0, `up failed:\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /starting etcd… ok/);
    for (const m of ['pg1', 'pg2', 'pg3']) assert.match(run.stdout, new RegExp(`starting agent ${m}… ok`));
    assert.match(run.stdout, /waiting for a primary…/);
    assert.match(run.stdout, /psql postgresql:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/postgres/);
    assert.match(run.stdout, /pgwarden down --dir/);
    cluster = await LocalCluster.open({ dir, mustExist: true });
    assert.ok(cluster.isRunning());
  });

  it('up again says the cluster is already running', async () => {
    const run = await cli(['up', '--detach', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /already running/);
  });

  it('list --format json shows one primary and two streaming replicas', async () => {
    const run = await cli(['list', '--format', 'json', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    const list = JSON.parse(run.stdout) as ListJson;
    assert.equal(list.cluster, 'local');
    assert.deepEqual(list.members.map((m) => m.name), ['pg1', 'pg2', 'pg3']);
    for (const m of list.members) {
      assert.deepEqual(Object.keys(m).sort(), ['api_url', 'host', 'lag_bytes', 'name', 'port', 'reason', 'reclone', 'role', 'state', 'timeline']);
      assert.equal(m.reclone, null, `${m.name} was never re-cloned`);
      assert.equal(m.port, cluster!.pgPort(m.name));
      assert.equal(m.api_url, cluster!.apiUrl(m.name));
      assert.equal(m.timeline, 1);
    }
    const primaries = list.members.filter((m) => m.role === 'primary');
    const replicas = list.members.filter((m) => m.role === 'replica');
    assert.equal(primaries.length, 1);
    assert.equal(primaries[0].state, 'running');
    assert.equal(replicas.length, 2);
    for (const r of replicas) assert.equal(r.state, 'streaming');
    assert.equal((await cluster!.view()).leader?.name, primaries[0].name);
  });

  it('list prints a table with a row per member', async () => {
    const run = await cli(['list', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /\| Member \| Host +\| Role +\| State +\| TL \| Lag in MB \| Last reason/);
    for (const m of ['pg1', 'pg2', 'pg3']) assert.match(run.stdout, new RegExp(`\\| ${m} +\\| 127\\.0\\.0\\.1:${cluster!.pgPort(m)} `));
  });

  it('edit-config --set … --force changes the setting, and show-config shows it', async () => {
    const edit = await cli(['edit-config', '--set', 'maximum_lag_on_failover=2097152', '--force', ...d()]);
    assert.equal(edit.code, 0, edit.stderr);
    assert.match(edit.stdout, /-maximum_lag_on_failover: 1048576\n\+maximum_lag_on_failover: 2097152/);
    const show = await cli(['show-config', ...d()]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^maximum_lag_on_failover: 2097152$/m);
    const json = await cli(['show-config', '--format', 'json', ...d()]);
    assert.equal((JSON.parse(json.stdout) as { maximum_lag_on_failover: number }).maximum_lag_on_failover, 2097152);
    assert.equal((await cluster!.view()).config.maximum_lag_on_failover, 2097152);
  });

  it('edit-config with a mistyped key suggests the right one and changes nothing', async () => {
    const run = await cli(['edit-config', '--set', 'maximum_lag_on_falover=1', '--force', ...d()]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /did you mean "maximum_lag_on_failover"\?/);
    assertNoStack(run);
    assert.equal((await cluster!.view()).config.maximum_lag_on_failover, 2097152);
  });

  it('edit-config sets the backup section in one edit, refuses a bad cron expression naming the field, and turns it off', async () => {
    const path = '/var/lib/pgwarden/backups';
    const edit = await cli(['edit-config', '--set', 'backup.repository.type=posix', '--set', `backup.repository.path=${path}`, '--set', 'backup.schedule.full=0 3 * * 0', '--force', ...d()]);
    assert.equal(edit.code, 0, edit.stderr);
    assert.match(edit.stdout, /^-backup: null$/m);
    assert.match(edit.stdout, /^\+backup\.schedule\.full: "0 3 \* \* 0"$/m);
    assert.deepEqual((await cluster!.view()).config.backup, {
      repository: { type: 'posix', path },
      retention: { full: 2 },
      compression: 'gz',
      schedule: { full: '0 3 * * 0', timezone: 'UTC' },
    });
    const bad = await cli(['edit-config', '--set', 'backup.schedule.full=weekly', '--force', ...d()]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /backup\.schedule\.full: expected a cron expression like '0 3 \* \* 0'/);
    assertNoStack(bad);
    assert.equal((await cluster!.view()).config.backup?.schedule.full, '0 3 * * 0');
    const off = await cli(['edit-config', '--set', 'backup=null', '--force', ...d()]);
    assert.equal(off.code, 0, off.stderr);
    assert.equal((await cluster!.view()).config.backup, null);
  });

  it('switchover without --force and without a terminal refuses and says to pass --force', async () => {
    const leader = (await cluster!.view()).leader!.name;
    const candidate = cluster!.members().find((m) => m !== leader)!;
    const run = await cli(['switchover', '--candidate', candidate, ...d()]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /pass --force/);
    const view = await cluster!.view();
    assert.equal(view.leader?.name, leader);
    assert.equal(view.failover, null, 'nothing was written');
  });

  let newPrimary = '';
  it('switchover --candidate X --force ends with X primary', async () => {
    const leader = (await cluster!.view()).leader!.name;
    newPrimary = cluster!.members().find((m) => m !== leader)!;
    const run = await cli(['switchover', '--candidate', newPrimary, '--force', ...d()], { timeoutMs: 90_000 });
    assert.equal(run.code, 0, `switchover failed:\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, new RegExp(`${newPrimary} is the new primary`));
    assert.match(run.stdout, new RegExp(`\\| ${newPrimary} +\\| [^|]+\\| primary +\\| running `));
    const view = await cluster!.view();
    assert.equal(view.leader?.name, newPrimary);
    assert.equal(view.members[newPrimary].role, 'primary');
    assert.equal(view.members[newPrimary].timeline, 2);
    const list = JSON.parse((await cli(['list', '-f', 'json', ...d()])).stdout) as ListJson;
    assert.deepEqual(list.members.filter((m) => m.role === 'primary').map((m) => m.name), [newPrimary]);
  });

  it('history lists the switchover with its timeline, LSN and new leader', async () => {
    const run = await cli(['history', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    const row = run.stdout.split('\n').find((l) => l.includes(`switchover to ${newPrimary}`));
    assert.ok(row, `no switchover row in:\n${run.stdout}`);
    const cells = row.split('|').map((c) => c.trim()).slice(1, -1);
    assert.equal(cells[0], '2');
    assert.match(cells[1], /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.match(cells[2], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    assert.equal(cells[4], newPrimary);
  });

  it('pause --wait makes every member report paused, and a switchover is then refused', async () => {
    const run = await cli(['pause', '--wait', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    const view = await cluster!.view();
    assert.equal(view.config.pause, true);
    assert.deepEqual(Object.values(view.members).map((m) => m.paused), [true, true, true]);
    const refused = await cli(['switchover', '--force', ...d()]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /paused.*pgwarden resume/);
    assertNoStack(refused);
  });

  it('resume --wait makes every member active again', async () => {
    const run = await cli(['resume', '--wait', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    const view = await cluster!.view();
    assert.equal(view.config.pause, false);
    assert.deepEqual(Object.values(view.members).map((m) => m.paused), [false, false, false]);
  });

  it('reload asks the named members through their REST API', async () => {
    const run = await cli(['reload', 'pg1', 'pg2', '--force', ...d()]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^pg1: reload requested/m);
    assert.match(run.stdout, /^pg2: reload requested/m);
    const unknown = await cli(['restart', 'pg7', '--force', ...d()]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /"pg7" is not a member of the cluster/);
  });

  it('a mistyped command suggests the right one', async () => {
    const run = await cli(['lsit', ...d()]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /unknown command 'lsit'/);
    assert.match(run.stderr, /Did you mean list\?/);
  });

  it('without any way to find a cluster the error says what to pass', async () => {
    const run = await cli(['list'], { cwd: base });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^error: no cluster found: pass --config FILE .*--dir DIR.*PGWARDEN_ETCD and PGWARDEN_CLUSTER/);
    assertNoStack(run);
    const missing = await cli(['list', '--dir', path.join(base, 'nothing-here')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no local cluster in .*nothing-here.*pgwarden up --dir/);
  });

  it('down stops every process it started', async () => {
    const processes = cluster!.processes();
    const pids = [processes.etcd, ...Object.values(processes.agents), ...Object.values(processes.postgres)];
    assert.equal(pids.length, 7);
    for (const pid of pids) assert.ok(pid !== null && alive(pid), `expected a live process, got ${pid}`);
    await cluster!.close();
    const run = await cli(['down', ...d()], { timeoutMs: 90_000 });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /Stopped the local cluster/);
    for (const pid of pids) assert.equal(alive(pid!), false, `process ${pid} is still running`);
    assert.ok(cluster!.isStopped());
    const again = await cli(['list', ...d()]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not running: start it with `pgwarden up --dir/);
  });
});
