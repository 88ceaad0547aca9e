/** etcd cannot be reached this cycle. */
import { mustStepDown } from '../lease.js';
import type { Decision } from '../types.js';
import { decision, pgMaybePrimary, pgRole, pgState, type RuleInput } from './input.js';

/**
 * Without etcd a primary keeps writing only while its leader lease is safe and stops before it can expire; a
 * stopped replica is started (it can never become a second writer); anything else waits for etcd.
 */
export function dcsUnreachableRule(input: RuleInput): Decision {
  const { obs, config, clock } = input;
  const pg = obs.pg;
  if (pgMaybePrimary(pg)) {
    if (mustStepDown(obs.memory, config, clock.mono)) {
      return decision(
        'dcs.demote',
        [{ type: 'stop', mode: 'fast' }],
        'demoted: etcd is unreachable and the leader lease could not be refreshed before its safety deadline',
        'primary',
        'demoting',
      );
    }
    return decision('dcs.keep-primary', [{ type: 'refreshLeader' }], 'etcd is unreachable: still primary while the leader lease is safe, retrying the refresh', 'primary', 'running');
  }
  if (!pg.running && !config.pause && pgRole(pg) === 'replica') {
    // Without etcd the upstream's address is unknown: start without one; the next cycle with etcd follows.
    return decision('dcs.start-replica', [{ type: 'start', role: 'replica', follow: null }], 'etcd is unreachable: restarting PostgreSQL as a replica', 'replica', 'starting');
  }
  return decision('dcs.wait', [], 'etcd is unreachable: not acting until it answers', pgRole(pg), pgState(pg));
}
