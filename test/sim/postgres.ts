/**
 * Modelled PostgreSQL servers: just enough of PostgreSQL for the HA policy's safety to depend on it.
 *
 * WAL is a chain of records with globally unique ids; a server's WAL is the list of ids it has. Because every
 * record is created exactly once, after exactly one predecessor, two servers share a history up to index i
 * iff they hold the same id at index i — so "is A's WAL a prefix of B's" is one comparison. The LSN of a
 * position is the byte offset of the end of its last record.
 *
 * Modelled: start (takes time, may fail), fast stop (refuses writes at once, ships the rest of the WAL and a
 * shutdown checkpoint to connected standbys), immediate stop and crash (kill -9: WAL kept, nothing shipped),
 * promotion (new timeline, a timeline-switch record), pg_rewind and pg_basebackup (the data becomes the
 * source's), streaming replication from the configured upstream with per-tick random progress (a standby
 * whose WAL is not a prefix of its upstream's cannot stream: PostgreSQL refuses a fork before its position),
 * synchronous replication (FIRST n (...) waits for the n listed standbys, '*' for any one, '' for none; a
 * reload that empties the list releases every waiting commit, as PostgreSQL does), pg_controldata's state.
 *
 * Timelines: pg_control's checkpoint timeline is modelled apart from the WAL's. It lags: a standby takes a
 * restartpoint every checkpoint_timeout (5 min) and when it shuts down, so for minutes after a promotion it
 * still names the old timeline, and a primary that crashed between its promotion and the checkpoint after it
 * names the old one too. pgwarden reads it from pg_controldata for a stopped server and (with the newest WAL
 * segment's) for a standby that is not streaming (src/postgres/server.ts). pg_rewind does nothing when both
 * control files name the same timeline ("source and target cluster are on the same timeline"), as
 * PostgreSQL 15's does, whatever the WAL says.
 */
import type { ControlState, PgObservation, ReplicationPeer } from '../../src/postgres/observation.js';
import type { Lsn } from '../../src/cluster/types.js';
import { slotNameFor } from '../../src/ha/slots.js';
import type { Kernel } from './kernel.js';
import type { Rng } from './prng.js';

export interface WalRecord {
  id: number;
  /** Position in every WAL that holds it. */
  index: number;
  /** LSN at the end of the record. */
  end: Lsn;
  timeline: number;
  /** init, promote and shutdown records stand for (or are followed by) a checkpoint. */
  kind: 'init' | 'commit' | 'promote' | 'shutdown';
  /** The server that wrote it. */
  origin: string;
}

export class WalRegistry {
  readonly records: WalRecord[] = [];

  create(after: readonly number[], size: number, timeline: number, kind: WalRecord['kind'], origin: string): WalRecord {
    const prevEnd = after.length ? this.records[after[after.length - 1]!]!.end : 16 * 1024 * 1024;
    const r: WalRecord = { id: this.records.length, index: after.length, end: prevEnd + size, timeline, kind, origin };
    this.records.push(r);
    return r;
  }

  get(id: number): WalRecord {
    return this.records[id]!;
  }
}

export type PgStatus = 'stopped' | 'starting' | 'running' | 'stopping';

/** A commit waiting for synchronous standbys. */
interface PendingCommit {
  record: WalRecord;
  at: number;
}

/** Things the model reports to the world (acknowledgements, promotions) so the invariants can be checked. */
export interface PgListener {
  acknowledged(server: SimPostgres, record: WalRecord, writtenAt: number): void;
  becameWritable(server: SimPostgres, how: 'promoted' | 'started'): void;
  /** A fast shutdown finished or a server crashed: used by the trace. */
  pgEvent(server: SimPostgres, what: string): void;
}

/** Timing and failure knobs of the model. */
export interface PgTimings {
  startMs: [number, number];
  stopMs: [number, number];
  promoteMs: [number, number];
  checkpointMs: [number, number];
  rewindMs: [number, number];
  cloneMs: [number, number];
  initdbMs: [number, number];
  startFailure: number;
  rewindFailure: number;
  /** checkpoint_timeout: a standby's restartpoints (and so its pg_control_checkpoint() timeline) lag this much. */
  checkpointTimeoutMs: number;
}

