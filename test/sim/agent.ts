/**
 * A modelled pgwarden agent: src/ha/agent.ts and src/ha/executor.ts transcribed into simulated-time processes.
 * The loop observes (lease, view, PostgreSQL, peers only when an election may happen), calls the REAL
 * decide(), runs the actions in order and stops at the first failure (the next cycle comes after loop_wait,
 * as in agent.ts), re-arms the lease deadman, re-observes and publishes the member key and the optime. Two
 * timers do not wait for the loop: the lease keeper (refreshes the lease, and the leader key while the agent
 * believes it holds it, until `loopAliveUntil`; re-arms the deadman after each leader refresh) and the lease
 * watchdog (stops PostgreSQL and disarms the deadman the moment mustStepDown() turns true while a refresh time
 * is recorded). The deadman itself (deadman.ts) belongs to the host, not to the agent: it outlives a killed
 * agent process.
 *
 * What is not modelled: applyParameters/pendingRestart, metrics, REST requests other than election probes,
 * a clean agent stop (agents only die).
 */
import { decide, newestTimeline, noteShutdownHold } from '../../src/ha/decide.js';
import { leaderSafeUntil, mustStepDown } from '../../src/ha/lease.js';
import { type Action, type AgentMemory, type Decision, EMPTY_MEMORY, type PeerProbe } from '../../src/ha/types.js';
import { type ClusterView, emptyClusterView, type MemberStatus, type Tags } from '../../src/cluster/types.js';
import type { DynamicConfig } from '../../src/cluster/dynamic-config.js';
import type { PgObservation } from '../../src/postgres/observation.js';
import { PgwardenError } from '../../src/errors.js';
import { LeaseInvalid, type SimDcsClient } from './etcd.js';
import type { SimDeadman } from './deadman.js';
import { Task, type Kernel, type Proc } from './kernel.js';
import { PgError, type SimPostgres } from './postgres.js';
import type { Rng } from './prng.js';

const LONG_ACTIONS: ReadonlySet<string> = new Set(['bootstrap', 'clone', 'rewind', 'reinitialize', 'start', 'restart']);
const WATCHDOG_INTERVAL_MS = 100;
const PEER_PROBE_TIMEOUT_MS = 700;
const SYNC_CONFIRM_MS = 1500;

/** What an agent needs from the simulated world around it. */
export interface AgentHost {
  readonly kernel: Kernel;
  pgOf(name: string): SimPostgres | undefined;
  /** Whether two hosts can exchange packets (REST probes, replication, pg_rewind/pg_basebackup). */
  canTalk(a: string, b: string): boolean;
  /** The agent process of `name` if it is running (for REST probes). */
  agentOf(name: string): SimAgent | null;
  replicationRows(server: SimPostgres): PgObservation['replication'];
  /** Until when this member's disk stalls the loop (slow-disk fault). */
  stalledUntil(name: string): number;
  /** The host's lease deadman process (null when the run models an agent without one). */
  deadmanOf(name: string): SimDeadman | null;
  /** Called by the promote executor right before pg_promote (invariant 2). */
  promoting(agent: SimAgent, view: ClusterView): void;
  syncReleaseCheck(server: SimPostgres): void;
  shipOnShutdown(server: SimPostgres): void;
  trace(member: string, line: string): void;
  readonly tracing: boolean;
  /** Counts loop cycles (a loop that spins on a failing action shows up as many cycles per second). */
  cycleStarted(member: string): void;
  newSystemId(): string;
  /** A primary asked for its own switchover because every proxy reported it unreachable. */
  noteProxyHandover(): void;
}

/** The host's clocks: shared by every agent incarnation on the host and by its deadman. */
export interface AgentClock {
  /** Monotonic clock rate relative to etcd's clock (1 ± drift). */
  rate: number;
  monoOffset: number;
  wallOffset: number;
}

