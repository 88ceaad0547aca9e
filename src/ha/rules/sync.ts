/** Synchronous replication bookkeeping on the primary (synchronous_mode). */
import type { Action } from '../types.js';
import { memberOf, type RuleInput } from './input.js';

/** What the primary does about synchronous standbys this cycle: the actions, and notes for its reason. */
export interface SyncSteps {
  actions: Action[];
  notes: string[];
}

/**
 * Keeps `sync` and synchronous_standby_names in step, in the order that is the safety rule of docs/ha.md: a member
 * is removed from `sync` before it leaves synchronous_standby_names, and added to `sync` only after PostgreSQL
 * reports it synchronous and it has flushed past the point where it was added.
 */
export function syncSteps(input: RuleInput): SyncSteps {
  const { view, obs, config } = input;
  const pg = obs.pg;
  const actions: Action[] = [];
  const current = view.sync && view.sync.leader === obs.me ? view.sync.members : null;
  const guc = pg.synchronousStandbyNames;
  if (!config.synchronous_mode) {
    if (guc.length > 0) actions.push({ type: 'setSynchronousStandbys', names: [] });
    return { actions, notes: [] };
  }
  const streaming = pg.replication.filter((r) => r.state === 'streaming');
  const eligible = streaming.filter((r) => {
    const m = memberOf(input, r.name);
    return r.name !== obs.me && !!m && !m.tags.nosync;
  });
  const keyMembers = current ?? [];
  // Prefer members already in `sync` so the set does not churn, then the most advanced.
  eligible.sort((a, b) => {
    const ak = keyMembers.includes(a.name) ? 1 : 0;
    const bk = keyMembers.includes(b.name) ? 1 : 0;
    if (ak !== bk) return bk - ak;
    return (b.flushLsn ?? -1) - (a.flushLsn ?? -1);
  });
  const desired = eligible.slice(0, config.synchronous_node_count).map((r) => r.name).sort();
  const memory = obs.memory;
  const ready = (name: string): boolean => {
    if (!guc.includes(name)) return false;
    const row = pg.replication.find((r) => r.name === name);
    if (!row || (row.syncState !== 'sync' && row.syncState !== 'quorum')) return false;
    const addedAt = memory.syncAddedAt[name];
    return addedAt !== undefined && row.flushLsn !== null && row.flushLsn >= addedAt;
  };
  const nextKey = desired.filter((n) => keyMembers.includes(n) || ready(n)).sort();
  const notes: string[] = [];
  if (current === null || !sameSet(nextKey, keyMembers)) {
    actions.push({ type: 'writeSync', members: nextKey });
    notes.push(`synchronous standbys in sync: [${nextKey.join(', ')}]`);
  }
  const nextGuc = desired.length > 0 ? desired : config.synchronous_mode_strict ? ['*'] : [];
  const missingAddedAt = nextGuc.some((n) => n !== '*' && memory.syncAddedAt[n] === undefined);
  if (!sameSet(nextGuc, guc) || missingAddedAt) {
    actions.push({ type: 'setSynchronousStandbys', names: nextGuc });
    if (!sameSet(nextGuc, guc)) notes.push(`synchronous_standby_names set to [${nextGuc.join(', ')}]`);
  }
  if (desired.length === 0) {
    notes.push(config.synchronous_mode_strict ? 'no synchronous standby: writes block (strict mode)' : 'no synchronous standby available');
  }
  return { actions, notes };
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(b);
  return a.every((x) => s.has(x));
}
