/** Another member holds the leader key. */
import type { MemberStatus } from '../../cluster/types.js';
import type { Decision } from '../types.js';
import { decision, MAX_START_FAILURES, memberOf, pgMaybePrimary, pgRole, pgState, type RuleInput } from './input.js';
import { hasDiverged } from './timeline.js';

/**
 * A member that is not the leader runs as a replica of `leader`: a writable server stops at once, a stopped one
 * starts (or is rewound, or cloned again, when it cannot simply start), a diverged one is rewound, and a running
 * one follows the leader.
 */
export function followerRule(input: RuleInput, leader: string): Decision {
  const { obs, config } = input;
  const pg = obs.pg;
  if (pgMaybePrimary(pg)) {
    return decision('follower.demote', [{ type: 'stop', mode: 'fast' }], `demoting: ${leader} holds the leader key, so this server must not accept writes`, 'primary', 'demoting');
  }
  const lm = memberOf(input, leader);
  if (!pg.running) {
    if (config.pause) return decision('follower.paused', [], 'paused: PostgreSQL is stopped, not starting it', pgRole(pg), pgState(pg));
    if (pgRole(pg) === 'primary') return rejoinAsReplica(input, leader, lm, 'rewinding this former primary first');
    // A replica whose repair was cut short (pg_rewind failed after the stop) or whose data PostgreSQL refuses
    // ("requested timeline does not contain minimum recovery point") would otherwise be started, and fail,
    // forever: found by the chaos suite. Rewind it after a few failed starts, clone it again when that fails.
    const failures = obs.memory.startFailures;
    if (obs.memory.rewindFailed || failures >= MAX_START_FAILURES * 2) {
      return rejoinAsReplica(input, leader, lm, `PostgreSQL failed to start as a replica ${failures} times: cloning it again`, true);
    }
    if (failures >= MAX_START_FAILURES) {
      return rejoinAsReplica(input, leader, lm, `PostgreSQL failed to start as a replica ${failures} times: rewinding it first`);
    }
    return decision('follower.start', [{ type: 'start', role: 'replica', follow: leader }], `starting PostgreSQL as a replica of ${leader}`, 'replica', 'starting');
  }
  if (!lm) {
    return decision('follower.wait-address', [], `waiting for the primary ${leader} to publish its address`, 'replica', pgState(pg));
  }
  if (hasDiverged(input, lm.timeline) && pg.following === leader && !config.pause && lm.role === 'primary' && lm.state === 'running') {
    const failed = obs.memory.rewindFailed;
    return decision(
      failed ? 'follower.diverged-reclone' : 'follower.diverged-rewind',
      [{ type: 'stop', mode: 'fast' }, failed ? { type: 'reinitialize', from: leader } : { type: 'rewind', from: leader }, { type: 'start', role: 'replica', follow: leader }],
      `replica diverged from ${leader} (it has WAL past the point where timeline ${lm.timeline} forked off): ${failed ? `pg_rewind failed, cloning it again${rewindErrorNote(input)}` : 'rewinding it'}`,
      'replica',
      'rewinding',
    );
  }
  if (pg.following !== leader) {
    return decision('follower.follow', [{ type: 'follow', leader }], `following the new primary ${leader}`, 'replica', pgState(pg));
  }
  // The lag is published in the member key; keeping it out of the sentence keeps the log to one line per change.
  return pg.streaming
    ? decision('follower.streaming', [], `replica streaming from ${leader}`, 'replica', pgState(pg))
    : decision('follower.not-streaming', [], `replica of ${leader}, not streaming yet`, 'replica', pgState(pg));
}

/**
 * A stopped server that cannot simply start as a replica (a former primary, or a replica whose starts fail)
 * becomes one of the new leader once it runs: pg_rewind first, a fresh clone when that failed (or `reclone`).
 */
export function rejoinAsReplica(input: RuleInput, leader: string, lm: MemberStatus | undefined, how: string, reclone = false): Decision {
  const memory = input.obs.memory;
  if (!lm || lm.role !== 'primary' || lm.state !== 'running' || lm.timeline === null) {
    return decision('follower.wait-primary', [], `waiting for the primary ${leader} to be running before rejoining as its replica`, 'replica', 'stopped');
  }
  if (reclone || memory.rewindFailed) {
    const why = memory.rewindFailed ? `pg_rewind failed, cloning again${rewindErrorNote(input)}` : how;
    return decision(
      'follower.reclone',
      [{ type: 'reinitialize', from: leader }, { type: 'start', role: 'replica', follow: leader }],
      `rejoining as a replica of ${leader}: ${why}`,
      'replica',
      'cloning',
    );
  }
  return decision(
    'follower.rewind',
    [{ type: 'rewind', from: leader }, { type: 'start', role: 'replica', follow: leader }],
    `rejoining as a replica of ${leader}: ${how}`,
    'replica',
    'rewinding',
  );
}

/** What pg_rewind said when it failed, for the reason of the re-clone that follows. */
function rewindErrorNote(input: RuleInput): string {
  const error = input.obs.memory.rewindError;
  return error ? ` (${error})` : '';
}
