/** Maintenance mode (the dynamic config's `pause`). */
import type { Decision } from '../types.js';
import { decision, keepKey, leaderOf, pgIsPrimary, pgRole, pgState, type RuleInput } from './input.js';

/**
 * Paused, a running primary keeps (or takes the free) leader key so no replica promotes, and nothing else happens
 * automatically. Operator requests (requests.ts) still run: the dispatcher asks that rule first.
 */
export function pausedRule(input: RuleInput): Decision {
  const pg = input.obs.pg;
  const leader = leaderOf(input.view);
  if (pgIsPrimary(pg) && leader === input.obs.me) {
    return decision('pause.keep-leader', [keepKey(input)], 'paused: holding the leader key, taking no automatic action', 'primary', 'running');
  }
  if (pgIsPrimary(pg) && leader === null) {
    return decision('pause.take-free-key', [{ type: 'acquireLeader' }], 'paused: running primary took the free leader key', 'primary', 'running');
  }
  return decision('pause.idle', [], 'paused: taking no automatic action', pgRole(pg), pgState(pg));
}
