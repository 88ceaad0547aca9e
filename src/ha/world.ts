/**
 * The agent's world, as small interfaces: its clocks and timers, the PostgreSQL it controls, how it asks its
 * peers, and its lease deadman. Production passes the real ones (systemClock, PostgresServer, the REST API
 * probe, LeaseDeadman); the simulator (test/sim) passes simulated ones and runs this same agent, executor and
 * deadman logic in simulated time — so a change of the agent is a change of what the simulator checks.
 */
import type { ClusterView, Lsn } from '../cluster/types.js';
import type { PgObservation } from '../postgres/observation.js';
import type { PeerAddress } from '../postgres/server.js';
import type { ConfValue } from '../postgres/conf.js';
import type { PeerProbe } from './types.js';

/** A pending timer; cancelling one that already fired does nothing. */
export interface Timer {
  cancel(): void;
}

/** Time as the agent sees it. Every lease deadline is counted on `mono`; `wall` only dates things. */
export interface AgentClock {
  /** Monotonic ms (CLOCK_MONOTONIC: the lease deadman reads the same clock). */
  mono(): number;
  /** Wall-clock ms since the epoch. */
  wall(): number;
  /** Runs `fn` once after `ms`. */
  after(ms: number, fn: () => void): Timer;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): Timer;
  /** Resolves after `ms`. */
  sleep(ms: number): Promise<void>;
}

/** The process's own clocks and Node's timers. */
export const systemClock: AgentClock = {
  mono: () => performance.now(),
  wall: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** A synchronous standby as the primary reports it, with the primary's WAL position at that moment. */
export interface SyncStandbyPosition {
  name: string;
  /** pg_current_wal_lsn() on the primary when the row was read. */
  lsn: Lsn | null;
}

/**
 * What the agent does to its PostgreSQL (src/postgres/server.ts implements it). Every method that changes the
 * server throws on failure; the HA loop then stops the cycle's remaining actions.
 */
export interface PostgresControl {
  observe(): Promise<PgObservation>;
  /** PID of the running postmaster of this data directory, null when none runs. Cheap: read often. */
  postmasterPid(): number | null;
  setParameters(parameters: Record<string, ConfValue>): Promise<void>;
  reload(): Promise<void>;
  /** initdb, first start as primary, roles; returns the new system identifier. */
  bootstrap(): Promise<string>;
  clone(from: PeerAddress): Promise<void>;
  reclone(from: PeerAddress): Promise<void>;
  start(role: 'primary' | 'replica', follow: PeerAddress | null): Promise<void>;
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  restart(): Promise<void>;
  promote(options?: { timelinesTaken?: number }): Promise<void>;
  checkpoint(): Promise<void>;
  follow(leader: PeerAddress | null): Promise<void>;
  rewind(from: PeerAddress): Promise<void>;
  wipe(): Promise<void>;
  setSynchronousStandbys(names: string[]): Promise<void>;
  /** The standbys PostgreSQL reports as synchronous (or quorum) now. */
  synchronousStandbys(): Promise<SyncStandbyPosition[]>;
  manageSlots(create: string[], drop: string[]): Promise<void>;
  /**
   * Stops the server at once without waiting (the leader lease can no longer be trusted); `late` when the deadline
   * passed long ago (a frozen host woke up) and backends must not get to answer. Says what it did, null when
   * nothing ran.
   */
  emergencyStop(late: boolean): string | null;
  /** Releases connections; the server keeps running. */
  close(): Promise<void>;
}

/** Asks every other member's REST API for its state, each bounded by `timeoutMs` (only when an election may happen). */
export type PeerProber = (view: ClusterView, me: string, timeoutMs: number) => Promise<Record<string, PeerProbe>>;

/** The lease deadman as the agent drives it (src/ha/deadman.ts). */
export interface Deadman {
  /** Sets the deadline (monotonic ms on AgentClock.mono) and makes sure the deadman process runs. */
  arm(deadlineMonoMs: number): void;
  disarm(): void;
  /** This agent process armed the deadline now in force (one left by an earlier process does not count). */
  readonly armedHere: boolean;
}
