import type { ApiBackend } from './api-backend.js';
import type { AgentConfig } from '../config/schema.js';
import { parseHostPort } from '../config/schema.js';
import type { Dcs } from '../dcs/dcs.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { cleanShutdownRecord, decide, isWakeKey, noteShutdownHold } from './decide.js';
import { execute, refreshLeader, type ExecutorContext } from './executor.js';
import { DEADLINE_LATE_MS } from '../postgres/emergency-stop.js';
import { leaderSafeUntil, mustStepDown } from './lease.js';
import { AgentMetrics } from './metrics.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../cluster/dynamic-config.js';
import { type AgentMemory, type Decision, EMPTY_MEMORY } from './types.js';
import { type ClusterView, emptyClusterView, type FailoverIntent, type MemberStatus } from '../cluster/types.js';
import type { PgObservation } from '../postgres/observation.js';
import { type AgentClock, type Deadman, type PeerProber, type PostgresControl, systemClock, type Timer } from './world.js';

export const PGWARDEN_VERSION = '0.1.0';

/** Keys whose change must start a cycle at once (member keys change every second and would make loops chase each other). */

/** Actions that may take long enough to be worth announcing in the member key before they run. */
const LONG_ACTIONS: ReadonlySet<string> = new Set(['bootstrap', 'clone', 'rewind', 'reinitialize', 'start', 'restart']);

/** How often the lease watchdog checks the safety deadline. */
const WATCHDOG_INTERVAL_MS = 100;

/** Peers must answer an election probe within this time. */
const PEER_PROBE_TIMEOUT_MS = 700;

export interface AgentOptions {
  config: AgentConfig;
  dcs: Dcs;
  pg: PostgresControl;
  log: Logger;
  /** Asks the other agents' REST APIs during an election (src/api/peer-probe.ts). */
  peers: PeerProber;
  /** The lease deadman of this member's PostgreSQL (LeaseDeadman). */
  deadman: Deadman;
  /** Clocks and timers; the process's own by default (the simulator passes simulated ones). */
  clock?: AgentClock;
  /** Export Node's process metrics beside the agent's (default true; the simulator runs many agents in one process). */
  processMetrics?: boolean;
}

/**
 * One agent per PostgreSQL server: the loop of docs/architecture.md (observe → decide → act → publish), plus two timers
 * that must not depend on the loop being responsive:
 *  - the lease keeper refreshes the agent's lease (and the leader key while the loop wants it held), so a
 *    long action such as a restart in place does not lose the key;
 *  - the lease watchdog stops PostgreSQL the moment the leader lease's safety deadline passes.
 */
export class Agent implements ApiBackend {
  readonly memberName: string;
  readonly cluster: string;
  readonly metricsRegistry: AgentMetrics;
  private readonly config: AgentConfig;
  private readonly dcs: Dcs;
  private readonly pg: PostgresControl;
  private readonly peers: PeerProber;
  private readonly clock: AgentClock;
  private readonly log: Logger;
  private readonly memory: AgentMemory = structuredClone(EMPTY_MEMORY);
  private lastView: ClusterView | null = null;
  private lastStatus: MemberStatus | null = null;
  private lastPg: PgObservation | null = null;
  private lastReason = '';
  private running = false;
  private wake: (() => void) | null = null;
  private wakePending = false;
  private loopDone: Promise<void> | null = null;
  private watchHandle: { close(): Promise<void> } | null = null;
  private keeperTimer: Timer | null = null;
  private watchdogTimer: Timer | null = null;
  private keeperBusy = false;
  /**
   * Monotonic ms until which the keeper may refresh the lease. Every finished cycle extends it by `ttl`; while
   * actions run it is unbounded (each action has its own time limit). A loop that hangs therefore lets its
   * lease — and the leader key bound to it — expire, and a replica takes over.
   */
  private loopAliveUntil = 0;
  private appliedParameters = '';
  private readonly deadman: Deadman;

  constructor(options: AgentOptions) {
    this.config = options.config;
    this.dcs = options.dcs;
    this.pg = options.pg;
    this.log = options.log;
    this.peers = options.peers;
    this.clock = options.clock ?? systemClock;
    this.memberName = options.config.name;
    this.cluster = options.config.cluster;
    this.metricsRegistry = new AgentMetrics({ cluster: this.cluster, member: this.memberName }, options.processMetrics ?? true);
    this.deadman = options.deadman;
  }

