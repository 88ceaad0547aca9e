/** Nobody holds the leader key and this server is (or was last) a primary: may it take the key back? */
import { mayBePromoted } from '../../cluster/predicates.js';
import type { Action, Decision } from '../types.js';
import { moreAdvancedPeer } from './candidates.js';
import { decision, lsnText, pgRole, pgState, type RuleInput } from './input.js';
import { cleanShutdownCheckpoint } from './shutdown.js';

/**
 * Why a (former) primary may not take the free key back, or null if it may: a request names another member,
 * another member owns the sync key or started a newer timeline since, or this one is tagged nofailover.
 * `intentFor`: the member a request that is not stale names (input.ts intentTarget).
 */
export function primaryRetakeBlocker(input: RuleInput, intentFor: string | null): string | null {
  const { view, obs, config } = input;
  if (intentFor && intentFor !== obs.me) return `a ${view.failover!.kind} to ${intentFor} is in progress`;
  if (config.synchronous_mode && view.sync && view.sync.leader !== obs.me) {
    return `${view.sync.leader} was primary after this server (it owns the sync key)`;
  }
  // Every promotion in synchronous mode writes `sync` before its history entry, and only a primary writes it
  // after that: while `sync` still names this server, no promotion happened since it last acted as primary.
  // The last history entry may then be a promotion that was recorded but failed (its server died first).
  const syncSaysLast = config.synchronous_mode && view.sync?.leader === obs.me;
  const newer = view.history.length ? view.history[view.history.length - 1] : null;
  // With every promotion recorded before it happens, the last entry names the last primary. Its timeline is
  // no help here: pg_controldata names the timeline of the last checkpoint, and a primary that crashed
  // between its promotion and the checkpoint after it still names the old one.
  if (newer && newer.leader !== obs.me && !syncSaysLast) {
    const myTimeline = obs.pg.timeline ?? obs.pg.controlTimeline;
    return `timeline ${newer.timeline} was started by ${newer.leader} after this server's timeline ${myTimeline ?? 'unknown'}`;
  }
  if (!mayBePromoted(obs.tags)) return 'this member is tagged nofailover';
  return null;
}

/** A running primary takes the free key back, or stops when it may not (primaryRetakeBlocker). */
export function runningPrimaryRule(input: RuleInput, intentFor: string | null): Decision {
  const block = primaryRetakeBlocker(input, intentFor);
  if (block) return decision('former-primary.demote', [{ type: 'stop', mode: 'fast' }], `demoting: the leader key is free but ${block}`, 'primary', 'demoting');
  return decision('former-primary.retake', [{ type: 'acquireLeader' }], 'running primary is taking the free leader key', 'primary', 'running');
}

/**
 * A stopped former primary takes the free key and starts again unless it may not (primaryRetakeBlocker) or a
 * running peer is ahead of it; after a clean shutdown that `shutdown` records, a peer that merely holds all of
 * its WAL does not count as ahead (the cluster resumes on the same timeline).
 */
export function stoppedPrimaryRule(input: RuleInput, intentFor: string | null): Decision {
  const { view, obs } = input;
  const pg = obs.pg;
  const block = primaryRetakeBlocker(input, intentFor);
  if (block) return decision('former-primary.stay-stopped', [], `former primary stays stopped: ${block}`, 'primary', pgState(pg));
  const checkpoint = cleanShutdownCheckpoint(pg);
  const shutdown = view.shutdown;
  // The clean shutdown that `shutdown` records, not a later one (a stop outside pgwarden); and a server that
  // starts: after a failed start, a running replica holding all its WAL takes over instead.
  const resuming =
    checkpoint !== null && shutdown !== null && shutdown.leader === obs.me && shutdown.checkpoint === checkpoint && obs.memory.startFailures === 0;
  const moreAdvanced = moreAdvancedPeer(input, null, checkpoint === null ? null : { checkpoint, yieldToEqual: !resuming });
  if (moreAdvanced) return decision('former-primary.yield', [], `former primary stays stopped: ${moreAdvanced}`, 'primary', pgState(pg));
  const start: Action[] = [{ type: 'acquireLeader' }, { type: 'start', role: 'primary', follow: null }];
  if (resuming) {
    return decision(
      'former-primary.resume',
      start,
      `taking the free leader key and starting this former primary again: it shut down cleanly at ${lsnText(checkpoint)} and no other member is ahead of it`,
      'primary',
      'starting',
    );
  }
  return decision('former-primary.restart', start, 'taking the free leader key and starting this former primary again: no other member is ahead of it', 'primary', 'starting');
}

/** Whether the election treats this stopped server as a former primary (its control file says it was one). */
export function isStoppedPrimary(input: RuleInput): boolean {
  return !input.obs.pg.running && pgRole(input.obs.pg) === 'primary';
}