export class SimAgent {
  readonly memory: AgentMemory = structuredClone(EMPTY_MEMORY);
  lastView: ClusterView | null = null;
  lastStatus: MemberStatus | null = null;
  lastPg: PgObservation | null = null;
  lastDecision: Decision | null = null;
  private wakePending = false;
  private loopAliveUntil = 0;
  private loopTask: Task | null = null;
  private keeperTask: Task | null = null;
  private alive = false;
  /** LeaseDeadman.armedNs: the deadline this agent process last wrote (it skips writing the same one again). */
  private deadmanArmed: number | null = null;
  cycles = 0;

  constructor(
    readonly name: string,
    readonly tags: Tags,
    private readonly host: AgentHost,
    readonly dcs: SimDcsClient,
    readonly pg: SimPostgres,
    private readonly bootstrapConfig: DynamicConfig,
    private readonly clock: AgentClock,
    private readonly rng: Rng,
  ) {}

  get running(): boolean {
    return this.alive;
  }

  mono(): number {
    return this.host.kernel.now * this.clock.rate + this.clock.monoOffset;
  }

  wall(): number {
    return this.host.kernel.now + this.clock.wallOffset;
  }

  /** Sim ms for a duration measured by this agent's clock. */
  private simMs(agentMs: number): number {
    return agentMs / this.clock.rate;
  }

  start(): void {
    this.alive = true;
    const k = this.host.kernel;
    const onError = (e: unknown): void => {
      throw e;
    };
    this.loopTask = new Task(k, this.loop(), onError, () => this.host.stalledUntil(this.name)).start(0);
    this.keeperTask = new Task(k, this.keeper(), onError).start(0);
    const tick = (): void => {
      if (!this.alive) return;
      this.watchdog();
      k.after(WATCHDOG_INTERVAL_MS, tick);
    };
    k.after(this.rng.int(1, WATCHDOG_INTERVAL_MS), tick);
  }

  /** The process dies (kill -9 or host crash): no cleanup, no lease revocation. */
  kill(): void {
    this.alive = false;
    this.loopTask?.kill();
    this.keeperTask?.kill();
  }

  wakeUp(): void {
    this.wakePending = true;
    this.loopTask?.wake();
  }

  dynamicConfig(): DynamicConfig {
    return this.lastView?.config ?? this.bootstrapConfig;
  }

  // ---- the loop ------------------------------------------------------------------------------------------

  private *loop(): Proc {
    for (;;) {
      this.wakePending = false;
      const started = this.mono();
      // agent.ts logs and carries on; here nothing may escape a cycle (it would be a bug in decide() or the
      // model), so it ends the run with its stack instead.
      yield* this.cycle();
      this.cycles++;
      const waitMs = Math.max(0, this.dynamicConfig().loop_wait * 1000 - (this.mono() - started));
      if (this.wakePending) {
        yield 1;
        continue;
      }
      yield { wait: this.simMs(waitMs) };
    }
  }

