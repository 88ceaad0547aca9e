/**
 * A real single-member etcd (/usr/bin/etcd) on free loopback ports in a temp dir, for integration tests.
 * Every process is ended by its PID; a process-exit hook SIGKILLs whatever a failed test left running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.js';
import { etcdHealthy } from '../../src/up/local-cluster.js';

export const ETCD_BIN = '/usr/bin/etcd';

export interface StartEtcdOptions {
  /** Raft heartbeat in ms (etcd default 100). */
  heartbeatMs?: number;
  /** Raft election timeout in ms (etcd default 1000). The minimum lease TTL etcd grants follows from it. */
  electionMs?: number;
  /** How long to wait for /health, ms. */
  startTimeoutMs?: number;
  /**
   * Serve clients over TLS (https:// endpoint) with this certificate; with `trustedCaFile`, client certificates
   * signed by it are required (--client-cert-auth). /health is then polled on a plain metrics URL.
   */
  tls?: { certFile: string; keyFile: string; trustedCaFile?: string };
}

export interface EtcdInstance {
  /** Client URL, e.g. http://127.0.0.1:23791 */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** PID of the running etcd (changes after `start()`). */
  readonly pid: number;
  readonly dataDir: string;
  /** Stops etcd (SIGTERM, then SIGKILL after 5 s) and removes its directory. */
  stop(): Promise<void>;
  /** Sends a signal to the current etcd process (SIGSTOP/SIGCONT simulate a partition). */
  kill(signal?: NodeJS.Signals): void;
  /** Stops etcd and keeps its data directory, so that `start()` brings the same member back. */
  halt(): Promise<void>;
  /** Starts etcd again on the same data dir and ports, and waits until it is healthy. */
  start(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill('SIGTERM');
  // A SIGSTOPped etcd only acts on SIGTERM once it runs again.
  child.kill('SIGCONT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(timer);
  running.delete(child);
}

async function logTail(logFile: string): Promise<string> {
  try {
    return (await readFile(logFile, 'utf8')).split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdInstance> {
  const baseDir = await mkdtemp(join(tmpdir(), 'pgwarden-etcd-'));
  const dataDir = join(baseDir, 'data');
  const logFile = join(baseDir, 'etcd.log');
  const heartbeat = options.heartbeatMs ?? 100;
  const election = options.electionMs ?? 1000;
  const startTimeout = options.startTimeoutMs ?? 15_000;

  let clientPort = 0;
  let peerPort = 0;
  let metricsPort = 0;
  let child: ChildProcess | null = null;
  const tls = options.tls;

  const endpointOf = (port: number): string => `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const peerEndpointOf = (port: number): string => `http://127.0.0.1:${port}`;
  const healthUrlOf = (): string => (tls ? `http://127.0.0.1:${metricsPort}` : endpointOf(clientPort));

  async function launch(): Promise<void> {
    const log = await open(logFile, 'a');
    const clientUrl = endpointOf(clientPort);
    const peerUrl = peerEndpointOf(peerPort);
    const proc = spawn(
      ETCD_BIN,
      [
        '--name', 'test',
        '--data-dir', dataDir,
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', `test=${peerUrl}`,
        '--initial-cluster-state', 'new',
        '--heartbeat-interval', String(heartbeat),
        '--election-timeout', String(election),
        '--logger', 'zap',
        '--log-level', 'warn',
        ...(tls
          ? [
              '--cert-file', tls.certFile,
              '--key-file', tls.keyFile,
              '--listen-metrics-urls', healthUrlOf(),
              ...(tls.trustedCaFile ? ['--client-cert-auth', '--trusted-ca-file', tls.trustedCaFile] : []),
            ]
          : []),
      ],
      { stdio: ['ignore', log.fd, log.fd] },
    );
    await log.close();
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    child = proc;
    const deadline = Date.now() + startTimeout;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`etcd exited during start (code ${proc.exitCode}):\n${await logTail(logFile)}`);
      }
      if (await etcdHealthy(healthUrlOf())) return;
      await sleep(50);
    }
    await stopProcess(proc);
    throw new Error(`etcd did not become healthy within ${startTimeout} ms:\n${await logTail(logFile)}`);
  }

  // A freshly probed port can be taken by someone else before etcd binds it: try again with new ports.
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    clientPort = await freePort();
    peerPort = await freePort();
    while (peerPort === clientPort) peerPort = await freePort();
    metricsPort = await freePort();
    while (metricsPort === clientPort || metricsPort === peerPort) metricsPort = await freePort();
    try {
      await launch();
      lastError = null;
      break;
    } catch (error) {
      lastError = error;
      await rm(dataDir, { recursive: true, force: true });
    }
  }
  if (lastError !== null) {
    await rm(baseDir, { recursive: true, force: true });
    throw lastError;
  }

  const current = (): ChildProcess => {
    if (child === null) throw new Error('etcd was never started');
    return child;
  };

  return {
    get endpoint() {
      return endpointOf(clientPort);
    },
    get clientPort() {
      return clientPort;
    },
    get peerPort() {
      return peerPort;
    },
    get pid() {
      const pid = current().pid;
      if (pid === undefined) throw new Error('etcd has no pid');
      return pid;
    },
    dataDir,
    async stop() {
      if (child !== null) await stopProcess(child);
      await rm(baseDir, { recursive: true, force: true });
    },
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      const proc = current();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
    async halt() {
      await stopProcess(current());
    },
    async start() {
      const proc = current();
      if (proc.exitCode === null && proc.signalCode === null) throw new Error('etcd is still running');
      await launch();
    },
  };
}
