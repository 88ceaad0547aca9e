/**
 * `pgwarden up` as the process that owns a local cluster (2 nodes, real etcd, agents, PostgreSQL 15, proxy): it
 * restarts what gets killed (foreground, and with --detach through its supervisor daemon), stops everything on
 * Ctrl-C even when nobody reads its output any more, `down` returns only once every process is gone, and `list`
 * shows where the proxy's admin console and metrics are. The cases run in order on one cluster directory.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { ListJson } from '../../src/cli/format.js';
import { agentChildEnv } from '../../src/config/cli.js';
import { deadmanPidOf } from '../../src/ha/deadman.js';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { isAlive, waitUntil } from '../../src/processes.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [MAIN, ...args], { env: agentChildEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

let base: string;
let dir: string;
let foreground: ChildProcess | null = null;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'pgwarden-up-'));
  await chmod(base, 0o755);
  dir = path.join(base, 'cluster');
});

after(async () => {
  if (foreground?.pid !== undefined && foreground.exitCode === null && foreground.signalCode === null) {
    foreground.kill('SIGTERM');
    await waitUntil(() => foreground!.exitCode !== null || foreground!.signalCode !== null, 90_000);
  }
  // Whatever a failed case left running is stopped by PID, the supervisor daemon first.
  const supervisor = supervisorPid();
  if (supervisor !== null && isAlive(supervisor)) {
    process.kill(supervisor, 'SIGKILL');
    await waitUntil(() => !isAlive(supervisor), 5000);
  }
  try {
    const leftover = await LocalCluster.open({ dir, mustExist: true });
    await leftover.stop().catch(() => undefined);
    await leftover.close();
  } catch {
    // No cluster was created.
  }
  await rm(base, { recursive: true, force: true });
});

async function openCluster(): Promise<LocalCluster> {
  return LocalCluster.open({ dir, mustExist: true });
}

function supervisorPid(): number | null {
  try {
    const pids = JSON.parse(readFileSync(path.join(dir, 'pids.json'), 'utf8')) as { supervisor?: { pid?: number } | null };
    return pids.supervisor?.pid ?? null;
  } catch {
    return null;
  }
}

function supervisorLog(): string {
  try {
    return readFileSync(path.join(dir, 'supervisor.log'), 'utf8');
  } catch {
    return '';
  }
}

function deadmanPid(member: string): number | null {
  return deadmanPidOf(path.join(dir, member, 'data.run'));
}

/** Every process of the cluster, deadmen included, waiting for the primary's deadman (armed with the leader key). */
async function clusterPids(cluster: LocalCluster): Promise<Map<string, number>> {
  const leader = (await cluster.view()).leader?.name;
  assert.ok(leader, 'a leader');
  assert.ok(await waitUntil(() => deadmanPid(leader) !== null, 15_000), `the deadman of ${leader} runs`);
  const p = cluster.processes();
  const pids = new Map<string, number>();
  const add = (what: string, pid: number | null | undefined): void => {
    assert.ok(pid !== null && pid !== undefined && isAlive(pid), `${what} is running`);
    pids.set(what, pid);
  };
  add('etcd', p.etcd);
  // Required where a case needs it (an earlier failing case may have left it dead).
  if (p.proxy !== null) pids.set('proxy', p.proxy);
  for (const m of cluster.members()) {
    add(`agent ${m}`, p.agents[m]);
    add(`postgres ${m}`, p.postgres[m]);
  }
  add(`deadman ${leader}`, deadmanPid(leader));
  return pids;
}

function assertAllGone(pids: Map<string, number>): void {
  const alive = [...pids].filter(([, pid]) => isAlive(pid)).map(([what, pid]) => `${what} (PID ${pid})`);
  assert.deepEqual(alive, [], `still running: ${alive.join(', ')}`);
}

/** ms from now until an INSERT through `url` (a new connection per try) succeeds. */
async function msUntilWrite(url: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  let lastError: unknown = null;
  while (performance.now() - t0 < timeoutMs) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000, query_timeout: 2000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('INSERT INTO up_probe DEFAULT VALUES');
      return performance.now() - t0;
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  throw new Error(`no write through ${url.replace(/:[^:@]*@/, ':***@')} within ${timeoutMs} ms: ${String(lastError)}`);
}

