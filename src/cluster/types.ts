/**
 * The cluster model: what each member publishes and what the cluster keeps in etcd. The values stored in etcd are
 * exactly these objects serialised as JSON (see docs/architecture.md, etcd keys). This folder imports nothing of the
 * project, so every layer may depend on it (test/unit/layering.test.ts holds that).
 */
import type { DynamicConfig } from './dynamic-config.js';

/** A WAL position as a byte offset (PostgreSQL's `pg_lsn` minus '0/0'). Safe as a JS number up to 8 PiB. */
export type Lsn = number;

export interface Tags {
  /** Never promote this member. */
  nofailover: boolean;
  /** The proxy's ro port skips this member. */
  noloadbalance: boolean;
  /** Never make this member a synchronous standby. */
  nosync: boolean;
  /** Among equally advanced candidates the higher priority wins; 0 behaves like nofailover. */
  failover_priority: number;
}

export const DEFAULT_TAGS: Tags = { nofailover: false, noloadbalance: false, nosync: false, failover_priority: 1 };

export type MemberRole = 'primary' | 'replica' | 'uninitialized';

/** What the member is doing, as shown by `pgwarden list` and the API. */
export type MemberState =
  | 'running'
  | 'streaming'
  | 'starting'
  | 'stopped'
  | 'stopping'
  | 'crashed'
  | 'bootstrapping'
  | 'cloning'
  | 'rewinding'
  | 'promoting'
  | 'demoting'
  | 'restarting'
  | 'start failed';

/** Value of `members/<name>`, published by each agent every loop, bound to the agent's lease. */
export interface MemberStatus {
  name: string;
  role: MemberRole;
  state: MemberState;
  /** Base URL of the member's REST API, e.g. http://127.0.0.1:8008 */
  apiUrl: string;
  /** Where clients and replicas reach this member's PostgreSQL. */
  host: string;
  port: number;
  timeline: number | null;
  /** primary: current WAL write position; replica: max(received, replayed). */
  walPosition: Lsn | null;
  receiveLsn: Lsn | null;
  replayLsn: Lsn | null;
  /** Lag behind the primary in bytes, as seen by this member (null when unknown or primary). */
  lagBytes: number | null;
  /** Replica: the member it streams from, when streaming. */
  following: string | null;
  tags: Tags;
  /** True while the cluster is paused and this agent has stopped acting. */
  paused: boolean;
  /** A restart is needed for changed PostgreSQL parameters. */
  pendingRestart: boolean;
  /** The last decision's reason sentence. */
  reason: string;
  /** Wall-clock ms when published. */
  updatedAt: number;
  version: string;
  /** System identifier of this member's data directory. */
  systemId: string | null;
  /** The last time this agent replaced the member's data with a fresh clone, and why (absent: never). */
  reclone?: RecloneRecord | null;
}

/** A re-clone (reinitialize) is the last resort: it copies the whole data directory, so each one says why. */
export interface RecloneRecord {
  /** Wall-clock ms when the fresh copy was in place. */
  at: number;
  reason: string;
}

/** Value of `sync`: the members that have every acknowledged commit of `leader` (docs/ha.md safety rules). */
export interface SyncState {
  leader: string;
  members: string[];
}

/**
 * Value of `shutdown` (no lease): the primary shut its PostgreSQL down cleanly with no replica left to take over
 * (the whole cluster was stopped). While it stands and nobody holds the key, replicas leave the former primary
 * `primary_start_timeout` to come back before they elect one of them.
 */
export interface CleanShutdown {
  /** The member that was primary. */
  leader: string;
  /** pg_controldata's "Latest checkpoint location" after the shutdown: where its shutdown checkpoint record starts. */
  checkpoint: Lsn;
  /** pg_controldata's "Latest checkpoint's TimeLineID". */
  timeline: number;
  /** Wall-clock ms. */
  at: number;
}

/** Value of `failover`: an operator's request. */
export interface FailoverIntent {
  kind: 'switchover' | 'failover';
  /** The member expected to be primary when the request is carried out (switchover). */
  from: string | null;
  /** The member that should become primary; null lets the cluster pick the best replica. */
  to: string | null;
  /** Wall-clock ms; null means now. */
  at: number | null;
  /** Wall-clock ms when requested (a stale request is dropped). */
  requestedAt: number;
}

/** One line of `history`. */
export interface HistoryEntry {
  timeline: number;
  /** LSN where the previous timeline ended (the switch point). */
  lsn: Lsn;
  /**
   * The timeline the promoted server was on, which this one forked off at `lsn` (absent in the bootstrap entry
   * and in entries written by older versions). Timelines do not form a line: a promotion may fork off any
   * earlier timeline, and only this link tells the branches apart.
   */
  parent?: number;
  /** Wall-clock ms. */
  at: number;
  reason: string;
  leader: string;
}


/** Everything the agent reads from etcd in one go. */
export interface ClusterView {
  /** System identifier of the cluster; '' while a bootstrap is in progress; null when never bootstrapped. */
  initialize: string | null;
  config: DynamicConfig;
  leader: { name: string } | null;
  members: Record<string, MemberStatus>;
  sync: SyncState | null;
  failover: FailoverIntent | null;
  /** Last WAL position the leader published (kept without a lease so replicas can judge their lag after the
   *  leader's host died). */
  optime: Lsn | null;
  history: HistoryEntry[];
  /** The primary's request to the proxies to drain before it hands over (switchover), or null. */
  drain: DrainRequest | null;
  /** The live proxies (`proxies/<id>`) and which drain each has acknowledged. */
  proxies: ProxyState[];
  /** The last primary's clean shutdown, until a leader runs again (see CleanShutdown). */
  shutdown: CleanShutdown | null;
}

/** What an agent knows of the cluster before its first successful read of etcd. */
export function emptyClusterView(config: DynamicConfig): ClusterView {
  return { initialize: null, config, leader: null, members: {}, sync: null, failover: null, optime: null, history: [], drain: null, proxies: [], shutdown: null };
}

/**
 * `drain`, bound to the primary's lease: proxies let transactions in flight on `from` finish, hold new ones and
 * acknowledge under their own key; the primary shuts down once all have (or after `timeoutMs`), so a
 * switchover costs clients a pause instead of errors.
 */
export interface DrainRequest {
  /** Names the switchover it belongs to (see drainIdFor). */
  id: string;
  from: string;
  to: string | null;
  /** Wall-clock ms when asked. */
  requestedAt: number;
  timeoutMs: number;
}

/** What the agents need of a proxy's `proxies/<id>` key. */
export interface ProxyState {
  id: string;
  /** The id of the last drain this proxy completed, or null. */
  drained: string | null;
  /** Members whose PostgreSQL this proxy cannot reach, with the wall-clock ms since when (see ProxyRegistration). */
  unreachable: Record<string, number>;
}
