import { KEYS } from '../cluster/keys.js';
import { isEligibleCandidate, isHealthyReplica, mayBePromoted, ranksAbove } from '../cluster/predicates.js';
import { formatLsn } from '../postgres/lsn.js';
import { mustStepDown } from './lease.js';
import { slotNameFor } from './slots.js';
import type { Action, AgentMemory, Clock, Decision, Observation } from './types.js';
import type { CleanShutdown, ClusterView, FailoverIntent, HistoryEntry, MemberStatus } from '../cluster/types.js';
import type { ControlState, PgObservation } from '../postgres/observation.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

/**
 * The whole HA policy: one pure, synchronous function. No I/O, no clock reads, no randomness — time comes in
 * through `clock`, everything remembered between cycles through `obs.memory`. Every safety rule of docs/ha.md
 * lives here (or in lease.ts, which this calls), so scenario tables and the simulator can test them all.
 */
export function decide(view: ClusterView, obs: Observation, config: DynamicConfig, clock: Clock): Decision {
  return new Decider(view, obs, config, clock).run();
}

/** Control-file states of a server that was last running as a primary (so it may need pg_rewind to rejoin). */
const PRIMARY_CONTROL_STATES: ReadonlySet<ControlState> = new Set<ControlState>([
  'shut down',
  'in production',
  'shutting down',
  'in crash recovery',
  'starting up',
]);

/** How long an operator's switchover/failover request stays valid once due. */
const WAKE_KEYS = ['leader', 'failover', 'config', 'initialize', 'sync'];

/**
 * Keys (relative to the cluster prefix) whose change calls for a decision at once rather than at the next
 * loop_wait. A proxy's key changes only when it registers or acknowledges a drain (lease refreshes do not touch
 * it): a primary waiting on a switchover drain goes on the moment the last acknowledgement lands.
 */
export function isWakeKey(key: string): boolean {
  return WAKE_KEYS.some((k) => key === k || key.endsWith(`/${k}`)) || key.startsWith(KEYS.proxies);
}

/** Names the drain that belongs to one switchover request, so a later request gets a fresh one. */
export function drainIdFor(intent: FailoverIntent): string {
  return `${intent.kind}:${intent.requestedAt}:${intent.to ?? '*'}`;
}

export function intentTimeoutMs(config: DynamicConfig): number {
  return Math.max(30_000, config.ttl * 6_000);
}

/**
 * How far past the start of a clean shutdown's checkpoint record (pg_controldata's "Latest checkpoint location")
 * the WAL of that server can end. PostgreSQL 15's shutdown checkpoint record is 114 bytes (a 24-byte header, a
 * 2-byte data header and the 88-byte CheckPoint), 120 once MAXALIGNed; if it crosses a page boundary, the next
 * page's header (24 bytes, 40 at a segment boundary) comes in between. A replica's position is the end of what
 * it received or replayed: exactly that location when it has every record before the checkpoint (it stopped
 * first, as `pgwarden down` stops replicas first: measured 0 bytes past it), up to this far past it when it
 * received the checkpoint record too (the same WAL, not more); nothing on that timeline lies beyond the record,
 * as the former primary wrote nothing after it.
 */
export const SHUTDOWN_CHECKPOINT_MAX_SPAN = 160;

/**
 * Keeps `shutdownHoldSince`, from which replicas count primary_start_timeout for a former primary that shut
 * down cleanly: from the first cycle that found the cluster without a leader and the `shutdown` record standing
 * (after a restart of the whole cluster that is when this agent started, however long the cluster was down).
 * Only the record's removal (by a primary running again) ends it: a former primary that takes the key and then
 * fails to start must not make the replicas wait a whole primary_start_timeout again.
 */
export function noteShutdownHold(memory: AgentMemory, view: ClusterView, monoNow: number): void {
  if (view.shutdown === null) memory.shutdownHoldSince = null;
  else if (view.leader === null) memory.shutdownHoldSince ??= monoNow;
}

/**
 * What the primary's agent writes to `shutdown` once it has shut its PostgreSQL down cleanly on exit (`pg`
 * observed after the stop), or null. Only when no other member can take over: stopping the primary alone hands
 * over to a running replica at once, as it always did; with none left (a whole-cluster stop, replicas first),
 * the record makes a replica that starts first wait for this server to come back (see shutdownHold).
 */
export function cleanShutdownRecord(view: ClusterView, me: string, pg: PgObservation, wall: number): CleanShutdown | null {
  if (pg.running || pg.controlState !== 'shut down' || pg.checkpointLsn === null || pg.controlTimeline === null) return null;
  if (view.leader !== null && view.leader.name !== me) return null;
  const successor = Object.values(view.members).some(
    (m) => m.name !== me && isHealthyReplica(m) && mayBePromoted(m.tags),
  );
  if (successor) return null;
  return { leader: me, checkpoint: pg.checkpointLsn, timeline: pg.controlTimeline, at: wall };
}

/** A WAL position for a reason sentence; a peer's malformed answer must not make decide() throw. */
function lsnText(position: number): string {
  return Number.isSafeInteger(position) && position >= 0 ? formatLsn(position) : String(position);
}

/** Failures to start PostgreSQL in place after which a primary gives its key up for a failover. */
export const MAX_START_FAILURES = 3;

class Decider {
  private readonly me: string;
  private readonly leader: string | null;
  private readonly pgIsPrimary: boolean;
  private readonly pgMaybePrimary: boolean;
  private waitingNote: string | null = null;
  /** This cycle waits for the proxies to drain: the `drain` key must stay. */
  private drainWaiting = false;

  constructor(
    private readonly view: ClusterView,
    private readonly obs: Observation,
    private readonly config: DynamicConfig,
    private readonly clock: Clock,
  ) {
    this.me = obs.me;
    this.leader = view.leader?.name ?? null;
    const pg = obs.pg;
    this.pgIsPrimary = pg.running && pg.accepting && pg.inRecovery === false;
    // A running server we could not query might be a primary: count it as one wherever that is the safe side.
    this.pgMaybePrimary = pg.running && pg.inRecovery !== true;
  }

