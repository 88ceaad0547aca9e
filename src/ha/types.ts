/**
 * The shapes shared by the HA loop, the Dcs, the REST API and the CLI. The values stored in etcd are
 * exactly these objects serialised as JSON (see DESIGN.md "Keys in etcd").
 */

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

/** Value of `sync`: the members that have every acknowledged commit of `leader` (DESIGN.md safety rules). */
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

/** Dynamic settings kept in etcd's `config` key; they change at run time. */
export interface DynamicConfig {
  /** Leader lease time-to-live, seconds. */
  ttl: number;
  /** Seconds between HA loop cycles. */
  loop_wait: number;
  /** Seconds an etcd or PostgreSQL call may take before it counts as failed. */
  retry_timeout: number;
  /** A replica lagging more than this many bytes is never promoted. */
  maximum_lag_on_failover: number;
  synchronous_mode: boolean;
  synchronous_mode_strict: boolean;
  synchronous_node_count: number;
  /** Maintenance: agents stop acting, PostgreSQL keeps running. */
  pause: boolean;
  /** Seconds a member may be absent before its replication slot is dropped. */
  member_slots_ttl: number;
  /**
   * Seconds a former primary that shut down cleanly with the whole cluster (see CleanShutdown) has to come back
   * after a restart before the replicas elect one of them, counted from each replica agent's first cycle.
   */
  primary_start_timeout: number;
  /** PostgreSQL parameters applied on every member. */
  postgresql: { parameters: Record<string, string | number | boolean> };
  /**
   * Seconds a primary handing over (switchover) waits for the live proxies to finish their in-flight
   * transactions before it shuts down anyway.
   */
  drain_timeout: number;
  /**
   * Seconds every live proxy must have reported the primary's PostgreSQL unreachable, while a replica stays
   * reachable to all of them, before the primary hands over to that replica (a partition between the primary and
   * the proxies only, which etcd and the replicas cannot see); 0 turns this off.
   */
  proxy_unreachable_timeout: number;
}

export const DEFAULT_DYNAMIC_CONFIG: DynamicConfig = {
  ttl: 5,
  loop_wait: 1,
  retry_timeout: 2,
  maximum_lag_on_failover: 1024 * 1024,
  synchronous_mode: false,
  synchronous_mode_strict: false,
  synchronous_node_count: 1,
  pause: false,
  member_slots_ttl: 1800,
  primary_start_timeout: 30,
  postgresql: { parameters: {} },
  drain_timeout: 5,
  proxy_unreachable_timeout: 3,
};

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

/** pg_controldata's "Database cluster state". */
export type ControlState =
  | 'starting up'
  | 'shut down'
  | 'shut down in recovery'
  | 'shutting down'
  | 'in crash recovery'
  | 'in archive recovery'
  | 'in production';

/** One row of pg_stat_replication on a primary. */
export interface ReplicationPeer {
  /** application_name, which pgwarden sets to the member name. */
  name: string;
  state: string;
  syncState: 'async' | 'potential' | 'sync' | 'quorum' | string;
  flushLsn: Lsn | null;
  replayLsn: Lsn | null;
}

/** What the agent observed of its own PostgreSQL this cycle. */
export interface PgObservation {
  dataDir: 'missing' | 'empty' | 'initialized';
  /** The postmaster process is alive. */
  running: boolean;
  /** It answered a query this cycle. */
  accepting: boolean;
  inRecovery: boolean | null;
  timeline: number | null;
  systemId: string | null;
  /** primary: pg_current_wal_lsn(); replica: max(receive, replay). */
  walPosition: Lsn | null;
  receiveLsn: Lsn | null;
  replayLsn: Lsn | null;
  /** From pg_controldata, read when PostgreSQL is not running. */
  controlState: ControlState | null;
  /** pg_control's "Latest checkpoint's TimeLineID": pg_controldata when stopped, pg_control_checkpoint() when running. */
  controlTimeline: number | null;
  /**
   * pg_controldata's "Latest checkpoint location", read when PostgreSQL is not running. After a clean shutdown
   * (controlState 'shut down') it is where the shutdown checkpoint record starts, and that record ends the WAL.
   */
  checkpointLsn: Lsn | null;
  /** The member this server is configured to follow (primary_conninfo), as pgwarden last wrote it. */
  following: string | null;
  /** The WAL receiver is connected and streaming. */
  streaming: boolean;
  /** Members named in synchronous_standby_names as pgwarden last wrote it; ['*'] in strict mode with none. */
  synchronousStandbyNames: string[];
  /** pg_stat_replication on a primary. */
  replication: ReplicationPeer[];
  /** Physical replication slots present. */
  slots: string[];
  pendingRestart: boolean;
}

/** What a peer's REST API said when asked during an election. */
export interface PeerProbe {
  reachable: boolean;
  walPosition: Lsn | null;
  healthy: boolean;
  role: MemberRole | null;
  tags: Tags | null;
}

