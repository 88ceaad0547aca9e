import type { AgentMemory } from './types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

/**
 * Seconds before the leader lease's earliest possible expiry at which the primary stops accepting writes.
 * The lease expires `ttl` after etcd *received* the last keep-alive, which is no earlier than when it was
 * *sent*; demoting `margin` before `sent + ttl` leaves room for the shutdown signal to take effect and for
 * clock-rate differences between this host and etcd's leader.
 */
export function safetyMarginSeconds(config: DynamicConfig): number {
  return Math.min(Math.max(1, config.ttl * 0.25), config.ttl / 2);
}

/** Monotonic ms until which this agent may keep accepting writes, or null when it holds no lease. */
export function leaderSafeUntil(memory: AgentMemory, config: DynamicConfig): number | null {
  if (!memory.holdsLeader || memory.leaderRefreshSentAt === null) return null;
  return memory.leaderRefreshSentAt + (config.ttl - safetyMarginSeconds(config)) * 1000;
}

/** True when a primary must stop accepting writes now: it does not hold the key, or could not refresh it in time. */
export function mustStepDown(memory: AgentMemory, config: DynamicConfig, monoNow: number): boolean {
  const until = leaderSafeUntil(memory, config);
  return until === null || monoNow >= until;
}
