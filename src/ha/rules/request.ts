/** Requests an operator made through the REST API: reinitialize, restart, reload. */
import type { Action, Decision } from '../types.js';
import { decision, keepKey, leaderOf, memberOf, pgIsPrimary, pgRole, pgState, type RuleInput } from './input.js';

/**
 * Carries out the operator's pending request (reinitialize before restart before reload), refusing to
 * reinitialize the leader; a leader keeps its key meanwhile. Null when nothing was requested.
 */
export function operatorRequestRule(input: RuleInput): Decision | null {
  const { view, obs } = input;
  const pg = obs.pg;
  const req = obs.memory.requests;
  const leader = leaderOf(view);
  const keep: Action[] = leader === obs.me && pgIsPrimary(pg) ? [keepKey(input)] : [];
  if (req.reinitialize) {
    if (leader === obs.me) {
      return decision('request.reinit-refused', [{ type: 'clearRequests' }, ...keep], 'refused to reinitialize: this member is the leader; switch over first', pgRole(pg), pgState(pg));
    }
    const source = leader ? memberOf(input, leader) : undefined;
    if (!source || source.state !== 'running') {
      return decision('request.reinit-wait-primary', [], 'reinitialize requested: waiting for a running primary to clone from', pgRole(pg), pgState(pg));
    }
    return decision(
      'request.reinit',
      [
        { type: 'clearRequests' },
        { type: 'stop', mode: 'fast' },
        { type: 'reinitialize', from: source.name },
        { type: 'start', role: 'replica', follow: source.name },
      ],
      `reinitializing: wiping the data directory and cloning again from ${source.name}`,
      'replica',
      'cloning',
    );
  }
  if (req.restart && pg.running) {
    return decision('request.restart', [...keep, { type: 'clearRequests' }, { type: 'restart' }], 'restarting PostgreSQL as requested', pgRole(pg), 'restarting');
  }
  if (req.reload) {
    return decision('request.reload', [...keep, { type: 'clearRequests' }, { type: 'reload' }], 'reloading the PostgreSQL configuration as requested', pgRole(pg), pgState(pg));
  }
  if (req.restart) {
    return decision('request.restart-not-running', [{ type: 'clearRequests' }, ...keep], 'restart requested but PostgreSQL is not running; nothing to restart', pgRole(pg), pgState(pg));
  }
  return null;
}