export const DEFAULT_PG_TIMINGS: PgTimings = {
  startMs: [300, 1500],
  stopMs: [100, 800],
  promoteMs: [200, 1000],
  checkpointMs: [50, 400],
  rewindMs: [500, 2500],
  cloneMs: [1000, 4000],
  initdbMs: [800, 2000],
  startFailure: 0.03,
  rewindFailure: 0.05,
  checkpointTimeoutMs: 300_000,
};

export class PgError extends Error {}

export class SimPostgres {
  dataDir: PgObservation['dataDir'] = 'empty';
  systemId: string | null = null;
  status: PgStatus = 'stopped';
  /** standby.signal: the server runs (or will start) as a standby. */
  standbySignal = false;
  /** Running in recovery (a standby, or a standby being promoted). */
  inRecovery = false;
  controlState: ControlState | null = null;
  wal: number[] = [];
  following: string | null = null;
  syncNames: string[] = [];
  slots = new Set<string>();
  /** The upstream this standby's WAL receiver is connected to, and since when. */
  upstream: string | null = null;
  connectedAt = 0;
  /** Walsender state as the upstream reports it: catching up until it first reached the upstream's end. */
  senderState: 'catchup' | 'streaming' = 'catchup';
  pending: PendingCommit[] = [];
  /** pg_control's "Latest checkpoint's TimeLineID". */
  checkpointTimeline: number | null = null;
  /** When the standby's next timed restartpoint is due. */
  private nextRestartpointAt = 0;
  /** Bumped by every crash/stop so that transitions scheduled before it are dropped. */
  private generation = 0;

  constructor(
    readonly name: string,
    private readonly kernel: Kernel,
    private readonly rng: Rng,
    private readonly registry: WalRegistry,
    private readonly listener: PgListener,
    private readonly timings: PgTimings,
  ) {}

  // ---- what queries and pg_controldata would say ----

  get running(): boolean {
    return this.status !== 'stopped';
  }

  /** Answers queries. */
  get accepting(): boolean {
    return this.status === 'running';
  }

  get acceptsWrites(): boolean {
    return this.status === 'running' && !this.inRecovery;
  }

  get position(): Lsn {
    return this.wal.length ? this.registry.get(this.wal[this.wal.length - 1]!).end : 0;
  }

  get timeline(): number | null {
    return this.wal.length ? this.registry.get(this.wal[this.wal.length - 1]!).timeline : null;
  }

  /** The last record: its identity pins down this server's whole history. */
  lastRecord(): WalRecord | null {
    return this.wal.length ? this.registry.get(this.wal[this.wal.length - 1]!) : null;
  }

  holds(record: WalRecord): boolean {
    return this.wal[record.index] === record.id;
  }

  /** True when every record of this server is also in `other` (so it can stream from it). */
  isPrefixOf(other: SimPostgres): boolean {
    if (this.wal.length > other.wal.length) return false;
    if (this.wal.length === 0) return true;
    const i = this.wal.length - 1;
    return other.wal[i] === this.wal[i];
  }

  /** The timeline of the last checkpoint record this server has replayed or written. */
  private lastCheckpointTimeline(upTo = this.wal.length): number | null {
    for (let i = upTo - 1; i >= 0; i--) {
      const r = this.registry.get(this.wal[i]!);
      if (r.kind !== 'commit') return r.timeline;
    }
    return null;
  }

  /** A standby's timed restartpoints, evaluated lazily whenever pg_control is read. */
  private restartpoints(): void {
    if (this.status !== 'running' || !this.inRecovery) return;
    while (this.kernel.now >= this.nextRestartpointAt) {
      this.checkpointTimeline = this.lastCheckpointTimeline() ?? this.checkpointTimeline;
      this.nextRestartpointAt += this.timings.checkpointTimeoutMs;
    }
  }

