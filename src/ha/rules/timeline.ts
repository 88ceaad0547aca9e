/** Timelines: what a promotion records, and whether a replica's WAL has left the leader's history. */
import type { HistoryEntry } from '../../cluster/types.js';
import type { Action } from '../types.js';
import type { RuleInput } from './input.js';

/** The highest timeline any promotion recorded in `history` started (0 for none). */
export function newestTimeline(history: readonly HistoryEntry[]): number {
  return history.reduce((max, e) => Math.max(max, e.timeline), 0);
}

/**
 * The actions that promote this server once it holds the key: empty `sync` (synchronous mode), the new timeline
 * in `history`, `promote`, the request cleared, a checkpoint.
 */
export function promotionSteps(input: RuleInput): Action[] {
  const { view, obs, config } = input;
  const pg = obs.pg;
  const steps: Action[] = [];
  // Before the first commit can be acknowledged on the new primary, `sync` must stop naming members that
  // may lack it.
  if (config.synchronous_mode) steps.push({ type: 'writeSync', members: [] });
  // The new timeline is recorded before promoting: a former primary must never find the history silent
  // about a promotion that happened (see primaryRetakeBlocker).
  // The promote executor makes PostgreSQL number the new timeline after every timeline in the history (see
  // PostgresServer.promote): a member that never saw the newest promotion would otherwise reuse its number,
  // and two branches under one number can neither be told apart here nor rewound by pg_rewind ("source and
  // target cluster are on the same timeline").
  const tl = Math.max(pg.timeline ?? pg.controlTimeline ?? 0, newestTimeline(view.history));
  steps.push({
    type: 'recordHistory',
    reason: view.failover ? `${view.failover.kind} to ${obs.me}` : `failover to ${obs.me}`,
    timeline: tl + 1,
    lsn: pg.walPosition ?? 0,
    parent: pg.timeline ?? pg.controlTimeline,
  });
  steps.push({ type: 'promote' });
  if (view.failover) steps.push({ type: 'clearFailover' });
  steps.push({ type: 'checkpoint' });
  return steps;
}

/**
 * A replica that cannot stream because it holds WAL its upstream never had: an asynchronous standby that
 * was ahead of the one promoted, or a nofailover member. Known from `history`: the first promotion recorded
 * after the one that started this server's timeline forked off at an LSN below this server's position.
 */
export function hasDiverged(input: RuleInput, leaderTimeline: number | null): boolean {
  const { view, obs, config, clock } = input;
  const pg = obs.pg;
  if (!pg.running || pg.inRecovery !== true || pg.streaming || pg.timeline === null || pg.walPosition === null) return false;
  // Every replica stops streaming when its primary dies, and the dead primary's member key lives on for up
  // to ttl: judge only a replica that has failed to stream for longer than that.
  const since = obs.memory.notStreamingSince;
  if (since === null || clock.mono - since < (config.ttl + config.loop_wait) * 1000) return false;
  const ancestry = leaderTimeline === null ? null : timelineAncestry(view.history, leaderTimeline);
  if (ancestry !== null) {
    // PostgreSQL's own test: the leader's history must contain this server's timeline, and this server must
    // not have gone past the point where the leader's branch left it.
    const end = ancestry.get(pg.timeline);
    return end === undefined || pg.walPosition > end;
  }
  // Entries without `parent` (written by older versions): assume the next promotion forked off this timeline.
  const history = view.history;
  let mine = -1;
  for (let i = 0; i < history.length; i++) if (history[i]!.timeline === pg.timeline) mine = i;
  const fork = history[mine + 1];
  return fork !== undefined && fork.timeline !== pg.timeline && pg.walPosition > fork.lsn;
}

/**
 * The timelines the leader's WAL runs through, each with the LSN where the leader's branch left it (Infinity
 * for the leader's own), following `parent` back to the bootstrap timeline; null when an entry on the way
 * is missing or has no `parent`.
 */
export function timelineAncestry(history: readonly HistoryEntry[], leaderTimeline: number): Map<number, number> | null {
  const byTimeline = new Map<number, HistoryEntry>();
  for (const e of history) byTimeline.set(e.timeline, e);
  const out = new Map<number, number>([[leaderTimeline, Number.POSITIVE_INFINITY]]);
  const bootstrap = history[0]?.timeline ?? 1;
  for (let tl = leaderTimeline; tl !== bootstrap; ) {
    const e = byTimeline.get(tl);
    if (!e || e.parent === undefined || e.parent >= tl || out.has(e.parent)) return null;
    out.set(e.parent, e.lsn);
    tl = e.parent;
  }
  return out;
}