  run(): Decision {
    const pg = this.obs.pg;
    if (pg.dataDir !== 'initialized') return this.uninitialized();
    if (
      this.obs.dcsReachable &&
      this.view.initialize &&
      pg.systemId &&
      this.view.initialize !== pg.systemId
    ) {
      return this.decision(
        [],
        `refusing to act: this data directory belongs to system ${pg.systemId}, the cluster is ${this.view.initialize}; run 'pgwarden reinit ${this.me}' to re-clone it`,
        this.pgMaybePrimary ? 'primary' : 'replica',
        pg.running ? 'running' : 'stopped',
      );
    }
    if (!this.obs.dcsReachable) return this.dcsUnreachable();
    if (this.config.pause) return this.paused();
    const request = this.operatorRequest();
    if (request) return request;
    if (this.leader === this.me) return this.asLeader();
    if (this.leader !== null) return this.asFollower(this.leader);
    return this.leaderless();
  }

  // ---- building blocks -------------------------------------------------------------------------------

  /** Refreshes the key we hold; a restarted agent (whose memory says it holds nothing) rebinds it to its new lease. */
  private keepKey(): Action {
    return this.obs.memory.holdsLeader ? { type: 'refreshLeader' } : { type: 'acquireLeader' };
  }

  private decision(actions: Action[], reason: string, role: Decision['role'], state: Decision['state']): Decision {
    return { actions, reason, role, state };
  }

  private get pgState(): Decision['state'] {
    const pg = this.obs.pg;
    if (!pg.running) return pg.controlState === 'in production' ? 'crashed' : 'stopped';
    if (pg.inRecovery === true) return pg.streaming ? 'streaming' : 'running';
    return 'running';
  }

  private get pgRole(): Decision['role'] {
    const pg = this.obs.pg;
    if (pg.running) return pg.inRecovery === true ? 'replica' : 'primary';
    return pg.controlState && PRIMARY_CONTROL_STATES.has(pg.controlState) ? 'primary' : 'replica';
  }

  private member(name: string): MemberStatus | undefined {
    return this.view.members[name];
  }

  private get myPriority(): number {
    return this.obs.tags.failover_priority;
  }

  private get canFailOver(): boolean {
    return mayBePromoted(this.obs.tags);
  }

  /** The operator's failover/switchover request if it is due and not stale. */
  private activeIntent(): { intent: FailoverIntent; due: boolean; stale: boolean } | null {
    const intent = this.view.failover;
    if (!intent) return null;
    const dueAt = intent.at ?? intent.requestedAt;
    const due = this.clock.wall >= dueAt;
    const stale = this.clock.wall > dueAt + intentTimeoutMs(this.config);
    return { intent, due, stale };
  }

  private lagOf(walPosition: number | null): number | null {
    if (this.view.optime === null || walPosition === null) return null;
    return Math.max(0, this.view.optime - walPosition);
  }

  // ---- no data directory yet -------------------------------------------------------------------------

  private uninitialized(): Decision {
    if (!this.obs.dcsReachable) return this.decision([], 'waiting for etcd before initializing', 'uninitialized', 'stopped');
    const init = this.view.initialize;
    if (init === null) {
      if (this.config.pause) return this.decision([], 'paused: not bootstrapping', 'uninitialized', 'stopped');
      if (!this.canFailOver) {
        return this.decision([], 'waiting for another member to bootstrap the cluster (this one is tagged nofailover)', 'uninitialized', 'stopped');
      }
      return this.decision([{ type: 'bootstrap' }], 'bootstrapping a new cluster: the initialize key was free', 'uninitialized', 'bootstrapping');
    }
    if (init === '') return this.decision([], 'waiting: another member is bootstrapping the cluster', 'uninitialized', 'stopped');
    const source = this.leader && this.leader !== this.me ? this.member(this.leader) : undefined;
    if (!source || source.role !== 'primary' || source.state !== 'running') {
      return this.decision([], 'waiting for a running primary to clone from', 'uninitialized', 'stopped');
    }
    return this.decision(
      [{ type: 'clone', from: source.name }, { type: 'start', role: 'replica', follow: source.name }],
      `cloning from the primary ${source.name} and starting as its replica`,
      'uninitialized',
      'cloning',
    );
  }

  // ---- etcd unreachable ------------------------------------------------------------------------------

  private dcsUnreachable(): Decision {
    const memory = this.obs.memory;
    if (this.pgMaybePrimary) {
      if (mustStepDown(memory, this.config, this.clock.mono)) {
        return this.decision(
          [{ type: 'stop', mode: 'fast' }],
          'demoted: etcd is unreachable and the leader lease could not be refreshed before its safety deadline',
          'primary',
          'demoting',
        );
      }
      return this.decision(
        [{ type: 'refreshLeader' }],
        'etcd is unreachable: still primary while the leader lease is safe, retrying the refresh',
        'primary',
        'running',
      );
    }
    if (!this.obs.pg.running && !this.config.pause && this.pgRole === 'replica') {
      // Starting as a replica can never create a second writer, so it is safe without etcd.
      // Without etcd the upstream's address is unknown: start without one; the next cycle with etcd follows.
      return this.decision(
        [{ type: 'start', role: 'replica', follow: null }],
        'etcd is unreachable: restarting PostgreSQL as a replica',
        'replica',
        'starting',
      );
    }
    return this.decision([], 'etcd is unreachable: not acting until it answers', this.pgRole, this.pgState);
  }

  // ---- maintenance mode ------------------------------------------------------------------------------

  private paused(): Decision {
    const requested = this.operatorRequest();
    if (requested) return requested;
    if (this.pgIsPrimary && this.leader === this.me) {
      return this.decision([this.keepKey()], 'paused: holding the leader key, taking no automatic action', 'primary', 'running');
    }
    if (this.pgIsPrimary && this.leader === null) {
      return this.decision([{ type: 'acquireLeader' }], 'paused: running primary took the free leader key', 'primary', 'running');
    }
    return this.decision([], 'paused: taking no automatic action', this.pgRole, this.pgState);
  }