/** State the agent keeps between cycles, handed to decide() so decide() itself stays stateless. */
export interface AgentMemory {
  /** Monotonic ms when the last leader-lease refresh that succeeded was sent; null when not holding. */
  leaderRefreshSentAt: number | null;
  /** The agent believes it holds the leader key (it took or refreshed it and has not lost it). */
  holdsLeader: boolean;
  /** LSN on the primary when each member was added to synchronous_standby_names (sync mode). */
  syncAddedAt: Record<string, Lsn>;
  /** Wall-clock ms each member was last seen in etcd (for slot cleanup). */
  memberLastSeen: Record<string, number>;
  /** The last pg_rewind failed: the next step is a fresh clone. */
  rewindFailed: boolean;
  /** What pg_rewind said when it failed (its error lines), for the re-clone's reason; null otherwise. */
  rewindError: string | null;
  /** The last re-clone this agent made, published in the member key. */
  lastReclone: RecloneRecord | null;
  /** This server was demoted from primary and has not rejoined yet. */
  needsRejoin: boolean;
  /** Monotonic ms when a crashed primary began its restart in place, null otherwise. */
  crashRestartStartedAt: number | null;
  /** Operator requests taken by the REST API, consumed by the loop. */
  requests: { restart: boolean; reload: boolean; reinitialize: boolean };
  /** Consecutive cycles in which a start of PostgreSQL failed. */
  startFailures: number;
  /** Monotonic ms since which this running replica has not been streaming, null while it streams. */
  notStreamingSince: number | null;
  /** Monotonic ms since which this agent has seen the cluster without a leader while `shutdown` stood; null otherwise. */
  shutdownHoldSince: number | null;
}

export const EMPTY_MEMORY: AgentMemory = {
  leaderRefreshSentAt: null,
  holdsLeader: false,
  syncAddedAt: {},
  memberLastSeen: {},
  rewindFailed: false,
  rewindError: null,
  lastReclone: null,
  needsRejoin: false,
  crashRestartStartedAt: null,
  requests: { restart: false, reload: false, reinitialize: false },
  startFailures: 0,
  notStreamingSince: null,
  shutdownHoldSince: null,
};

export interface Observation {
  /** This member's name. */
  me: string;
  tags: Tags;
  pg: PgObservation;
  /** The view was read from etcd this cycle. When false `view` is the last one read. */
  dcsReachable: boolean;
  /** Peer probes made this cycle (only when an election may happen). */
  peers: Record<string, PeerProbe>;
  memory: AgentMemory;
}

/** Both clocks, read once by the loop and passed in. */
export interface Clock {
  /** Monotonic ms (performance.now based): used for every lease deadline. */
  mono: number;
  /** Wall-clock ms: used only for scheduled switchovers and published timestamps. */
  wall: number;
}

/** The effects decide() asks for; executors run them in order and stop at the first failure. */
export type Action =
  | { type: 'bootstrap' }
  | { type: 'clone'; from: string }
  | { type: 'start'; role: 'primary' | 'replica'; follow: string | null }
  | { type: 'stop'; mode: 'fast' | 'immediate' }
  | { type: 'restart' }
  | { type: 'reload' }
  | { type: 'promote' }
  /** After a promotion, once the new role is published (see PostgresServer.checkpoint). */
  | { type: 'checkpoint' }
  | { type: 'follow'; leader: string | null }
  | { type: 'rewind'; from: string }
  | { type: 'reinitialize'; from: string }
  | { type: 'acquireLeader' }
  | { type: 'refreshLeader' }
  | { type: 'releaseLeader' }
  | { type: 'setSynchronousStandbys'; names: string[] }
  | { type: 'writeSync'; members: string[] }
  | { type: 'manageSlots'; create: string[]; drop: string[] }
  | { type: 'clearFailover' }
  /** Written before `promote`: the timeline about to start and where it forks off. */
  | { type: 'recordHistory'; reason: string; timeline: number; lsn: Lsn; parent: number | null }
  /** Asks the live proxies to drain before a switchover shuts this primary down. */
  | { type: 'requestDrain'; drain: DrainRequest }
  /** Removes a drain request nobody waits for any more (switchover done or abandoned). */
  | { type: 'clearDrain' }
  /** Removes `shutdown` once a leader runs again. */
  | { type: 'clearShutdown' }
  /** Writes `failover`: the primary asks for its own switchover (see proxy_unreachable_timeout). */
  | { type: 'requestSwitchover'; intent: FailoverIntent }
  | { type: 'clearRequests' };

export interface Decision {
  actions: Action[];
  /** One human sentence, logged once per cycle, published in the member key. */
  reason: string;
  /** What the member key should say while the actions run. */
  role: MemberRole;
  state: MemberState;
}
