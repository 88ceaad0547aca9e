/**
 * A whole pgwarden cluster on one machine: one etcd and one agent (with its PostgreSQL) per node, all on
 * loopback ports chosen once and kept in the cluster directory. `pgwarden up`/`down`, the integration tests and
 * the failover benchmark all drive it through this class.
 *
 * The processes are started detached (their own session), so a Ctrl-C in the terminal reaches only the
 * `pgwarden up` that owns them, which then stops them in order: replicas, the leader, etcd. Everything is
 * found again by the PIDs recorded in the directory; nothing is ever ended by name.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { agentChildEnv } from '../config/cli.js';
import { clusterNameSchema, validateDynamicConfig } from '../config/schema.js';
import { EtcdDcs } from '../dcs/etcd.js';
import { PgwardenError, describeError } from '../errors.js';
import { deadmanPidOf } from '../ha/deadman.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../cluster/dynamic-config.js';
import type { ClusterView, MemberStatus } from '../cluster/types.js';
import { lookupOsUser, runAsIdentity } from '../postgres/run.js';
import { type LocalCaFiles, ensureLocalCa, localCaFiles, opensslMissing } from '../proxy/tls.js';
import { ensureMemberTls, memberTlsAgentSettings, memberTlsPresent } from './cluster-tls.js';
import { ETCD_BIN, PG_BIN_DIR, checkDependencies } from './dependencies.js';
import { freePort, freePorts, portFreeWithin, portInUse } from './ports.js';
import { livePostmasterPid } from '../postgres/lock-files.js';
import { isAlive, isOurProcess, processStartTime, signal, terminate, waitUntil } from '../processes.js';
import {
  FILES,
  STATE_VERSION,
  newSecrets,
  readClusterState,
  readPids,
  readSecrets,
  writeJson,
  type ClusterState,
  type Pids,
  type Secrets,
  type SupervisorRecord,
} from './state.js';

export interface LocalClusterOptions {
  /** The cluster directory; created when absent. */
  dir: string;
  /** Number of nodes of a new cluster (default 3). For an existing one it must match, or be left out. */
  nodes?: number;
  /** Cluster name of a new cluster (default "local"). For an existing one it must match, or be left out. */
  cluster?: string;
  /** Progress lines ("starting etcd… ok"). */
  log?: (line: string) => void;
  /** Dynamic settings written under bootstrap.dcs (used when the cluster is first bootstrapped). New clusters only. */
  dynamic?: Partial<DynamicConfig>;
  /** PostgreSQL parameters of every member's file (e.g. fsync=off for tests). New clusters only; kept in cluster.json. */
  parameters?: Record<string, string | number | boolean>;
  /** Refuse to create a cluster: throw CLUSTER_NOT_FOUND when `dir` holds none (`pgwarden down`, the CLI). */
  mustExist?: boolean;
  /** The proxy's `workers` setting (its default when absent). */
  proxyWorkers?: number;
}

export const DEFAULT_NODES = 3;
export const DEFAULT_CLUSTER = 'local';
const MAX_NODES = 9;
/** How long an agent may take from spawn to answering on its REST port. */
const AGENT_START_MS = 20_000;
const ETCD_START_MS = 15_000;
/** An agent stops PostgreSQL (fast shutdown) before it exits. */
const AGENT_STOP_MS = 40_000;
const DEFAULT_HEALTHY_MS = 120_000;
const PROXY_START_MS = 15_000;
/** How long a port of ours may stay bound after its process was killed (see portFreeWithin). */
const PORT_RELEASE_MS = 1000;
/** After the stop sequence, how long stragglers (a PostgreSQL child, a deadman) get before `down` fails naming them. */
const LEFTOVER_MS = 10_000;
/** A foreground `pgwarden up` asked to stop by `down` stops the whole cluster itself before it exits. */
const FOREGROUND_STOP_MS = 2 * AGENT_STOP_MS + 30_000;
const MAX_SOCKET_PATH = 107;

/** The agent entry point next to this module in dist/: dist/src/up → dist/src/cli/main.js. */
const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

function memberNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `pg${i + 1}`);
}

function isHealthyReplica(m: MemberStatus | undefined): boolean {
  return !!m && m.role === 'replica' && m.state === 'streaming';
}

async function logTail(file: string, lines = 12): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    const kept = text.trimEnd().split('\n').slice(-lines);
    return kept.map((l) => `    ${l.length > 400 ? `${l.slice(0, 400)}…` : l}`).join('\n');
  } catch {
    return '    (no log yet)';
  }
}

/**
 * Why the PostgreSQL OS user cannot reach `target`, or null when it can. Checks the permission bits of every
 * existing ancestor as the kernel will when PostgreSQL (started with that uid and its primary gid only) opens
 * the data directory.
 */
export function untraversableAncestor(target: string, user: { uid: number; gid: number }): { dir: string; mode: number; owner: number } | null {
  const parts = path.resolve(target).split(path.sep).filter((p) => p !== '');
  let current: string = path.sep;
  const chain = [current];
  for (const part of parts) {
    current = path.join(current, part);
    chain.push(current);
  }
  for (const dir of chain) {
    let st;
    try {
      st = statSync(dir);
    } catch {
      return null; // Not created yet: we create it with mode 0755 below.
    }
    const mode = st.mode & 0o777;
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((mode & bit) === 0) return { dir, mode, owner: st.uid };
  }
  return null;
}

export class LocalCluster {
  /** Absolute path of the cluster directory. */
  readonly dir: string;
  /** The cluster's name (etcd key prefix /pgwarden/<name>/). */
  readonly name: string;
  private readonly state: ClusterState;
  private readonly secrets: Secrets;
  private readonly log: (line: string) => void;
  private client: EtcdDcs | null = null;
  private pidWrites: Promise<void> = Promise.resolve();
  private tlsSkipSaid = false;