  private *cycle(): Proc {
    this.host.cycleStarted(this.name);
    const memory = this.memory;
    this.loopAliveUntil = Math.max(this.loopAliveUntil, this.mono() + this.dynamicConfig().ttl * 1000);
    let reachable = true;
    try {
      yield* this.dcs.ensureLease(this.dynamicConfig().ttl);
      this.lastView = yield* this.dcs.load();
    } catch (e) {
      expectedFailure(e);
      reachable = false;
    }
    const view = this.lastView ?? emptyClusterView(this.bootstrapConfig);
    const config = view.config;
    const pgObs = yield* this.observePg();
    this.lastPg = pgObs;
    if (pgObs.running && pgObs.inRecovery === true && !pgObs.streaming) memory.notStreamingSince ??= this.mono();
    else memory.notStreamingSince = null;
    if (reachable) noteShutdownHold(memory, view, this.mono());

    if (reachable) {
      if (view.leader?.name !== this.name) {
        memory.holdsLeader = false;
        memory.leaderRefreshSentAt = null;
      }
      const wall = this.wall();
      for (const name of Object.keys(view.members)) memory.memberLastSeen[name] = wall;
    }
    const electionPossible = reachable && view.leader === null && pgObs.dataDir === 'initialized';
    const peers = electionPossible ? yield* this.probePeers(view) : {};

    const clock = { mono: this.mono(), wall: this.wall() };
    const obs = { me: this.name, tags: this.tags, pg: pgObs, dcsReachable: reachable, peers, memory: structuredClone(memory) };
    const decision = decide(view, obs, config, clock);
    this.lastDecision = decision;
    if (this.host.tracing) {
      const acts = decision.actions.map(describeAction).join(', ');
      this.trace(`${decision.reason}${acts ? ` -> [${acts}]` : ''}${reachable ? '' : ' (etcd unreachable)'}`);
    }

    this.loopAliveUntil = Number.POSITIVE_INFINITY;
    if (reachable && decision.actions.some((a) => LONG_ACTIONS.has(a.type))) {
      try {
        yield* this.dcs.publishMember(this.buildStatus(pgObs, decision, view, config));
      } catch (e) {
        // As in agent.ts: best effort.
        expectedFailure(e);
      }
    }
    for (const action of decision.actions) {
      try {
        yield* this.execute(action, view);
        // Armed before the next action (agent.ts): PostgreSQL finishes a promote or start on its own if the agent dies.
        this.syncDeadman();
        // agent.ts publishes the new role the moment it is true, before the checkpoint that follows.
        if (action.type === 'promote' && reachable) yield* this.publishNow(decision, config);
      } catch (e) {
        this.syncDeadman();
        expectedFailure(e);
        // No immediate retry (agent.ts): the next cycle decides again after loop_wait.
        this.trace(`action ${action.type} failed: ${(e as Error).message}`);
        break;
      }
    }
    this.loopAliveUntil = this.mono() + config.ttl * 1000;
    this.syncDeadman();

    const after = decision.actions.length > 0 ? yield* this.observePg() : pgObs;
    this.lastPg = after;
    const status = this.buildStatus(after, decision, view, config);
    this.lastStatus = status;
    if (reachable) {
      try {
        yield* this.dcs.publishMember(status);
        if (memory.holdsLeader && status.role === 'primary' && status.walPosition !== null && status.walPosition !== view.optime) {
          yield* this.dcs.setOptime(status.walPosition);
        }
      } catch (e) {
        // Published next cycle.
        expectedFailure(e);
      }
    }
  }

  private *publishNow(decision: Decision, config: DynamicConfig): Proc {
    try {
      this.lastView = yield* this.dcs.load();
      const pg = yield* this.observePg();
      this.lastPg = pg;
      const status = this.buildStatus(pg, decision, this.lastView, config);
      this.lastStatus = status;
      yield* this.dcs.publishMember(status);
    } catch (e) {
      // The cycle publishes it.
      expectedFailure(e);
    }
  }

  private *observePg(): Proc<PgObservation> {
    // A query when the server answers, pg_controldata when it does not.
    yield this.rng.int(1, 8);
    return this.pg.observe(this.pg.accepting ? this.host.replicationRows(this.pg) : []);
  }

