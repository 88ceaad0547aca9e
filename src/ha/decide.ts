import { KEYS } from '../cluster/keys.js';
import { isHealthyReplica, mayBePromoted } from '../cluster/predicates.js';
import { bootstrapRule } from './rules/bootstrap.js';
import { dcsUnreachableRule } from './rules/dcs.js';
import { electionRule } from './rules/election.js';
import { followerRule } from './rules/follower.js';
import { leaderOf, type RuleInput } from './rules/input.js';
import { leaderRule } from './rules/leader.js';
import { pausedRule } from './rules/pause.js';
import { operatorRequestRule } from './rules/request.js';
import { foreignSystemRule } from './rules/system.js';
import type { AgentMemory, Clock, Decision, Observation } from './types.js';
import type { CleanShutdown, ClusterView } from '../cluster/types.js';
import type { PgObservation } from '../postgres/observation.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

export { drainIdFor } from './rules/drain.js';
export { intentTimeoutMs, MAX_START_FAILURES } from './rules/input.js';
export { SHUTDOWN_CHECKPOINT_MAX_SPAN } from './rules/shutdown.js';
export { newestTimeline } from './rules/timeline.js';

/**
 * The whole HA policy: one pure, synchronous function. No I/O, no clock reads, no randomness — time comes in
 * through `clock`, everything remembered between cycles through `obs.memory`. Every safety rule of docs/ha.md
 * is a pure function in src/ha/rules/ (or lease.ts), so scenario tables and the simulator can test them all;
 * this only picks the rule that applies, and the decision says which one it was (`rule`).
 */
export function decide(view: ClusterView, obs: Observation, config: DynamicConfig, clock: Clock): Decision {
  const input: RuleInput = { view, obs, config, clock };
  if (obs.pg.dataDir !== 'initialized') return bootstrapRule(input);
  const foreign = foreignSystemRule(input);
  if (foreign) return foreign;
  if (!obs.dcsReachable) return dcsUnreachableRule(input);
  const request = operatorRequestRule(input);
  if (request) return request;
  if (config.pause) return pausedRule(input);
  const leader = leaderOf(view);
  if (leader === obs.me) return leaderRule(input);
  if (leader !== null) return followerRule(input, leader);
  return electionRule(input);
}

const WAKE_KEYS = ['leader', 'failover', 'config', 'initialize', 'sync'];

/**
 * Keys (relative to the cluster prefix) whose change calls for a decision at once rather than at the next
 * loop_wait. A proxy's key changes only when it registers or acknowledges a drain (lease refreshes do not touch
 * it): a primary waiting on a switchover drain goes on the moment the last acknowledgement lands.
 */
export function isWakeKey(key: string): boolean {
  return WAKE_KEYS.some((k) => key === k || key.endsWith(`/${k}`)) || key.startsWith(KEYS.proxies);
}

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
 * the record makes a replica that starts first wait for this server to come back (see rules/shutdown.ts).
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