  private constructor(
    dir: string,
    state: ClusterState,
    secrets: Secrets,
    log: (line: string) => void,
    private readonly proxyWorkers: number | undefined,
  ) {
    this.dir = dir;
    this.state = state;
    this.name = state.cluster;
    this.secrets = secrets;
    this.log = log;
  }

  /**
   * Opens the cluster in `options.dir`, creating the directory, its ports and passwords when new. Opening an
   * existing cluster changes nothing on disk. Each agent's file (<dir>/<member>/agent.yml) is written by start()
   * when missing and otherwise kept as it is, so edits to it (log level, endpoints) last.
   */
  static async open(options: LocalClusterOptions): Promise<LocalCluster> {
    const dir = path.resolve(options.dir);
    const log = options.log ?? (() => undefined);
    let state = readClusterState(dir);
    let secrets: Secrets | null;
    if (state !== null) {
      if (options.nodes !== undefined && options.nodes !== state.nodes.length) {
        throw new PgwardenError(
          'UP_FAILED',
          `${dir} holds a ${state.nodes.length}-node cluster, not ${options.nodes} nodes: leave out --nodes to start it as it is, or use another --dir for a new cluster`,
        );
      }
      if (options.cluster !== undefined && options.cluster !== state.cluster) {
        throw new PgwardenError(
          'UP_FAILED',
          `${dir} holds the cluster "${state.cluster}", not "${options.cluster}": leave out the cluster name, or use another --dir for a new cluster`,
        );
      }
      secrets = readSecrets(dir);
      if (secrets === null) {
        throw new PgwardenError(
          'UP_FAILED',
          `${path.join(dir, FILES.secrets)} is missing, so the members' passwords are lost: restore it, or remove ${dir} to create a new local cluster`,
        );
      }
    } else {
      if (options.mustExist) {
        throw new PgwardenError(
          'CLUSTER_NOT_FOUND',
          `no local cluster in ${dir} (no ${FILES.cluster}): create one with \`pgwarden up --dir ${options.dir}\`, or pass the --dir that \`pgwarden up\` used`,
        );
      }
      const created = await LocalCluster.create(dir, options);
      state = created.state;
      secrets = created.secrets;
    }
    return new LocalCluster(dir, state, secrets, log, options.proxyWorkers);
  }

