/** The HA loop's own shapes: what decide() is given and what it asks for. */
import type { DrainRequest, FailoverIntent, Lsn, MemberRole, MemberState, RecloneRecord, Tags } from '../cluster/types.js';
import type { PgObservation } from '../postgres/observation.js';

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

/**
 * Every rule id a Decision can carry, grouped by the file of src/ha/rules/ that holds the rule (the id's prefix).
 * Stable: logs, tests and operators match on them; the reason sentence is for humans and may be reworded.
 * docs/ha.md "Rule ids" says what each one means.
 */
export const RULE_IDS = [
  'bootstrap.wait-etcd',
  'bootstrap.paused',
  'bootstrap.nofailover',
  'bootstrap.init',
  'bootstrap.wait-other',
  'bootstrap.wait-primary',
  'bootstrap.clone',
  'system.foreign-data-directory',
  'dcs.demote',
  'dcs.keep-primary',
  'dcs.start-replica',
  'dcs.wait',
  'request.reinit-refused',
  'request.reinit-wait-primary',
  'request.reinit',
  'request.restart',
  'request.reload',
  'request.restart-not-running',
  'pause.keep-leader',
  'pause.take-free-key',
  'pause.idle',
  'leader.finish-promotion',
  'leader.wait-accepting',
  'leader.lease-expired',
  'leader.keep',
  'leader.release-not-primary',
  'leader.release-for-candidate',
  'leader.release-start-failed',
  'leader.restart-in-place',
  'handover.drop-wrong-leader',
  'handover.drop-to-self',
  'handover.scheduled',
  'handover.drop-stale',
  'handover.drop-not-member',
  'handover.wait-candidate',
  'handover.release',
  'handover.release-drained',
  'handover.release-drain-timeout',
  'drain.request',
  'drain.wait',
  'cutoff.wait',
  'cutoff.no-candidate',
  'cutoff.request-switchover',
  'follower.demote',
  'follower.paused',
  'follower.start',
  'follower.wait-primary',
  'follower.rewind',
  'follower.reclone',
  'follower.wait-address',
  'follower.diverged-rewind',
  'follower.diverged-reclone',
  'follower.follow',
  'follower.streaming',
  'follower.not-streaming',
  'election.wait-accepting',
  'election.start-replica',
  'election.refuse-nofailover',
  'election.refuse-not-accepting',
  'election.refuse-requested-elsewhere',
  'election.refuse-not-sync',
  'election.refuse-lag',
  'election.refuse-shutdown-hold',
  'election.refuse-peer-ahead',
  'election.take-leader',
  'former-primary.demote',
  'former-primary.retake',
  'former-primary.stay-stopped',
  'former-primary.yield',
  'former-primary.resume',
  'former-primary.restart',
] as const;

/** The stable id of the rule that made a decision. */
export type RuleId = (typeof RULE_IDS)[number];

export interface Decision {
  /** The rule that made this decision (see RULE_IDS). */
  rule: RuleId;
  actions: Action[];
  /** One human sentence, logged once per cycle, published in the member key. */
  reason: string;
  /** What the member key should say while the actions run. */
  role: MemberRole;
  state: MemberState;
}