  /** GET /patroni on every other member, in parallel: reachable ones answer with their last status. */
  private *probePeers(view: ClusterView): Proc<Record<string, PeerProbe>> {
    const out: Record<string, PeerProbe> = {};
    let longest = 0;
    const targets: Array<{ name: string; delay: number }> = [];
    for (const name of Object.keys(view.members)) {
      if (name === this.name) continue;
      const agent = this.host.agentOf(name);
      const linked = this.host.canTalk(this.name, name);
      // A live host with no agent refuses the connection at once; a dead or cut-off host times out.
      const delay = linked ? (agent ? this.rng.int(1, 10) : this.rng.int(1, 3)) : PEER_PROBE_TIMEOUT_MS;
      targets.push({ name, delay });
      longest = Math.max(longest, delay);
    }
    if (targets.length === 0) return out;
    yield longest;
    for (const { name } of targets) {
      const agent = this.host.agentOf(name);
      if (!agent || !this.host.canTalk(this.name, name)) {
        out[name] = { reachable: false, walPosition: null, healthy: false, role: null, tags: null };
        continue;
      }
      const s = agent.lastStatus;
      if (!s) {
        out[name] = { reachable: true, walPosition: null, healthy: false, role: null, tags: null };
        continue;
      }
      out[name] = {
        reachable: true,
        walPosition: s.walPosition,
        healthy: s.state === 'running' || s.state === 'streaming',
        role: s.role === 'primary' || s.role === 'replica' ? s.role : null,
        tags: s.tags,
      };
    }
    return out;
  }

  private buildStatus(pg: PgObservation, decision: Decision, view: ClusterView, config: DynamicConfig): MemberStatus {
    let role = decision.role;
    let state = decision.state;
    if (pg.running && pg.accepting) {
      role = pg.inRecovery ? 'replica' : 'primary';
      state = pg.inRecovery && pg.streaming ? 'streaming' : 'running';
    } else if (pg.dataDir !== 'initialized' && decision.actions.length === 0) {
      role = 'uninitialized';
    }
    const lag = role === 'replica' && view.optime !== null && pg.walPosition !== null ? Math.max(0, view.optime - pg.walPosition) : null;
    return {
      name: this.name,
      role,
      state,
      apiUrl: `http://${this.name}:8008`,
      host: this.name,
      port: 5432,
      timeline: pg.timeline ?? pg.controlTimeline,
      walPosition: pg.walPosition,
      receiveLsn: pg.receiveLsn,
      replayLsn: pg.replayLsn,
      lagBytes: lag,
      following: role === 'replica' ? pg.following : null,
      tags: this.tags,
      paused: config.pause,
      pendingRestart: pg.pendingRestart,
      reason: decision.reason,
      updatedAt: this.wall(),
      version: 'sim',
      systemId: pg.systemId,
    };
  }

  // ---- the timers --------------------------------------------------------------------------------------

  private *keeper(): Proc {
    for (;;) {
      const config = this.dynamicConfig();
      const intervalMs = Math.max(100, Math.min(config.loop_wait, config.ttl / 3) * 1000);
      yield this.simMs(intervalMs);
      if (this.mono() >= this.loopAliveUntil) continue;
      try {
        if (this.memory.holdsLeader) {
          try {
            yield* this.refreshLeader();
          } finally {
            this.syncDeadman();
          }
        } else {
          yield* this.dcs.keepAlive();
        }
      } catch (e) {
        expectedFailure(e);
        if (!this.memory.holdsLeader) this.wakeUp();
      }
    }
  }

  private watchdog(): void {
    // A postmaster that died wakes the loop at once (agent.ts reads postmaster.pid).
    if (this.lastPg?.running && !this.pg.running) {
      this.lastPg = { ...this.lastPg, running: false, accepting: false };
      this.wakeUp();
    }
    const memory = this.memory;
    if (memory.leaderRefreshSentAt === null) return;
    if (!mustStepDown(memory, this.dynamicConfig(), this.mono())) return;
    memory.holdsLeader = false;
    memory.leaderRefreshSentAt = null;
    this.disarmDeadman();
    if (this.emergencyStop()) this.trace('watchdog: leader lease not refreshed before its safety deadline: stopped PostgreSQL');
    this.wakeUp();
  }

