/** An operator's switchover or failover request, on the primary that is to hand over. */
import type { Action, RuleId } from '../types.js';
import { bestCandidate, candidateCheck } from './candidates.js';
import { drainBeforeHandover } from './drain.js';
import { activeIntent, decision, keepKey, memberOf, type LeaderOutcome, type RuleInput } from './input.js';

/**
 * Carries out a due request (drain the proxies, then shut down cleanly and release the key for the candidate),
 * drops one that is invalid or stale, or notes why it waits (not due yet, no eligible candidate, proxies
 * draining). Null without a request.
 */
export function handoverRule(input: RuleInput): LeaderOutcome | null {
  const { obs } = input;
  const active = activeIntent(input);
  if (!active) return null;
  const { intent, due, stale } = active;
  const keep: Action[] = [keepKey(input)];
  const drop = (rule: RuleId, why: string): LeaderOutcome => ({
    decision: decision(rule, [...keep, { type: 'clearFailover' }], why, 'primary', 'running'),
  });
  if (intent.from && intent.from !== obs.me) return drop('handover.drop-wrong-leader', `dropped a ${intent.kind} request from ${intent.from}, which is not the leader`);
  if (intent.to === obs.me) return drop('handover.drop-to-self', `dropped a ${intent.kind} request to ${obs.me}: it is already the primary`);
  if (!due) {
    const text = `switchover to ${intent.to ?? 'the best replica'} scheduled at ${new Date(intent.at ?? 0).toISOString()}`;
    return { note: { rule: 'handover.scheduled', text, keepsDrain: false } };
  }
  if (stale) return drop('handover.drop-stale', `dropped a ${intent.kind} request that could not be carried out in time`);
  if (intent.to && !memberOf(input, intent.to)) return drop('handover.drop-not-member', `dropped a ${intent.kind} request: ${intent.to} is not a member`);
  const chosen = intent.to ? candidateCheck(input, intent.to, intent.kind === 'switchover') : bestCandidate(input);
  if (!chosen || 'refusal' in chosen) {
    const why = chosen && 'refusal' in chosen ? chosen.refusal : 'no replica is eligible';
    // The request waits, but the primary keeps doing its job (synchronous standbys, slots) meanwhile.
    return { note: { rule: 'handover.wait-candidate', text: `${intent.kind} waiting: ${why}`, keepsDrain: false } };
  }
  const drain = drainBeforeHandover(input, intent, chosen.name);
  if (!('proceed' in drain)) return drain;
  const rule = { none: 'handover.release', drained: 'handover.release-drained', 'timed-out': 'handover.release-drain-timeout' } as const;
  return {
    decision: decision(
      rule[drain.proceed.drain],
      [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }],
      `${intent.kind}: ${drain.proceed.prefix}shut down cleanly and released the leader key for ${chosen.name}`,
      'primary',
      'demoting',
    ),
  };
}