  /** Keeps the deadman's deadline equal to the leader lease's safety deadline, or disarmed without the key. */
  private syncDeadman(): void {
    const until = leaderSafeUntil(this.memory, this.dynamicConfig());
    if (until !== null) {
      this.deadman.arm(until);
      return;
    }
    // A deadline armed by an earlier incarnation of this agent (killed while primary) is all that stops its
    // PostgreSQL until this one holds the key: keep it while the server may still accept writes.
    const pg = this.lastPg;
    const mayBePrimary = pg === null || (pg.running && pg.inRecovery !== true);
    if (this.deadman.armedHere || !mayBePrimary) this.deadman.disarm();
  }

  // ---- lifecycle ---------------------------------------------------------------------------------------

  async start(): Promise<void> {
    this.running = true;
    try {
      this.watchHandle = await this.dcs.watch((key) => {
        if (key === '' || isWakeKey(key)) this.wakeUp();
      });
    } catch (e) {
      // The loop works without a watch (it polls every loop_wait); it is retried at the next start.
      this.log.warn({ err: describeError(e) }, 'could not watch etcd; elections will wait for the next loop');
    }
    this.watchdogTimer = this.clock.every(WATCHDOG_INTERVAL_MS, () => this.watchdog());
    this.scheduleKeeper();
    this.loopDone = this.loop();
  }

  /**
   * Stops the agent. With `stopPostgres` (the default for a clean shutdown) PostgreSQL is shut down first and
   * the lease revoked, so a replica takes over at once instead of after the lease expires; a primary that has no
   * replica left to take over (the whole cluster is being stopped) records its clean shutdown in `shutdown`
   * first, so that it is primary again after the restart whichever agent starts first. Without `stopPostgres`
   * (restarting the agent alone) PostgreSQL keeps running and the keys stay bound to the lease until it expires:
   * the next agent process rebinds them.
   */
  async stop(options: { stopPostgres?: boolean } = {}): Promise<void> {
    const stopPostgres = options.stopPostgres ?? true;
    this.running = false;
    this.wakeUp();
    await this.loopDone;
    this.keeperTimer?.cancel();
    this.watchdogTimer?.cancel();
    await this.watchHandle?.close().catch(() => undefined);
    const wasLeadingPrimary = this.memory.holdsLeader && this.lastPg?.running === true && this.lastPg.inRecovery === false;
    if (stopPostgres && this.pg.postmasterPid() !== null) {
      await this.pg.stop('fast').catch((e) => this.log.error({ err: describeError(e) }, 'stopping PostgreSQL failed'));
      if (wasLeadingPrimary) await this.recordCleanShutdown();
    } else if (!stopPostgres && this.memory.holdsLeader) {
      // A last refresh gives the next agent process the whole lease (ttl less the safety margin) to rebind the
      // key before the deadman, which stays armed, stops PostgreSQL.
      await refreshLeader(this.executorContext(this.lastView ?? emptyClusterView(this.bootstrapConfig()))).catch((e) =>
        this.log.warn({ err: describeError(e) }, 'the last leader refresh before exiting failed'),
      );
      this.syncDeadman();
    }
    this.memory.holdsLeader = false;
    this.memory.leaderRefreshSentAt = null;
    // Leaving PostgreSQL running as primary: the deadman stays armed and stops it when the lease runs out.
    if (stopPostgres) this.deadman.disarm();
    await this.dcs.close({ revoke: stopPostgres }).catch(() => undefined);
    await this.pg.close().catch(() => undefined);
  }

  /** Writes `shutdown` when the clean stop of this primary leaves no replica to take over (see cleanShutdownRecord). */
  private async recordCleanShutdown(): Promise<void> {
    try {
      const view = await this.dcs.load();
      const record = cleanShutdownRecord(view, this.memberName, await this.pg.observe(), this.clock.wall());
      if (record === null) return;
      await this.dcs.setShutdown(record);
      this.log.info({ checkpoint: record.checkpoint, timeline: record.timeline }, 'recorded the clean shutdown: no replica was left to take over, so this member comes back as primary');
    } catch (e) {
      // Without the record a replica that starts first fails over, as before: slower to heal, not unsafe.
      this.log.warn({ err: describeError(e) }, 'could not record the clean shutdown in etcd');
    }
  }

  private wakeUp(): void {
    this.wakePending = true;
    this.wake?.();
  }

  private dynamicConfig(): DynamicConfig {
    return this.lastView?.config ?? this.bootstrapConfig();
  }

