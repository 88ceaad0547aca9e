/** Nobody holds the leader key: the election. */
import { mayBePromoted } from '../../cluster/predicates.js';
import type { Decision, RuleId } from '../types.js';
import { moreAdvancedPeer } from './candidates.js';
import { isStoppedPrimary, runningPrimaryRule, stoppedPrimaryRule } from './former-primary.js';
import { activeIntent, decision, inSync, intentTarget, lagOf, pgIsPrimary, pgMaybePrimary, pgRole, pgState, type RuleInput } from './input.js';
import { shutdownHold } from './shutdown.js';
import { promotionSteps } from './timeline.js';

/** Why a replica may not take the free key: the rule that refuses and its sentence. */
export interface ElectionRefusal {
  rule: RuleId;
  text: string;
}

/**
 * With the key free, a (former) primary decides for itself (former-primary.ts), a stopped replica starts so it
 * can take part, and a running replica takes the key and promotes unless electionRefusal says why not.
 */
export function electionRule(input: RuleInput): Decision {
  const { view, obs } = input;
  const pg = obs.pg;
  const active = activeIntent(input);
  const intentFor = intentTarget(active);
  if (pgMaybePrimary(pg) && !pgIsPrimary(pg)) {
    return decision('election.wait-accepting', [], 'the leader key is free but PostgreSQL is not answering queries yet; waiting', pgRole(pg), pgState(pg));
  }
  if (pgIsPrimary(pg)) return runningPrimaryRule(input, intentFor);
  if (isStoppedPrimary(input)) return stoppedPrimaryRule(input, intentFor);
  if (!pg.running) {
    return decision('election.start-replica', [{ type: 'start', role: 'replica', follow: null }], 'starting PostgreSQL as a replica so that it can take part in the election', 'replica', 'starting');
  }
  const refusal = electionRefusal(input);
  if (refusal) return decision(refusal.rule, [], `not taking the free leader key: ${refusal.text}`, 'replica', pgState(pg));
  const why = intentFor === obs.me ? `${view.failover!.kind} requested to ${obs.me}` : 'this is the most advanced healthy replica';
  return decision('election.take-leader', [{ type: 'acquireLeader' }, ...promotionSteps(input)], `promoting: the leader key was free and ${why}`, 'primary', 'promoting');
}

/**
 * May this running replica take the free leader key? Null if it may; else the first rule it breaks: tagged
 * nofailover, not answering, a request names another member, not in the sync key (synchronous mode), lagging past
 * maximum_lag_on_failover (unless a failover to it was requested), the former primary may come back after a clean
 * shutdown, or a reachable peer is ahead (both waived when a request names this member).
 */
export function electionRefusal(input: RuleInput): ElectionRefusal | null {
  const { view, obs, config } = input;
  const pg = obs.pg;
  const active = activeIntent(input);
  const intentFor = intentTarget(active);
  const intent = active?.intent ?? null;
  if (!mayBePromoted(obs.tags)) return { rule: 'election.refuse-nofailover', text: 'this member is tagged nofailover' };
  if (!pg.accepting) return { rule: 'election.refuse-not-accepting', text: 'PostgreSQL is not answering queries' };
  if (intentFor && intentFor !== obs.me) return { rule: 'election.refuse-requested-elsewhere', text: `a ${intent!.kind} to ${intentFor} was requested` };
  if (config.synchronous_mode && !inSync(view, obs.me) && view.sync?.leader !== obs.me) {
    return { rule: 'election.refuse-not-sync', text: 'synchronous mode is on and this member is not listed in the sync key' };
  }
  const forced = intentFor === obs.me && intent?.kind === 'failover';
  const lag = lagOf(view, pg.walPosition);
  if (!forced && lag !== null && lag > config.maximum_lag_on_failover) {
    return { rule: 'election.refuse-lag', text: `lag of ${lag} bytes exceeds maximum_lag_on_failover (${config.maximum_lag_on_failover})` };
  }
  if (intentFor === obs.me) return null;
  const hold = shutdownHold(input);
  if (hold) return { rule: 'election.refuse-shutdown-hold', text: hold };
  const ahead = moreAdvancedPeer(input, pg.walPosition);
  return ahead ? { rule: 'election.refuse-peer-ahead', text: ahead } : null;
}