  // ---- requests from the REST API (restart, reload, reinitialize) --------------------------------------

  private operatorRequest(): Decision | null {
    const req = this.obs.memory.requests;
    const keep: Action[] = this.leader === this.me && this.pgIsPrimary ? [this.keepKey()] : [];
    if (req.reinitialize) {
      if (this.leader === this.me) {
        return this.decision([{ type: 'clearRequests' }, ...keep], 'refused to reinitialize: this member is the leader; switch over first', this.pgRole, this.pgState);
      }
      const source = this.leader ? this.member(this.leader) : undefined;
      if (!source || source.state !== 'running') {
        return this.decision([], 'reinitialize requested: waiting for a running primary to clone from', this.pgRole, this.pgState);
      }
      return this.decision(
        [
          { type: 'clearRequests' },
          { type: 'stop', mode: 'fast' },
          { type: 'reinitialize', from: source.name },
          { type: 'start', role: 'replica', follow: source.name },
        ],
        `reinitializing: wiping the data directory and cloning again from ${source.name}`,
        'replica',
        'cloning',
      );
    }
    if (req.restart && this.obs.pg.running) {
      return this.decision([...keep, { type: 'clearRequests' }, { type: 'restart' }], 'restarting PostgreSQL as requested', this.pgRole, 'restarting');
    }
    if (req.reload) {
      return this.decision([...keep, { type: 'clearRequests' }, { type: 'reload' }], 'reloading the PostgreSQL configuration as requested', this.pgRole, this.pgState);
    }
    if (req.restart) return this.decision([{ type: 'clearRequests' }, ...keep], 'restart requested but PostgreSQL is not running; nothing to restart', this.pgRole, this.pgState);
    return null;
  }

  // ---- this member holds the leader key ---------------------------------------------------------------

  private asLeader(): Decision {
    const pg = this.obs.pg;
    if (!pg.running) return this.leaderWithoutPostgres();
    if (pg.inRecovery === true) {
      // We took the key (or were given it) while still a replica: finish the promotion.
      return this.decision(
        [this.keepKey(), ...this.promotionSteps('finishing the promotion')],
        'holding the leader key as a replica: promoting',
        'primary',
        'promoting',
      );
    }
    if (!pg.accepting) {
      return this.decision([this.keepKey()], 'primary is running but not answering queries yet; keeping the leader key', 'primary', 'starting');
    }
    if (mustStepDown(this.obs.memory, this.config, this.clock.mono) && this.obs.memory.holdsLeader) {
      return this.decision(
        [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }],
        'demoted: the leader lease was not refreshed before its safety deadline',
        'primary',
        'demoting',
      );
    }

    const intentStep = this.leaderIntent();
    if (intentStep) return intentStep;
    const cutOff = this.view.failover === null ? this.cutOffFromProxies() : null;
    if (cutOff) return cutOff;

