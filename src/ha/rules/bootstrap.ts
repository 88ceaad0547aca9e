/** A member without a data directory: bootstrap the cluster, or clone from its primary. */
import { mayBePromoted } from '../../cluster/predicates.js';
import type { Decision } from '../types.js';
import { decision, leaderOf, memberOf, type RuleInput } from './input.js';

/**
 * Bootstraps when the initialize key is free (unless paused or tagged nofailover), else clones from the running
 * primary and starts as its replica, else waits.
 */
export function bootstrapRule(input: RuleInput): Decision {
  const { view, obs, config } = input;
  if (!obs.dcsReachable) return decision('bootstrap.wait-etcd', [], 'waiting for etcd before initializing', 'uninitialized', 'stopped');
  const init = view.initialize;
  if (init === null) {
    if (config.pause) return decision('bootstrap.paused', [], 'paused: not bootstrapping', 'uninitialized', 'stopped');
    if (!mayBePromoted(obs.tags)) {
      return decision('bootstrap.nofailover', [], 'waiting for another member to bootstrap the cluster (this one is tagged nofailover)', 'uninitialized', 'stopped');
    }
    return decision('bootstrap.init', [{ type: 'bootstrap' }], 'bootstrapping a new cluster: the initialize key was free', 'uninitialized', 'bootstrapping');
  }
  if (init === '') return decision('bootstrap.wait-other', [], 'waiting: another member is bootstrapping the cluster', 'uninitialized', 'stopped');
  const leader = leaderOf(view);
  const source = leader && leader !== obs.me ? memberOf(input, leader) : undefined;
  if (!source || source.role !== 'primary' || source.state !== 'running') {
    return decision('bootstrap.wait-primary', [], 'waiting for a running primary to clone from', 'uninitialized', 'stopped');
  }
  return decision(
    'bootstrap.clone',
    [{ type: 'clone', from: source.name }, { type: 'start', role: 'replica', follow: source.name }],
    `cloning from the primary ${source.name} and starting as its replica`,
    'uninitialized',
    'cloning',
  );
}
