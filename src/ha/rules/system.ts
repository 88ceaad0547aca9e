/** A data directory that belongs to another cluster. */
import type { Decision } from '../types.js';
import { decision, pgMaybePrimary, type RuleInput } from './input.js';

/**
 * Refuses to act on a data directory whose system identifier differs from the cluster's (the initialize key):
 * following, rewinding or promoting it would mix two clusters' WAL. Null when the identifiers agree or one is unknown.
 */
export function foreignSystemRule(input: RuleInput): Decision | null {
  const { view, obs } = input;
  const pg = obs.pg;
  if (!obs.dcsReachable || !view.initialize || !pg.systemId || view.initialize === pg.systemId) return null;
  return decision(
    'system.foreign-data-directory',
    [],
    `refusing to act: this data directory belongs to system ${pg.systemId}, the cluster is ${view.initialize}; run 'pgwarden reinit ${obs.me}' to re-clone it`,
    pgMaybePrimary(pg) ? 'primary' : 'replica',
    pg.running ? 'running' : 'stopped',
  );
}
