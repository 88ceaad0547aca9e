/**
 * A whole pgwarden cluster for chaos tests: a 3-member etcd, 3 agents each with its PostgreSQL, and 2 proxies
 * in etcd mode, every one on its own host of a Lab (a network namespace each in netns mode, loopback behind
 * fault-injecting relays in relay mode), so that partitions between any hosts are real.
 *
 * It runs the product's own entry points (`node dist/src/cli/main.js agent --config …` and `proxy --config …`)
 * with the files `pgwarden up` writes (src/up/local-cluster.ts), and the real /usr/bin/etcd. Every process is
 * ended by its PID: stop() (and, should the harness die, a process-exit hook) ends all it started and destroys
 * the lab.
 */
import { type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { agentChildEnv } from '../../src/config/cli.js';
import { EtcdDcs } from '../../src/dcs/etcd.js';
import { deadmanPidOf } from '../../src/ha/deadman.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../../src/cluster/dynamic-config.js';
import type { ClusterView, MemberStatus } from '../../src/cluster/types.js';
import { ETCD_BIN, PG_BIN_DIR } from '../../src/up/dependencies.js';
import { newSecrets, type Secrets } from '../../src/up/state.js';
import { livePostmasterPid } from '../../src/postgres/lock-files.js';
import { isAlive, signal } from '../../src/processes.js';
import { exitOnSignals, type CutOptions, type Lab, type LabMode, type ServiceAddress } from './lab.js';
import { NetLab } from './netlab.js';
import { RelayLab } from './relaylab.js';

const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const CLUSTER = 'chaos';

/** The ports each service would have on a real host; relay mode maps them to free loopback ports. */
const PORTS = { etcdClient: 2379, etcdPeer: 2380, pg: 5432, api: 8008, proxyRw: 6432, proxyRo: 6433 } as const;

export type ProcessKind = 'etcd' | 'agent' | 'proxy';
/** What to signal on an agent's host. */
/** 'host': every process of the host — the agent and its children (the deadman), the postmaster and its backends. */
export type AgentTarget = 'pg' | 'agent' | 'both' | 'host';

export interface ChaosClusterOptions {
  /** 'auto' (default): netns when NetLab.available(), else relay. */
  mode?: 'auto' | LabMode;
  agents?: number;
  etcdMembers?: number;
  proxies?: number;
  /** Synchronous replication (default true). */
  synchronous_mode?: boolean;
  /** Leader lease, seconds (default 5). */
  ttl?: number;
  /** HA loop period, seconds (default 1). */
  loop_wait?: number;
  /** More dynamic settings (bootstrap.dcs). */
  dynamic?: Partial<DynamicConfig>;
  /** PostgreSQL parameters of every member. */
  parameters?: Record<string, string | number | boolean>;
  /** Parent of the cluster's temp directory (default /tmp). */
  baseDir?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

interface Proc {
  kind: ProcessKind;
  host: string;
  child: ChildProcess;
  pid: number;
}

export interface StopOptions {
  /** Keep the cluster's directory (logs, data) for a post-mortem; default false. */
  keepFiles?: boolean;
}

function alive(p: Proc | undefined): p is Proc {
  return p !== undefined && p.child.exitCode === null && p.child.signalCode === null;
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

function tcpOpen(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function etcdHealthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === 'true';
  } catch {
    return false;
  }
}

const hp = (a: { host: string; port: number }): string => `${a.host}:${a.port}`;

/** `roots` and every process descending from them (from /proc), roots first. */
function descendants(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // The process ended while we looked.
    }
  }
  const out: number[] = [];
  const queue = [...roots];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (out.includes(pid)) continue;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

export class ChaosCluster {
  readonly etcdHosts: string[];
  readonly agentHosts: string[];
  readonly proxyHosts: string[];
  readonly synchronousMode: boolean;
  private labInstance: Lab | null = null;
  private dirPath: string | null = null;
  private readonly secrets: Secrets = newSecrets();
  private readonly services = new Map<string, ServiceAddress>();
  private readonly procs = new Map<string, Proc>();
  /** Every postmaster PID seen, so that stop() and the exit hook can end one whose agent is gone. */
  private readonly postmasters = new Map<string, number>();
  private client: EtcdDcs | null = null;
  private readonly log: (line: string) => void;
  private readonly dynamic: Partial<DynamicConfig>;
  private readonly parameters: Record<string, string | number | boolean>;
  private readonly exitHook = (): void => this.killAllSync();

  constructor(private readonly options: ChaosClusterOptions = {}) {
    const count = (n: number | undefined, d: number): number => n ?? d;
    this.etcdHosts = Array.from({ length: count(options.etcdMembers, 3) }, (_, i) => `etcd${i + 1}`);
    this.agentHosts = Array.from({ length: count(options.agents, 3) }, (_, i) => `pg${i + 1}`);
    this.proxyHosts = Array.from({ length: count(options.proxies, 2) }, (_, i) => `proxy${i + 1}`);
    this.synchronousMode = options.synchronous_mode ?? true;
    this.log = options.log ?? (() => undefined);
    this.dynamic = {
      ttl: options.ttl ?? DEFAULT_DYNAMIC_CONFIG.ttl,
      loop_wait: options.loop_wait ?? DEFAULT_DYNAMIC_CONFIG.loop_wait,
      synchronous_mode: this.synchronousMode,
      ...(options.dynamic ?? {}),
    };
    // fsync off: a kill -9 of PostgreSQL loses nothing the OS has (only a machine crash would), and it saves the
    // loaded test machine a lot of time. full_page_writes stays on: pg_rewind refuses to work without it.
    this.parameters = { fsync: 'off', ...(options.parameters ?? {}) };
  }

  get lab(): Lab {
    if (this.labInstance === null) throw new Error('the chaos cluster is not started: call start() first');
    return this.labInstance;
  }

  get mode(): LabMode {
    return this.lab.mode;
  }

  get dir(): string {
    if (this.dirPath === null) throw new Error('the chaos cluster is not started: call start() first');
    return this.dirPath;
  }

  hosts(): string[] {
    return [...this.etcdHosts, ...this.agentHosts, ...this.proxyHosts];
  }

  /** The lab the harness should use: NetLab when it works here, else RelayLab (with the reason). */
  static async chooseLab(mode: 'auto' | LabMode = 'auto'): Promise<{ lab: Lab; why: string | null }> {
    if (mode === 'relay') return { lab: new RelayLab(), why: 'relay mode was asked for' };
    const available = await NetLab.available();
    if (available.ok) {
      NetLab.sweepStale();
      return { lab: new NetLab(), why: null };
    }
    if (mode === 'netns') throw new Error(`netns mode was asked for, but ${available.why}`);
    return { lab: new RelayLab(), why: available.why };
  }

  // ---- addresses ---------------------------------------------------------------------------------------------

  private service(host: string, name: string): ServiceAddress {
    const s = this.services.get(`${host}/${name}`);
    if (s === undefined) throw new Error(`host ${host} has no service ${name}`);
    return s;
  }

  private hostDir(host: string): string {
    return path.join(this.dir, host);
  }

  etcdEndpoints(): string[] {
    return this.etcdHosts.map((h) => `http://${hp(this.service(h, 'etcd-client').advertise)}`);
  }

  /** Where clients reach `member`'s PostgreSQL. */
  pgAddress(member: string): { host: string; port: number } {
    return this.service(member, 'pg').advertise;
  }

  apiUrl(member: string): string {
    return `http://${hp(this.service(member, 'api').advertise)}`;
  }

  dataDir(member: string): string {
    return path.join(this.hostDir(member), 'data');
  }

  logFile(host: string): string {
    const kind = this.kindOf(host);
    return path.join(this.hostDir(host), `${kind}.log`);
  }

  /** PostgreSQL's own server log of `member` (pgwarden keeps it in <data>.run). */
  pgLogFile(member: string): string {
    return path.join(`${this.dataDir(member)}.run`, 'postgresql.log');
  }

  /** A superuser URL straight to `member`'s PostgreSQL. */
  connectionString(member: string): string {
    const { username, password } = this.secrets.superuser;
    const a = this.pgAddress(member);
    return `postgresql://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${a.host}:${a.port}/postgres`;
  }

  /** A superuser URL through `proxy`: rw reaches the primary, ro a replica. */
  proxyConnectionString(proxy: string, kind: 'rw' | 'ro'): string {
    const { username, password } = this.secrets.superuser;
    const a = this.service(proxy, kind === 'rw' ? 'proxy-rw' : 'proxy-ro').advertise;
    return `postgresql://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${a.host}:${a.port}/postgres`;
  }

  credentials(): Secrets {
    return structuredClone(this.secrets);
  }

  private kindOf(host: string): ProcessKind {
    if (this.etcdHosts.includes(host)) return 'etcd';
    if (this.agentHosts.includes(host)) return 'agent';
    if (this.proxyHosts.includes(host)) return 'proxy';
    throw new Error(`unknown host "${host}"; the hosts are ${this.hosts().join(', ')}`);
  }

  // ---- start ---------------------------------------------------------------------------------------------------

  /** Creates the lab, writes every file, starts etcd, the agents and the proxies; returns once all listen. */
  async start(): Promise<void> {
    if (this.labInstance !== null) throw new Error('the chaos cluster was already started');
    const { lab, why } = await ChaosCluster.chooseLab(this.options.mode);
    this.labInstance = lab;
    this.log(`chaos lab: ${lab.mode}${why !== null ? ` (${why})` : ''}`);
    process.once('exit', this.exitHook);
    exitOnSignals();
    const base = this.options.baseDir ?? '/tmp';
    this.dirPath = await mkdtemp(path.join(base, 'pgwc-'));
    // PostgreSQL runs as postgres: it must be able to pass through the directory.
    await chmod(this.dirPath, 0o755);
    await lab.create(this.hosts());
    for (const h of this.etcdHosts) {
      this.services.set(`${h}/etcd-client`, await lab.expose(h, 'etcd-client', PORTS.etcdClient));
      this.services.set(`${h}/etcd-peer`, await lab.expose(h, 'etcd-peer', PORTS.etcdPeer));
    }
    for (const h of this.agentHosts) {
      this.services.set(`${h}/pg`, await lab.expose(h, 'pg', PORTS.pg));
      this.services.set(`${h}/api`, await lab.expose(h, 'api', PORTS.api));
      lab.trackProcess(h, () => this.postmasterPid(h));
    }
    for (const h of this.proxyHosts) {
      this.services.set(`${h}/proxy-rw`, await lab.expose(h, 'proxy-rw', PORTS.proxyRw));
      this.services.set(`${h}/proxy-ro`, await lab.expose(h, 'proxy-ro', PORTS.proxyRo));
    }
    for (const h of this.hosts()) await mkdir(this.hostDir(h), { recursive: true, mode: 0o755 });
    await Promise.all(this.agentHosts.map((h) => this.writeAgentFile(h)));
    await Promise.all(this.proxyHosts.map((h) => this.writeProxyFiles(h)));
    await Promise.all(this.etcdHosts.map((h) => this.startEtcd(h)));
    this.log(`etcd up: ${this.etcdEndpoints().join(', ')}`);
    await Promise.all(this.agentHosts.map((h) => this.startAgent(h)));
    this.log(`agents up: ${this.agentHosts.map((h) => this.apiUrl(h)).join(', ')}`);
    await Promise.all(this.proxyHosts.map((h) => this.startProxy(h)));
    this.log(`proxies up: ${this.proxyHosts.map((h) => hp(this.service(h, 'proxy-rw').advertise)).join(', ')}`);
  }

  private async spawnOn(kind: ProcessKind, host: string, argv: string[], env?: Record<string, string>): Promise<Proc> {
    const existing = this.procs.get(host);
    // Right after a kill the exit may not have been reaped yet.
    if (alive(existing) && !(await waitFor(() => !alive(existing), 5000))) {
      throw new Error(`the ${kind} on ${host} is running already (PID ${existing.pid})`);
    }
    const log = await open(this.logFile(host), 'a');
    const child = this.lab.spawn(host, argv, { cwd: this.hostDir(host), stdio: ['ignore', log.fd, log.fd], env });
    // The 'spawn' event may come as soon as the next tick: listen before awaiting anything else.
    const started = new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new Error(`the ${kind} on ${host} could not be started: ${e.message}`)));
      child.once('spawn', () => resolve(child.pid!));
    });
    await log.close();
    const pid = await started;
    child.unref();
    const proc: Proc = { kind, host, child, pid };
    this.procs.set(host, proc);
    return proc;
  }

  private async failStart(proc: Proc, what: string): Promise<never> {
    throw new Error(`${what}; the end of ${this.logFile(proc.host)}:\n${await this.logTail(proc.host)}`);
  }

  /** Starts (or restarts) etcd on `host` with its data directory; waits until it answers /health. */
  async startEtcd(host: string): Promise<void> {
    const client = this.service(host, 'etcd-client');
    const peer = this.service(host, 'etcd-peer');
    const cluster = this.etcdHosts.map((h) => `${h}=http://${hp(this.service(h, 'etcd-peer').advertise)}`).join(',');
    const proc = await this.spawnOn('etcd', host, [
      ETCD_BIN,
      '--name', host,
      '--data-dir', path.join(this.hostDir(host), 'data'),
      '--listen-client-urls', `http://${hp(client.listen)}`,
      '--advertise-client-urls', `http://${hp(client.advertise)}`,
      '--listen-peer-urls', `http://${hp(peer.listen)}`,
      '--initial-advertise-peer-urls', `http://${hp(peer.advertise)}`,
      '--initial-cluster', cluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', `pgwc-${path.basename(this.dir)}`,
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      '--logger', 'zap',
      '--log-level', 'warn',
    ]);
    // A member of a new cluster answers /health only once a quorum formed: the others start in parallel.
    const url = `http://${hp(client.advertise)}`;
    const ok = await waitFor(async () => !alive(proc) || (await etcdHealthy(url)), 30_000, 200);
    if (!alive(proc)) await this.failStart(proc, `etcd on ${host} exited during its start`);
    if (!ok) await this.failStart(proc, `etcd on ${host} did not become healthy within 30 s`);
  }

  private async writeAgentFile(member: string): Promise<void> {
    const s = this.secrets;
    const pg = this.service(member, 'pg');
    const api = this.service(member, 'api');
    const cidr = this.lab.networkCidr();
    const config = {
      cluster: CLUSTER,
      name: member,
      etcd: { endpoints: this.etcdEndpoints() },
      api: { listen: hp(api.listen), connect_url: `http://${hp(api.advertise)}`, username: s.api.username, password: s.api.password },
      postgresql: {
        data_dir: this.dataDir(member),
        bin_dir: PG_BIN_DIR,
        listen: hp(pg.listen),
        connect_address: hp(pg.advertise),
        parameters: this.parameters,
        // The other members, the proxies and the harness come from the lab's network.
        pg_hba_extra: cidr === null ? [] : [cidr],
        superuser: s.superuser,
        replication: s.replication,
        rewind: s.rewind,
      },
      bootstrap: { dcs: this.dynamic },
      log: { level: 'info' },
    };
    await writeFile(path.join(this.hostDir(member), 'agent.yml'), YAML.stringify(config), { mode: 0o600 });
  }

  private agentConfigFile(member: string): string {
    return path.join(this.hostDir(member), 'agent.yml');
  }

  /** Starts `member`'s agent (its PostgreSQL may still run); waits until its REST API answers. */
  async startAgent(member: string): Promise<void> {
    if (this.kindOf(member) !== 'agent') throw new Error(`${member} is not an agent host`);
    const proc = await this.spawnOn('agent', member, [process.execPath, CLI_MAIN, 'agent', '--config', this.agentConfigFile(member)], agentChildEnv());
    const url = `${this.apiUrl(member)}/liveness`;
    const up = async (): Promise<boolean> => {
      try {
        await fetch(url, { signal: AbortSignal.timeout(1000) });
        return true;
      } catch {
        return false;
      }
    };
    const ok = await waitFor(async () => !alive(proc) || (await up()), 60_000, 200);
    if (!alive(proc)) await this.failStart(proc, `the agent of ${member} exited during its start`);
    if (!ok) await this.failStart(proc, `the agent of ${member} did not open its REST API within 60 s`);
  }

  private async writeProxyFiles(proxy: string): Promise<void> {
    const { username, password } = this.secrets.superuser;
    const quote = (v: string): string => `"${v.replace(/"/g, '""')}"`;
    // A plain password: the proxy can log in to PostgreSQL with it before any client did SCRAM.
    await writeFile(path.join(this.hostDir(proxy), 'userlist.txt'), `${quote(username)} ${quote(password)}\n`, { mode: 0o600 });
    const config = {
      id: proxy,
      listen: hp(this.service(proxy, 'proxy-rw').listen),
      listen_ro: hp(this.service(proxy, 'proxy-ro').listen),
      pool_mode: 'transaction',
      auth_type: 'scram-sha-256',
      auth_file: 'userlist.txt',
      query_wait_timeout: 30,
      admin_users: [username],
      etcd: { endpoints: this.etcdEndpoints(), cluster: CLUSTER },
    };
    await writeFile(path.join(this.hostDir(proxy), 'proxy.yml'), YAML.stringify(config), { mode: 0o600 });
  }

  /** Starts `proxy`; waits until its rw port accepts connections. */
  async startProxy(proxy: string): Promise<void> {
    if (this.kindOf(proxy) !== 'proxy') throw new Error(`${proxy} is not a proxy host`);
    const proc = await this.spawnOn('proxy', proxy, [process.execPath, CLI_MAIN, 'proxy', '--config', path.join(this.hostDir(proxy), 'proxy.yml')], agentChildEnv());
    const rw = this.service(proxy, 'proxy-rw').listen;
    const ok = await waitFor(async () => !alive(proc) || (await tcpOpen(rw.host, rw.port)), 30_000, 200);
    if (!alive(proc)) await this.failStart(proc, `the proxy ${proxy} exited during its start`);
    if (!ok) await this.failStart(proc, `the proxy ${proxy} did not listen within 30 s`);
  }

  // ---- processes ------------------------------------------------------------------------------------------------

  /** PID of the process the cluster started on `host` (etcd, agent or proxy), when it runs. */
  pid(host: string): number | null {
    const p = this.procs.get(host);
    return alive(p) ? p.pid : null;
  }

  /** The lease deadman of `member` (from its PID file), when it runs. */
  deadmanPid(member: string): number | null {
    return deadmanPidOf(`${this.dataDir(member)}.run`);
  }

  /** The postmaster of `member` (from postmaster.pid), when it runs. */
  postmasterPid(member: string): number | null {
    const pid = livePostmasterPid(this.dataDir(member));
    if (pid !== null) this.postmasters.set(member, pid);
    return pid;
  }

  private targets(host: string, what: AgentTarget | undefined): number[] {
    const kind = this.kindOf(host);
    const out: number[] = [];
    const own = this.pid(host);
    if (kind !== 'agent') {
      if (own !== null) out.push(own);
      return out;
    }
    const w = what ?? 'both';
    // The deadman belongs to the host even when an earlier agent process started it (it then has another parent).
    if (w === 'host') return descendants([own, this.deadmanPid(host), this.postmasterPid(host)].filter((p): p is number => p !== null));
    if ((w === 'agent' || w === 'both') && own !== null) out.push(own);
    const pm = this.postmasterPid(host);
    if ((w === 'pg' || w === 'both') && pm !== null) out.push(pm);
    return out;
  }

  /**
   * Sends `signal` (default SIGKILL) to what runs on `host`: for an agent host its PostgreSQL ('pg'), its agent
   * ('agent') or both (default); for etcd and proxy hosts their one process. Returns the PIDs signalled.
   */
  kill(host: string, what?: AgentTarget, sig: NodeJS.Signals = 'SIGKILL'): number[] {
    const pids = this.targets(host, what);
    for (const pid of pids) signal(pid, sig);
    return pids;
  }

  /** SIGSTOP: the processes freeze, their sockets stay open (a hung host); sigcont() thaws them. */
  sigstop(host: string, what?: AgentTarget): number[] {
    return this.kill(host, what, 'SIGSTOP');
  }

  sigcont(host: string, what?: AgentTarget): number[] {
    return this.kill(host, what, 'SIGCONT');
  }

  // ---- network --------------------------------------------------------------------------------------------------

  cut(from: string[], to: string[], options?: CutOptions): Promise<void> {
    return this.lab.cut(from, to, options);
  }

  heal(from?: string[], to?: string[], options?: CutOptions): Promise<void> {
    return this.lab.heal(from, to, options);
  }

  healAll(): Promise<void> {
    return this.lab.healAll();
  }

  // ---- the cluster as etcd sees it -------------------------------------------------------------------------

  /** A client of the cluster's keys from the harness (never cut). */
  dcs(): EtcdDcs {
    if (this.client === null) this.client = new EtcdDcs({ endpoints: this.etcdEndpoints(), cluster: CLUSTER, callTimeoutMs: 3000 });
    return this.client;
  }

  view(): Promise<ClusterView> {
    return this.dcs().load();
  }

  /** The member holding the leader key, or null. */
  async leader(): Promise<string | null> {
    return (await this.view()).leader?.name ?? null;
  }

  /** Members as etcd shows them (a partitioned member's key may be stale or expired). */
  async members(): Promise<Record<string, MemberStatus>> {
    return (await this.view()).members;
  }

  /** The etcd member that is raft leader now (asked of every member; the first answer that names one wins), or null. */
  async etcdLeader(): Promise<string | null> {
    const statuses = await Promise.all(
      this.etcdHosts.map(async (h) => {
        try {
          const res = await fetch(`http://${hp(this.service(h, 'etcd-client').advertise)}/v3/maintenance/status`, {
            method: 'POST',
            body: '{}',
            signal: AbortSignal.timeout(2000),
          });
          const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
          return { host: h, id: body.header?.member_id ?? null, leader: body.leader ?? null };
        } catch {
          return { host: h, id: null, leader: null };
        }
      }),
    );
    const leaderId = statuses.find((s) => s.leader !== null && s.leader !== '0')?.leader ?? null;
    return statuses.find((s) => s.id !== null && s.id === leaderId)?.host ?? null;
  }

  /**
   * Asks for a planned switchover through the leader's REST API (POST /switchover, as `pgwarden switchover` does);
   * `to` null lets the cluster choose. Returns the HTTP status and body; the switchover itself happens afterwards.
   */
  async switchover(to: string | null = null): Promise<{ status: number; body: string }> {
    const leader = await this.leader();
    if (leader === null) throw new Error('there is no leader to switch over from');
    const { username, password } = this.secrets.api;
    const res = await fetch(`${this.apiUrl(leader)}/switchover`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` },
      body: JSON.stringify(to === null ? { leader } : { leader, candidate: to }),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: await res.text() };
  }

  /**
   * Waits until a leader runs as primary, every other member streams from it, and (in synchronous mode) `sync`
   * names a standby. Throws with each member's state and reason after `timeoutMs`.
   */
  async waitHealthy(timeoutMs = 120_000): Promise<ClusterView> {
    let last: ClusterView | null = null;
    let lastError: unknown = null;
    const healthy = async (): Promise<boolean> => {
      for (const m of this.agentHosts) {
        const p = this.procs.get(m);
        if (!alive(p)) throw new Error(`the agent of ${m} is not running; the end of its log:\n${await this.logTail(m)}`);
      }
      try {
        last = await this.view();
        lastError = null;
      } catch (e) {
        lastError = e;
        return false;
      }
      const v: ClusterView = last;
      const leader = v.leader?.name;
      if (leader === undefined) return false;
      const primary = v.members[leader];
      if (!primary || primary.role !== 'primary' || primary.state !== 'running') return false;
      const replicasOk = this.agentHosts
        .filter((m) => m !== leader)
        .every((m) => v.members[m]?.role === 'replica' && v.members[m]?.state === 'streaming' && v.members[m]?.following === leader);
      if (!replicasOk) return false;
      if (this.synchronousMode && this.agentHosts.length > 1) return v.sync?.leader === leader && (v.sync?.members.length ?? 0) > 0;
      return true;
    };
    if (await waitFor(healthy, timeoutMs, 250)) return last!;
    const v = last as ClusterView | null;
    const lines = this.agentHosts.map((m) => {
      const s = v?.members[m];
      return s ? `  ${m}: ${s.role}, ${s.state}, following ${s.following ?? '-'}: ${s.reason}` : `  ${m}: not registered in etcd`;
    });
    throw new Error(
      `the chaos cluster did not become healthy within ${Math.round(timeoutMs / 1000)} s (leader ${v?.leader?.name ?? 'none'}, sync ${JSON.stringify(v?.sync ?? null)})` +
        (lastError !== null ? `; last etcd error: ${(lastError as Error).message}` : '') +
        `:\n${lines.join('\n')}\nlogs in ${this.dir}`,
    );
  }

  async logTail(host: string, lines = 20): Promise<string> {
    try {
      const text = await readFile(this.logFile(host), 'utf8');
      return text
        .trimEnd()
        .split('\n')
        .slice(-lines)
        .map((l) => `    ${l.length > 400 ? `${l.slice(0, 400)}…` : l}`)
        .join('\n');
    } catch {
      return '    (no log)';
    }
  }

  // ---- stop ------------------------------------------------------------------------------------------------------

  private async end(pid: number, first: NodeJS.Signals, graceMs: number): Promise<void> {
    if (!isAlive(pid)) return;
    signal(pid, first);
    // A stopped process acts on a signal only once it runs again.
    signal(pid, 'SIGCONT');
    if (await waitFor(() => !isAlive(pid), graceMs)) return;
    signal(pid, 'SIGKILL');
    await waitFor(() => !isAlive(pid), 5000);
  }

  private async endProc(host: string, graceMs: number): Promise<void> {
    const p = this.procs.get(host);
    if (!alive(p)) return;
    const exited = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
    await this.end(p.pid, 'SIGTERM', graceMs);
    await Promise.race([exited, sleep(2000)]);
  }

  /** A PostgreSQL whose agent is gone: fast shutdown, then immediate, then SIGKILL. */
  private async endPostgres(member: string): Promise<void> {
    const pid = this.postmasterPid(member) ?? this.postmasters.get(member) ?? null;
    if (pid === null || !isAlive(pid)) return;
    signal(pid, 'SIGCONT');
    signal(pid, 'SIGINT');
    if (await waitFor(() => !isAlive(pid), 15_000)) return;
    signal(pid, 'SIGQUIT');
    if (await waitFor(() => !isAlive(pid), 5000)) return;
    signal(pid, 'SIGKILL');
    await waitFor(() => !isAlive(pid), 5000);
  }

  /**
   * Ends everything the cluster started, by PID (proxies, agents with their PostgreSQL, etcd), destroys the lab
   * and removes the directory (unless keepFiles). Safe to call more than once and after a failed start().
   */
  async stop(options: StopOptions = {}): Promise<void> {
    const lab = this.labInstance;
    if (lab !== null) {
      // Shutdown traffic (lease revocation, PostgreSQL's last WAL) should flow; frozen processes must run to exit.
      await lab.healAll().catch(() => undefined);
    }
    for (const p of this.procs.values()) if (alive(p)) signal(p.pid, 'SIGCONT');
    for (const m of this.agentHosts) {
      const pm = this.postmasterPid(m);
      if (pm !== null) signal(pm, 'SIGCONT');
    }
    const client = this.client;
    this.client = null;
    if (client) await client.close().catch(() => undefined);
    await Promise.all(this.proxyHosts.map((h) => this.endProc(h, 5000)));
    await Promise.all(this.agentHosts.map((h) => this.endProc(h, 30_000)));
    await Promise.all(this.agentHosts.map((h) => this.endPostgres(h)));
    await Promise.all(this.etcdHosts.map((h) => this.endProc(h, 5000)));
    if (lab !== null) await lab.destroy();
    process.removeListener('exit', this.exitHook);
    if (this.dirPath !== null && !options.keepFiles) await rm(this.dirPath, { recursive: true, force: true });
  }

  /** Process-exit hook: a harness that dies without stop() still leaves no process behind. */
  private killAllSync(): void {
    for (const p of this.procs.values()) if (alive(p)) signal(p.pid, 'SIGKILL');
    for (const m of this.agentHosts) {
      const pm = this.dirPath === null ? null : this.postmasterPid(m);
      if (pm !== null) signal(pm, 'SIGKILL');
    }
    for (const pid of this.postmasters.values()) if (isAlive(pid)) signal(pid, 'SIGKILL');
    if (this.dirPath !== null) {
      // The killed processes may still be closing files: a second pass catches what they wrote meanwhile.
      for (let i = 0; i < 2; i++) rmSync(this.dirPath, { recursive: true, force: true, maxRetries: 3 });
    }
  }
}