  /** Agent.syncDeadman(): the deadman's deadline is the leader lease's safety deadline, or none without the key. */
  private syncDeadman(): void {
    const until = leaderSafeUntil(this.memory, this.dynamicConfig());
    if (until !== null) {
      this.armDeadman(until);
      return;
    }
    // agent.ts: a deadline an earlier agent process armed is kept while PostgreSQL may still be a primary.
    const pg = this.lastPg;
    const mayBePrimary = pg === null || (pg.running && pg.inRecovery !== true);
    if (this.deadmanArmed !== null || !mayBePrimary) this.disarmDeadman();
  }

  private armDeadman(until: number): void {
    const deadman = this.host.deadmanOf(this.name);
    if (!deadman || this.deadmanArmed === until) return;
    deadman.arm(until);
    this.deadmanArmed = until;
  }

  private disarmDeadman(): void {
    const deadman = this.host.deadmanOf(this.name);
    if (!deadman || (this.deadmanArmed === null && !deadman.armed)) return;
    this.deadmanArmed = null;
    deadman.disarm();
  }

  /** SIGINT to the postmaster: a fast shutdown that refuses new work at once. */
  private emergencyStop(): boolean {
    if (!this.pg.running) return false;
    this.pg.stop('fast', () => undefined, (s) => this.host.shipOnShutdown(s));
    return true;
  }

  // ---- executors (src/ha/executor.ts) ------------------------------------------------------------------

  private *pgOp(start: (done: (err?: Error) => void) => void): Proc {
    let finished = false;
    let error: Error | undefined;
    start((err) => {
      finished = true;
      error = err;
    });
    while (!finished) yield 10;
    if (error) throw error;
  }

  private *execute(action: Action, view: ClusterView): Proc {
    const memory = this.memory;
    const pg = this.pg;
    switch (action.type) {
      case 'bootstrap':
        return yield* this.bootstrap();
      case 'clone': {
        const from = this.peer(view, action.from);
        return yield* this.pgOp((done) => pg.clone(this.host.pgOf(from) ?? null, () => this.host.canTalk(this.name, from), done));
      }
      case 'start':
        try {
          if (action.follow) this.peer(view, action.follow);
          yield* this.pgOp((done) => pg.start(action.role, action.follow, done));
          memory.startFailures = 0;
        } catch (e) {
          memory.startFailures += 1;
          throw e;
        }
        return;
      case 'stop':
        // Positions recorded for synchronous standbys belong to this server's time as primary.
        memory.syncAddedAt = {};
        return yield* this.pgOp((done) => pg.stop(action.mode, done, (s) => this.host.shipOnShutdown(s)));
      case 'restart': {
        const replica = pg.standbySignal;
        const following = pg.following;
        yield* this.pgOp((done) => pg.stop('fast', done, (s) => this.host.shipOnShutdown(s)));
        return yield* this.pgOp((done) => pg.start(replica ? 'replica' : 'primary', replica ? following : null, done));
      }
      case 'reload':
        if (!pg.running) throw new PgwardenError('PG_NOT_RUNNING', 'cannot reload: PostgreSQL is not running');
        yield 2;
        return;
      case 'promote':
        memory.syncAddedAt = {};
        this.host.promoting(this, view);
        yield* this.pgOp((done) => pg.promote(done, newestTimeline(view.history)));
        memory.needsRejoin = false;
        return;
      case 'checkpoint':
        return yield* this.pgOp((done) => pg.checkpoint(done));
      case 'follow':
        if (action.leader) this.peer(view, action.leader);
        yield 5;
        pg.follow(action.leader);
        return;
      case 'rewind':
        try {
          const from = this.peer(view, action.from);
          yield* this.pgOp((done) => pg.rewind(this.host.pgOf(from) ?? null, () => this.host.canTalk(this.name, from), done));
          memory.rewindFailed = false;
        } catch (e) {
          // Only a rewind that ran and failed calls for a fresh clone; an unreachable source is retried.
          if (!isConnectionFailure(e)) memory.rewindFailed = true;
          throw e;
        }
        return;
      case 'reinitialize': {
        if (pg.running) yield* this.pgOp((done) => pg.stop('immediate', done));
        const from = this.peer(view, action.from);
        // The old data stays until the new copy is complete.
        yield* this.pgOp((done) => pg.reclone(this.host.pgOf(from) ?? null, () => this.host.canTalk(this.name, from), done));
        memory.rewindFailed = false;
        return;
      }
      case 'acquireLeader': {
        const sentAt = this.mono();
        if (!(yield* this.dcs.keepAlive())) throw new PgwardenError('DCS_CONFLICT', 'The agent lease had expired; it is re-created next cycle.');
        if (!(yield* this.dcs.acquireLeader(this.name))) throw new PgwardenError('DCS_CONFLICT', 'Another member took the leader key first.');
        memory.holdsLeader = true;
        memory.leaderRefreshSentAt = sentAt;
        return;
      }
      case 'refreshLeader':
        return yield* this.refreshLeader();
      case 'releaseLeader':
        memory.holdsLeader = false;
        memory.leaderRefreshSentAt = null;
        yield* this.dcs.releaseLeader(this.name);
        return;
      case 'setSynchronousStandbys':
        return yield* this.setSynchronousStandbys(action.names);
      case 'writeSync':
        yield* this.dcs.setSync({ leader: this.name, members: action.members });
        return;
      case 'manageSlots':
        if (!pg.accepting) throw new PgwardenError('PG_NOT_RUNNING', 'cannot manage slots: PostgreSQL is not answering');
        yield 2;
        pg.manageSlots(action.create, action.drop);
        return;
      case 'clearFailover':
        yield* this.dcs.clearFailover();
        return;
      case 'requestDrain':
        yield* this.dcs.setDrain(action.drain);
        return;
      case 'clearDrain':
        yield* this.dcs.clearDrain();
        return;
      case 'clearShutdown':
        yield* this.dcs.clearShutdown();
        return;
      case 'requestSwitchover':
        yield* this.dcs.setFailover(action.intent);
        this.host.noteProxyHandover();
        return;
      case 'recordHistory':
        yield* this.dcs.appendHistory({
          timeline: action.timeline,
          lsn: action.lsn,
          at: this.wall(),
          reason: action.reason,
          leader: this.name,
          ...(action.parent !== null ? { parent: action.parent } : {}),
        });
        return;
      case 'clearRequests':
        memory.requests = { restart: false, reload: false, reinitialize: false };
        return;
    }
  }

