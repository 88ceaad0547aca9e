import { commandOnPath } from '../config/cli.js';
/**
 * `pgwarden up` and `pgwarden down`: a whole cluster on this machine, through LocalCluster.
 */
import { describeError } from '../errors.js';
import { checkDependencies } from '../up/dependencies.js';
import { LocalCluster } from '../up/local-cluster.js';
import { LOCAL_PROXY_WORKERS, appendSupervisorLog, clusterComponents, startSupervisorDaemon } from '../up/supervise.js';
import { Supervisor } from '../up/supervisor.js';
import { renderList } from './format.js';
import type { Io } from './io.js';
import { DEFAULT_DIR } from './options.js';

export interface UpOptions {
  dir: string;
  nodes?: number;
  detach: boolean;
  timeoutSec: number;
}

function quoteArg(text: string): string {
  return /^[A-Za-z0-9_./:@=-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

async function printSummary(io: Io, cluster: LocalCluster, dirArg: string, detach: boolean): Promise<void> {
  const view = await cluster.view();
  io.out('');
  const proxies = await cluster.dcs().loadProxies().catch(() => []);
  io.out(renderList(cluster.name, view, `etcd ${cluster.etcdEndpoint()}`, proxies));
  io.out('');
  io.out('Connect (superuser):');
  const leader = view.leader?.name ?? null;
  for (const m of cluster.members()) {
    const role = m === leader ? 'primary' : 'replica';
    io.out(`  psql ${quoteArg(cluster.connectionString(m))}    # ${m}, ${role}`);
  }
  if (cluster.proxyRwPort() !== null) {
    io.out('');
    io.out('Through the proxy (transaction pooling; follows failovers):');
    io.out(`  psql ${quoteArg(cluster.proxyConnectionString('rw'))}    # read-write, the primary`);
    io.out(`  psql ${quoteArg(cluster.proxyConnectionString('ro'))}    # read-only, the replicas`);
    const tls = cluster.proxyTlsConnectionString('rw');
    if (tls !== null) io.out(`  psql ${quoteArg(tls)}    # read-write over TLS, certificate verified`);
    const admin = cluster.proxyAdminUrl();
    const metrics = cluster.proxyMetricsUrl();
    if (admin !== null) io.out(`  psql ${quoteArg(admin.replace('postgresql://', `postgresql://${cluster.pgCredentials().superuser.username}@`))}    # admin console (SHOW POOLS, RELOAD, …; the superuser's password)`);
    if (metrics !== null) io.out(`  curl ${metrics}    # Prometheus metrics (pgbouncer_exporter's names)`);
  }
  io.out('');
  // The default directory is found without --dir (from the same working directory).
  const dirOption = dirArg === DEFAULT_DIR ? '' : ` --dir ${quoteArg(dirArg)}`;
  // After `npm start` the binary is not on the PATH; npx finds it from the project directory.
  const cli = commandOnPath('pgwarden') ? 'pgwarden' : 'npx pgwarden';
  io.out(`Manage it: ${cli} list${dirOption}${dirOption ? '   (switchover, pause, edit-config, … take --dir too)' : ''}`);
  if (detach) io.out(`Stop it:   ${cli} down${dirOption}`);
  else io.out(`Stop it:   press Ctrl-C here, or run \`${cli} down${dirOption}\``);
}

export async function upCommand(io: Io, options: UpOptions): Promise<void> {
  // Before anything is written: a missing PostgreSQL or etcd should leave no half-made directory behind.
  checkDependencies();
  const cluster = await LocalCluster.open({ dir: options.dir, nodes: options.nodes, log: (line) => io.out(line), proxyWorkers: LOCAL_PROXY_WORKERS });
  const watching = cluster.supervisor();
  if (watching !== null && !cluster.isRunning()) {
    io.out(
      `The local cluster "${cluster.name}" in ${cluster.dir} is supervised by PID ${watching.pid}, which restarts what stopped: see ${cluster.supervisorLogFile()}, or stop it with \`pgwarden down --dir ${quoteArg(options.dir)}\`.`,
    );
    await cluster.close();
    return;
  }
  if (cluster.isRunning()) {
    io.out(`The local cluster "${cluster.name}" in ${cluster.dir} is already running.`);
    if (watching === null) {
      // A proxy that died (or a cluster made before proxies existed) is started; the agents are left alone.
      await cluster.startProxy();
      await startDaemon(io, cluster);
    } else {
      io.out(`supervised by PID ${watching.pid} (${watching.mode === 'daemon' ? 'pgwarden supervise' : 'a foreground pgwarden up'})`);
    }
    await printSummary(io, cluster, options.dir, true);
    await cluster.close();
    return;
  }
  // Recorded before anything starts, so that `pgwarden down` meanwhile asks this process to stop the cluster.
  if (!options.detach) await cluster.recordSupervisor('foreground');
  let supervisor: Supervisor | null = null;

  let stopping: Promise<void> | null = null;
  let stopRequested: (() => void) | null = null;
  const stopped = new Promise<void>((resolve) => {
    stopRequested = resolve;
  });
  const stopAll = (why: string): Promise<void> => {
    if (stopping === null) {
      io.out(why);
      stopping = (async () => {
        // Stopped first: nothing stopped from now on is a failure to repair.
        await supervisor?.stop();
        await cluster.clearSupervisor();
        await cluster.stop();
        // A process spawned while the first pass ran is caught by a second one.
        if (!cluster.isStopped()) await cluster.stop();
        io.out(`Stopped. The data stays in ${cluster.dir}; \`pgwarden up --dir ${quoteArg(options.dir)}\` starts the same cluster again.`);
      })();
    }
    return stopping;
  };
  // start() may still have spawned a process after the signal's stop pass ran.
  const finishStopping = async (): Promise<void> => {
    await stopping;
    if (!cluster.isStopped()) await cluster.stop();
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    void stopAll(`${sig}: stopping the local cluster (replicas first, then the primary, then etcd)…`)
      .catch((e) => io.err(`error: stopping failed: ${describeError(e)}; run \`pgwarden down --dir ${options.dir}\``))
      .finally(() => stopRequested?.());
  };
  if (!options.detach) {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  }

  io.out(`Starting the local cluster "${cluster.name}" (${cluster.members().length} node${cluster.members().length === 1 ? '' : 's'}) in ${cluster.dir}…`);
  try {
    await cluster.start();
    await cluster.waitHealthy(options.timeoutSec * 1000);
  } catch (e) {
    if (stopping !== null) {
      // Interrupted by Ctrl-C: the signal handler stops everything and reports.
      await finishStopping();
      return;
    }
    if (!cluster.isStopped()) {
      await stopAll('The cluster did not start: stopping what was started (the logs stay in the cluster directory)…').catch(
        (stopError) => io.err(`error: stopping failed: ${describeError(stopError)}; run \`pgwarden down --dir ${options.dir}\``),
      );
    }
    throw e;
  }
  if (stopping !== null) {
    await finishStopping();
    return;
  }
  if (options.detach) {
    await startDaemon(io, cluster);
  } else {
    const log = (line: string): void => {
      io.out(line);
      appendSupervisorLog(cluster, line);
    };
    supervisor = new Supervisor(clusterComponents(cluster), log);
    supervisor.start();
    log(`supervisor: this process (PID ${process.pid}) restarts etcd, an agent or the proxy that exits; log: ${cluster.supervisorLogFile()}`);
  }
  await printSummary(io, cluster, options.dir, options.detach);
  await cluster.close();
  if (options.detach) return;

  // The agents run in their own sessions; this process only waits for Ctrl-C to stop them in order.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await stopped;
  await stopping;
  clearInterval(keepAlive);
}

async function startDaemon(io: Io, cluster: LocalCluster): Promise<void> {
  const pid = await startSupervisorDaemon(cluster);
  io.out(`supervisor running (PID ${pid}): it restarts etcd, an agent or the proxy that exits; log: ${cluster.supervisorLogFile()}`);
}

/** Returns once every process of the cluster is gone (or fails naming those left). */
export async function downCommand(io: Io, options: { dir: string }): Promise<void> {
  const cluster = await LocalCluster.open({ dir: options.dir, mustExist: true, log: (line) => io.out(line) });
  if (cluster.isStopped()) {
    io.out(`The local cluster "${cluster.name}" in ${cluster.dir} is not running.`);
    return;
  }
  // First, or it would start again what is being stopped.
  await cluster.stopSupervisor();
  await cluster.stop();
  io.out(`Stopped the local cluster "${cluster.name}". Its data stays in ${cluster.dir}; \`pgwarden up --dir ${quoteArg(options.dir)}\` starts it again.`);
}