describe('pgwarden up owns, supervises and stops its local cluster', () => {
  let stdout = '';

  it('foreground up restarts a killed proxy by itself and logs it', async () => {
    foreground = spawn(process.execPath, [MAIN, 'up', '--nodes', '2', '--dir', dir], { env: agentChildEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    foreground.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    foreground.stderr!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const ready = await waitUntil(() => /Stop it:/.test(stdout) || foreground!.exitCode !== null, 150_000);
    assert.ok(ready && foreground.exitCode === null, `up did not get ready:\n${stdout}`);
    const cluster = await openCluster();
    const before = cluster.proxyPid();
    assert.ok(before !== null);
    process.kill(before, 'SIGKILL');
    const back = await waitUntil(() => cluster.proxyPid() !== null && cluster.proxyPid() !== before, 20_000);
    assert.ok(back, `the proxy was not restarted:\n${stdout}`);
    assert.ok(await waitUntil(() => /supervisor: the proxy is running again/.test(stdout), 15_000), stdout);
    assert.match(supervisorLog(), new RegExp(`the proxy \\(PID ${before}\\) exited`));
    await cluster.close();
  });

  it('Ctrl-C of the foreground up stops every process it started although its stdout and stderr are closed', async () => {
    assert.ok(foreground !== null && foreground.exitCode === null, 'the foreground up runs');
    const cluster = await openCluster();
    const pids = await clusterPids(cluster);
    await cluster.close();
    // `npm start | tee log` and Ctrl-C: tee is gone before up writes its first "stopping" line.
    foreground.stdout!.destroy();
    foreground.stderr!.destroy();
    process.kill(foreground.pid!, 'SIGINT');
    assert.ok(await waitUntil(() => foreground!.exitCode !== null || foreground!.signalCode !== null, 90_000), 'up exited');
    assert.equal(foreground.exitCode, 0);
    assertAllGone(pids);
  });

  let cluster: LocalCluster;
  it('up --detach leaves a supervisor daemon behind, recorded in pids.json', async () => {
    const run = await cli(['up', '--detach', '--dir', dir], 150_000);
    cluster = await openCluster();
    assert.equal(run.code, 0, `up failed:\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /supervisor running \(PID \d+\)/);
    const pid = supervisorPid();
    assert.ok(pid !== null && isAlive(pid), 'the supervisor runs');
  });

  it('a proxy killed with SIGKILL comes back by itself: writes through the rw port succeed again (logged)', async (t) => {
    const url = cluster.proxyConnectionString('rw');
    const setup = new pg.Client({ connectionString: url });
    await setup.connect();
    await setup.query('CREATE TABLE IF NOT EXISTS up_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    await setup.end();
    await msUntilWrite(url, 5000);
    const before = cluster.proxyPid()!;
    process.kill(before, 'SIGKILL');
    const ms = await msUntilWrite(url, 30_000);
    t.diagnostic(`first write through the rw port ${ms.toFixed(0)} ms after kill -9 of the proxy`);
    assert.ok(await waitUntil(() => /the proxy is running again/.test(supervisorLog()), 5000));
    assert.match(supervisorLog(), new RegExp(`the proxy \\(PID ${before}\\) exited`));
  });

  it('a killed agent and a killed etcd come back by themselves (logged)', async () => {
    const leader = (await cluster.view()).leader!.name;
    const replica = cluster.members().find((m) => m !== leader)!;
    const agent = cluster.agentPid(replica)!;
    process.kill(agent, 'SIGKILL');
    assert.ok(await waitUntil(() => cluster.agentPid(replica) !== null && cluster.agentPid(replica) !== agent, 30_000), 'the agent is back');
    assert.match(supervisorLog(), new RegExp(`agent ${replica} \\(PID ${agent}\\) exited`));
    const etcd = cluster.etcdPid()!;
    process.kill(etcd, 'SIGKILL');
    assert.ok(await waitUntil(() => cluster.etcdPid() !== null && cluster.etcdPid() !== etcd, 30_000), 'etcd is back');
    assert.match(supervisorLog(), new RegExp(`etcd \\(PID ${etcd}\\) exited`));
    assert.ok(await waitUntil(() => /etcd is running again/.test(supervisorLog()), 15_000));
    await cluster.waitHealthy(60_000);
  });

  it("list shows the proxy's admin console and metrics endpoint, and the metrics answer with pgbouncer_* series", async () => {
    const json = await cli(['list', '--format', 'json', '--dir', dir]);
    assert.equal(json.code, 0, json.stderr);
    const proxies = (JSON.parse(json.stdout) as ListJson).proxies;
    assert.equal(proxies.length, 1);
    const [proxy] = proxies;
    assert.equal(proxy.admin, `postgresql://127.0.0.1:${cluster.proxyRwPort()}/pgbouncer`);
    assert.match(proxy.metrics ?? '', /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const table = await cli(['list', '--dir', dir]);
    assert.match(table.stdout, /\| Admin console +\| Metrics +\|/);
    assert.ok(table.stdout.includes(`| ${proxy.admin} | ${proxy.metrics} |`), table.stdout);
    const text = await (await fetch(proxy.metrics!)).text();
    assert.match(text, /^pgbouncer_up 1$/m);
    assert.match(text, /^pgbouncer_pools_client_active_connections\{/m);
  });

  it('down returns only once every process is gone: supervisor, proxy, agents, PostgreSQL, deadman, etcd', async () => {
    // Everything runs (a no-op unless an earlier case failed), so that only `down` is judged here.
    const up = await cli(['up', '--detach', '--dir', dir], 150_000);
    assert.equal(up.code, 0, up.stderr);
    await cluster.waitHealthy(60_000);
    const pids = await clusterPids(cluster);
    const supervisor = supervisorPid();
    if (supervisor !== null) pids.set('supervisor', supervisor);
    await cluster.close();
    const run = await cli(['down', '--dir', dir], 120_000);
    assert.equal(run.code, 0, run.stderr);
    assertAllGone(pids);
    assert.ok(supervisor !== null, 'a supervisor was running');
    assert.match(run.stdout, /stopping the supervisor \(PID \d+\)/);
  });
});