  private *refreshLeader(): Proc {
    const memory = this.memory;
    const sentAt = this.mono();
    const ok = yield* this.dcs.refreshLeader(this.name);
    if (ok) {
      memory.holdsLeader = true;
      memory.leaderRefreshSentAt = Math.max(memory.leaderRefreshSentAt ?? 0, sentAt);
      return;
    }
    const wasHolding = memory.holdsLeader;
    memory.holdsLeader = false;
    memory.leaderRefreshSentAt = null;
    if (wasHolding && this.emergencyStop()) this.trace('the leader key is no longer ours: stopped PostgreSQL at once');
    throw new PgwardenError('DCS_CONFLICT', 'The leader key is no longer held by this member.');
  }

  private *bootstrap(): Proc {
    const memory = this.memory;
    if (!(yield* this.dcs.claimInitialize())) throw new PgwardenError('DCS_CONFLICT', 'Another member claimed the bootstrap first.');
    const systemId = this.host.newSystemId();
    try {
      // The key first (executor.ts): even a brand-new primary accepts writes only while holding it.
      const sentAt = this.mono();
      if (!(yield* this.dcs.keepAlive()) || !(yield* this.dcs.acquireLeader(this.name))) {
        throw new PgwardenError('DCS_CONFLICT', 'Won the bootstrap, but could not take the leader key; retrying.');
      }
      memory.holdsLeader = true;
      memory.leaderRefreshSentAt = sentAt;
      yield* this.dcs.initConfig(this.bootstrapConfig);
      yield* this.pgOp((done) => this.pg.bootstrap(systemId, done));
    } catch (e) {
      expectedFailure(e);
      // Each clean-up step is best effort (`.catch(() => undefined)` in executor.ts).
      if (this.pg.running) yield* this.pgOp((done) => this.pg.stop('immediate', done));
      if (!this.pg.running) this.pg.wipe();
      if (memory.holdsLeader) yield* this.bestEffort(this.dcs.releaseLeader(this.name));
      memory.holdsLeader = false;
      memory.leaderRefreshSentAt = null;
      yield* this.bestEffort(this.dcs.deleteInitialize());
      throw e;
    }
    yield* this.dcs.setInitialize(systemId);
    yield* this.dcs.appendHistory({ timeline: 1, lsn: 0, at: this.wall(), reason: 'bootstrap', leader: this.name });
  }

