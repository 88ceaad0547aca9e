/**
 * The chaos suite's seeded fault schedule. Round r's fault is a pure function of (seed, r): a failing round is
 * replayed alone with `npm run chaos -- --seed S --round R`, with the same fault, target role and timings.
 */
import { Rng } from '../sim/prng.js';

export const CHAOS_FAULTS = [
  /** kill -9 of the primary's PostgreSQL; its agent lives. */
  'pg-kill',
  /** kill -9 of the primary's agent; its PostgreSQL lives (the deadman must stop it). */
  'agent-kill',
  /** kill -9 of the primary's agent and PostgreSQL together. */
  'host-crash',
  /** SIGSTOP of the primary's agent and PostgreSQL for longer than ttl, then SIGCONT. */
  'primary-freeze',
  /** The primary's host cut from the etcd members and the other agents, both ways. */
  'partition-primary',
  /** The primary's host cut from the proxies only. */
  'partition-primary-proxies',
  /** One-way cut: the primary's packets to etcd are dropped, etcd's answers still arrive (or the reverse). */
  'asymmetric-primary-etcd',
  /** One etcd member (not the leader) killed, restarted at heal. */
  'etcd-member-loss',
  /** The etcd leader killed, restarted at heal. */
  'etcd-leader-loss',
  /** A proxy killed -9 while transactions run through it, restarted at heal. */
  'proxy-kill',
  /** A planned switchover while writes run. */
  'switchover',
] as const;

export type ChaosFault = (typeof CHAOS_FAULTS)[number];

/** The faults `npm test` runs a few rounds of on every change. */
export const MAIN_FAULTS: readonly ChaosFault[] = ['pg-kill', 'host-crash', 'partition-primary', 'switchover'];

export interface FaultStep {
  round: number;
  fault: ChaosFault;
  /** How long the fault lasts before it is healed (kills: until the restart), ms. */
  holdMs: number;
  /** asymmetric-primary-etcd: which direction is dropped. */
  direction?: 'to-etcd' | 'from-etcd';
  /** proxy-kill: which proxy (index into the cluster's proxies). */
  proxyIndex?: number;
}

/** How long each fault kind is held, [min, max] ms, at ttl `ttlMs`. */
function holdRange(fault: ChaosFault, ttlMs: number): [number, number] {
  switch (fault) {
    case 'primary-freeze':
      // Longer than the lease: the primary wakes up after someone else took the key.
      return [ttlMs + 1000, ttlMs + 4000];
    case 'partition-primary':
    case 'partition-primary-proxies':
    case 'asymmetric-primary-etcd':
      return [ttlMs + 2000, ttlMs + 6000];
    case 'etcd-member-loss':
    case 'etcd-leader-loss':
      return [3000, 8000];
    case 'host-crash':
    case 'agent-kill':
    case 'proxy-kill':
      return [2000, 6000];
    case 'pg-kill':
    case 'switchover':
      return [0, 0];
  }
}

/** Round `round` (1-based) of the schedule for `seed`, drawn from `kinds` (default every fault). */
export function stepFor(seed: number, round: number, kinds: readonly ChaosFault[] = CHAOS_FAULTS, ttlMs = 5000): FaultStep {
  if (kinds.length === 0) throw new Error('no fault kinds to choose from');
  const rng = new Rng(seed).fork(round);
  const fault = rng.pick(kinds);
  const [lo, hi] = holdRange(fault, ttlMs);
  const step: FaultStep = { round, fault, holdMs: rng.int(lo, hi) };
  if (fault === 'asymmetric-primary-etcd') step.direction = rng.chance(0.5) ? 'to-etcd' : 'from-etcd';
  if (fault === 'proxy-kill') step.proxyIndex = rng.int(0, 1);
  return step;
}

/** Rounds 1..rounds for `seed`; with `cycle`, kinds are taken in turn (every kind gets rounds) instead of drawn. */
export function schedule(seed: number, rounds: number, kinds: readonly ChaosFault[] = CHAOS_FAULTS, ttlMs = 5000, cycle = false): FaultStep[] {
  return Array.from({ length: rounds }, (_, i) => {
    const step = stepFor(seed, i + 1, cycle ? [kinds[i % kinds.length]!] : kinds, ttlMs);
    return step;
  });
}

/** The command that replays one round. */
export function replayCommand(seed: number, step: FaultStep, synchronous: boolean): string {
  return `npm run chaos -- --seed ${seed} --round ${step.round} --faults ${step.fault}${synchronous ? '' : ' --async'}`;
}
