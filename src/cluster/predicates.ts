/**
 * The rules about members that the HA loop, the REST API, the CLI and the proxy all apply, each defined once here
 * so they cannot drift apart (they did: the API's candidate check skipped the lag limit and read the sync key
 * differently from the CLI's). Pure functions of published member keys.
 */
import type { ClusterView, MemberStatus, Tags } from './types.js';

/** The member's PostgreSQL is up and answering, whether or not a replica streams yet. */
export function isRunningState(state: string | null | undefined): boolean {
  return state === 'running' || state === 'streaming';
}

/** A member that runs as a replica and whose PostgreSQL is up. */
export function isHealthyReplica(m: Pick<MemberStatus, 'role' | 'state'> | null | undefined): boolean {
  return !!m && m.role === 'replica' && isRunningState(m.state);
}

/** The tags allow promoting the member: failover_priority 0 behaves like nofailover. */
export function mayBePromoted(tags: Pick<Tags, 'nofailover' | 'failover_priority'>): boolean {
  return !tags.nofailover && tags.failover_priority > 0;
}

/**
 * The members that hold every acknowledged commit while synchronous_mode is on, or null when it is off. The sync
 * key counts when it belongs to the current leader, or, with no leader, to the last one: the agents elect among
 * those members then (decide's election), so a failover to one of them must not be refused.
 */
export function syncMembersOf(view: Pick<ClusterView, 'config' | 'leader' | 'sync'>): string[] | null {
  if (!view.config.synchronous_mode) return null;
  const leader = view.leader?.name ?? null;
  return view.sync && (leader === null || view.sync.leader === leader) ? view.sync.members : [];
}

export interface CandidateRules {
  /** Members in the sync key (see syncMembersOf); null when synchronous_mode is off. */
  syncMembers: string[] | null;
  /** maximum_lag_on_failover in bytes, or null where lag does not count (an operator's forced failover). */
  maxLag: number | null;
}

/**
 * What an operator's request holds its candidate to, the same in the REST API and the CLI: a switchover keeps the
 * lag limit (the agents check it when they carry one out); a failover is forced, as in decide, so lag does not count.
 */
export function candidateRulesFor(view: Pick<ClusterView, 'config' | 'leader' | 'sync'>, kind: 'switchover' | 'failover'): CandidateRules {
  return { syncMembers: syncMembersOf(view), maxLag: kind === 'switchover' ? view.config.maximum_lag_on_failover : null };
}

/** Why a member may not become primary now; the caller words it for its audience. */
export type CandidateProblem =
  | { kind: 'nofailover' }
  | { kind: 'not-running' }
  | { kind: 'not-sync'; syncMembers: string[] }
  | { kind: 'lag'; lag: number; maxLag: number };

/**
 * The first rule `m` breaks as a failover candidate, or null when it is eligible. `lag` is its lag behind the
 * primary in bytes (default: its own published figure); unknown lag does not disqualify, as in decide's election.
 */
export function candidateProblem(m: MemberStatus, rules: CandidateRules, lag: number | null = m.lagBytes): CandidateProblem | null {
  if (!mayBePromoted(m.tags)) return { kind: 'nofailover' };
  if (!isHealthyReplica(m)) return { kind: 'not-running' };
  if (rules.syncMembers !== null && !rules.syncMembers.includes(m.name)) return { kind: 'not-sync', syncMembers: rules.syncMembers };
  if (rules.maxLag !== null && lag !== null && lag > rules.maxLag) return { kind: 'lag', lag, maxLag: rules.maxLag };
  return null;
}

export function isEligibleCandidate(m: MemberStatus, rules: CandidateRules, lag: number | null = m.lagBytes): boolean {
  return candidateProblem(m, rules, lag) === null;
}

/** Among candidates to take over, the most advanced wins, then the higher failover_priority; anyone beats none. */
export function ranksAbove(m: Pick<MemberStatus, 'walPosition' | 'tags'>, best: Pick<MemberStatus, 'walPosition' | 'tags'> | null): boolean {
  if (best === null) return true;
  const [mine, theirs] = [m.walPosition ?? -1, best.walPosition ?? -1];
  return mine > theirs || (mine === theirs && m.tags.failover_priority > best.tags.failover_priority);
}