  private *setSynchronousStandbys(names: string[]): Proc {
    const memory = this.memory;
    // The configuration file is written whether or not PostgreSQL runs; a running server reloads it.
    yield 2;
    this.pg.setSynchronousStandbys(names);
    this.host.syncReleaseCheck(this.pg);
    for (const n of Object.keys(memory.syncAddedAt)) if (!names.includes(n)) delete memory.syncAddedAt[n];
    const waiting = new Set(names.filter((n) => n !== '*' && memory.syncAddedAt[n] === undefined));
    const deadline = this.mono() + SYNC_CONFIRM_MS;
    while (waiting.size > 0 && this.mono() < deadline) {
      yield this.rng.int(1, 5);
      if (!this.pg.accepting) throw new PgwardenError('PG_NOT_RUNNING', 'PostgreSQL stopped answering');
      for (const row of this.host.replicationRows(this.pg)) {
        if (!waiting.has(row.name) || (row.syncState !== 'sync' && row.syncState !== 'quorum')) continue;
        memory.syncAddedAt[row.name] = this.pg.position;
        waiting.delete(row.name);
      }
      if (waiting.size > 0) yield this.simMs(50);
    }
  }

  private *bestEffort(call: Proc): Proc {
    try {
      yield* call;
    } catch (e) {
      expectedFailure(e);
    }
  }

  private peer(view: ClusterView, name: string): string {
    if (!view.members[name]) throw new PgwardenError('MEMBER_NOT_FOUND', `Member ${name} is not registered in etcd any more.`);
    return name;
  }

  private trace(line: string): void {
    if (this.host.tracing) this.host.trace(this.name, line);
  }
}

/** executor.ts isConnectionFailure(): pg_rewind / pg_basebackup could not connect to the source at all. */
function isConnectionFailure(e: unknown): boolean {
  const text = e instanceof Error ? e.message : String(e);
  return /connection to server .* failed|could not connect|Connection refused|the database system is (starting up|shutting down)/i.test(text);
}

/** The failures the real agent expects (etcd, PostgreSQL, lease errors); anything else is a bug and is rethrown. */
function expectedFailure(e: unknown): void {
  if (e instanceof PgwardenError || e instanceof PgError || e instanceof LeaseInvalid) return;
  throw e;
}

export function describeAction(a: Action): string {
  switch (a.type) {
    case 'clone':
    case 'rewind':
    case 'reinitialize':
      return `${a.type}(${a.from})`;
    case 'start':
      return `start(${a.role}${a.follow ? `, ${a.follow}` : ''})`;
    case 'stop':
      return `stop(${a.mode})`;
    case 'follow':
      return `follow(${a.leader ?? 'none'})`;
    case 'setSynchronousStandbys':
      return `setSynchronousStandbys([${a.names.join(',')}])`;
    case 'writeSync':
      return `writeSync([${a.members.join(',')}])`;
    case 'manageSlots':
      return 'manageSlots';
    default:
      return a.type;
  }
}
