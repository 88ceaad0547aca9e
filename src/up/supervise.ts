/**
 * The supervisor of a local cluster, wired to its processes: which components are watched and how each is
 * started again, the `pgwarden supervise` daemon that watches a `--detach` cluster, and how `up` starts it.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { agentChildEnv } from '../config/cli.js';
import { PgwardenError } from '../errors.js';
import { LocalCluster } from './local-cluster.js';
import { isAlive, waitUntil } from '../processes.js';
import { Supervisor, type SupervisedComponent } from './supervisor.js';

/**
 * The local cluster's proxy serves on one thread: it shares the machine with etcd and every PostgreSQL, and
 * without worker threads to boot a killed proxy serves again in about half the time (≈1.3 s instead of 1.7–3.6 s
 * on a loaded 2-core machine). A deployment's proxy.yml chooses its own `workers`.
 */
export const LOCAL_PROXY_WORKERS = 1;

const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const DAEMON_START_MS = 10_000;

/** etcd first: the agents and the proxy need it to come back. */
export function clusterComponents(cluster: LocalCluster): SupervisedComponent[] {
  return [
    { name: 'etcd', logFile: cluster.etcdLogFile(), pid: () => cluster.etcdPid(), start: () => cluster.startEtcd() },
    ...cluster.members().map((m) => ({
      name: `agent ${m}`,
      logFile: cluster.agentLogFile(m),
      pid: () => cluster.agentPid(m),
      start: () => cluster.startAgent(m),
    })),
    { name: 'the proxy', logFile: cluster.proxyLogFile(), pid: () => cluster.proxyPid(), start: () => cluster.startProxy() },
  ];
}

export function timestamped(line: string): string {
  return `${new Date().toISOString()} ${line}\n`;
}

/** Appends to the cluster's supervisor.log; a full disk must not stop the supervision. */
export function appendSupervisorLog(cluster: LocalCluster, line: string): void {
  try {
    appendFileSync(cluster.supervisorLogFile(), timestamped(line));
  } catch {
    // The line was also given to the caller's output.
  }
}

/**
 * `pgwarden supervise --dir DIR` (started by `pgwarden up --detach`): records itself in pids.json, restarts what
 * exits, and on SIGTERM (`pgwarden down`) stops watching and exits, leaving the cluster to whoever stops it.
 * Its stdout and stderr are the cluster's supervisor.log.
 */
export async function runSupervisorDaemon(dir: string): Promise<void> {
  const log = (line: string): void => {
    if (!process.stdout.destroyed) process.stdout.write(timestamped(line));
  };
  // As `pgwarden up` writes proxy.yml (restarting the proxy rewrites it).
  const cluster = await LocalCluster.open({ dir, mustExist: true, log, proxyWorkers: LOCAL_PROXY_WORKERS });
  const other = cluster.supervisor();
  if (other !== null) {
    log(`supervisor: the cluster is already supervised by PID ${other.pid} (${other.mode}); exiting`);
    await cluster.close();
    return;
  }
  await cluster.recordSupervisor('daemon');
  const supervisor = new Supervisor(clusterComponents(cluster), log);
  supervisor.start();
  log(`supervisor: PID ${process.pid} watches etcd, the agents (${cluster.members().join(', ')}) and the proxy; \`pgwarden down\` stops it first`);
  const sig = await new Promise<NodeJS.Signals>((resolve) => {
    for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(s, () => resolve(s));
  });
  log(`supervisor: ${sig}: no longer restarting anything; the cluster keeps running`);
  await supervisor.stop();
  await cluster.clearSupervisor();
  await cluster.close();
}

/** Starts the daemon for a `--detach` cluster (none when one already runs); resolves once it has recorded itself. */
export async function startSupervisorDaemon(cluster: LocalCluster): Promise<number> {
  const running = cluster.supervisor();
  if (running !== null) return running.pid;
  const logFile = cluster.supervisorLogFile();
  const log = await open(logFile, 'a');
  const child = spawn(process.execPath, [CLI_MAIN, 'supervise', '--dir', cluster.dir], {
    cwd: cluster.dir,
    stdio: ['ignore', log.fd, log.fd],
    detached: true,
    env: agentChildEnv(),
  });
  const spawned = new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new PgwardenError('UP_FAILED', `the supervisor could not be started: ${e.message}`, { cause: e })));
    child.once('spawn', () => resolve(child.pid!));
  });
  await log.close();
  const pid = await spawned;
  child.unref();
  const recorded = await waitUntil(() => cluster.supervisor()?.pid === pid || !isAlive(pid), DAEMON_START_MS);
  if (!recorded || cluster.supervisor()?.pid !== pid) {
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-8).join('\n    ');
    throw new PgwardenError(
      'UP_FAILED',
      `the supervisor (PID ${pid}) did not start: the cluster runs but nothing restarts what exits; the end of ${logFile}:\n    ${tail}`,
    );
  }
  return pid;
}