  private bootstrapConfig(): DynamicConfig {
    const merged = { ...DEFAULT_DYNAMIC_CONFIG, ...this.config.bootstrap.dcs };
    merged.postgresql = { parameters: { ...DEFAULT_DYNAMIC_CONFIG.postgresql.parameters, ...this.config.bootstrap.dcs.postgresql?.parameters } };
    return merged;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.wakePending = false;
      const started = this.clock.mono();
      try {
        await this.cycle();
      } catch (e) {
        this.log.error({ err: describeError(e) }, 'HA cycle failed');
      }
      this.metricsRegistry.cycles.inc();
      this.metricsRegistry.cycleDuration.observe((this.clock.mono() - started) / 1000);
      if (!this.running) break;
      const waitMs = Math.max(0, this.dynamicConfig().loop_wait * 1000 - (this.clock.mono() - started));
      if (this.wakePending) continue;
      await new Promise<void>((resolve) => {
        const timer = this.clock.after(waitMs, done);
        function done(): void {
          timer.cancel();
          resolve();
        }
        this.wake = done;
      });
      this.wake = null;
    }
  }

  // ---- one cycle ---------------------------------------------------------------------------------------

  private async cycle(): Promise<void> {
    const memory = this.memory;
    // Observing is bounded by per-call timeouts; give it one ttl.
    this.loopAliveUntil = Math.max(this.loopAliveUntil, this.clock.mono() + this.dynamicConfig().ttl * 1000);
    let reachable = true;
    try {
      await this.dcs.ensureLease(this.dynamicConfig().ttl);
      this.lastView = await this.dcs.load();
    } catch (e) {
      reachable = false;
      this.metricsRegistry.dcsErrors.inc();
      this.log.debug({ err: describeError(e) }, 'etcd read failed');
    }
    const view = this.lastView ?? emptyClusterView(this.bootstrapConfig());
    const config = view.config;
    await this.applyParameters(config);
    const pgObs = await this.pg.observe();
    this.lastPg = pgObs;
    if (pgObs.running && pgObs.inRecovery === true && !pgObs.streaming) memory.notStreamingSince ??= this.clock.mono();
    else memory.notStreamingSince = null;

    if (reachable) {
      if (view.leader?.name !== this.memberName) {
        memory.holdsLeader = false;
        memory.leaderRefreshSentAt = null;
      }
      const wall = this.clock.wall();
      for (const name of Object.keys(view.members)) memory.memberLastSeen[name] = wall;
      noteShutdownHold(memory, view, this.clock.mono());
    }
    const electionPossible = reachable && view.leader === null && pgObs.dataDir === 'initialized';
    const peers = electionPossible ? await this.peers(view, this.memberName, PEER_PROBE_TIMEOUT_MS) : {};

    const clock = { mono: this.clock.mono(), wall: this.clock.wall() };
    const decision = decide(
      view,
      { me: this.memberName, tags: this.config.tags, pg: pgObs, dcsReachable: reachable, peers, memory: structuredClone(memory) },
      config,
      clock,
    );
    this.logDecision(decision);
    // The REST API answers from lastStatus, and peers probe it the moment this cycle's actions free the leader key:
    // it must already say what was just observed. (A primary whose PostgreSQL had crashed still answered "running
    // primary" until the end of the cycle that released its key, and a replica probing it in that gap stood back for
    // a whole loop_wait: bench:failover's postgres-crash window was 0.45 s or 1.45 s depending on that race.)
    const observed = this.buildStatus(pgObs, decision, view, config);
    this.lastStatus = observed;

    // While the actions run (a restart in place may take longer than ttl) the keeper holds the lease for us.
    this.loopAliveUntil = Number.POSITIVE_INFINITY;
    const ctx = { ...this.executorContext(view), reason: decision.reason };
    if (reachable && decision.actions.some((a) => LONG_ACTIONS.has(a.type))) {
      // Say what is about to happen before a step that can take minutes (`pgwarden list` shows "cloning"), and
      // let the primary see this member so it creates its replication slot.
      await this.dcs.publishMember(observed).catch(() => undefined);
    }
    for (const action of decision.actions) {
      this.metricsRegistry.actions.inc({ action: action.type });
      try {
        await execute(action, ctx);
        if (action.type === 'rewind') this.metricsRegistry.rewinds.inc({ result: 'succeeded' });
        if (action.type === 'reinitialize') this.metricsRegistry.reclones.inc();
        // Armed before the next action: after acquireLeader come promote or start, which PostgreSQL finishes on
        // its own if this process dies meanwhile — it must not become a primary without a deadman.
        this.syncDeadman();
        // Clients and proxies find the primary through the member key and /primary: say it the moment it is
        // true, not after the rest of the cycle (the checkpoint that follows a promotion can take a while).
        if (action.type === 'promote' && reachable) await this.publishNow(decision, config);
      } catch (e) {
        this.syncDeadman();
        this.metricsRegistry.actionFailures.inc({ action: action.type });
        if (action.type === 'rewind') this.metricsRegistry.rewinds.inc({ result: 'failed' });
        // No immediate retry: a failure that persists would otherwise spin the loop; the watchdog does not
        // depend on the loop's pace.
        this.log.warn({ action: action.type, err: describeError(e) }, `action ${action.type} failed; the next cycle decides again`);
        break;
      }
    }
    this.loopAliveUntil = this.clock.mono() + config.ttl * 1000;
    this.syncDeadman();

    const after = decision.actions.length > 0 ? await this.pg.observe() : pgObs;
    this.lastPg = after;
    // A cycle without actions changed nothing since `observed` was built from the same inputs.
    const status = after === pgObs ? observed : this.buildStatus(after, decision, view, config);
    this.lastStatus = status;
    this.updateGauges(status, config);
    if (reachable) {
      try {
        await this.dcs.publishMember(status);
        if (memory.holdsLeader && status.role === 'primary' && status.walPosition !== null && status.walPosition !== view.optime) {
          await this.dcs.setOptime(status.walPosition);
        }
      } catch (e) {
        this.metricsRegistry.dcsErrors.inc();
        this.log.debug({ err: describeError(e) }, 'publishing the member status failed');
      }
    }
  }

  private async publishNow(decision: Decision, config: DynamicConfig): Promise<void> {
    try {
      this.lastView = await this.dcs.load();
      const pg = await this.pg.observe();
      this.lastPg = pg;
      const status = this.buildStatus(pg, decision, this.lastView, config);
      this.lastStatus = status;
      await this.dcs.publishMember(status);
    } catch (e) {
      this.log.debug({ err: describeError(e) }, 'publishing the new role early failed; the cycle publishes it');
    }
  }

  private executorContext(view: ClusterView): ExecutorContext {
    return {
      me: this.memberName,
      dcs: this.dcs,
      pg: this.pg,
      memory: this.memory,
      view,
      bootstrapConfig: this.bootstrapConfig(),
      clock: this.clock,
      log: this.log,
    };
  }

  /** The cluster-wide PostgreSQL parameters from etcd, over the member's own from its file. */
  private async applyParameters(config: DynamicConfig): Promise<void> {
    const merged = { ...this.config.postgresql.parameters, ...config.postgresql.parameters };
    const key = JSON.stringify(merged);
    if (key === this.appliedParameters) return;
    try {
      await this.pg.setParameters(merged);
      if (this.appliedParameters !== '' && this.pg.postmasterPid() !== null) await this.pg.reload();
      this.appliedParameters = key;
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'applying PostgreSQL parameters failed');
    }
  }

  private logDecision(decision: Decision): void {
    // One line per cycle, like Patroni's heartbeat line: the log reads as the cluster's history.
    this.log.info({ rule: decision.rule, actions: decision.actions.map((a) => a.type) }, decision.reason);
    this.lastReason = decision.reason;
  }


  private buildStatus(pg: PgObservation, decision: Decision, view: ClusterView, config: DynamicConfig): MemberStatus {
    const connect = parseHostPort(this.config.postgresql.connect_address)!;
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
      name: this.memberName,
      role,
      state,
      apiUrl: this.config.api.connect_url,
      host: connect.host,
      port: connect.port,
      timeline: pg.timeline ?? pg.controlTimeline,
      walPosition: pg.walPosition,
      receiveLsn: pg.receiveLsn,
      replayLsn: pg.replayLsn,
      lagBytes: lag,
      following: role === 'replica' ? pg.following : null,
      tags: this.config.tags,
      paused: config.pause,
      pendingRestart: pg.pendingRestart,
      reason: decision.reason,
      updatedAt: this.clock.wall(),
      version: PGWARDEN_VERSION,
      systemId: pg.systemId,
      reclone: this.memory.lastReclone,
    };
  }

  private updateGauges(status: MemberStatus, config: DynamicConfig): void {
    const m = this.metricsRegistry;
    m.isLeader.set(this.memory.holdsLeader ? 1 : 0);
    m.pgRunning.set(this.lastPg?.running ? 1 : 0);
    m.pgPrimary.set(status.role === 'primary' && this.lastPg?.running ? 1 : 0);
    m.timeline.set(status.timeline ?? 0);
    m.walPosition.set(status.walPosition ?? 0);
    m.lagBytes.set(status.lagBytes ?? 0);
    m.paused.set(config.pause ? 1 : 0);
  }

  // ---- timers that do not wait for the loop -------------------------------------------------------------

  private scheduleKeeper(): void {
    const config = this.dynamicConfig();
    const intervalMs = Math.max(100, Math.min(config.loop_wait, config.ttl / 3) * 1000);
    this.keeperTimer = this.clock.after(intervalMs, () => {
      void this.keepLease().finally(() => {
        if (this.running) this.scheduleKeeper();
      });
    });
  }

  private async keepLease(): Promise<void> {
    if (this.keeperBusy) return;
    this.keeperBusy = true;
    try {
      if (this.clock.mono() >= this.loopAliveUntil) return;
      if (this.memory.holdsLeader) {
        try {
          await refreshLeader(this.executorContext(this.lastView ?? emptyClusterView(this.bootstrapConfig())));
        } finally {
          this.syncDeadman();
        }
      } else {
        await this.dcs.keepAlive();
      }
    } catch (e) {
      this.metricsRegistry.dcsErrors.inc();
      this.log.debug({ err: describeError(e) }, 'lease refresh failed');
      if (!this.memory.holdsLeader) this.wakeUp();
    } finally {
      this.keeperBusy = false;
    }
  }

  /**
   * Runs every WATCHDOG_INTERVAL_MS. Stops PostgreSQL the moment the leader lease can no longer be trusted,
   * however busy the loop is; and wakes the loop as soon as a running postmaster dies, so a crashed primary
   * hands over in a fraction of loop_wait.
   */
  private watchdog(): void {
    if (this.lastPg?.running && this.pg.postmasterPid() === null) {
      this.lastPg = { ...this.lastPg, running: false, accepting: false };
      this.wakeUp();
    }
    const memory = this.memory;
    if (memory.leaderRefreshSentAt === null) return;
    const now = this.clock.mono();
    if (!mustStepDown(memory, this.dynamicConfig(), now)) return;
    // Found long past, this process was not running at the deadline (a frozen host): PostgreSQL woke up too, and
    // its backends may be answering writes queued meanwhile while another member holds the key; a fast shutdown
    // would reach them too late (the chaos suite caught such an acknowledgement 6 ms after the thaw).
    const safeUntil = leaderSafeUntil(memory, this.dynamicConfig());
    const late = safeUntil !== null && now - safeUntil > DEADLINE_LATE_MS;
    memory.holdsLeader = false;
    memory.leaderRefreshSentAt = null;
    this.deadman.disarm();
    const how = this.pg.emergencyStop(late);
    if (how !== null) {
      this.metricsRegistry.emergencyStops.inc();
      this.log.warn({ member: this.memberName }, `leader lease not refreshed before its safety deadline: ${how}`);
    }
    this.wakeUp();
  }

  /** This agent holds the leader key as far as it knows (the `pgwarden_is_leader` gauge). */
  get holdsLeader(): boolean {
    return this.memory.holdsLeader;
  }

  // ---- ApiBackend ----------------------------------------------------------------------------------------

  status(): MemberStatus | null {
    return this.lastStatus;
  }

  view(): ClusterView | null {
    return this.lastView;
  }

  pgRunning(): boolean {
    return !!this.lastPg?.running && !!this.lastPg.accepting;
  }

  async requestFailover(intent: FailoverIntent): Promise<void> {
    await this.dcs.setFailover(intent);
    this.wakeUp();
  }

  async setDynamicConfig(config: DynamicConfig): Promise<void> {
    await this.dcs.setConfig(config);
    this.wakeUp();
  }

  requestRestart(): void {
    this.memory.requests.restart = true;
    this.wakeUp();
  }

  requestReload(): void {
    this.memory.requests.reload = true;
    this.wakeUp();
  }

  requestReinitialize(): void {
    this.memory.requests.reinitialize = true;
    this.wakeUp();
  }

  metrics(): Promise<string> {
    return this.metricsRegistry.registry.metrics();
  }

  get metricsContentType(): string {
    return this.metricsRegistry.registry.contentType;
  }
}