  observe(replicationRows: ReplicationPeer[]): PgObservation {
    this.restartpoints();
    const o: PgObservation = {
      dataDir: this.dataDir,
      running: this.dataDir === 'initialized' && this.running,
      accepting: false,
      inRecovery: null,
      timeline: null,
      systemId: this.dataDir === 'initialized' ? this.systemId : null,
      walPosition: null,
      receiveLsn: null,
      replayLsn: null,
      controlState: null,
      controlTimeline: null,
      checkpointLsn: null,
      following: this.dataDir === 'initialized' ? this.following : null,
      streaming: false,
      synchronousStandbyNames: this.dataDir === 'initialized' ? [...this.syncNames] : [],
      replication: [],
      slots: [],
      pendingRestart: false,
    };
    if (this.dataDir !== 'initialized') return o;
    if (this.accepting) {
      o.accepting = true;
      o.inRecovery = this.inRecovery;
      // pg_control_checkpoint()'s timeline (server.ts fillFromProbe).
      o.controlTimeline = this.checkpointTimeline;
      o.timeline = this.timeline;
      o.walPosition = this.position;
      if (this.inRecovery) {
        o.receiveLsn = this.position;
        o.replayLsn = this.position;
        o.streaming = this.upstream !== null;
        // received_tli while streaming, else the later of pg_control_checkpoint()'s and the newest WAL segment's
        // timeline in pg_wal (server.ts fillFromProbe); segments carry the timeline of the WAL received.
        if (!o.streaming) o.timeline = Math.max(this.checkpointTimeline ?? 0, this.timeline ?? 0) || null;
      }
      o.replication = replicationRows;
      o.slots = [...this.slots].sort();
    } else if (!this.running) {
      o.controlState = this.controlState;
      o.controlTimeline = this.checkpointTimeline;
      // Only a clean primary shutdown is read by decide(): its checkpoint is the last record, the shutdown one.
      if (this.controlState === 'shut down' && this.wal.length > 0) {
        o.checkpointLsn = this.wal.length > 1 ? this.registry.get(this.wal[this.wal.length - 2]!).end : 0;
      }
    }
    return o;
  }

  // ---- lifecycle; each returns when the operation is complete, via `done(error?)` ----

  /** initdb + start as primary (the data are a brand new system). */
  bootstrap(systemId: string, done: (err?: Error) => void): void {
    if (this.dataDir === 'initialized') return done(new PgError('data directory not empty'));
    const g = ++this.generation;
    this.kernel.after(this.span(this.timings.initdbMs), () => {
      if (g !== this.generation) return done(new PgError('bootstrap interrupted'));
      const init = this.registry.create([], 1024, 1, 'init', this.name);
      this.wal = [init.id];
      this.dataDir = 'initialized';
      this.systemId = systemId;
      this.controlState = 'shut down';
      this.checkpointTimeline = 1;
      this.standbySignal = false;
      this.following = null;
      this.syncNames = [];
      this.start('primary', null, done);
    });
  }

  start(role: 'primary' | 'replica', follow: string | null, done: (err?: Error) => void): void {
    if (this.dataDir !== 'initialized') return done(new PgError('no cluster in the data directory'));
    if (this.running) {
      if (this.standbySignal !== (role === 'replica')) return done(new PgError('already running in the other role'));
      this.following = role === 'replica' ? follow : null;
      if (this.upstream !== this.following) this.disconnectReceiver();
      return this.kernel.after(5, () => done());
    }
    this.following = role === 'replica' ? follow : null;
    this.standbySignal = role === 'replica';
    this.status = 'starting';
    this.inRecovery = this.standbySignal;
    const g = ++this.generation;
    const fail = this.rng.chance(this.timings.startFailure);
    this.kernel.after(this.span(this.timings.startMs), () => {
      if (g !== this.generation) return done(new PgError('PostgreSQL stopped while starting'));
      if (fail) {
        this.status = 'stopped';
        this.listener.pgEvent(this, 'start failed');
        return done(new PgError('simulated start failure'));
      }
      this.status = 'running';
      this.inRecovery = this.standbySignal;
      this.controlState = null;
      // A primary's start ends with a checkpoint on its timeline (after crash recovery, the end-of-recovery one);
      // a standby's first timed restartpoint comes somewhere within checkpoint_timeout.
      if (!this.inRecovery) this.checkpointTimeline = this.timeline;
      else this.nextRestartpointAt = this.kernel.now + this.rng.int(0, this.timings.checkpointTimeoutMs);
      if (!this.inRecovery) this.listener.becameWritable(this, 'started');
      done();
    });
  }

