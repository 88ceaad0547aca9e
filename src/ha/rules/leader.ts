/** This member holds the leader key. */
import { mustStepDown } from '../lease.js';
import type { Action, Decision } from '../types.js';
import { bestCandidate } from './candidates.js';
import { cutOffRule } from './cutoff.js';
import { handoverRule } from './handover.js';
import { decision, keepKey, MAX_START_FAILURES, PRIMARY_CONTROL_STATES, type LeaderNote, type RuleInput } from './input.js';
import { slotSteps } from './slots.js';
import { syncSteps } from './sync.js';
import { promotionSteps } from './timeline.js';

/**
 * The leader finishes a promotion, steps down when its lease is past the safety deadline, carries out a handover
 * (handover.ts) or asks for one when the proxies cannot reach it (cutoff.ts), and otherwise keeps leading.
 */
export function leaderRule(input: RuleInput): Decision {
  const { obs, config, clock } = input;
  const pg = obs.pg;
  if (!pg.running) return leaderWithoutPostgresRule(input);
  if (pg.inRecovery === true) {
    // We took the key (or were given it) while still a replica: finish the promotion.
    return decision('leader.finish-promotion', [keepKey(input), ...promotionSteps(input)], 'holding the leader key as a replica: promoting', 'primary', 'promoting');
  }
  if (!pg.accepting) {
    return decision('leader.wait-accepting', [keepKey(input)], 'primary is running but not answering queries yet; keeping the leader key', 'primary', 'starting');
  }
  if (mustStepDown(obs.memory, config, clock.mono) && obs.memory.holdsLeader) {
    return decision(
      'leader.lease-expired',
      [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }],
      'demoted: the leader lease was not refreshed before its safety deadline',
      'primary',
      'demoting',
    );
  }
  const handover = handoverRule(input);
  if (handover && 'decision' in handover) return handover.decision;
  const cutOff = input.view.failover === null ? cutOffRule(input) : null;
  if (cutOff && 'decision' in cutOff) return cutOff.decision;
  return keepLeadingRule(input, handover?.note ?? cutOff?.note ?? null);
}

/**
 * The running primary keeps its key and does its job: synchronous standbys, slots, clearing a drain nobody waits
 * for and a `shutdown` record, the checkpoint after a promotion. `note` says why it waits, when a rule made it
 * (its id becomes the decision's).
 */
export function keepLeadingRule(input: RuleInput, note: LeaderNote | null): Decision {
  const { view, obs } = input;
  const pg = obs.pg;
  const actions: Action[] = [keepKey(input)];
  const notes: string[] = note ? [note.text] : [];
  const sync = syncSteps(input);
  actions.push(...sync.actions);
  notes.push(...sync.notes);
  actions.push(...slotSteps(input));
  // A drain nobody waits for (handover done, abandoned or refused) would keep proxies holding writes.
  if (view.drain !== null && !note?.keepsDrain) actions.push({ type: 'clearDrain' });
  // A primary runs again: a later election must not wait for the one that shut down.
  if (view.shutdown !== null) actions.push({ type: 'clearShutdown' });
  // pg_rewind compares the timelines in pg_control: until the checkpoint after the promotion completes, a
  // former primary or a diverged replica rewound against this server is found "on the same timeline" and
  // left as it is. The checkpoint that follows `promote` may have been skipped (an earlier action of that
  // cycle failed, or the agent restarted), so the leader checks every cycle.
  if (pg.controlTimeline !== null && pg.timeline !== null && pg.controlTimeline < pg.timeline) {
    actions.push({ type: 'checkpoint' });
    notes.push(`checkpointing: pg_control still names timeline ${pg.controlTimeline}`);
  }
  const reason = notes.length ? `primary holding the leader key; ${notes.join('; ')}` : 'primary holding the leader key';
  return decision(note?.rule ?? 'leader.keep', actions, reason, 'primary', 'running');
}

/**
 * The leader's PostgreSQL is down: release the key when it was not a primary, when a replica can take over, or
 * after MAX_START_FAILURES failed starts; otherwise restart it in place.
 */
export function leaderWithoutPostgresRule(input: RuleInput): Decision {
  const pg = input.obs.pg;
  const memory = input.obs.memory;
  const wasReplica = pg.controlState !== null && !PRIMARY_CONTROL_STATES.has(pg.controlState);
  if (wasReplica) {
    return decision('leader.release-not-primary', [{ type: 'releaseLeader' }], 'released the leader key: PostgreSQL is down and was not a primary', 'replica', 'stopped');
  }
  const candidate = bestCandidate(input);
  if (candidate) {
    return decision(
      'leader.release-for-candidate',
      [{ type: 'releaseLeader' }],
      `released the leader key: PostgreSQL is not running on the primary and ${candidate.name} can take over`,
      'primary',
      'crashed',
    );
  }
  if (memory.startFailures >= MAX_START_FAILURES) {
    return decision(
      'leader.release-start-failed',
      [{ type: 'releaseLeader' }],
      `released the leader key: PostgreSQL failed to start ${memory.startFailures} times and no replica is ready to take over`,
      'primary',
      'start failed',
    );
  }
  return decision(
    'leader.restart-in-place',
    [keepKey(input), { type: 'start', role: 'primary', follow: null }],
    'restarting PostgreSQL in place: the primary is down and no replica is eligible to take over',
    'primary',
    'starting',
  );
}
