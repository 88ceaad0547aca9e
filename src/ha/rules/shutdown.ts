/** A whole-cluster stop: the former primary shut down cleanly and may come back (the `shutdown` record). */
import { mayBePromoted } from '../../cluster/predicates.js';
import type { PgObservation } from '../../postgres/observation.js';
import { lsnText, memberOf, type RuleInput } from './input.js';

/**
 * How far past the start of a clean shutdown's checkpoint record (pg_controldata's "Latest checkpoint location")
 * the WAL of that server can end. PostgreSQL 15's shutdown checkpoint record is 114 bytes (a 24-byte header, a
 * 2-byte data header and the 88-byte CheckPoint), 120 once MAXALIGNed; if it crosses a page boundary, the next
 * page's header (24 bytes, 40 at a segment boundary) comes in between. A replica's position is the end of what
 * it received or replayed: exactly that location when it has every record before the checkpoint (it stopped
 * first, as `pgwarden down` stops replicas first: measured 0 bytes past it), up to this far past it when it
 * received the checkpoint record too (the same WAL, not more); nothing on that timeline lies beyond the record,
 * as the former primary wrote nothing after it.
 */
export const SHUTDOWN_CHECKPOINT_MAX_SPAN = 160;

/**
 * Where this stopped server's shutdown checkpoint record starts, when it was shut down cleanly as a primary:
 * that record is the last of its WAL, so its position is known (pg_controldata), not "unknown".
 */
export function cleanShutdownCheckpoint(pg: PgObservation): number | null {
  return !pg.running && pg.controlState === 'shut down' && pg.checkpointLsn !== null ? pg.checkpointLsn : null;
}

/**
 * Why a replica must not take the free key yet because the former primary shut down cleanly (the whole
 * cluster was stopped) and may come back: restarting it keeps its timeline, a promotion would start a new
 * one and rewind it. It has primary_start_timeout, counted from this agent's first leaderless cycle, to do so;
 * after that the usual election runs (the replicas hold its WAL up to the shutdown checkpoint, when they
 * received it). Null when there is nothing to wait for.
 */
export function shutdownHold(input: RuleInput): string | null {
  const { view, obs, config, clock } = input;
  const shutdown = view.shutdown;
  if (shutdown === null || shutdown.leader === obs.me) return null;
  // A primary published a position past that shutdown since: the record is left over.
  if (view.optime !== null && view.optime > shutdown.checkpoint + SHUTDOWN_CHECKPOINT_MAX_SPAN) return null;
  const former = memberOf(input, shutdown.leader);
  if (former && !mayBePromoted(former.tags)) return null;
  const waitMs = config.primary_start_timeout * 1000;
  const since = obs.memory.shutdownHoldSince ?? clock.mono;
  const left = waitMs - (clock.mono - since);
  if (left <= 0) return null;
  return `${shutdown.leader} shut down cleanly at ${lsnText(shutdown.checkpoint)} and may come back as primary (waiting up to primary_start_timeout, ${Math.ceil(left / 1000)} s left)`;
}