  /** Fast shutdown: refuses new work at once, ends sessions (waiting commits are not acknowledged). */
  stop(mode: 'fast' | 'immediate', done: (err?: Error) => void, shipTo: (s: SimPostgres) => void = () => undefined): void {
    if (!this.running) return this.kernel.after(1, () => done());
    if (mode === 'immediate') {
      this.crash('immediate shutdown');
      return this.kernel.after(this.rng.int(20, 100), () => done());
    }
    if (this.status === 'stopping') {
      // Already shutting down (the watchdog sent SIGINT): wait for it.
      const wait = (): void => (this.status === 'stopping' ? this.kernel.after(20, wait) : done());
      return wait();
    }
    const wasPrimary = !this.inRecovery && this.status === 'running';
    this.status = 'stopping';
    this.pending = [];
    const g = ++this.generation;
    this.kernel.after(this.span(this.timings.stopMs), () => {
      if (g !== this.generation) return done();
      if (wasPrimary) {
        const rec = this.registry.create(this.wal, 128, this.timeline ?? 1, 'shutdown', this.name);
        this.wal.push(rec.id);
        // Walsenders send everything up to the shutdown checkpoint to the standbys still connected.
        shipTo(this);
      }
      // The shutdown checkpoint, or a standby's shutdown restartpoint at the last checkpoint it replayed.
      this.checkpointTimeline = this.lastCheckpointTimeline() ?? this.checkpointTimeline;
      this.status = 'stopped';
      this.controlState = this.standbySignal ? 'shut down in recovery' : 'shut down';
      this.disconnectReceiver();
      this.listener.pgEvent(this, 'shut down');
      done();
    });
  }

  /** kill -9 of the postmaster (or the host): nothing more is written, acknowledged or shipped. */
  crash(why = 'crashed'): void {
    if (!this.running) return;
    this.generation++;
    this.controlState = this.standbySignal ? 'in archive recovery' : 'in production';
    this.status = 'stopped';
    this.pending = [];
    this.disconnectReceiver();
    this.listener.pgEvent(this, why);
  }

  /** `timelinesTaken`: the newest timeline in the history; PostgresServer.promote() makes PostgreSQL number the new one after it. */
  promote(done: (err?: Error) => void, timelinesTaken = 0): void {
    if (!this.running) return done(new PgError('PostgreSQL is not running'));
    if (!this.inRecovery) return this.kernel.after(5, () => done());
    const g = this.generation;
    this.kernel.after(this.span(this.timings.promoteMs), () => {
      if (g !== this.generation || this.status !== 'running') return done(new PgError('PostgreSQL went away during promotion'));
      const rec = this.registry.create(this.wal, 256, Math.max(this.timeline ?? 1, timelinesTaken) + 1, 'promote', this.name);
      this.wal.push(rec.id);
      this.inRecovery = false;
      this.standbySignal = false;
      this.following = null;
      this.disconnectReceiver();
      this.listener.becameWritable(this, 'promoted');
      // PostgreSQL itself requests a checkpoint at the end of a promotion, spread over most of
      // checkpoint_timeout (checkpoint_completion_target 0.9); an explicit CHECKPOINT finishes it sooner.
      this.kernel.after(this.timings.checkpointTimeoutMs * 0.9, () => {
        if (g === this.generation && this.acceptsWrites) this.checkpointTimeline = this.timeline;
      });
      // server.ts promote(): the configuration is rewritten and reloaded.
      this.kernel.after(this.rng.int(5, 30), () => done());
    });
  }

  /** CHECKPOINT: from now on pg_control names the current timeline (server.ts checkpoint(), after a promotion). */
  checkpoint(done: (err?: Error) => void): void {
    if (!this.accepting) return done(new PgError('PostgreSQL is not accepting connections'));
    const g = this.generation;
    this.kernel.after(this.span(this.timings.checkpointMs), () => {
      if (g !== this.generation || !this.running) return done(new PgError('PostgreSQL went away during CHECKPOINT'));
      this.checkpointTimeline = this.inRecovery ? this.checkpointTimeline : this.timeline;
      done();
    });
  }

