/**
 * The deterministic simulation (docs/architecture.md "The simulator"): the production agents (src/ha/agent.ts
 * with its executor, decide() and the lease deadman's logic; their world in agent-world.ts) and the real etcd
 * codec, driven by a simulated clock, an in-memory etcd, modelled PostgreSQL servers, a lease deadman process per
 * host (deadman.ts), a client workload and a seeded fault scheduler. Each host has its own clocks (monotonic rate drift, wall-clock offset), shared by every
 * agent process it runs and by its deadman; a reboot starts them again. The invariants are checked as the run
 * goes:
 *
 *  1. every acknowledged commit was acknowledged by a server whose member held the leader key in etcd at
 *     that instant ("a server accepts writes only while its agent holds the leader key"; nothing allowed);
 *  2. no member is promoted while lagging the optime by more than maximum_lag_on_failover, unless a forced
 *     `failover` request named it;
 *  3. in synchronous mode every acknowledged commit is in the WAL of every server that becomes writable
 *     afterwards (checked at each promotion/start as primary and at the end);
 *  4. once every fault has healed, the cluster converges — one primary holding the key, every other member
 *     streaming from it — within a bound (30 s, more for a long ttl: see convergenceBoundMs);
 *  5. a former primary never comes back writable after another member was promoted (docs/ha.md safety rule):
 *     a server started as primary holds every promotion record newer than its own last record.
 *
 * A run is a pure function of its options: same seed, same trace.
 */
import { intentTimeoutMs, isWakeKey } from '../../src/ha/decide.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../../src/cluster/dynamic-config.js';
import { type ClusterView, DEFAULT_TAGS, type FailoverIntent, type Tags } from '../../src/cluster/types.js';
import type { PgObservation } from '../../src/postgres/observation.js';
import { decodeCluster } from '../../src/dcs/codec.js';
import type { Agent } from '../../src/ha/agent.js';
import { type AgentHost, createSimAgent, type HostClock } from './agent-world.js';
import { SimDeadman, type DeadmanHost } from './deadman.js';
import { defaultLatency, SimDcsClient, SimEtcd } from './etcd.js';
import { Kernel, SimProcess } from './kernel.js';
import { DEFAULT_PG_TIMINGS, SimPostgres, syncStates, WalRegistry, type PgListener, type WalRecord } from './postgres.js';
import { Rng } from './prng.js';
import { SimProxy } from './proxy.js';

export const TICK_MS = 100;
const WALL_EPOCH = Date.UTC(2026, 0, 1);

