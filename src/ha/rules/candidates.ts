/** Who else could become primary: the questions the leader asks before handing over and a replica before taking over. */
import { isEligibleCandidate, isHealthyReplica, mayBePromoted, ranksAbove } from '../../cluster/predicates.js';
import type { MemberStatus } from '../../cluster/types.js';
import { inSync, lagOf, lsnText, memberOf, type RuleInput } from './input.js';
import { SHUTDOWN_CHECKPOINT_MAX_SPAN } from './shutdown.js';

/**
 * Whether `name` could take over from this primary now: a promotable, running replica streaming from us (in sync
 * in synchronous mode); with `checkLag`, within maximum_lag_on_failover of our position, so a clean shutdown hands
 * it every last commit.
 */
export function candidateCheck(input: RuleInput, name: string, checkLag: boolean): { name: string } | { refusal: string } {
  const { view, obs, config } = input;
  const m = memberOf(input, name);
  if (!m) return { refusal: `${name} is not a member` };
  if (!mayBePromoted(m.tags)) return { refusal: `${name} is tagged nofailover` };
  if (!isHealthyReplica(m)) return { refusal: `${name} is not a running replica (state ${m.state})` };
  if (config.synchronous_mode && !inSync(view, name)) return { refusal: `${name} is not a synchronous standby` };
  const row = obs.pg.replication.find((r) => r.name === name);
  if (!row || row.state !== 'streaming') return { refusal: `${name} is not streaming from this primary` };
  if (checkLag && obs.pg.walPosition !== null && row.flushLsn !== null) {
    const lag = obs.pg.walPosition - row.flushLsn;
    if (lag > config.maximum_lag_on_failover) return { refusal: `${name} lags ${lag} bytes, over maximum_lag_on_failover` };
  }
  return { name };
}

/** The eligible member (predicates.ts, lag measured against optime as in the election) that ranks highest. */
export function bestCandidate(input: RuleInput): MemberStatus | null {
  const { view, obs, config } = input;
  let best: MemberStatus | null = null;
  // The sync key counts whoever owns it (as inSync), and lag is measured against optime, as in the election.
  const rules = { syncMembers: config.synchronous_mode ? (view.sync?.members ?? []) : null, maxLag: config.maximum_lag_on_failover };
  for (const m of Object.values(view.members)) {
    if (m.name === obs.me) continue;
    if (!isEligibleCandidate(m, rules, lagOf(view, m.walPosition))) continue;
    if (ranksAbove(m, best)) best = m;
  }
  return best;
}

/** A stopped former primary whose WAL ends with a clean shutdown's checkpoint record. */
export interface CleanShutdownEnd {
  /** Where the checkpoint record starts. */
  checkpoint: number;
  /** A peer holding every record before it (all of the data) counts as ahead: a running replica then takes over. */
  yieldToEqual: boolean;
}

/**
 * A reachable, healthy peer (as its REST API answered this cycle) that should win the election instead of this
 * member, as a sentence; null when none. `clean`: compare with a clean shutdown's end instead of `myPosition`.
 */
export function moreAdvancedPeer(input: RuleInput, myPosition: number | null, clean: CleanShutdownEnd | null = null): string | null {
  const { view, obs, config } = input;
  const mine = myPosition ?? -1;
  for (const [name, probe] of Object.entries(obs.peers)) {
    if (name === obs.me || !probe.reachable || !probe.healthy) continue;
    if (probe.role === 'primary') return `${name} is still running as a primary`;
    const tags = probe.tags;
    if (tags && !mayBePromoted(tags)) continue;
    // A peer too far behind the optime will refuse the key itself: it must not hold the election back.
    const peerLag = lagOf(view, probe.walPosition);
    if (peerLag !== null && peerLag > config.maximum_lag_on_failover) continue;
    if (config.synchronous_mode && !inSync(view, name) && view.sync?.leader !== name) continue;
    const theirs = probe.walPosition ?? -1;
    if (clean !== null) {
      if (theirs > clean.checkpoint + SHUTDOWN_CHECKPOINT_MAX_SPAN) {
        return `${name} is more advanced (${lsnText(theirs)}, past this server's shutdown checkpoint at ${lsnText(clean.checkpoint)})`;
      }
      if (theirs >= clean.checkpoint && clean.yieldToEqual) {
        return `${name} holds all of this server's WAL up to its shutdown checkpoint at ${lsnText(clean.checkpoint)} and is running`;
      }
      continue;
    }
    if (theirs > mine) return `${name} is more advanced (${theirs} > ${mine})`;
    if (theirs === mine && tags && tags.failover_priority > obs.tags.failover_priority) {
      return `${name} is as advanced and has a higher failover_priority`;
    }
  }
  return null;
}
