/**
 * The checks `switchover` and `failover` make before writing their intent, as pure functions of the view: a
 * request the agents would drop or could never carry out is refused here, with what to do instead.
 */
import { closest } from '../config/suggest.js';
import { PgwardenError } from '../errors.js';
import { candidateProblem, candidateRulesFor } from '../cluster/predicates.js';
import type { ClusterView, FailoverIntent, MemberStatus } from '../cluster/types.js';

const ISO_TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?)(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * `--scheduled`: 'now' (null) or an ISO time like 2026-11-21T10:00; without a zone it is local time. A time in
 * the past is refused.
 */
export function parseSchedule(text: string, now: number): number | null {
  const trimmed = text.trim();
  if (trimmed.toLowerCase() === 'now') return null;
  const match = ISO_TIME.exec(trimmed);
  let zone = match?.[3] ?? '';
  if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const at = match ? Date.parse(`${match[1]}T${match[2]}${zone.toUpperCase()}`) : NaN;
  if (Number.isNaN(at)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `--scheduled ${JSON.stringify(text)} is not a time: write it like 2026-11-21T10:00 (local time), 2026-11-21T10:00Z (UTC), or "now"`,
    );
  }
  if (at <= now) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `--scheduled ${text} is in the past (now is ${new Date(now).toISOString()}): give a future time, or "now"`,
    );
  }
  return at;
}

export interface FailoverRequest {
  kind: 'switchover' | 'failover';
  /** --primary: the member the operator believes is the leader. */
  primary: string | null;
  /** --candidate */
  candidate: string | null;
  /** Wall-clock ms; null for now. */
  at: number | null;
}

function reject(message: string): PgwardenError {
  return new PgwardenError('SWITCHOVER_REJECTED', message);
}

/** Why `m` may not become primary now, or null (the rule the REST API applies too). */
export function candidateProblemText(m: MemberStatus, view: ClusterView, kind: FailoverRequest['kind']): string | null {
  const problem = candidateProblem(m, candidateRulesFor(view, kind));
  if (problem === null) return null;
  switch (problem.kind) {
    case 'nofailover':
      return `${m.name} is tagged nofailover (or failover_priority 0), so it is never promoted: choose another member`;
    case 'not-running':
      return `${m.name} is not a running replica (role ${m.role}, state ${m.state}): choose a replica that is running, or wait until it is`;
    case 'not-sync':
      return (
        `synchronous_mode is on and ${m.name} is not a synchronous standby, so it may lack acknowledged commits: ` +
        `choose one of ${problem.syncMembers.length > 0 ? problem.syncMembers.join(', ') : '(none yet: wait for the primary to pick one)'}`
      );
    case 'lag':
      return (
        `${m.name} lags ${problem.lag} bytes behind the primary, more than maximum_lag_on_failover ` +
        `(${problem.maxLag}): wait for it to catch up, or choose another replica`
      );
  }
}

function memberOrThrow(view: ClusterView, name: string, what: string): MemberStatus {
  const member = view.members[name];
  if (member) return member;
  const names = Object.keys(view.members).sort();
  const suggestion = closest(name, names);
  throw new PgwardenError(
    'MEMBER_NOT_FOUND',
    `${what} "${name}" is not a member of the cluster${suggestion ? `: did you mean "${suggestion}"?` : ''} (members: ${names.join(', ') || 'none'})`,
  );
}

/**
 * The intent to write for a switchover or failover, or a thrown SWITCHOVER_REJECTED / MEMBER_NOT_FOUND saying
 * which precondition failed and what to do.
 */
export function planFailover(view: ClusterView, request: FailoverRequest, now: number): FailoverIntent {
  const { kind } = request;
  if (view.config.pause) {
    throw reject(`the cluster is paused (maintenance mode), so no agent would carry out a ${kind}: run \`pgwarden resume\` first`);
  }
  const leader = view.leader?.name ?? null;
  if (kind === 'switchover') {
    if (leader === null) {
      throw reject('no member holds the leader key, so there is nothing to switch over from: use `pgwarden failover --candidate <member>`');
    }
    if (request.primary !== null && request.primary !== leader) {
      throw reject(`${request.primary} is not the current primary (the leader is ${leader}): pass --primary ${leader}, or leave --primary out`);
    }
  } else if (request.at !== null) {
    throw reject('a failover happens at once and cannot be scheduled: use `pgwarden switchover --scheduled TIME`');
  }
  if (request.candidate !== null) {
    const candidate = memberOrThrow(view, request.candidate, 'candidate');
    if (candidate.name === leader) {
      throw reject(`${candidate.name} already holds the leader key: name another member as --candidate`);
    }
    const problem = candidateProblemText(candidate, view, kind);
    if (problem !== null) throw reject(problem);
  } else {
    if (leader === null) {
      throw reject('no member holds the leader key; the agents elect the most advanced healthy replica by themselves. To choose one, pass --candidate <member>');
    }
    const eligible = Object.values(view.members).filter((m) => m.name !== leader && candidateProblemText(m, view, kind) === null);
    if (eligible.length === 0) {
      const reasons = Object.values(view.members)
        .filter((m) => m.name !== leader)
        .map((m) => candidateProblemText(m, view, kind))
        .filter((r): r is string => r !== null);
      throw reject(`no replica can take over now${reasons.length > 0 ? `: ${reasons.join('; ')}` : ': the cluster has no replica'}`);
    }
  }
  return { kind, from: leader, to: request.candidate, at: request.at, requestedAt: now };
}