  follow(leader: string | null): void {
    this.following = leader;
    if (this.upstream !== leader) this.disconnectReceiver();
  }

  /** pg_rewind from `source`: the data become the source's as of now (plus replay on start). */
  rewind(source: SimPostgres | null, reachable: () => boolean, done: (err?: Error) => void): void {
    if (this.running) return done(new PgError('cannot rewind a running server'));
    if (this.dataDir !== 'initialized') return done(new PgError('no cluster to rewind'));
    const fail = this.rng.chance(this.timings.rewindFailure);
    const g = ++this.generation;
    this.kernel.after(this.span(this.timings.rewindMs), () => {
      if (g !== this.generation) return done(new PgError('rewind interrupted'));
      // The two kinds of failure the executor tells apart (executor.ts isConnectionFailure).
      if (!source || !reachable() || !source.running) return done(new PgError(`connection to server at "${source?.name ?? '?'}" failed: Connection refused`));
      if (!source.accepting) return done(new PgError('FATAL: the database system is starting up'));
      if (fail) return done(new PgError('pg_rewind failed: could not find previous WAL record'));
      if (this.checkpointTimeline === source.checkpointTimeline) {
        // "source and target cluster are on the same timeline": pg_rewind stops there, whatever the WAL says.
        this.listener.pgEvent(this, `not rewound from ${source.name}: same timeline ${source.checkpointTimeline}`);
      } else if (!this.isPrefixOf(source)) {
        let common = 0;
        while (common < this.wal.length && common < source.wal.length && this.wal[common] === source.wal[common]) common++;
        this.wal = [...source.wal];
        // Recovery starts from the last checkpoint before the fork (backup_label), which pg_control then names.
        this.checkpointTimeline = this.lastCheckpointTimeline(common) ?? this.checkpointTimeline;
      }
      this.controlState = 'in archive recovery';
      this.following = source.name;
      this.syncNames = [];
      this.standbySignal = true;
      if (this.checkpointTimeline !== source.checkpointTimeline) this.listener.pgEvent(this, `rewound from ${source.name}`);
      done();
    });
  }

  /** pg_basebackup from `source` into an empty data directory (does not start the server). */
  clone(source: SimPostgres | null, reachable: () => boolean, done: (err?: Error) => void): void {
    if (this.running) return done(new PgError('cannot clone into a running server'));
    if (this.dataDir === 'initialized') return done(new PgError('data directory not empty'));
    const g = ++this.generation;
    this.kernel.after(this.span(this.timings.cloneMs), () => {
      if (g !== this.generation) return done(new PgError('clone interrupted'));
      if (!source || !reachable() || !source.accepting || source.dataDir !== 'initialized') {
        this.dataDir = 'empty';
        return done(new PgError('pg_basebackup failed'));
      }
      this.slots.clear();
      this.adoptCopyOf(source);
      this.listener.pgEvent(this, `cloned from ${source.name}`);
      done();
    });
  }

  /** The data directory becomes a base backup of `source`, configured to follow it. */
  private adoptCopyOf(source: SimPostgres): void {
    this.wal = [...source.wal];
    this.systemId = source.systemId;
    this.dataDir = 'initialized';
    // pg_basebackup starts with a checkpoint on the source.
    this.checkpointTimeline = source.inRecovery ? source.checkpointTimeline : source.timeline;
    // pg_control is copied from the running source: a backup of a primary says "in production".
    this.controlState = source.inRecovery ? 'in archive recovery' : 'in production';
    this.following = source.name;
    this.syncNames = [];
    this.standbySignal = true;
  }

