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

export interface Decision {
  actions: Action[];
  /** One human sentence, logged once per cycle, published in the member key. */
  reason: string;
  /** What the member key should say while the actions run. */
  role: MemberRole;
  state: MemberState;
}