    const actions: Action[] = [this.keepKey()];
    const notes: string[] = this.waitingNote ? [this.waitingNote] : [];
    if (this.view.failover) {
      const active = this.activeIntent();
      if (active && !active.due) {
        notes.push(`switchover to ${active.intent.to ?? 'the best replica'} scheduled at ${new Date(active.intent.at ?? 0).toISOString()}`);
      }
    }
    notes.push(...this.syncSteps(actions));
    this.slotSteps(actions);
    // A drain nobody waits for (handover done, abandoned or refused) would keep proxies holding writes.
    if (this.view.drain !== null && !this.drainWaiting) actions.push({ type: 'clearDrain' });
    // A primary runs again: a later election must not wait for the one that shut down.
    if (this.view.shutdown !== null) actions.push({ type: 'clearShutdown' });
    // pg_rewind compares the timelines in pg_control: until the checkpoint after the promotion completes, a
    // former primary or a diverged replica rewound against this server is found "on the same timeline" and
    // left as it is. The checkpoint that follows `promote` may have been skipped (an earlier action of that
    // cycle failed, or the agent restarted), so the leader checks every cycle.
    if (pg.controlTimeline !== null && pg.timeline !== null && pg.controlTimeline < pg.timeline) {
      actions.push({ type: 'checkpoint' });
      notes.push(`checkpointing: pg_control still names timeline ${pg.controlTimeline}`);
    }
    const reason = notes.length ? `primary holding the leader key; ${notes.join('; ')}` : 'primary holding the leader key';
    return this.decision(actions, reason, 'primary', 'running');
  }

  private leaderWithoutPostgres(): Decision {
    const pg = this.obs.pg;
    const memory = this.obs.memory;
    const wasReplica = pg.controlState !== null && !PRIMARY_CONTROL_STATES.has(pg.controlState);
    if (wasReplica) {
      return this.decision([{ type: 'releaseLeader' }], 'released the leader key: PostgreSQL is down and was not a primary', 'replica', 'stopped');
    }
    const candidate = this.bestCandidate(null);
    if (candidate) {
      return this.decision(
        [{ type: 'releaseLeader' }],
        `released the leader key: PostgreSQL is not running on the primary and ${candidate.name} can take over`,
        'primary',
        'crashed',
      );
    }
    if (memory.startFailures >= MAX_START_FAILURES) {
      return this.decision(
        [{ type: 'releaseLeader' }],
        `released the leader key: PostgreSQL failed to start ${memory.startFailures} times and no replica is ready to take over`,
        'primary',
        'start failed',
      );
    }
    return this.decision(
      [this.keepKey(), { type: 'start', role: 'primary', follow: null }],
      'restarting PostgreSQL in place: the primary is down and no replica is eligible to take over',
      'primary',
      'starting',
    );
  }

  /** Carries out a due switchover/failover request on the primary, or drops an invalid one. */
  private leaderIntent(): Decision | null {
    const active = this.activeIntent();
    if (!active) return null;
    const { intent, due, stale } = active;
    const keep: Action[] = [this.keepKey()];
    if (intent.from && intent.from !== this.me) {
      return this.decision([...keep, { type: 'clearFailover' }], `dropped a ${intent.kind} request from ${intent.from}, which is not the leader`, 'primary', 'running');
    }
    if (intent.to === this.me) {
      return this.decision([...keep, { type: 'clearFailover' }], `dropped a ${intent.kind} request to ${this.me}: it is already the primary`, 'primary', 'running');
    }
    if (!due) return null;
    if (stale) {
      return this.decision([...keep, { type: 'clearFailover' }], `dropped a ${intent.kind} request that could not be carried out in time`, 'primary', 'running');
    }
    const candidate = intent.to ? this.member(intent.to) : undefined;
    if (intent.to && !candidate) {
      return this.decision([...keep, { type: 'clearFailover' }], `dropped a ${intent.kind} request: ${intent.to} is not a member`, 'primary', 'running');
    }
    const chosen = intent.to ? this.candidateCheck(intent.to, intent.kind === 'switchover') : this.bestCandidate(null);
    if (!chosen || ('refusal' in chosen)) {
      const why = chosen && 'refusal' in chosen ? chosen.refusal : 'no replica is eligible';
      // The request waits, but the primary keeps doing its job (synchronous standbys, slots) meanwhile.
      this.waitingNote = `${intent.kind} waiting: ${why}`;
      return null;
    }
    const drained = this.drainBeforeHandover(intent, chosen.name);
    if (drained === 'asked' || drained === 'waiting') return drained === 'asked' ? this.drainRequestDecision(intent, chosen.name) : null;
    return this.decision(
      [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }],
      `${intent.kind}: ${drained}shut down cleanly and released the leader key for ${chosen.name}`,
      'primary',
      'demoting',
    );
  }

  /**
   * docs/ha.md "Switchover without errors": before shutting down for a handover, the primary asks the live proxies
   * to finish the transactions in flight and hold new ones, and waits for each one's acknowledgement, at most
   * `drain_timeout`. 'asked': the request must be written now; 'waiting': acknowledgements are missing (the
   * primary keeps doing its job meanwhile); otherwise the prefix for the handover's reason.
   */
  private drainBeforeHandover(intent: FailoverIntent, target: string): 'asked' | 'waiting' | string {
    const proxies = this.proxiesReachingMe();
    const timeoutMs = this.config.drain_timeout * 1000;
    if (proxies.length === 0 || timeoutMs <= 0) return '';
    const drain = this.view.drain;
    const id = drainIdFor(intent);
    if (drain === null || drain.id !== id || drain.from !== this.me) return 'asked';
    const pending = proxies.filter((p) => p.drained !== id).map((p) => p.id);
    if (pending.length === 0) return `${proxies.length} ${proxies.length === 1 ? 'proxy' : 'proxies'} drained; `;
    const waited = this.clock.wall - drain.requestedAt;
    if (waited < drain.timeoutMs) {
      this.drainWaiting = true;
      this.waitingNote = `${intent.kind} to ${target} waiting for ${pending.length === 1 ? 'proxy' : 'proxies'} ${pending.join(', ')} to drain (${Math.ceil((drain.timeoutMs - waited) / 1000)} s left)`;
      return 'waiting';
    }
    return `drain timed out for ${pending.join(', ')} after ${this.config.drain_timeout} s; `;
  }

  /** The live proxies that can reach this server: a proxy that cannot has nothing in flight here to finish. */
  private proxiesReachingMe(): ClusterView['proxies'] {
    return this.view.proxies.filter((p) => p.unreachable[this.me] === undefined);
  }

  private drainRequestDecision(intent: FailoverIntent, target: string): Decision {
    const n = this.proxiesReachingMe().length;
    this.drainWaiting = true;
    return this.decision(
      [
        this.keepKey(),
        { type: 'requestDrain', drain: { id: drainIdFor(intent), from: this.me, to: target, requestedAt: this.clock.wall, timeoutMs: this.config.drain_timeout * 1000 } },
      ],
      `${intent.kind}: asked ${n} ${n === 1 ? 'proxy' : 'proxies'} to drain before handing over to ${target}`,
      'primary',
      'running',
    );
  }

  /**
   * A partition between this primary and the proxies only: etcd and the replicas see a healthy primary, so no
   * failover would ever happen while every client waits. When every live proxy has reported this server
   * unreachable for proxy_unreachable_timeout, and a replica that could take over cleanly (candidateCheck: streaming
   * from us, in sync in synchronous mode, within the lag limit) is reachable to all of them, the primary asks for a
   * switchover to it: the usual handover, so no acknowledged write is lost. One proxy that still reaches this server,
   * or none that reaches the candidate (a proxy cut from everything), keeps things as they are. The proxies date
   * their reports with their own wall clocks: skew between hosts only shifts when the timeout is reached.
   */
  private cutOffFromProxies(): Decision | null {
    const proxies = this.view.proxies;
    const timeoutMs = this.config.proxy_unreachable_timeout * 1000;
    if (timeoutMs <= 0 || proxies.length === 0) return null;
    let cutForMs = Infinity;
    for (const p of proxies) {
      const since = p.unreachable[this.me];
      if (since === undefined) return null;
      cutForMs = Math.min(cutForMs, this.clock.wall - since);
    }
    if (cutForMs < timeoutMs) {
      this.waitingNote = `every live proxy reports this server unreachable (${(cutForMs / 1000).toFixed(1)} s of ${this.config.proxy_unreachable_timeout} s)`;
      return null;
    }
    let best: MemberStatus | null = null;
    for (const m of Object.values(this.view.members)) {
      if (m.name === this.me || proxies.some((p) => p.unreachable[m.name] !== undefined)) continue;
      if ('refusal' in this.candidateCheck(m.name, true)) continue;
      if (ranksAbove(m, best)) best = m;
    }
    if (best === null) {
      this.waitingNote = 'every live proxy reports this server unreachable, but no replica they all reach could take over';
      return null;
    }
    const n = proxies.length;
    return this.decision(
      [this.keepKey(), { type: 'requestSwitchover', intent: { kind: 'switchover', from: this.me, to: best.name, at: null, requestedAt: this.clock.wall } }],
      `${n === 1 ? 'the only live proxy has' : `all ${n} live proxies have`} reported this server unreachable for ${(cutForMs / 1000).toFixed(1)} s while ${best.name} is reachable to ${n === 1 ? 'it' : 'them'}: asking for a switchover to ${best.name}`,
      'primary',
      'running',
    );
  }

  /**
   * Whether `name` could take over from this primary now. For a switchover the candidate must be streaming
   * from us within the lag limit, so the clean shutdown hands it every last commit.
   */
  private candidateCheck(name: string, checkLag: boolean): { name: string } | { refusal: string } {
    const m = this.member(name);
    if (!m) return { refusal: `${name} is not a member` };
    if (!mayBePromoted(m.tags)) return { refusal: `${name} is tagged nofailover` };
    if (!isHealthyReplica(m)) return { refusal: `${name} is not a running replica (state ${m.state})` };
    if (this.config.synchronous_mode && !this.inSync(name)) return { refusal: `${name} is not a synchronous standby` };
    const row = this.obs.pg.replication.find((r) => r.name === name);
    if (!row || row.state !== 'streaming') return { refusal: `${name} is not streaming from this primary` };
    if (checkLag && this.obs.pg.walPosition !== null && row.flushLsn !== null) {
      const lag = this.obs.pg.walPosition - row.flushLsn;
      if (lag > this.config.maximum_lag_on_failover) return { refusal: `${name} lags ${lag} bytes, over maximum_lag_on_failover` };
    }
    return { name };
  }

  /** The replica that would best take over from this member (used before giving the key up). */
  private bestCandidate(exclude: string | null): MemberStatus | null {
    let best: MemberStatus | null = null;
    // The sync key counts whoever owns it (as inSync), and lag is measured against optime, as in the election.
    const rules = { syncMembers: this.config.synchronous_mode ? (this.view.sync?.members ?? []) : null, maxLag: this.config.maximum_lag_on_failover };
    for (const m of Object.values(this.view.members)) {
      if (m.name === this.me || m.name === exclude) continue;
      if (!isEligibleCandidate(m, rules, this.lagOf(m.walPosition))) continue;
      if (ranksAbove(m, best)) best = m;
    }
    return best;
  }

  private inSync(name: string): boolean {
    const sync = this.view.sync;
    return !!sync && sync.members.includes(name);
  }

  /**
   * Synchronous replication bookkeeping on the primary. Order is the safety rule of docs/ha.md: a member is
   * removed from `sync` before it leaves synchronous_standby_names, and added to `sync` only after
   * PostgreSQL reports it synchronous and it has flushed past the point where it was added.
   */
  private syncSteps(actions: Action[]): string[] {
    const pg = this.obs.pg;
    const current = this.view.sync && this.view.sync.leader === this.me ? this.view.sync.members : null;
    const guc = pg.synchronousStandbyNames;
    if (!this.config.synchronous_mode) {
      if (guc.length > 0) actions.push({ type: 'setSynchronousStandbys', names: [] });
      return [];
    }
    const streaming = pg.replication.filter((r) => r.state === 'streaming');
    const eligible = streaming.filter((r) => {
      const m = this.member(r.name);
      return r.name !== this.me && !!m && !m.tags.nosync;
    });
    const keyMembers = current ?? [];
    // Prefer members already in `sync` so the set does not churn, then the most advanced.
    eligible.sort((a, b) => {
      const ak = keyMembers.includes(a.name) ? 1 : 0;
      const bk = keyMembers.includes(b.name) ? 1 : 0;
      if (ak !== bk) return bk - ak;
      return (b.flushLsn ?? -1) - (a.flushLsn ?? -1);
    });
    const desired = eligible.slice(0, this.config.synchronous_node_count).map((r) => r.name).sort();
    const memory = this.obs.memory;
    const ready = (name: string): boolean => {
      if (!guc.includes(name)) return false;
      const row = pg.replication.find((r) => r.name === name);
      if (!row || (row.syncState !== 'sync' && row.syncState !== 'quorum')) return false;
      const addedAt = memory.syncAddedAt[name];
      return addedAt !== undefined && row.flushLsn !== null && row.flushLsn >= addedAt;
    };
    const nextKey = desired.filter((n) => keyMembers.includes(n) || ready(n)).sort();
    const notes: string[] = [];
    if (current === null || !sameSet(nextKey, keyMembers)) {
      actions.push({ type: 'writeSync', members: nextKey });
      notes.push(`synchronous standbys in sync: [${nextKey.join(', ')}]`);
    }
    const nextGuc = desired.length > 0 ? desired : this.config.synchronous_mode_strict ? ['*'] : [];
    const missingAddedAt = nextGuc.some((n) => n !== '*' && memory.syncAddedAt[n] === undefined);
    if (!sameSet(nextGuc, guc) || missingAddedAt) {
      actions.push({ type: 'setSynchronousStandbys', names: nextGuc });
      if (!sameSet(nextGuc, guc)) notes.push(`synchronous_standby_names set to [${nextGuc.join(', ')}]`);
    }
    if (desired.length === 0) {
      notes.push(this.config.synchronous_mode_strict ? 'no synchronous standby: writes block (strict mode)' : 'no synchronous standby available');
    }
    return notes;
  }

  /** A slot for every member, kept while the member has been seen within member_slots_ttl. */
  private slotSteps(actions: Action[]): void {
    const pg = this.obs.pg;
    const wanted = new Set<string>();
    for (const name of Object.keys(this.view.members)) if (name !== this.me) wanted.add(slotNameFor(name));
    const ttlMs = this.config.member_slots_ttl * 1000;
    for (const [name, seenAt] of Object.entries(this.obs.memory.memberLastSeen)) {
      if (name !== this.me && this.clock.wall - seenAt < ttlMs) wanted.add(slotNameFor(name));
    }
    const create = [...wanted].filter((s) => !pg.slots.includes(s)).sort();
    const drop = pg.slots.filter((s) => !wanted.has(s)).sort();
    if (create.length || drop.length) actions.push({ type: 'manageSlots', create, drop });
  }

  private promotionSteps(_why: string): Action[] {
    const steps: Action[] = [];
    // Before the first commit can be acknowledged on the new primary, `sync` must stop naming members that
    // may lack it.
    if (this.config.synchronous_mode) steps.push({ type: 'writeSync', members: [] });
    // The new timeline is recorded before promoting: a former primary must never find the history silent
    // about a promotion that happened (see primaryRetakeBlocker).
    // The promote executor makes PostgreSQL number the new timeline after every timeline in the history (see
    // PostgresServer.promote): a member that never saw the newest promotion would otherwise reuse its number,
    // and two branches under one number can neither be told apart here nor rewound by pg_rewind ("source and
    // target cluster are on the same timeline").
    const tl = Math.max(this.obs.pg.timeline ?? this.obs.pg.controlTimeline ?? 0, newestTimeline(this.view.history));
    steps.push({ type: 'recordHistory', reason: this.view.failover ? `${this.view.failover.kind} to ${this.me}` : `failover to ${this.me}`, timeline: tl + 1, lsn: this.obs.pg.walPosition ?? 0, parent: this.obs.pg.timeline ?? this.obs.pg.controlTimeline });
    steps.push({ type: 'promote' });
    if (this.view.failover) steps.push({ type: 'clearFailover' });
    steps.push({ type: 'checkpoint' });
    return steps;
  }

  // ---- another member holds the leader key -------------------------------------------------------------

  private asFollower(leader: string): Decision {
    const pg = this.obs.pg;
    if (this.pgMaybePrimary) {
      return this.decision(
        [{ type: 'stop', mode: 'fast' }],
        `demoting: ${leader} holds the leader key, so this server must not accept writes`,
        'primary',
        'demoting',
      );
    }
    const lm = this.member(leader);
    if (!pg.running) {
      if (this.config.pause) return this.decision([], 'paused: PostgreSQL is stopped, not starting it', this.pgRole, this.pgState);
      if (this.pgRole === 'primary') return this.rejoinAsReplica(leader, lm, 'rewinding this former primary first');
      // A replica whose repair was cut short (pg_rewind failed after the stop) or whose data PostgreSQL refuses
      // ("requested timeline does not contain minimum recovery point") would otherwise be started, and fail,
      // forever: found by the chaos suite. Rewind it after a few failed starts, clone it again when that fails.
      const failures = this.obs.memory.startFailures;
      if (this.obs.memory.rewindFailed || failures >= MAX_START_FAILURES * 2) {
        return this.rejoinAsReplica(leader, lm, `PostgreSQL failed to start as a replica ${failures} times: cloning it again`, true);
      }
      if (failures >= MAX_START_FAILURES) {
        return this.rejoinAsReplica(leader, lm, `PostgreSQL failed to start as a replica ${failures} times: rewinding it first`);
      }
      return this.decision(
        [{ type: 'start', role: 'replica', follow: leader }],
        `starting PostgreSQL as a replica of ${leader}`,
        'replica',
        'starting',
      );
    }
    if (!lm) {
      return this.decision([], `waiting for the primary ${leader} to publish its address`, 'replica', this.pgState);
    }
    if (this.diverged(lm.timeline) && pg.following === leader && !this.config.pause) {
      if (lm.role === 'primary' && lm.state === 'running') {
        return this.decision(
          [{ type: 'stop', mode: 'fast' }, this.obs.memory.rewindFailed ? { type: 'reinitialize', from: leader } : { type: 'rewind', from: leader }, { type: 'start', role: 'replica', follow: leader }],
          `replica diverged from ${leader} (it has WAL past the point where timeline ${lm.timeline} forked off): ${this.obs.memory.rewindFailed ? `pg_rewind failed, cloning it again${this.rewindErrorNote}` : 'rewinding it'}`,
          'replica',
          'rewinding',
        );
      }
    }
    if (pg.following !== leader) {
      return this.decision([{ type: 'follow', leader }], `following the new primary ${leader}`, 'replica', this.pgState);
    }
    // The lag is published in the member key; keeping it out of the sentence keeps the log to one line per change.
    return this.decision([], pg.streaming ? `replica streaming from ${leader}` : `replica of ${leader}, not streaming yet`, 'replica', this.pgState);
  }

  /** What pg_rewind said when it failed, for the reason of the re-clone that follows. */
  private get rewindErrorNote(): string {
    const error = this.obs.memory.rewindError;
    return error ? ` (${error})` : '';
  }

  /**
   * A stopped server that cannot simply start as a replica (a former primary, or a replica whose starts fail)
   * becomes one of the new leader: pg_rewind first, a fresh clone when that failed (or `reclone`).
   */
  private rejoinAsReplica(leader: string, lm: MemberStatus | undefined, how: string, reclone = false): Decision {
    if (!lm || lm.role !== 'primary' || lm.state !== 'running' || lm.timeline === null) {
      return this.decision([], `waiting for the primary ${leader} to be running before rejoining as its replica`, 'replica', 'stopped');
    }
    if (reclone && !this.obs.memory.rewindFailed) {
      return this.decision(
        [{ type: 'reinitialize', from: leader }, { type: 'start', role: 'replica', follow: leader }],
        `rejoining as a replica of ${leader}: ${how}`,
        'replica',
        'cloning',
      );
    }
    if (this.obs.memory.rewindFailed) {
      return this.decision(
        [{ type: 'reinitialize', from: leader }, { type: 'start', role: 'replica', follow: leader }],
        `rejoining as a replica of ${leader}: pg_rewind failed, cloning again${this.rewindErrorNote}`,
        'replica',
        'cloning',
      );
    }
    return this.decision(
      [{ type: 'rewind', from: leader }, { type: 'start', role: 'replica', follow: leader }],
      `rejoining as a replica of ${leader}: ${how}`,
      'replica',
      'rewinding',
    );
  }

  /**
   * A replica that cannot stream because it holds WAL its upstream never had: an asynchronous standby that
   * was ahead of the one promoted, or a nofailover member. Known from `history`: the first promotion recorded
   * after the one that started this server's timeline forked off at an LSN below this server's position.
   */
  private diverged(leaderTimeline: number | null): boolean {
    const pg = this.obs.pg;
    if (!pg.running || pg.inRecovery !== true || pg.streaming || pg.timeline === null || pg.walPosition === null) return false;
    // Every replica stops streaming when its primary dies, and the dead primary's member key lives on for up
    // to ttl: judge only a replica that has failed to stream for longer than that.
    const since = this.obs.memory.notStreamingSince;
    if (since === null || this.clock.mono - since < (this.config.ttl + this.config.loop_wait) * 1000) return false;
    const ancestry = leaderTimeline === null ? null : this.ancestry(leaderTimeline);
    if (ancestry !== null) {
      // PostgreSQL's own test: the leader's history must contain this server's timeline, and this server must
      // not have gone past the point where the leader's branch left it.
      const end = ancestry.get(pg.timeline);
      return end === undefined || pg.walPosition > end;
    }
    // Entries without `parent` (written by older versions): assume the next promotion forked off this timeline.
    const history = this.view.history;
    let mine = -1;
    for (let i = 0; i < history.length; i++) if (history[i]!.timeline === pg.timeline) mine = i;
    const fork = history[mine + 1];
    return fork !== undefined && fork.timeline !== pg.timeline && pg.walPosition > fork.lsn;
  }

  /**
   * The timelines the leader's WAL runs through, each with the LSN where the leader's branch left it (Infinity
   * for the leader's own), following `parent` back to the bootstrap timeline; null when an entry on the way
   * is missing or has no `parent`.
   */
  private ancestry(leaderTimeline: number): Map<number, number> | null {
    const byTimeline = new Map<number, HistoryEntry>();
    for (const e of this.view.history) byTimeline.set(e.timeline, e);
    const out = new Map<number, number>([[leaderTimeline, Number.POSITIVE_INFINITY]]);
    const bootstrap = this.view.history[0]?.timeline ?? 1;
    for (let tl = leaderTimeline; tl !== bootstrap; ) {
      const e = byTimeline.get(tl);
      if (!e || e.parent === undefined || e.parent >= tl || out.has(e.parent)) return null;
      out.set(e.parent, e.lsn);
      tl = e.parent;
    }
    return out;
  }

  // ---- nobody holds the leader key -------------------------------------------------------------------

  private leaderless(): Decision {
    const pg = this.obs.pg;
    const active = this.activeIntent();
    const intentFor = active && !active.stale && active.intent.to ? active.intent.to : null;
    if (this.pgMaybePrimary && !this.pgIsPrimary) {
      return this.decision([], 'the leader key is free but PostgreSQL is not answering queries yet; waiting', this.pgRole, this.pgState);
    }
    if (this.pgIsPrimary) {
      const block = this.primaryRetakeBlocker(intentFor);
      if (block) {
        return this.decision([{ type: 'stop', mode: 'fast' }], `demoting: the leader key is free but ${block}`, 'primary', 'demoting');
      }
      return this.decision([{ type: 'acquireLeader' }], 'running primary is taking the free leader key', 'primary', 'running');
    }
    if (!pg.running) {
      if (this.pgRole === 'primary') {
        const block = this.primaryRetakeBlocker(intentFor);
        if (block) return this.decision([], `former primary stays stopped: ${block}`, 'primary', this.pgState);
        const checkpoint = this.cleanShutdownCheckpoint();
        const shutdown = this.view.shutdown;
        // The clean shutdown that `shutdown` records, not a later one (a stop outside pgwarden); and a server that
        // starts: after a failed start, a running replica holding all its WAL takes over instead.
        const resuming =
          checkpoint !== null &&
          shutdown !== null &&
          shutdown.leader === this.me &&
          shutdown.checkpoint === checkpoint &&
          this.obs.memory.startFailures === 0;
        const moreAdvanced = this.moreAdvancedPeer(null, checkpoint === null ? null : { checkpoint, yieldToEqual: !resuming });
        if (moreAdvanced) return this.decision([], `former primary stays stopped: ${moreAdvanced}`, 'primary', this.pgState);
        return this.decision(
          [{ type: 'acquireLeader' }, { type: 'start', role: 'primary', follow: null }],
          resuming
            ? `taking the free leader key and starting this former primary again: it shut down cleanly at ${lsnText(checkpoint)} and no other member is ahead of it`
            : 'taking the free leader key and starting this former primary again: no other member is ahead of it',
          'primary',
          'starting',
        );
      }
      return this.decision(
        [{ type: 'start', role: 'replica', follow: null }],
        'starting PostgreSQL as a replica so that it can take part in the election',
        'replica',
        'starting',
      );
    }
    const refusal = this.electionRefusal(intentFor, active?.intent ?? null);
    if (refusal) return this.decision([], `not taking the free leader key: ${refusal}`, 'replica', this.pgState);
    const why = intentFor === this.me ? `${active!.intent.kind} requested to ${this.me}` : 'this is the most advanced healthy replica';
    return this.decision(
      [{ type: 'acquireLeader' }, ...this.promotionSteps(why)],
      `promoting: the leader key was free and ${why}`,
      'primary',
      'promoting',
    );
  }

  /** Why a (former) primary may not take the free key back, or null if it may. */
  private primaryRetakeBlocker(intentFor: string | null): string | null {
    if (intentFor && intentFor !== this.me) return `a ${this.view.failover!.kind} to ${intentFor} is in progress`;
    if (this.config.synchronous_mode && this.view.sync && this.view.sync.leader !== this.me) {
      return `${this.view.sync.leader} was primary after this server (it owns the sync key)`;
    }
    // Every promotion in synchronous mode writes `sync` before its history entry, and only a primary writes it
    // after that: while `sync` still names this server, no promotion happened since it last acted as primary.
    // The last history entry may then be a promotion that was recorded but failed (its server died first).
    const syncSaysLast = this.config.synchronous_mode && this.view.sync?.leader === this.me;
    const newer = this.view.history.length ? this.view.history[this.view.history.length - 1] : null;
    // With every promotion recorded before it happens, the last entry names the last primary. Its timeline is
    // no help here: pg_controldata names the timeline of the last checkpoint, and a primary that crashed
    // between its promotion and the checkpoint after it still names the old one.
    if (newer && newer.leader !== this.me && !syncSaysLast) {
      const myTimeline = this.obs.pg.timeline ?? this.obs.pg.controlTimeline;
      return `timeline ${newer.timeline} was started by ${newer.leader} after this server's timeline ${myTimeline ?? 'unknown'}`;
    }
    if (!this.canFailOver) return 'this member is tagged nofailover';
    return null;
  }

  /** Why this replica may not take the free key now, or null if it may. */
  private electionRefusal(intentFor: string | null, intent: FailoverIntent | null): string | null {
    const pg = this.obs.pg;
    if (!this.canFailOver) return 'this member is tagged nofailover';
    if (!pg.accepting) return 'PostgreSQL is not answering queries';
    if (intentFor && intentFor !== this.me) return `a ${intent!.kind} to ${intentFor} was requested`;
    if (this.config.synchronous_mode && !this.inSync(this.me) && this.view.sync?.leader !== this.me) {
      return 'synchronous mode is on and this member is not listed in the sync key';
    }
    const forced = intentFor === this.me && intent?.kind === 'failover';
    const lag = this.lagOf(pg.walPosition);
    if (!forced && lag !== null && lag > this.config.maximum_lag_on_failover) {
      return `lag of ${lag} bytes exceeds maximum_lag_on_failover (${this.config.maximum_lag_on_failover})`;
    }
    if (intentFor === this.me) return null;
    const hold = this.shutdownHold();
    if (hold) return hold;
    return this.moreAdvancedPeer(pg.walPosition);
  }

  /**
   * Where this stopped server's shutdown checkpoint record starts, when it was shut down cleanly as a primary:
   * that record is the last of its WAL, so its position is known (pg_controldata), not "unknown".
   */
  private cleanShutdownCheckpoint(): number | null {
    const pg = this.obs.pg;
    return !pg.running && pg.controlState === 'shut down' && pg.checkpointLsn !== null ? pg.checkpointLsn : null;
  }

  /**
   * Why a replica must not take the free key yet because the former primary shut down cleanly (the whole
   * cluster was stopped) and may come back: restarting it keeps its timeline, a promotion would start a new
   * one and rewind it. It has primary_start_timeout, counted from this agent's first leaderless cycle, to do so;
   * after that the usual election runs (the replicas hold its WAL up to the shutdown checkpoint, when they
   * received it).
   */
  private shutdownHold(): string | null {
    const shutdown = this.view.shutdown;
    if (shutdown === null || shutdown.leader === this.me) return null;
    // A primary published a position past that shutdown since: the record is left over.
    if (this.view.optime !== null && this.view.optime > shutdown.checkpoint + SHUTDOWN_CHECKPOINT_MAX_SPAN) return null;
    const former = this.member(shutdown.leader);
    if (former && !mayBePromoted(former.tags)) return null;
    const waitMs = this.config.primary_start_timeout * 1000;
    const since = this.obs.memory.shutdownHoldSince ?? this.clock.mono;
    const left = waitMs - (this.clock.mono - since);
    if (left <= 0) return null;
    return `${shutdown.leader} shut down cleanly at ${lsnText(shutdown.checkpoint)} and may come back as primary (waiting up to primary_start_timeout, ${Math.ceil(left / 1000)} s left)`;
  }

  /**
   * A reachable, healthy peer that should win the election instead of this member, as a sentence. `clean`: this
   * is a stopped former primary whose WAL ends with the shutdown checkpoint at `checkpoint`; a peer that holds
   * every record before it (all of the data) counts as ahead only with `yieldToEqual` (a running replica then
   * takes over rather than waiting for this server to start).
   */
  private moreAdvancedPeer(myPosition: number | null, clean: { checkpoint: number; yieldToEqual: boolean } | null = null): string | null {
    const mine = myPosition ?? -1;
    for (const [name, probe] of Object.entries(this.obs.peers)) {
      if (name === this.me || !probe.reachable || !probe.healthy) continue;
      if (probe.role === 'primary') return `${name} is still running as a primary`;
      const tags = probe.tags;
      if (tags && !mayBePromoted(tags)) continue;
      // A peer too far behind the optime will refuse the key itself: it must not hold the election back.
      const peerLag = this.lagOf(probe.walPosition);
      if (peerLag !== null && peerLag > this.config.maximum_lag_on_failover) continue;
      if (this.config.synchronous_mode && !this.inSync(name) && this.view.sync?.leader !== name) continue;
      const theirs = probe.walPosition ?? -1;
      if (clean !== null) {
        if (theirs > clean.checkpoint + SHUTDOWN_CHECKPOINT_MAX_SPAN) {
          return `${name} is more advanced (${lsnText(theirs)}, past this server's shutdown checkpoint at ${lsnText(clean.checkpoint)})`;
        }
        if (theirs >= clean.checkpoint && clean.yieldToEqual) {
          return `${name} holds all of this server's WAL up to its shutdown checkpoint at ${lsnText(clean.checkpoint)} and is running`;
        }
        continue;
      }
      if (theirs > mine) return `${name} is more advanced (${theirs} > ${mine})`;
      if (theirs === mine && tags && tags.failover_priority > this.myPriority) {
        return `${name} is as advanced and has a higher failover_priority`;
      }
    }
    return null;
  }
}

/** The highest timeline any promotion recorded in `history` started (0 for none). */
export function newestTimeline(history: readonly HistoryEntry[]): number {
  return history.reduce((max, e) => Math.max(max, e.timeline), 0);
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(b);
  return a.every((x) => s.has(x));
}