  /**
   * server.ts reclone() (reinitialize): pg_basebackup into a directory beside the data directory, swapped in
   * only once complete — a failed copy leaves the old data in place.
   */
  reclone(source: SimPostgres | null, reachable: () => boolean, done: (err?: Error) => void): void {
    if (this.running) return done(new PgError('cannot reinitialize a running server'));
    const g = ++this.generation;
    this.kernel.after(this.span(this.timings.cloneMs), () => {
      if (g !== this.generation) return done(new PgError('reclone interrupted'));
      if (!source || !reachable() || !source.accepting || source.dataDir !== 'initialized') return done(new PgError('pg_basebackup failed'));
      this.slots.clear();
      this.adoptCopyOf(source);
      this.listener.pgEvent(this, `cloned from ${source.name} (reinitialized)`);
      done();
    });
  }

  wipe(): void {
    if (this.running) throw new PgError('cannot wipe a running server');
    this.generation++;
    this.dataDir = 'empty';
    this.wal = [];
    this.systemId = null;
    this.controlState = null;
    this.checkpointTimeline = null;
    this.following = null;
    this.syncNames = [];
    this.slots.clear();
  }

  setSynchronousStandbys(names: string[]): void {
    this.syncNames = [...names];
  }

  manageSlots(create: string[], drop: string[]): void {
    for (const s of create) this.slots.add(slotNameFor(s));
    for (const s of drop) this.slots.delete(slotNameFor(s));
  }

  /** A client's commit: written to WAL now, acknowledged now or once the synchronous standbys have it. */
  write(size: number): WalRecord | null {
    if (!this.acceptsWrites) return null;
    const rec = this.registry.create(this.wal, size, this.timeline ?? 1, 'commit', this.name);
    this.wal.push(rec.id);
    this.pending.push({ record: rec, at: this.kernel.now });
    return rec;
  }

  disconnectReceiver(): void {
    this.upstream = null;
    this.senderState = 'catchup';
  }

  /** Acknowledges the waiting commits that synchronous replication allows, given this primary's standbys. */
  releaseCommits(standbys: readonly SimPostgres[]): void {
    if (this.pending.length === 0 || !this.acceptsWrites) return;
    const upTo = syncReleasePosition(this.syncNames, standbys);
    if (upTo === null) return;
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.record.end <= upTo) n++;
    if (n === 0) return;
    const released = this.pending.splice(0, n);
    for (const p of released) this.listener.acknowledged(this, p.record, p.at);
  }

  private span([lo, hi]: [number, number]): number {
    return this.rng.int(lo, hi);
  }
}

/**
 * pg_stat_replication.sync_state for each standby connected to a primary whose synchronous_standby_names is
 * `names` (as pgwarden writes it: [] → '', ['*'] → '*', else FIRST n (all of them)). Only standbys in the
 * 'streaming' walsender state are sync candidates, as in PostgreSQL's SyncRepGetCandidateStandbys.
 */
export function syncStates(names: readonly string[], standbys: readonly SimPostgres[]): Map<string, string> {
  const out = new Map<string, string>();
  const chosen = chooseSyncStandbys(names, standbys);
  for (const s of standbys) {
    if (names.length === 0) out.set(s.name, 'async');
    else if (chosen.includes(s)) out.set(s.name, 'sync');
    else if (names.includes('*') || names.includes(s.name)) out.set(s.name, 'potential');
    else out.set(s.name, 'async');
  }
  return out;
}

function chooseSyncStandbys(names: readonly string[], standbys: readonly SimPostgres[]): SimPostgres[] {
  if (names.length === 0) return [];
  const candidates = standbys.filter((s) => s.senderState === 'streaming');
  if (names.length === 1 && names[0] === '*') {
    const first = [...candidates].sort((a, b) => a.connectedAt - b.connectedAt)[0];
    return first ? [first] : [];
  }
  return candidates
    .filter((s) => names.includes(s.name))
    .sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name))
    .slice(0, names.length);
}

/** Up to which LSN waiting commits may be acknowledged, or null when none may. */
export function syncReleasePosition(names: readonly string[], standbys: readonly SimPostgres[]): Lsn | null {
  if (names.length === 0) return Number.POSITIVE_INFINITY;
  const need = names.length === 1 && names[0] === '*' ? 1 : names.length;
  const chosen = chooseSyncStandbys(names, standbys);
  if (chosen.length < need) return null;
  return Math.min(...chosen.map((s) => s.position));
}