export const FAULT_KINDS = [
  'pgCrash',
  'agentCrash',
  'hostCrash',
  'partition',
  'isolation',
  'etcdOutage',
  'etcdSlow',
  'slowDisk',
  'replicationStall',
  'switchover',
  'failover',
  'pause',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Violation {
  invariant: 1 | 2 | 3 | 4 | 5;
  at: number;
  message: string;
}

export interface SimEvent {
  t: number;
  kind: 'ack' | 'promoted' | 'started-primary' | 'leader' | 'fault' | 'heal' | 'pg' | 'deadman';
  member: string | null;
  detail: string;
}

/** One agent process on its host: the production Agent, the process it runs in, its etcd client. */
interface AgentProcess {
  agent: Agent;
  proc: SimProcess;
  dcs: SimDcsClient;
}

export interface ScriptStep {
  at: number;
  run: (sim: Simulation) => void;
}

export interface SimOptions {
  seed: number;
  sync?: boolean;
  /** Length of the fault window, ms (after the initial bootstrap converged). */
  faultWindowMs?: number;
  /** Mean time between two random faults, ms. */
  meanFaultIntervalMs?: number;
  faults?: readonly FaultKind[];
  randomFaults?: boolean;
  /** Deterministic actions, `at` ms after the cluster first converged (targeted scenarios). */
  script?: ScriptStep[];
  /**
   * A scenario instead of a fault window: the run ends this long after the cluster first converged, and the
   * caller judges the outcome (there is no final-convergence phase; random faults only if asked for).
   */
  scenarioMs?: number;
  convergenceBoundMs?: number;
  tracing?: boolean;
  onTrace?: (line: string) => void;
  recordEvents?: boolean;
  /**
   * The lease deadman of src/ha/deadman.ts runs on every host (default true): a killed agent's PostgreSQL stops
   * at the last safety deadline the agent armed. false models an agent without it (its PostgreSQL keeps
   * running), to show why it exists.
   */
  deadman?: boolean;
  /** Proxies taking part in switchover drains; default 0–2 chosen by the seed. */
  proxies?: number;
  /** Called when a member's promote action starts (targeted scenarios: a fault in the middle of a promotion). */
  onPromote?: (sim: Simulation, member: string) => void;
  /** Overrides of the randomly drawn cluster shape. */
  members?: number;
  config?: Partial<DynamicConfig>;
  tags?: Record<string, Partial<Tags>>;
}

export interface SimResult {
  seed: number;
  sync: boolean;
  summary: string;
  violations: Violation[];
  faults: Record<FaultKind, number>;
  initialConvergenceMs: number | null;
  finalConvergenceMs: number | null;
  acks: number;
  promotions: number;
  /** Async mode: acknowledged commits missing on a later primary (allowed in async mode, reported). */
  lostAsyncAcks: number;
  /** Longest time two servers accepted writes at once (only one may acknowledge: invariant 1). */
  maxDualWritableMs: number;
  /** Most HA cycles one agent ran within one second (loop_wait 1 s means 1-2; more means it spins on failures). */
  maxCyclesPerSecond: number;
  /** Times a lease deadman stopped PostgreSQL (an agent died while its member held the leader key). */
  deadmanStops: number;
  /** Switchover drains the proxies acknowledged. */
  drainAcks: number;
  /** Times a proxy began reporting members unreachable. */
  proxyCutReports: number;
  /** Switchovers a primary asked for because every live proxy reported it unreachable. */
  proxyHandovers: number;
  /** pg_rewind and re-clone runs of servers (rejoining former primaries and diverged replicas). */
  rewinds: number;
  reclones: number;
  endedAt: number;
  events: SimEvent[];
  trace: string[];
}

interface ActiveFault {
  kind: FaultKind;
  member: string | null;
  until: number;
}

export class Simulation implements AgentHost, PgListener, DeadmanHost {
  readonly kernel = new Kernel();
  readonly etcd: SimEtcd;
  readonly registry = new WalRegistry();
  readonly servers = new Map<string, SimPostgres>();
  readonly agents = new Map<string, AgentProcess | null>();
  readonly names: string[];
  readonly config: DynamicConfig;
  readonly memberTags: Record<string, Tags> = {};
  readonly violations: Violation[] = [];
  readonly events: SimEvent[] = [];
  readonly traceLines: string[] = [];
  readonly tracing: boolean;
  readonly faultCounts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;

  private readonly opts: SimOptions;
  private readonly faultRng: Rng;
  private readonly workRng: Rng;
  private readonly replRng: Rng;
  private readonly agentRng: Rng;
  private readonly netRng: Rng;
  private readonly pgRng: Rng;
  private readonly hostUp = new Map<string, boolean>();
  /** Each host's clocks (CLOCK_MONOTONIC survives an agent restart, not a reboot). */
  private readonly hostClocks = new Map<string, HostClock>();
  private readonly deadmen = new Map<string, SimDeadman>();
  private readonly clockRng: Rng;
  /** 0–2 proxies that take part in switchover drains (src/proxy/registration.ts). */
  private readonly proxies: SimProxy[] = [];
  private deadmanStops = 0;
  private proxyHandovers = 0;
  private rewinds = 0;
  private reclones = 0;
  private readonly cutFromEtcd = new Set<string>();
  private readonly isolatedSet = new Set<string>();
  private readonly diskStall = new Map<string, number>();
  private readonly replStall = new Map<string, number>();
  private readonly active: ActiveFault[] = [];
  private readonly ackedSync: WalRecord[] = [];
  private readonly ackedAsync: WalRecord[] = [];
  private readonly lostAsync = new Set<number>();
  private systemSeq = 0;
  private acks = 0;
  private promotions = 0;
  private lastLeader: string | null = null;
  private workloadOn = false;
  private initialConvergedAt: number | null = null;
  private windowStart: number | null = null;
  private windowEnd: number | null = null;
  private finalConvergedAt: number | null = null;
  private healedAt: number | null = null;
  private readonly cycleCounts = new Map<string, { bucket: number; count: number }>();
  private maxCycles = 0;
  private dualSince: number | null = null;
  private maxDualMs = 0;
  private done = false;
  readonly convergenceBoundMs: number;
  private readonly sync: boolean;

  constructor(opts: SimOptions) {
    this.opts = opts;
    this.tracing = !!opts.tracing;
    this.sync = !!opts.sync;
    const root = new Rng(opts.seed);
    const shapeRng = root.fork(1);
    this.faultRng = root.fork(2);
    this.workRng = root.fork(3);
    this.replRng = root.fork(4);
    this.agentRng = root.fork(5);
    this.netRng = root.fork(6);
    this.pgRng = root.fork(7);
    this.clockRng = root.fork(8);
    const proxyRng = root.fork(9);

    const n = opts.members ?? shapeRng.weighted([[3, 6], [2, 1.5], [4, 1.5], [5, 1]] as const);
    this.names = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
    const ttl = shapeRng.weighted([[5, 6], [3, 2], [10, 2]] as const);
    this.config = {
      ...structuredClone(DEFAULT_DYNAMIC_CONFIG),
      ttl,
      loop_wait: shapeRng.weighted([[1, 8], [2, 2]] as const),
      maximum_lag_on_failover: shapeRng.pick([256 * 1024, 1024 * 1024, 1024 * 1024, 4 * 1024 * 1024]),
      synchronous_mode: this.sync,
      synchronous_mode_strict: this.sync && shapeRng.chance(0.3),
      synchronous_node_count: this.sync && n >= 4 && shapeRng.chance(0.4) ? 2 : 1,
      ...opts.config,
    };
    // The agent's settings file is validated like a user's: the lease must outlive loop_wait + 2 * retry_timeout.
    if (opts.config?.retry_timeout === undefined) {
      this.config.retry_timeout = Math.min(DEFAULT_DYNAMIC_CONFIG.retry_timeout, (this.config.ttl - this.config.loop_wait) / 2);
    }
    // A replica is judged diverged only after ttl + loop_wait without streaming, and a failed pg_rewind costs
    // that wait again before the re-clone: the bound leaves room for both.
    this.convergenceBoundMs = opts.convergenceBoundMs ?? Math.max(30_000, 20_000 + 2 * (this.config.ttl + this.config.loop_wait) * 1000);
    for (const name of this.names) this.memberTags[name] = { ...DEFAULT_TAGS };
    // Now and then one member that may never be promoted, one that is never synchronous, uneven priorities.
    if (n >= 3 && shapeRng.chance(0.2)) this.memberTags[shapeRng.pick(this.names)]!.nofailover = true;
    if (n >= 3 && shapeRng.chance(0.15)) this.memberTags[shapeRng.pick(this.names)]!.nosync = true;
    if (shapeRng.chance(0.2)) for (const name of this.names) this.memberTags[name]!.failover_priority = shapeRng.int(1, 3);
    for (const [name, t] of Object.entries(opts.tags ?? {})) this.memberTags[name] = { ...this.memberTags[name]!, ...t };

    this.etcd = new SimEtcd(this.kernel, (m) => this.linkToEtcd(m));
    this.etcd.onChange = (key) => this.keyChanged(key);
    for (const name of this.names) {
      this.hostUp.set(name, true);
      const server = new SimPostgres(name, this.kernel, this.pgRng.fork(name.charCodeAt(0)), this.registry, this, DEFAULT_PG_TIMINGS);
      this.servers.set(name, server);
      this.agents.set(name, null);
      this.hostClocks.set(name, this.newHostClock());
      if (opts.deadman ?? true) this.deadmen.set(name, new SimDeadman(this, server));
    }
    const proxyCount = opts.proxies ?? proxyRng.weighted([[0, 1], [1, 2], [2, 1]] as const);
    for (let i = 1; i <= proxyCount; i++) this.proxies.push(new SimProxy(`proxy${i}`, this.etcd, this.kernel, proxyRng.fork(i), this.config.ttl, WALL_EPOCH));
  }

  // ---- running ----------------------------------------------------------------------------------------

  async run(): Promise<SimResult> {
    if (this.tracing) {
      this.log(
        `seed ${this.opts.seed}: members ${this.names.map((n) => `${n}${describeTags(this.memberTags[n]!)}`).join(' ')}; ` +
          `ttl ${this.config.ttl}s loop_wait ${this.config.loop_wait}s max_lag ${this.config.maximum_lag_on_failover} ` +
          `sync ${this.config.synchronous_mode}${this.config.synchronous_mode_strict ? ' strict' : ''} node_count ${this.config.synchronous_node_count}`,
      );
    }
    for (const name of this.names) this.kernel.after(this.agentRng.int(0, 300), () => this.startAgent(name));
    for (const proxy of this.proxies) proxy.start();
    const tick = (): void => {
      this.tick();
      if (!this.done) this.kernel.after(TICK_MS, tick);
    };
    this.kernel.after(TICK_MS, tick);
    await this.kernel.run(3_600_000, () => this.done);
    // Every agent process ends with the run (their pending timers and I/O are dropped with the kernel).
    for (const a of this.agents.values()) a?.proc.kill();
    this.finish();
    return this.result();
  }

  private tick(): void {
    const now = this.kernel.now;
    this.replicate();
    for (const s of this.servers.values()) if (s.acceptsWrites) s.releaseCommits(this.standbysOf(s));
    if (!this.workloadOn) {
      const init = this.etcd.get('initialize')?.value;
      if (init) this.workloadOn = true;
    }
    if (this.workloadOn) {
      for (const s of this.servers.values()) {
        if (!s.acceptsWrites || !this.workRng.chance(0.6)) continue;
        s.write(this.workRng.int(1024, 64 * 1024));
        s.releaseCommits(this.standbysOf(s));
      }
    }
    const writable = [...this.servers.values()].filter((s) => s.acceptsWrites).length;
    if (writable > 1) {
      this.dualSince ??= now;
      this.maxDualMs = Math.max(this.maxDualMs, now - this.dualSince);
    } else {
      this.dualSince = null;
    }
    const faulting = this.randomFaults && this.inFaultWindow(now);
    for (const proxy of this.proxies) proxy.tick(now, faulting);
    this.healFaults();
    this.schedulePhases();
  }

  /** Random faults are injected (and proxies report cut-offs) in the fault window: by default outside scenarios. */
  private get randomFaults(): boolean {
    return this.opts.randomFaults ?? this.opts.scenarioMs === undefined;
  }

  private inFaultWindow(now: number): boolean {
    return this.windowStart !== null && this.windowEnd !== null && now >= this.windowStart && now < this.windowEnd;
  }

  /** Bootstrap convergence, the fault window, healing and the final convergence check. */
  private schedulePhases(): void {
    const now = this.kernel.now;
    const scenario = this.opts.scenarioMs !== undefined;
    if (this.initialConvergedAt === null) {
      if (this.converged()) {
        this.initialConvergedAt = now;
        this.windowStart = now + 2000;
        this.windowEnd = this.windowStart + (scenario ? this.opts.scenarioMs! : (this.opts.faultWindowMs ?? 60_000));
        this.log(`* cluster converged after bootstrap at ${fmt(now)}`);
        for (const step of this.opts.script ?? []) this.kernel.at(now + step.at, () => step.run(this));
        if (scenario) this.kernel.at(now + this.opts.scenarioMs!, () => (this.done = true));
      } else if (now > this.convergenceBoundMs) {
        this.violation(4, `the cluster did not converge within ${this.convergenceBoundMs / 1000} s of starting: ${this.describeState()}`);
        this.done = true;
      }
      return;
    }
    if (scenario) {
      if (this.randomFaults && this.inFaultWindow(now)) this.maybeInjectFault();
      return;
    }
    if (this.inFaultWindow(now)) {
      if (this.randomFaults) this.maybeInjectFault();
      return;
    }
    if (now < this.windowEnd!) return;
    if (this.healedAt === null) {
      if (this.active.length > 0 || this.intentPending() || this.proxies.some((p) => p.cutOff)) return;
      this.healedAt = now;
      this.log(`* all faults healed at ${fmt(now)}; the cluster must converge within ${this.convergenceBoundMs / 1000} s`);
      return;
    }
    if (this.finalConvergedAt === null) {
      if (this.converged()) {
        this.finalConvergedAt = now;
        this.log(`* converged ${fmt(now - this.healedAt)} after healing`);
      } else if (now - this.healedAt > this.convergenceBoundMs) {
        this.violation(4, `no convergence within ${this.convergenceBoundMs / 1000} s after all faults healed: ${this.describeState()}`);
        this.done = true;
      }
      return;
    }
    // A short soak: with nothing failing any more, a converged cluster must stay converged. Within one ttl of
    // healing a lease deadline taken before the heal may still make the primary step down: converging again
    // (within the same bound) is fine then.
    if (!this.converged()) {
      if (now - this.healedAt < this.config.ttl * 1000 + 2000) {
        this.log(`* the cluster left the converged state again ${fmt(now - this.healedAt)} after healing`);
        this.finalConvergedAt = null;
      } else {
        this.violation(4, `the cluster converged after healing but did not stay converged: ${this.describeState()}`);
        this.done = true;
      }
    } else if (now - this.finalConvergedAt >= 3000) {
      this.done = true;
    }
  }

  private finish(): void {
    // Invariant 3 at the end: the final primary has every acknowledged commit.
    const leader = this.etcd.leaderName();
    const s = leader ? this.servers.get(leader) : undefined;
    if (s && s.acceptsWrites) this.checkAckedPresent(s, 'the final primary');
    if (this.opts.scenarioMs === undefined && this.finalConvergedAt === null && !this.violations.some((v) => v.invariant === 4)) {
      this.violation(4, `the run ended before the cluster converged: ${this.describeState()}`);
    }
  }

  /** One primary holding the key and accepting writes, every other member's server streaming from it. */
  converged(): boolean {
    const leader = this.etcd.leaderName();
    if (!leader) return false;
    const a = this.agents.get(leader);
    const primary = this.servers.get(leader);
    if (!a || !a.proc.alive || !a.agent.holdsLeader || !primary?.acceptsWrites) return false;
    for (const [name, s] of this.servers) {
      if (name === leader) continue;
      const a = this.agents.get(name);
      if (!a || !a.proc.alive) return false;
      if (s.status !== 'running' || !s.inRecovery || s.following !== leader || s.upstream !== leader) return false;
    }
    return true;
  }

  describeState(): string {
    const leaderName = this.etcd.leaderName();
    const leaderServer = leaderName ? this.servers.get(leaderName) : undefined;
    const parts = [`leader key ${leaderName ?? 'free'}`];
    for (const [name, s] of this.servers) {
      const a = this.agents.get(name);
      // Whether the replica could stream at all: its WAL must be a prefix of its upstream's.
      const forked = s.inRecovery && !s.upstream && leaderServer && s.following === leaderName && !s.isPrefixOf(leaderServer) ? ' (forked off)' : '';
      const role = !s.running ? `stopped(${s.controlState ?? s.dataDir})` : s.inRecovery ? `replica of ${s.following ?? 'none'}${s.upstream ? ' streaming' : ` not streaming${forked}`}` : 'primary';
      parts.push(`${name}: ${s.status} ${role} tl${s.timeline ?? '-'} lsn ${s.position}${a?.proc.alive ? '' : ' (agent down)'}${a?.agent.status() ? ` — "${a.agent.status()!.reason}"` : ''}`);
    }
    const history = this.etcd.get('history');
    if (history) {
      const entries = JSON.parse(history.value) as Array<{ timeline: number; lsn: number; leader: string; parent?: number }>;
      parts.push(`history ${entries.map((e) => `tl${e.timeline}@${e.lsn} by ${e.leader}${e.parent !== undefined ? ` from tl${e.parent}` : ''}`).join(', ')}`);
    }
    return parts.join('; ');
  }

  private result(): SimResult {
    const summary =
      `seed ${this.opts.seed} ${this.sync ? 'sync' : 'async'}: ${this.names.length} members, ttl ${this.config.ttl}s, ` +
      `${this.acks} acks, ${this.promotions} promotions, ${Object.values(this.faultCounts).reduce((a, b) => a + b, 0)} faults, ` +
      `${this.violations.length} violations`;
    return {
      seed: this.opts.seed,
      sync: this.sync,
      summary,
      violations: this.violations,
      faults: { ...this.faultCounts },
      initialConvergenceMs: this.initialConvergedAt,
      finalConvergenceMs: this.finalConvergedAt !== null && this.healedAt !== null ? this.finalConvergedAt - this.healedAt : null,
      acks: this.acks,
      promotions: this.promotions,
      lostAsyncAcks: this.lostAsync.size,
      maxDualWritableMs: this.maxDualMs,
      maxCyclesPerSecond: this.maxCycles,
      deadmanStops: this.deadmanStops,
      drainAcks: this.proxies.reduce((n, p) => n + p.acks, 0),
      proxyCutReports: this.proxies.reduce((n, p) => n + p.cutReports, 0),
      proxyHandovers: this.proxyHandovers,
      rewinds: this.rewinds,
      reclones: this.reclones,
      endedAt: this.kernel.now,
      events: this.events,
      trace: this.traceLines,
    };
  }

  // ---- invariants -------------------------------------------------------------------------------------

  private violation(invariant: Violation['invariant'], message: string): void {
    this.violations.push({ invariant, at: this.kernel.now, message });
    this.log(`!!! invariant ${invariant} violated: ${message}`);
  }

  acknowledged(server: SimPostgres, record: WalRecord, writtenAt: number): void {
    this.acks++;
    const holder = this.etcd.leaderName();
    if (holder !== server.name) {
      this.violation(
        1,
        `${server.name} acknowledged a commit (lsn ${record.end}, written at ${fmt(writtenAt)}) while the leader key was ${holder ? `held by ${holder}` : 'free'}`,
      );
    }
    (this.sync ? this.ackedSync : this.ackedAsync).push(record);
    if (this.opts.recordEvents) this.event('ack', server.name, `lsn ${record.end}`);
  }

  becameWritable(server: SimPostgres, how: 'promoted' | 'started'): void {
    if (how === 'promoted') this.promotions++;
    this.event(how === 'promoted' ? 'promoted' : 'started-primary', server.name, `tl${server.timeline} lsn ${server.position}`);
    this.log(`* ${server.name} ${how === 'promoted' ? 'was promoted' : 'started as a primary'} (timeline ${server.timeline}, lsn ${server.position})`);
    this.checkAckedPresent(server, how === 'promoted' ? 'the newly promoted primary' : 'a server started as primary');
    if (how === 'started') this.checkNoNewerPromotion(server);
  }

  /**
   * Invariant 5 (docs/ha.md: "a former primary never comes back writable"): a server started as primary (not
   * promoted) must not be behind a promotion that happened after its last record — that would fork the history
   * and drop whatever the newer primary acknowledged.
   */
  private checkNoNewerPromotion(server: SimPostgres): void {
    const last = server.lastRecord();
    if (!last) return;
    for (let id = this.registry.records.length - 1; id > last.id; id--) {
      const r = this.registry.get(id);
      if (r.kind !== 'promote' || server.holds(r)) continue;
      this.violation(
        5,
        `${server.name} came back writable on timeline ${server.timeline} although ${r.origin} was promoted to timeline ${r.timeline} after its last record`,
      );
      return;
    }
  }

  private checkAckedPresent(server: SimPostgres, what: string): void {
    if (this.sync) {
      const missing = this.ackedSync.filter((r) => !server.holds(r));
      if (missing.length > 0) {
        const first = missing[0]!;
        this.violation(
          3,
          `${missing.length} acknowledged commit(s) missing on ${what} ${server.name}; first: lsn ${first.end} written by ${first.origin} on timeline ${first.timeline}`,
        );
        // Report each lost commit once.
        const lost = new Set(missing.map((r) => r.id));
        this.ackedSync.splice(0, this.ackedSync.length, ...this.ackedSync.filter((r) => !lost.has(r.id)));
      }
    } else {
      for (const r of this.ackedAsync) if (!server.holds(r)) this.lostAsync.add(r.id);
    }
  }

  promoting(name: string, view: ClusterView | null): void {
    this.opts.onPromote?.(this, name);
    const optimeKv = this.etcd.get('optime');
    const optime = optimeKv ? (JSON.parse(optimeKv.value) as number) : null;
    const position = this.servers.get(name)!.position;
    const forced = view?.failover?.kind === 'failover' && view.failover.to === name;
    const limit = (view?.config ?? this.config).maximum_lag_on_failover;
    if (optime !== null && optime - position > limit && !forced) {
      this.violation(2, `${name} is being promoted lagging ${optime - position} bytes behind the optime ${optime} (maximum_lag_on_failover ${limit})`);
    }
  }

  // ---- AgentHost --------------------------------------------------------------------------------------

  pgOf(name: string): SimPostgres | undefined {
    return this.servers.get(name);
  }

  canTalk(a: string, b: string): boolean {
    return this.hostUp.get(a)! && this.hostUp.get(b)! && !this.isolatedSet.has(a) && !this.isolatedSet.has(b);
  }

  agentOf(name: string): Agent | null {
    const a = this.agents.get(name);
    return a && a.proc.alive ? a.agent : null;
  }

  private standbysOf(server: SimPostgres): SimPostgres[] {
    const out: SimPostgres[] = [];
    for (const s of this.servers.values()) if (s.upstream === server.name) out.push(s);
    return out;
  }

  replicationRows(server: SimPostgres): PgObservation['replication'] {
    const standbys = this.standbysOf(server);
    const states = syncStates(server.inRecovery ? [] : server.syncNames, standbys);
    return standbys.map((s) => ({
      name: s.name,
      state: s.senderState,
      syncState: states.get(s.name) ?? 'async',
      flushLsn: s.position,
      replayLsn: s.position,
    }));
  }

  stalledUntil(name: string): number {
    return this.diskStall.get(name) ?? 0;
  }

  syncReleaseCheck(server: SimPostgres): void {
    if (server.acceptsWrites) server.releaseCommits(this.standbysOf(server));
  }

  /** Fast shutdown of a primary: walsenders send the rest of the WAL to the standbys still connected. */
  shipOnShutdown(server: SimPostgres): void {
    for (const s of this.standbysOf(server)) {
      if (!this.canTalk(s.name, server.name) || (this.replStall.get(s.name) ?? 0) > this.kernel.now) continue;
      if (s.isPrefixOf(server)) {
        for (let i = s.wal.length; i < server.wal.length; i++) s.wal.push(server.wal[i]!);
      }
    }
  }

  cycleStarted(member: string): void {
    const bucket = Math.floor(this.kernel.now / 1000);
    const c = this.cycleCounts.get(member);
    if (c && c.bucket === bucket) c.count++;
    else this.cycleCounts.set(member, { bucket, count: 1 });
    this.maxCycles = Math.max(this.maxCycles, this.cycleCounts.get(member)!.count);
  }

  newSystemId(): string {
    return `sys-${this.opts.seed}-${++this.systemSeq}`;
  }

  trace(member: string, line: string): void {
    this.log(`${member}: ${line}`);
  }

  event(kind: SimEvent['kind'], member: string | null, detail: string): void {
    if (this.opts.recordEvents || kind !== 'ack') this.events.push({ t: this.kernel.now, kind, member, detail });
  }

  pgEvent(server: SimPostgres, what: string): void {
    if (what.startsWith('rewound')) this.rewinds++;
    if (what.startsWith('cloned') && this.initialConvergedAt !== null) this.reclones++;
    this.event('pg', server.name, what);
    this.log(`* ${server.name}: PostgreSQL ${what}`);
  }

  private log(line: string): void {
    if (!this.tracing) return;
    const text = `[${fmt(this.kernel.now).padStart(9)}] ${line}`;
    this.traceLines.push(text);
    this.opts.onTrace?.(text);
  }

  // ---- the world: replication, network, watches -------------------------------------------------------

  private linkToEtcd(member: string): boolean {
    // Proxies run on hosts of their own, not faulted here (their crashes are theirs: proxy.ts).
    return (this.hostUp.get(member) ?? true) && !this.cutFromEtcd.has(member) && !this.isolatedSet.has(member);
  }

  private keyChanged(key: string): void {
    if (key === 'leader') {
      const now = this.etcd.get('leader')?.value ?? null;
      if (now !== this.lastLeader) {
        this.event('leader', now, `leader key ${this.lastLeader ?? 'free'} -> ${now ?? 'free'}`);
        this.log(`* leader key: ${this.lastLeader ?? 'free'} -> ${now ?? 'free'}`);
        this.lastLeader = now;
      }
    }
    if (!isWakeKey(key)) return;
    for (const [name, a] of this.agents) {
      if (!a || !a.proc.alive) continue;
      this.kernel.after(this.netRng.int(1, 8), () => {
        if (this.etcd.reachable(name)) a.dcs.notify(key);
      });
    }
  }

  /** Streaming replication progress for one tick. */
  private replicate(): void {
    const now = this.kernel.now;
    for (const s of this.servers.values()) {
      if (s.status !== 'running' || !s.inRecovery || s.following === null) {
        if (s.upstream !== null) s.disconnectReceiver();
        continue;
      }
      const up = this.servers.get(s.following);
      const ok =
        !!up &&
        up !== s &&
        (up.status === 'running' || (up.status === 'stopping' && s.upstream === up.name)) &&
        this.canTalk(s.name, up.name) &&
        s.isPrefixOf(up);
      if (!ok) {
        if (s.upstream !== null) s.disconnectReceiver();
        continue;
      }
      if (s.upstream !== up.name) {
        s.upstream = up.name;
        s.connectedAt = now;
        s.senderState = 'catchup';
      }
      if ((this.replStall.get(s.name) ?? 0) > now) continue;
      const missing = up.wal.length - s.wal.length;
      const take = this.replRng.chance(0.75) ? missing : this.replRng.int(0, missing);
      for (let i = 0; i < take; i++) s.wal.push(up.wal[s.wal.length]!);
      if (s.wal.length === up.wal.length) s.senderState = 'streaming';
    }
  }

  // ---- faults -----------------------------------------------------------------------------------------

  private maybeInjectFault(): void {
    const mean = this.opts.meanFaultIntervalMs ?? 4000;
    if (!this.faultRng.chance(TICK_MS / mean)) return;
    const lasting = this.active.length;
    const kinds = (this.opts.faults ?? FAULT_KINDS).filter((k) => {
      const instant = k === 'pgCrash' || k === 'switchover' || k === 'failover';
      return instant || lasting < 2;
    });
    if (kinds.length === 0) return;
    // Replication stalls are cheap and make lag, which two invariants are about: twice as likely.
    this.inject(this.faultRng.weighted(kinds.map((k) => [k, k === 'replicationStall' ? 2 : 1] as const)));
  }

  /** A member to hit: half of the time the current primary, where faults matter most. */
  private target(): string {
    const leader = this.etcd.leaderName();
    if (leader && this.faultRng.chance(0.5)) return leader;
    return this.faultRng.pick(this.names);
  }

  private duration(lo: number, hi: number): number {
    return this.faultRng.int(lo, hi);
  }

  private inject(kind: FaultKind): void {
    const now = this.kernel.now;
    let m = this.target();
    const busy = (name: string): boolean => this.active.some((f) => f.member === name);
    switch (kind) {
      case 'pgCrash': {
        const s = this.servers.get(m)!;
        if (!s.running) return;
        this.note(kind, m, 'PostgreSQL killed (kill -9)');
        s.crash('killed by the fault injector');
        return;
      }
      case 'agentCrash':
      case 'hostCrash': {
        if (busy(m) || !this.agentOf(m)) return;
        const d = kind === 'agentCrash' ? this.duration(1000, 12_000) : this.duration(2000, 20_000);
        this.note(kind, m, `${kind === 'agentCrash' ? 'agent process killed' : 'host crashed'} for ${fmt(d)}`);
        if (kind === 'agentCrash') this.crashAgent(m);
        else this.crashHost(m);
        this.active.push({ kind, member: m, until: now + d });
        return;
      }
      case 'partition':
      case 'isolation': {
        if (busy(m)) return;
        const d = this.duration(1000, 15_000);
        this.note(kind, m, `${kind === 'partition' ? 'cut from etcd' : 'cut from everything'} for ${fmt(d)}`);
        (kind === 'partition' ? this.cutFromEtcd : this.isolatedSet).add(m);
        this.active.push({ kind, member: m, until: now + d });
        return;
      }
      case 'etcdOutage': {
        if (this.etcd.outage || this.active.some((f) => f.kind === 'etcdOutage')) return;
        const d = this.duration(1000, 12_000);
        this.note(kind, null, `etcd lost its quorum for ${fmt(d)}`);
        this.etcd.loseQuorum();
        this.active.push({ kind, member: null, until: now + d });
        return;
      }
      case 'etcdSlow': {
        if (this.active.some((f) => f.kind === 'etcdSlow')) return;
        const d = this.duration(2000, 10_000);
        this.note(kind, null, `etcd answers slowly for ${fmt(d)}`);
        this.etcd.slowUntil = now + d;
        this.active.push({ kind, member: null, until: now + d });
        return;
      }
      case 'slowDisk': {
        if (busy(m)) return;
        const d = this.duration(1000, 10_000);
        this.note(kind, m, `disk stalls the agent's loop for ${fmt(d)}`);
        this.diskStall.set(m, now + d);
        this.active.push({ kind, member: m, until: now + d });
        return;
      }
      case 'replicationStall': {
        // Lag is what maximum_lag_on_failover and the sync bookkeeping are about: always hit a replica.
        const replicas = this.names.filter((n) => this.servers.get(n)!.inRecovery && !busy(n));
        if (replicas.length === 0) return;
        m = this.faultRng.pick(replicas);
        const d = this.duration(2000, 15_000);
        this.note(kind, m, `replication to it stalls for ${fmt(d)}`);
        this.replStall.set(m, now + d);
        this.active.push({ kind, member: m, until: now + d });
        return;
      }
      case 'switchover':
      case 'failover': {
        const leader = this.etcd.leaderName();
        if (this.etcd.outage || this.etcd.get('failover')) return;
        const others = this.names.filter((n) => n !== leader);
        const to = kind === 'failover' || this.faultRng.chance(0.6) ? this.faultRng.pick(others) : null;
        const intent: FailoverIntent = {
          kind,
          from: kind === 'switchover' && leader && this.faultRng.chance(0.8) ? leader : null,
          to,
          at: kind === 'switchover' && this.faultRng.chance(0.2) ? now + WALL_EPOCH + this.duration(1000, 5000) : null,
          requestedAt: now + WALL_EPOCH,
        };
        this.note(kind, to, `${kind} requested from ${intent.from ?? 'any'} to ${intent.to ?? 'the best replica'}${intent.at ? ` at +${fmt(intent.at - now - WALL_EPOCH)}` : ''}`);
        this.etcd.put('failover', JSON.stringify(intent));
        return;
      }
      case 'pause': {
        if (this.etcd.outage || this.active.some((f) => f.kind === 'pause')) return;
        const d = this.duration(1000, 8000);
        this.note(kind, null, `cluster paused for ${fmt(d)}`);
        this.setPause(true);
        this.active.push({ kind, member: null, until: now + d });
        return;
      }
    }
  }

  private healFaults(): void {
    const now = this.kernel.now;
    for (let i = this.active.length - 1; i >= 0; i--) {
      const f = this.active[i]!;
      if (f.until > now) continue;
      const m = f.member;
      switch (f.kind) {
        case 'agentCrash':
          if (!this.hostUp.get(m!)) continue;
          this.startAgent(m!);
          break;
        case 'hostCrash':
          this.restartHost(m!);
          break;
        case 'partition':
          this.cutFromEtcd.delete(m!);
          this.reconnected(m!);
          break;
        case 'isolation':
          this.isolatedSet.delete(m!);
          this.reconnected(m!);
          break;
        case 'etcdOutage':
          this.etcd.regainQuorum();
          for (const name of this.names) this.reconnected(name);
          break;
        case 'etcdSlow':
          break;
        case 'slowDisk':
          this.diskStall.delete(m!);
          break;
        case 'replicationStall':
          this.replStall.delete(m!);
          break;
        case 'pause':
          // The operator's resume needs etcd; retry next tick during an outage.
          if (this.etcd.outage) continue;
          this.setPause(false);
          break;
        default:
          break;
      }
      this.active.splice(i, 1);
      this.event('heal', m, f.kind);
      this.log(`* healed: ${f.kind}${m ? ` on ${m}` : ''}`);
    }
  }

  /** An operator request that can still be carried out (a stale one no longer steers elections). */
  private intentPending(): boolean {
    const kv = this.etcd.get('failover');
    if (!kv) return false;
    const intent = JSON.parse(kv.value) as FailoverIntent;
    return this.kernel.now + WALL_EPOCH <= (intent.at ?? intent.requestedAt) + intentTimeoutMs(this.config);
  }

  private note(kind: FaultKind, member: string | null, text: string): void {
    this.faultCounts[kind]++;
    this.event('fault', member, `${kind}: ${text}`);
    this.log(`* fault: ${member ? `${member}: ` : ''}${text}`);
  }

  // ---- fault primitives (also used by scripted scenarios) --------------------------------------------

  startAgent(name: string): void {
    const old = this.agents.get(name);
    if (old?.proc.alive) return;
    const rng = this.agentRng.fork(this.kernel.now ^ name.charCodeAt(0));
    const proc = new SimProcess(this.kernel);
    const latency = defaultLatency(this.netRng.fork(name.charCodeAt(0) + this.kernel.now), this.etcd);
    const dcs = new SimDcsClient(this.etcd, proc, name, latency, {
      onCycle: () => this.cycleStarted(name),
      onFailoverRequest: () => this.noteProxyHandover(),
    });
    const agent = createSimAgent(this, {
      proc,
      dcs,
      server: this.servers.get(name)!,
      clock: this.hostClocks.get(name)!,
      deadman: this.deadmen.get(name) ?? null,
      tags: this.memberTags[name]!,
      bootstrap: this.config,
      rng,
    });
    this.agents.set(name, { agent, proc, dcs });
    proc.enter(() => void agent.start());
    this.log(`* agent ${name} started`);
  }

  /** kill -9 of the agent process: its PostgreSQL and its deadman keep running. */
  crashAgent(name: string): void {
    this.agents.get(name)?.proc.kill();
  }

  crashHost(name: string): void {
    this.agents.get(name)?.proc.kill();
    this.deadmen.get(name)?.hostCrashed();
    this.servers.get(name)!.crash('host crashed');
    this.hostUp.set(name, false);
  }

  restartHost(name: string): void {
    this.hostUp.set(name, true);
    // CLOCK_MONOTONIC starts again at boot.
    this.hostClocks.set(name, this.newHostClock());
    this.startAgent(name);
  }

  private newHostClock(): HostClock {
    const rng = this.clockRng;
    const drift = (rng.next() - 0.5) * 0.004;
    return { rate: 1 + drift, monoOffset: rng.int(1_000_000, 9_000_000) - this.kernel.now * (1 + drift), wallOffset: WALL_EPOCH + rng.int(-200, 200) };
  }

  // ---- DeadmanHost ------------------------------------------------------------------------------------

  hostMonoOf(name: string): number {
    const c = this.hostClocks.get(name)!;
    return this.kernel.now * c.rate + c.monoOffset;
  }

  deadmanOf(name: string): SimDeadman | null {
    return this.deadmen.get(name) ?? null;
  }

  deadmanStop(server: SimPostgres, late: boolean): boolean {
    if (!server.running) return false;
    if (late) server.crash('killed by the deadman: the lease deadline had passed long ago');
    else server.stop('fast', () => undefined, (s) => this.shipOnShutdown(s));
    this.deadmanStops++;
    this.event('deadman', server.name, 'lease deadline passed without a re-arm: SIGINT to the postmaster');
    this.log(`* ${server.name}: deadman: lease deadline passed without a refresh from the agent: stopped PostgreSQL`);
    return true;
  }

  /** A primary asked for its own switchover because every live proxy reported it unreachable. */
  noteProxyHandover(): void {
    this.proxyHandovers++;
  }

  crashPg(name: string): void {
    this.servers.get(name)!.crash('killed');
  }

  setPartition(name: string, cut: boolean): void {
    if (cut) this.cutFromEtcd.add(name);
    else {
      this.cutFromEtcd.delete(name);
      this.reconnected(name);
    }
  }

  setIsolation(name: string, cut: boolean): void {
    if (cut) this.isolatedSet.add(name);
    else {
      this.isolatedSet.delete(name);
      this.reconnected(name);
    }
  }

  setPause(pause: boolean): void {
    const kv = this.etcd.get('config');
    const config = kv ? decodeCluster({ config: kv.value }).config : this.config;
    this.etcd.put('config', JSON.stringify({ ...config, pause }));
  }

  stallDisk(name: string, ms: number): void {
    this.diskStall.set(name, this.kernel.now + ms);
  }

  /** The watch stream comes back after a partition: it reports "anything may have changed". */
  private reconnected(name: string): void {
    const a = this.agents.get(name);
    if (a?.proc.alive && this.etcd.reachable(name)) a.dcs.notify('');
  }
}

function describeTags(t: Tags): string {
  const parts: string[] = [];
  if (t.nofailover) parts.push('nofailover');
  if (t.nosync) parts.push('nosync');
  if (t.failover_priority !== 1) parts.push(`prio ${t.failover_priority}`);
  return parts.length ? `(${parts.join(',')})` : '';
}

export function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

export function runSimulation(opts: SimOptions): Promise<SimResult> {
  return new Simulation(opts).run();
}