  private static async create(dir: string, options: LocalClusterOptions): Promise<{ state: ClusterState; secrets: Secrets }> {
    const nodes = options.nodes ?? DEFAULT_NODES;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) {
      throw new PgwardenError('CONFIG_INVALID', `--nodes must be a whole number from 1 to ${MAX_NODES}, got ${String(options.nodes)}`);
    }
    const cluster = options.cluster ?? DEFAULT_CLUSTER;
    if (!clusterNameSchema.safeParse(cluster).success) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `cluster name ${JSON.stringify(cluster)} is invalid: use lower-case letters, digits, "-" and "_", like "local"`,
      );
    }
    const dynamic: Partial<DynamicConfig> = {
      ttl: DEFAULT_DYNAMIC_CONFIG.ttl,
      loop_wait: DEFAULT_DYNAMIC_CONFIG.loop_wait,
      ...(options.dynamic ?? {}),
    };
    // Refused here rather than by every agent at its start.
    validateDynamicConfig({ ...DEFAULT_DYNAMIC_CONFIG, ...dynamic }, 'the dynamic settings of the local cluster');
    // The directory itself may exist (an empty temp dir, mode 0700): it becomes ours and is opened below.
    LocalCluster.checkReachable(path.dirname(dir));
    const existing = await readdir(dir).catch(() => null);
    if (existing !== null && existing.length > 0) {
      throw new PgwardenError(
        'UP_FAILED',
        `${dir} is not empty and holds no local cluster (no ${FILES.cluster}): choose a new or empty directory with --dir`,
      );
    }
    await mkdir(dir, { recursive: true });
    // Neither a restrictive umask nor mkdtemp's 0700 may leave the directory closed to the postgres user.
    await chmod(dir, 0o755);
    const ports = await freePorts(2 + nodes * 2);
    const state: ClusterState = {
      version: STATE_VERSION,
      cluster,
      etcd: { clientPort: ports[0], peerPort: ports[1] },
      nodes: memberNames(nodes).map((name, i) => ({ name, pgPort: ports[2 + i * 2], apiPort: ports[3 + i * 2] })),
      dynamic,
      parameters: options.parameters ?? {},
      createdAt: new Date().toISOString(),
    };
    const secrets = newSecrets();
    await writeJson(path.join(dir, FILES.secrets), secrets, 0o600);
    // cluster.json last: its presence means the directory is complete.
    await writeJson(path.join(dir, FILES.cluster), state);
    return { state, secrets };
  }

  /** PostgreSQL runs as `postgres` when we are root: it must be able to enter every directory above its data. */
  private static checkReachable(dir: string): void {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) return;
    const user = lookupOsUser('postgres');
    const blocked = untraversableAncestor(dir, user);
    if (blocked === null) return;
    throw new PgwardenError(
      'UP_FAILED',
      `PostgreSQL runs as the OS user "postgres", which cannot enter ${blocked.dir} (mode ${blocked.mode.toString(8).padStart(4, '0')}): ` +
        `run \`chmod o+x ${blocked.dir}\` (lets other users pass through it, not list it), or choose a --dir it can reach, such as /tmp/pgwarden or /var/lib/pgwarden`,
    );
  }

  private checkPaths(): void {
    LocalCluster.checkReachable(this.dir);
    for (const node of this.state.nodes) {
      const socket = path.join(this.dataDir(node.name) + '.run', `.s.PGSQL.${node.pgPort}`);
      if (socket.length > MAX_SOCKET_PATH) {
        throw new PgwardenError(
          'UP_FAILED',
          `the cluster directory ${this.dir} is too deep: PostgreSQL's socket path ${socket} would be longer than ${MAX_SOCKET_PATH} characters; choose a shorter --dir`,
        );
      }
    }
  }

  // ---- files and addresses ---------------------------------------------------------------------------------

  members(): string[] {
    return this.state.nodes.map((n) => n.name);
  }

  private node(member: string): ClusterState['nodes'][number] {
    const node = this.state.nodes.find((n) => n.name === member);
    if (!node) {
      throw new PgwardenError('MEMBER_NOT_FOUND', `the local cluster in ${this.dir} has no member "${member}"; its members are ${this.members().join(', ')}`);
    }
    return node;
  }

  etcdEndpoint(): string {
    return `http://127.0.0.1:${this.state.etcd.clientPort}`;
  }

  memberDir(member: string): string {
    return path.join(this.dir, this.node(member).name);
  }

  dataDir(member: string): string {
    return path.join(this.memberDir(member), 'data');
  }

  configFile(member: string): string {
    return path.join(this.memberDir(member), 'agent.yml');
  }

  agentLogFile(member: string): string {
    return path.join(this.memberDir(member), 'agent.log');
  }

  etcdLogFile(): string {
    return path.join(this.dir, 'etcd', 'etcd.log');
  }

  private etcdDataDir(): string {
    return path.join(this.dir, 'etcd', 'data');
  }

  pgPort(member: string): number {
    return this.node(member).pgPort;
  }

  /** A superuser libpq URL (with the password) for `member`'s PostgreSQL. */
  connectionString(member: string): string {
    const { username, password } = this.secrets.superuser;
    return `postgresql://${encodeURIComponent(username)}:${encodeURIComponent(password)}@127.0.0.1:${this.pgPort(member)}/postgres`;
  }

  apiUrl(member: string): string {
    return `http://127.0.0.1:${this.node(member).apiPort}`;
  }

  /** Credentials of the members' REST API (restart, reload, reinitialize, switchover). */
  apiCredentials(): { username: string; password: string } {
    return { ...this.secrets.api };
  }

  /** Credentials of the PostgreSQL roles (superuser, replication, rewind). */
  pgCredentials(): Pick<Secrets, 'superuser' | 'replication' | 'rewind'> {
    return structuredClone({ superuser: this.secrets.superuser, replication: this.secrets.replication, rewind: this.secrets.rewind });
  }

  /** Writes the agent files that do not exist yet. */
  private async writeAgentFiles(): Promise<void> {
    const s = this.secrets;
    // TLS inside the cluster by default; plaintext (said once by ensureProxyCertificate) without openssl.
    const ca = this.members().every((m) => existsSync(this.configFile(m))) ? null : await this.ensureProxyCertificate();
    for (const node of this.state.nodes) {
      const memberDir = this.memberDir(node.name);
      await mkdir(memberDir, { recursive: true });
      await chmod(memberDir, 0o755);
      if (existsSync(this.configFile(node.name))) continue;
      const tls = ca === null ? null : memberTlsAgentSettings(await ensureMemberTls(ca, memberDir, node.name, runAsIdentity('postgres')));
      const config = {
        cluster: this.state.cluster,
        name: node.name,
        etcd: { endpoints: [this.etcdEndpoint()] },
        api: { listen: `127.0.0.1:${node.apiPort}`, username: s.api.username, password: s.api.password },
        postgresql: {
          data_dir: this.dataDir(node.name),
          bin_dir: PG_BIN_DIR,
          listen: `127.0.0.1:${node.pgPort}`,
          parameters: { ...this.state.parameters, ...tls?.parameters },
          superuser: s.superuser,
          replication: { ...s.replication, ...tls?.clientSsl },
          rewind: { ...s.rewind, ...tls?.clientSsl },
        },
        bootstrap: { dcs: this.state.dynamic },
        log: { level: 'info' },
      };
      const text = `# Written by \`pgwarden up\` from ${FILES.cluster} and ${FILES.secrets}; edits are kept (delete it to get it written again).\n${YAML.stringify(config)}`;
      await writeFileMode(this.configFile(node.name), text, 0o600);
    }
  }

  // ---- processes --------------------------------------------------------------------------------------------

  private pids(): Pids {
    return readPids(this.dir);
  }

  /** Read-modify-write of pids.json, one at a time (agents are started and stopped in parallel). */
  private recordPid(update: (pids: Pids) => void): Promise<void> {
    const next = this.pidWrites.then(async () => {
      const pids = this.pids();
      update(pids);
      await writeJson(path.join(this.dir, FILES.pids), pids);
    });
    this.pidWrites = next.catch(() => undefined);
    return next;
  }

  etcdPid(): number | null {
    const pid = this.pids().etcd;
    return isOurProcess(pid, this.etcdDataDir()) ? pid : null;
  }

  agentPid(member: string): number | null {
    const pid = this.pids().agents[member];
    return isOurProcess(pid, this.configFile(member)) ? pid : null;
  }

  /** The postmaster's PID from postmaster.pid, when that process is alive. */
  pgPid(member: string): number | null {
    return livePostmasterPid(this.dataDir(member));
  }

  /** The lease deadman the agent of `member` started next to its PostgreSQL (src/ha/deadman.ts), when alive. */
  deadmanPid(member: string): number | null {
    return deadmanPidOf(`${this.dataDir(member)}.run`);
  }

  /** Which processes are alive. */
  processes(): {
    etcd: number | null;
    agents: Record<string, number | null>;
    postgres: Record<string, number | null>;
    deadman: Record<string, number | null>;
    proxy: number | null;
  } {
    const agents: Record<string, number | null> = {};
    const postgres: Record<string, number | null> = {};
    const deadman: Record<string, number | null> = {};
    for (const m of this.members()) {
      agents[m] = this.agentPid(m);
      postgres[m] = this.pgPid(m);
      deadman[m] = this.deadmanPid(m);
    }
    return { etcd: this.etcdPid(), agents, postgres, deadman, proxy: this.proxyPid() };
  }

  /** Every process of the cluster still alive, named for people ("agent pg1 (PID 123)"); the supervisor not included. */
  private survivors(): { pid: number; what: string }[] {
    const p = this.processes();
    const found: { pid: number; what: string }[] = [];
    if (p.proxy !== null) found.push({ pid: p.proxy, what: 'the proxy' });
    for (const m of this.members()) {
      if (p.agents[m] !== null) found.push({ pid: p.agents[m]!, what: `agent ${m}` });
      if (p.postgres[m] !== null) found.push({ pid: p.postgres[m]!, what: `PostgreSQL of ${m}` });
      if (p.deadman[m] !== null) found.push({ pid: p.deadman[m]!, what: `the lease deadman of ${m}` });
    }
    if (p.etcd !== null) found.push({ pid: p.etcd, what: 'etcd' });
    return found;
  }

  // ---- the supervisor ----------------------------------------------------------------------------------------

  /** The live supervisor of this cluster (foreground `pgwarden up` or `pgwarden supervise`), or null. */
  supervisor(): SupervisorRecord | null {
    const record = this.pids().supervisor ?? null;
    if (record === null || !isAlive(record.pid) || processStartTime(record.pid) !== record.startTime) return null;
    return record;
  }

  supervisorLogFile(): string {
    return path.join(this.dir, 'supervisor.log');
  }

  /** Records this process as the cluster's supervisor. */
  async recordSupervisor(mode: SupervisorRecord['mode']): Promise<void> {
    const startTime = processStartTime(process.pid);
    if (startTime === null) throw new PgwardenError('INTERNAL', `cannot read /proc/${process.pid}/stat to record the supervisor`);
    await this.recordPid((p) => {
      p.supervisor = { pid: process.pid, startTime, mode };
    });
  }

  /** Removes this process's supervisor record (another supervisor's is left alone). */
  async clearSupervisor(): Promise<void> {
    await this.recordPid((p) => {
      if (p.supervisor?.pid === process.pid) p.supervisor = null;
    });
  }

  /**
   * Stops the supervisor so that nothing is restarted while the cluster stops: a daemon just exits; a foreground
   * `pgwarden up` stops the whole cluster (as on Ctrl-C) and then exits. Resolves once it is gone.
   */
  async stopSupervisor(): Promise<void> {
    const record = this.supervisor();
    if (record === null || record.pid === process.pid) return;
    const ours = (): boolean => isAlive(record.pid) && processStartTime(record.pid) === record.startTime;
    if (record.mode === 'foreground') this.log(`asking the foreground \`pgwarden up\` (PID ${record.pid}) to stop the cluster…`);
    else this.log(`stopping the supervisor (PID ${record.pid})…`);
    await terminate(record.pid, ours, { graceMs: record.mode === 'foreground' ? FOREGROUND_STOP_MS : 10_000 });
    await this.recordPid((p) => {
      if (p.supervisor?.pid === record.pid) p.supervisor = null;
    });
  }

  // ---- the proxy -------------------------------------------------------------------------------------------

  proxyDir(): string {
    return path.join(this.dir, 'proxy');
  }

  proxyConfigFile(): string {
    return path.join(this.proxyDir(), 'proxy.yml');
  }

  proxyLogFile(): string {
    return path.join(this.proxyDir(), 'proxy.log');
  }

  /** The proxy's read-write port (to the primary); null before its first start. */
  proxyRwPort(): number | null {
    return this.state.proxy?.rwPort ?? null;
  }

  /** The proxy's read-only port (to the replicas); null before its first start. */
  proxyRoPort(): number | null {
    return this.state.proxy?.roPort ?? null;
  }

  /** The proxy's admin console (PgBouncer's SHOW, PAUSE, RELOAD …): database pgbouncer on the rw port. */
  proxyAdminUrl(): string | null {
    const port = this.proxyRwPort();
    return port === null ? null : `postgresql://127.0.0.1:${port}/pgbouncer`;
  }

  /** The proxy's Prometheus endpoint (pgbouncer_exporter's metric names), null before its first start. */
  proxyMetricsUrl(): string | null {
    const port = this.state.proxy?.metricsPort;
    return port === undefined ? null : `http://127.0.0.1:${port}/metrics`;
  }

  proxyPid(): number | null {
    const pid = this.pids().proxy;
    return isOurProcess(pid, this.proxyConfigFile()) ? pid : null;
  }

  /** The local CA and the proxy's certificate (`<dir>/tls`), made by the first `pgwarden up` that finds openssl. */
  tlsDir(): string {
    return path.join(this.dir, 'tls');
  }

  /** The local CA's certificate when the proxy serves TLS, else null. */
  proxyTlsCaFile(): string | null {
    const files = localCaFiles(this.tlsDir());
    return existsSync(files.serverCert) && existsSync(files.serverKey) && existsSync(files.caCert) ? files.caCert : null;
  }

  /** `proxyConnectionString(kind)` checked against the local CA: libpq's verify-full (host localhost is in the certificate). */
  proxyTlsConnectionString(kind: 'rw' | 'ro'): string | null {
    const ca = this.proxyTlsCaFile();
    if (ca === null) return null;
    const url = this.proxyConnectionString(kind).replace('@127.0.0.1:', '@localhost:');
    return `${url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca).replace(/%2F/g, '/')}`;
  }

  /** A superuser libpq URL through the proxy: `rw` reaches the primary, `ro` a replica. */
  proxyConnectionString(kind: 'rw' | 'ro'): string {
    const port = kind === 'rw' ? this.proxyRwPort() : this.proxyRoPort();
    if (port === null) throw new PgwardenError('UP_FAILED', `the proxy of the local cluster in ${this.dir} was never started: run \`pgwarden up\` first`);
    const { username, password } = this.secrets.superuser;
    return `postgresql://${encodeURIComponent(username)}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  }

  /** Starts the proxy (etcd mode) when it is not running and waits until its rw port accepts connections. */
  async startProxy(): Promise<void> {
    const running = this.proxyPid();
    if (running !== null) {
      this.log(`proxy already running (PID ${running})`);
      return;
    }
    if (this.state.proxy === undefined) {
      const [rwPort, roPort, metricsPort] = await freePorts(3);
      this.state.proxy = { rwPort, roPort, metricsPort };
      await writeJson(path.join(this.dir, FILES.cluster), this.state);
    } else if (this.state.proxy.metricsPort === undefined) {
      // A cluster made before the proxy had a metrics endpoint.
      const taken = new Set([this.state.proxy.rwPort, this.state.proxy.roPort, this.state.etcd.clientPort, this.state.etcd.peerPort, ...this.state.nodes.flatMap((n) => [n.pgPort, n.apiPort])]);
      let metricsPort = await freePort();
      while (taken.has(metricsPort)) metricsPort = await freePort();
      this.state.proxy.metricsPort = metricsPort;
      await writeJson(path.join(this.dir, FILES.cluster), this.state);
    }
    const { rwPort, roPort, metricsPort } = this.state.proxy;
    for (const port of [rwPort, roPort, metricsPort!]) {
      if (!(await portFreeWithin(port, PORT_RELEASE_MS))) {
        throw new PgwardenError(
          'UP_FAILED',
          `port ${port} (proxy of the local cluster in ${this.dir}) is taken by another program: stop that program, or create a new cluster in another --dir`,
        );
      }
    }
    await this.writeProxyFiles();
    const logFile = this.proxyLogFile();
    const log = await open(logFile, 'a');
    const child = spawn(process.execPath, [CLI_MAIN, 'proxy', '--config', this.proxyConfigFile()], {
      cwd: this.proxyDir(),
      stdio: ['ignore', log.fd, log.fd],
      detached: true,
      env: agentChildEnv(),
    });
    const started = spawned(child, 'the proxy');
    await log.close();
    const pid = await started;
    child.unref();
    await this.recordPid((p) => {
      p.proxy = pid;
    });
    const deadline = Date.now() + PROXY_START_MS;
    while (Date.now() < deadline) {
      if (!isOurProcess(pid, this.proxyConfigFile())) {
        throw new PgwardenError('UP_FAILED', `the proxy exited during its start; the end of ${logFile}:\n${await logTail(logFile)}`);
      }
      if (await portInUse(rwPort)) {
        this.log(`starting the proxy… ok (rw port ${rwPort}, ro port ${roPort}, admin console ${this.proxyAdminUrl()}, metrics ${this.proxyMetricsUrl()})`);
        const tls = this.proxyTlsConnectionString('rw');
        if (tls !== null) this.log(`proxy TLS: psql '${tls}'    # verified against the local CA ${this.proxyTlsCaFile()}`);
        if (this.members().every((m) => memberTlsPresent(this.memberDir(m)))) {
          this.log(`TLS inside the cluster: PostgreSQL ssl = on; replication and the proxy's server connections verify-full against ${localCaFiles(this.tlsDir()).caCert}`);
        }
        return;
      }
      await sleep(100);
    }
    throw new PgwardenError('UP_FAILED', `the proxy did not listen within ${PROXY_START_MS / 1000} s; the end of ${logFile}:\n${await logTail(logFile)}`);
  }

  /** Stops the proxy (SIGTERM: it finishes running transactions for a moment and leaves etcd). */
  async stopProxy(): Promise<void> {
    const pid = this.proxyPid();
    if (pid !== null) await terminate(pid, () => isOurProcess(pid, this.proxyConfigFile()), { graceMs: 10_000 });
    await this.recordPid((p) => {
      p.proxy = null;
    });
  }

  /** proxy.yml and userlist.txt, rewritten at each start from cluster.json and secrets.json. */
  private async writeProxyFiles(): Promise<void> {
    await mkdir(this.proxyDir(), { recursive: true, mode: 0o700 });
    const { username, password } = this.secrets.superuser;
    const quote = (v: string): string => `"${v.replace(/"/g, '""')}"`;
    // A plain password: the proxy can then log in to PostgreSQL with any method, before any client did SCRAM.
    await writeFileMode(path.join(this.proxyDir(), 'userlist.txt'), `${quote(username)} ${quote(password)}\n`, 0o600);
    const tls = await this.ensureProxyCertificate();
    const config = {
      id: 'proxy1',
      listen: `127.0.0.1:${this.state.proxy!.rwPort}`,
      listen_ro: `127.0.0.1:${this.state.proxy!.roPort}`,
      pool_mode: 'transaction',
      auth_type: 'scram-sha-256',
      auth_file: 'userlist.txt',
      query_wait_timeout: 60,
      // The superuser may use the PgBouncer-compatible console: psql -d pgbouncer through the rw port.
      admin_users: [username],
      etcd: { endpoints: [this.etcdEndpoint()], cluster: this.state.cluster },
      metrics_listen: `127.0.0.1:${this.state.proxy!.metricsPort!}`,
      ...(this.proxyWorkers === undefined ? {} : { workers: this.proxyWorkers }),
      // Both plaintext and TLS: the printed plain URLs keep working, verify-full works with <dir>/tls/ca.crt.
      ...(tls === null ? {} : { client_tls_cert_file: tls.serverCert, client_tls_key_file: tls.serverKey, client_tls_sslmode: 'allow' }),
      // The members serve TLS when their files were written with certificates: then checked like libpq's verify-full.
      ...(tls !== null && this.members().every((m) => memberTlsPresent(this.memberDir(m)))
        ? { server_tls_sslmode: 'verify-full', server_tls_ca_file: tls.caCert }
        : {}),
    };
    const text = `# Written by \`pgwarden up\` at each start from ${FILES.cluster} and ${FILES.secrets}.\n${YAML.stringify(config)}`;
    await writeFileMode(this.proxyConfigFile(), text, 0o600);
  }

  /** The local CA and proxy certificate, made once; null (with a log line) when openssl is not available. */
  private async ensureProxyCertificate(): Promise<LocalCaFiles | null> {
    if (this.proxyTlsCaFile() === null) {
      const missing = await opensslMissing();
      if (missing !== null) {
        // Asked for by the agent files and the proxy's file: said once.
        if (this.tlsSkipSaid) return null;
        this.tlsSkipSaid = true;
        this.log(
          `TLS skipped: ${missing}; PostgreSQL, replication and the proxy talk plaintext. Install openssl and run \`pgwarden up\` again to get a local CA in ${this.tlsDir()} (members get certificates when their agent file is written)`,
        );
        return null;
      }
    }
    const files = await ensureLocalCa(this.tlsDir());
    return files;
  }

  /** etcd and every agent are running. */
  isRunning(): boolean {
    return this.etcdPid() !== null && this.members().every((m) => this.agentPid(m) !== null);
  }

  /** Nothing of the cluster is running (etcd, agents, PostgreSQL servers, deadmen, proxy, supervisor). */
  isStopped(): boolean {
    return this.survivors().length === 0 && this.supervisor() === null;
  }

  /**
   * Starts etcd, every agent and the proxy that is not running; returns once each agent answers on its REST port
   * and the proxy listens.
   */
  async start(): Promise<void> {
    checkDependencies();
    this.checkPaths();
    if (this.isRunning()) {
      this.log(`already running (etcd PID ${this.etcdPid()}, agents ${this.members().map((m) => `${m} PID ${this.agentPid(m)}`).join(', ')})`);
      await this.startProxy();
      return;
    }
    await this.writeAgentFiles();
    await this.startEtcd();
    const pending = this.members().filter((m) => this.agentPid(m) === null);
    for (const m of this.members()) {
      if (!pending.includes(m)) this.log(`agent ${m} already running (PID ${this.agentPid(m)})`);
    }
    const started = await Promise.allSettled(pending.map((m) => this.spawnAgent(m)));
    // Reported in member order, so the progress reads top to bottom.
    for (let i = 0; i < pending.length; i++) {
      const result = started[i];
      if (result.status === 'rejected') throw result.reason;
      await this.waitAgentUp(pending[i], result.value);
      this.log(`starting agent ${pending[i]}… ok (API ${this.apiUrl(pending[i])}, PostgreSQL port ${this.pgPort(pending[i])})`);
    }
    await this.startProxy();
  }

  /** Starts etcd (no-op when it runs) and waits until it is healthy; start() does it before the agents. */
  async startEtcd(): Promise<void> {
    const existing = this.etcdPid();
    if (existing !== null) {
      this.log(`etcd already running (PID ${existing})`);
      return;
    }
    const { clientPort, peerPort } = this.state.etcd;
    for (const [port, what] of [
      [clientPort, 'client'],
      [peerPort, 'peer'],
    ] as const) {
      if (!(await portFreeWithin(port, PORT_RELEASE_MS))) {
        throw new PgwardenError(
          'UP_FAILED',
          `port ${port} (etcd ${what} port of the local cluster in ${this.dir}) is taken by another program: stop that program, or create a new cluster in another --dir`,
        );
      }
    }
    const etcdDir = path.join(this.dir, 'etcd');
    await mkdir(this.etcdDataDir(), { recursive: true, mode: 0o700 });
    const clientUrl = this.etcdEndpoint();
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const logFile = this.etcdLogFile();
    const log = await open(logFile, 'a');
    const child = spawn(
      ETCD_BIN,
      [
        '--name', 'local',
        '--data-dir', this.etcdDataDir(),
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', `local=${peerUrl}`,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', `pgwarden-${this.state.cluster}`,
        // Fast raft timings: one member on loopback, and the leases' minimum TTL follows the election timeout.
        '--heartbeat-interval', '100',
        '--election-timeout', '1000',
        '--logger', 'zap',
        '--log-level', 'warn',
      ],
      { cwd: etcdDir, stdio: ['ignore', log.fd, log.fd], detached: true },
    );
    // The 'spawn' event may come as soon as the next tick: listen before awaiting anything else.
    const started = spawned(child, 'etcd');
    await log.close();
    const pid = await started;
    child.unref();
    await this.recordPid((p) => {
      p.etcd = pid;
    });
    const deadline = Date.now() + ETCD_START_MS;
    while (Date.now() < deadline) {
      if (!isAlive(pid) || child.exitCode !== null) {
        throw new PgwardenError('UP_FAILED', `etcd exited during its start; the end of ${logFile}:\n${await logTail(logFile)}`);
      }
      if (await etcdHealthy(clientUrl)) {
        this.log(`starting etcd… ok (${clientUrl})`);
        return;
      }
      await sleep(100);
    }
    await terminate(pid, () => isOurProcess(pid, this.etcdDataDir()), { graceMs: 3000 });
    throw new PgwardenError('UP_FAILED', `etcd did not become healthy within ${ETCD_START_MS / 1000} s; the end of ${logFile}:\n${await logTail(logFile)}`);
  }

  private async spawnAgent(member: string): Promise<number> {
    const node = this.node(member);
    for (const [port, what] of [
      [node.apiPort, 'REST API'],
      [node.pgPort, 'PostgreSQL'],
    ] as const) {
      // PostgreSQL of this member may still run without its agent (agent killed): its port is ours.
      if (what === 'PostgreSQL' && this.pgPid(member) !== null) continue;
      if (!(await portFreeWithin(port, PORT_RELEASE_MS))) {
        throw new PgwardenError(
          'UP_FAILED',
          `port ${port} (${what} of ${member} in the local cluster ${this.dir}) is taken by another program: stop that program, or create a new cluster in another --dir`,
        );
      }
    }
    const logFile = this.agentLogFile(member);
    const log = await open(logFile, 'a');
    const child = spawn(process.execPath, [CLI_MAIN, 'agent', '--config', this.configFile(member)], {
      cwd: this.memberDir(member),
      stdio: ['ignore', log.fd, log.fd],
      detached: true,
      env: agentChildEnv(),
    });
    const started = spawned(child, `the agent of ${member}`);
    await log.close();
    const pid = await started;
    child.unref();
    await this.recordPid((p) => {
      p.agents[member] = pid;
    });
    return pid;
  }

  private async waitAgentUp(member: string, pid: number): Promise<void> {
    const url = `${this.apiUrl(member)}/liveness`;
    const deadline = Date.now() + AGENT_START_MS;
    while (Date.now() < deadline) {
      if (!isOurProcess(pid, this.configFile(member))) {
        throw new PgwardenError(
          'UP_FAILED',
          `the agent of ${member} exited during its start; the end of ${this.agentLogFile(member)}:\n${await logTail(this.agentLogFile(member))}`,
        );
      }
      try {
        await fetch(url, { signal: AbortSignal.timeout(500) });
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new PgwardenError(
      'UP_FAILED',
      `the agent of ${member} did not open its REST API within ${AGENT_START_MS / 1000} s; the end of ${this.agentLogFile(member)}:\n${await logTail(this.agentLogFile(member))}`,
    );
  }

  /** Starts `member`'s agent (no-op when it runs) and waits until its REST API answers. */
  async startAgent(member: string): Promise<void> {
    if (this.agentPid(member) !== null) return;
    await this.writeAgentFiles();
    const pid = await this.spawnAgent(member);
    await this.waitAgentUp(member, pid);
  }

  /** Sends `sig` to `member`'s agent (the test's crash); no-op when it is not running. */
  killAgent(member: string, sig: NodeJS.Signals = 'SIGKILL'): void {
    const pid = this.agentPid(member);
    if (pid !== null) signal(pid, sig);
  }

  /** Sends `sig` to `member`'s postmaster; no-op when it is not running. */
  killPostgres(member: string, sig: NodeJS.Signals = 'SIGKILL'): void {
    const pid = this.pgPid(member);
    if (pid !== null) signal(pid, sig);
  }

  /** Stops `member`'s agent cleanly (it shuts PostgreSQL down and releases its keys), then any PostgreSQL left. */
  async stopAgent(member: string): Promise<void> {
    const pid = this.agentPid(member);
    if (pid !== null) {
      await terminate(pid, () => isOurProcess(pid, this.configFile(member)), { graceMs: AGENT_STOP_MS });
    }
    await this.stopOrphanPostgres(member);
    // Its PostgreSQL is down, so the deadman has nothing left to guard; left alone it would linger for seconds.
    const deadman = this.deadmanPid(member);
    if (deadman !== null && this.pgPid(member) === null) {
      await terminate(deadman, () => this.deadmanPid(member) === deadman, { graceMs: 2000 });
    }
    await this.recordPid((p) => {
      delete p.agents[member];
    });
  }

  /** A PostgreSQL whose agent is gone (killed) is shut down directly: fast, then immediate, then SIGKILL. */
  private async stopOrphanPostgres(member: string): Promise<void> {
    const pid = this.pgPid(member);
    if (pid === null) return;
    signal(pid, 'SIGCONT');
    signal(pid, 'SIGINT');
    if (await waitUntil(() => this.pgPid(member) === null, 20_000)) return;
    signal(pid, 'SIGQUIT');
    if (await waitUntil(() => this.pgPid(member) === null, 5000)) return;
    signal(pid, 'SIGKILL');
    await waitUntil(() => this.pgPid(member) === null, 5000);
  }

  /**
   * Stops the agents (replicas first, then the leader, so nobody fails over) and then etcd, by PID. Data and
   * configuration stay; `start()` brings the same cluster back.
   */
  async stop(): Promise<void> {
    let leader: string | null = null;
    if (this.etcdPid() !== null) {
      try {
        leader = (await this.view()).leader?.name ?? null;
      } catch {
        // etcd not answering: any order will do.
      }
    }
    await this.closeClient();
    if (this.proxyPid() !== null) this.log('stopping the proxy…');
    await this.stopProxy();
    const replicas = this.members().filter((m) => m !== leader);
    const running = (m: string) => this.agentPid(m) !== null || this.pgPid(m) !== null;
    const replicasRunning = replicas.filter(running);
    if (replicasRunning.length > 0) this.log(`stopping ${replicasRunning.join(', ')}…`);
    await Promise.all(replicas.map((m) => this.stopAgent(m)));
    if (leader !== null && running(leader)) {
      this.log(`stopping ${leader} (the primary)…`);
      await this.stopAgent(leader);
    }
    const etcd = this.etcdPid();
    if (etcd !== null) {
      this.log('stopping etcd…');
      await terminate(etcd, () => isOurProcess(etcd, this.etcdDataDir()), { graceMs: 10_000 });
    }
    await this.recordPid((p) => {
      p.etcd = null;
      p.agents = {};
    });
    await this.waitStragglers();
  }

  /** Returns once no process of the cluster is left, or throws TIMEOUT naming what is. */
  private async waitStragglers(): Promise<void> {
    let left = this.survivors();
    if (left.length === 0) return;
    this.log(`waiting for ${left.map((s) => `${s.what} (PID ${s.pid})`).join(', ')} to exit…`);
    if (await waitUntil(() => this.survivors().length === 0, LEFTOVER_MS)) return;
    left = this.survivors();
    throw new PgwardenError(
      'TIMEOUT',
      `still running ${LEFTOVER_MS / 1000} s after the local cluster in ${this.dir} was stopped: ${left.map((s) => `${s.what} (PID ${s.pid})`).join(', ')}; ` +
        `end them with \`kill -9 ${left.map((s) => s.pid).join(' ')}\` and look at the logs in ${this.dir}`,
    );
  }

  // ---- the cluster as etcd sees it ----------------------------------------------------------------------------

  /** A client of the cluster's etcd keys (kept open until stop() or close()). */
  dcs(): EtcdDcs {
    if (this.client === null) {
      this.client = new EtcdDcs({ endpoints: [this.etcdEndpoint()], cluster: this.state.cluster, callTimeoutMs: 2000 });
    }
    return this.client;
  }

  async view(): Promise<ClusterView> {
    return this.dcs().load();
  }

  /** Closes the etcd client; the processes keep running. */
  async close(): Promise<void> {
    await this.closeClient();
  }

  private async closeClient(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client) await client.close();
  }

  /**
   * Waits until a leader runs as primary and every other member streams from it. Logs each step once; fails
   * with each member's state and last reason (and where its log is) when `timeoutMs` passes or an agent dies.
   */
  async waitHealthy(timeoutMs = DEFAULT_HEALTHY_MS): Promise<ClusterView> {
    const deadline = Date.now() + timeoutMs;
    const said = new Set<string>();
    const say = (line: string): void => {
      if (said.has(line)) return;
      said.add(line);
      this.log(line);
    };
    let last: ClusterView | null = null;
    let lastError: unknown = null;
    say('waiting for a primary…');
    for (;;) {
      for (const m of this.members()) {
        if (this.agentPid(m) === null) {
          throw new PgwardenError(
            'UP_FAILED',
            `the agent of ${m} is not running; the end of ${this.agentLogFile(m)}:\n${await logTail(this.agentLogFile(m))}`,
          );
        }
      }
      try {
        last = await this.view();
        lastError = null;
      } catch (e) {
        lastError = e;
      }
      if (last !== null) {
        const leader = last.leader?.name ?? null;
        const primary = leader !== null ? last.members[leader] : undefined;
        if (primary && primary.role === 'primary' && primary.state === 'running') {
          say(`${leader} is the primary (timeline ${primary.timeline ?? '?'})`);
          const replicas = this.members().filter((m) => m !== leader);
          if (replicas.length > 0) say(`waiting for ${replicas.join(', ')} to stream from ${leader}…`);
          for (const m of replicas) if (isHealthyReplica(last.members[m])) say(`${m} is streaming`);
          if (replicas.every((m) => isHealthyReplica(last!.members[m]))) return last;
        }
      }
      if (Date.now() >= deadline) break;
      await sleep(250);
    }
    const lines = this.members().map((m) => {
      const status = last?.members[m];
      return status
        ? `  ${m}: ${status.role}, ${status.state}: ${status.reason} (log: ${this.agentLogFile(m)})`
        : `  ${m}: not registered in etcd (log: ${this.agentLogFile(m)})`;
    });
    throw new PgwardenError(
      'TIMEOUT',
      `the local cluster did not become healthy within ${Math.round(timeoutMs / 1000)} s` +
        (lastError !== null ? ` (last etcd error: ${describeError(lastError)})` : '') +
        `:\n${lines.join('\n')}\nLook at the agents' logs; stop the cluster with \`pgwarden down --dir ${this.dir}\``,
    );
  }
}

async function writeFileMode(file: string, text: string, mode: number): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}`;
  await writeFile(temporary, text, { mode });
  await chmod(temporary, mode);
  await rename(temporary, file);
}

/** Resolves with the PID once the process is running; rejects when it could not be started at all. */
function spawned(child: ReturnType<typeof spawn>, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      reject(
        new PgwardenError(
          e.code === 'ENOENT' ? 'DEPENDENCY_MISSING' : 'UP_FAILED',
          `${what} could not be started: ${e.message}`,
          { cause: e },
        ),
      );
    });
    child.once('spawn', () => resolve(child.pid!));
  });
}

/** etcd's own /health answer: true once the member serves requests. Tests use it too. */
export async function etcdHealthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(500) });
    const body = (await response.json()) as { health?: string };
    return response.ok && body.health === 'true';
  } catch {
    return false;
  }
}
