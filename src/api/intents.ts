/**
 * Checks of the mutating requests (switchover, failover, restart, reinitialize) as pure functions: given the body
 * and the last cluster view, either the intent to write or the HTTP status and message that refuse it.
 * Codes follow Patroni: 400 for a malformed request, 412 for a precondition the cluster does not meet,
 * 422 for a schedule in the past, 503 when the cluster state is unknown.
 */
import { closest } from '../config/suggest.js';
import { candidateProblem, candidateRulesFor, syncMembersOf } from '../cluster/predicates.js';
import type { ClusterView, FailoverIntent, MemberStatus } from '../cluster/types.js';

export type Refusal = { ok: false; status: 400 | 412 | 422 | 503; message: string };
export type FailoverPlan = { ok: true; status: 200 | 202; intent: FailoverIntent; message: string } | Refusal;

const refuse = (status: Refusal['status'], message: string): Refusal => ({ ok: false, status, message });

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalName(body: Record<string, unknown>, keys: string[]): string | null | Refusal {
  for (const key of keys) {
    const value = body[key];
    if (value === undefined || value === null || value === '') continue;
    if (typeof value !== 'string') return refuse(400, `"${key}" must be a member name (a string), got ${JSON.stringify(value)}`);
    return value;
  }
  return null;
}

const isRefusal = (v: unknown): v is Refusal => isRecord(v) && v.ok === false;

/** ISO 8601 with an explicit zone: a schedule without one would depend on the server's time zone. */
function parseSchedule(value: unknown): number | Refusal {
  if (typeof value !== 'string' || !/(Z|[+-]\d\d:?\d\d)$/i.test(value.trim()) || Number.isNaN(Date.parse(value))) {
    return refuse(
      400,
      `scheduled_at must be an ISO 8601 time with a time zone, like 2030-01-31T22:00:00+00:00; got ${JSON.stringify(value)}`,
    );
  }
  return Date.parse(value);
}

/** Why `member` may not become primary by a `kind` request now, or null (the rule the CLI applies too). */
function candidateRefusal(member: MemberStatus, view: ClusterView, kind: 'switchover' | 'failover'): string | null {
  const problem = candidateProblem(member, candidateRulesFor(view, kind));
  if (problem === null) return null;
  switch (problem.kind) {
    case 'nofailover':
      return `candidate "${member.name}" has the nofailover tag (or failover_priority 0) and is never promoted`;
    case 'not-running':
      return `candidate "${member.name}" is not a running replica (role ${member.role}, state ${member.state})`;
    case 'not-sync':
      return (
        `candidate "${member.name}" is not a synchronous standby and synchronous_mode is on, so it may lack acknowledged ` +
        `commits: choose one of ${problem.syncMembers.length ? problem.syncMembers.join(', ') : '(none yet)'}, or turn synchronous_mode off first`
      );
    case 'lag':
      return (
        `candidate "${member.name}" lags ${problem.lag} bytes behind the primary, more than maximum_lag_on_failover ` +
        `(${problem.maxLag}): wait for it to catch up, or choose another replica`
      );
  }
}

function unknownMember(view: ClusterView, name: string): Refusal {
  const names = Object.keys(view.members).sort();
  const suggestion = closest(name, names);
  return refuse(
    412,
    `candidate "${name}" is not a member of the cluster${suggestion ? ` (did you mean "${suggestion}"?)` : ''}; members: ${names.join(', ') || '(none)'}`,
  );
}

/**
 * POST /switchover and POST /failover. Body: {leader|from, candidate|to|member, scheduled_at}. A failover names a
 * candidate and may happen without a leader; a failover that names the leader is a switchover (as in Patroni).
 */
export function planFailover(
  requested: 'switchover' | 'failover',
  body: unknown,
  view: ClusterView | null,
  now: number,
): FailoverPlan {
  if (!isRecord(body)) {
    return refuse(400, 'the body must be a JSON object like {"leader": "pg1", "candidate": "pg2"}');
  }
  const from = optionalName(body, ['leader', 'from']);
  if (isRefusal(from)) return from;
  const to = optionalName(body, ['candidate', 'to', 'member']);
  if (isRefusal(to)) return to;
  const kind: 'switchover' | 'failover' = requested === 'failover' && from === null ? 'failover' : 'switchover';
  const Kind = kind === 'switchover' ? 'Switchover' : 'Failover';

  if (requested === 'failover' && to === null) {
    return refuse(400, 'a failover needs a candidate: send {"candidate": "<member>"} (or use /switchover to let the cluster choose)');
  }
  let at: number | null = null;
  if (body.scheduled_at !== undefined && body.scheduled_at !== null && body.scheduled_at !== '') {
    if (kind === 'failover') return refuse(400, 'a failover cannot be scheduled: use POST /switchover with scheduled_at');
    const parsed = parseSchedule(body.scheduled_at);
    if (isRefusal(parsed)) return parsed;
    if (parsed <= now) {
      return refuse(422, `scheduled_at ${String(body.scheduled_at)} is in the past: give a future time, or leave it out to switch over now`);
    }
    at = parsed;
  }
  if (!view) return refuse(503, 'this agent has not read the cluster from etcd yet: retry in a few seconds');
  if (at !== null && view.config.pause) {
    return refuse(400, 'a switchover cannot be scheduled while the cluster is paused: resume it first');
  }
  if (view.config.pause && to === null) {
    return refuse(400, 'while the cluster is paused a switchover needs a candidate: send {"candidate": "<member>"}');
  }
  const leader = view.leader?.name ?? null;
  if (kind === 'switchover') {
    if (leader === null) {
      return refuse(412, 'there is no leader to switch over from: use POST /failover with a candidate');
    }
    if (from !== null && from !== leader) {
      return refuse(412, `leader name does not match: the current leader is "${leader}", not "${from}"`);
    }
  }
  if (to !== null && to === (from ?? leader)) {
    return refuse(412, `candidate "${to}" is already the leader: name another member as candidate`);
  }
  const syncMembers = syncMembersOf(view);
  if (to !== null) {
    const member = view.members[to];
    if (!member) return unknownMember(view, to);
    const problem = candidateRefusal(member, view, kind);
    if (problem !== null) return refuse(412, problem);
  } else {
    const eligible = Object.values(view.members).filter(
      (m) => m.name !== leader && candidateRefusal(m, view, kind) === null,
    );
    if (eligible.length === 0) {
      const reasons = Object.values(view.members)
        .filter((m) => m.name !== leader)
        .map((m) => candidateRefusal(m, view, kind))
        .filter((r): r is string => r !== null);
      return refuse(
        412,
        `${kind} is not possible: no member other than the leader is a healthy replica that may be promoted` +
          (syncMembers !== null ? ' and is a synchronous standby' : '') +
          (reasons.length > 0 ? ` (${reasons.join('; ')})` : ''),
      );
    }
  }
  const intent: FailoverIntent = { kind, from: leader, to, at, requestedAt: now };
  const target = to === null ? 'the best replica' : `"${to}"`;
  if (at !== null) {
    return { ok: true, status: 202, intent, message: `${Kind} from "${leader}" to ${target} scheduled at ${new Date(at).toISOString()}` };
  }
  return {
    ok: true,
    status: 200,
    intent,
    message: `${Kind} ${leader !== null ? `from "${leader}" ` : ''}to ${target} requested; the agents carry it out within seconds (watch GET /cluster)`,
  };
}

export type SimplePlan = { ok: true; status: 202; message: string } | Refusal;

/**
 * POST /restart body: optional {restart_pending: true} (restart only when a parameter change needs it) and
 * {role: "primary"|"replica"} (only when this member has that role). Patroni's scheduling options are refused
 * rather than ignored, so nobody gets an immediate restart they meant for later.
 */
export function planRestart(body: unknown, status: MemberStatus | null): SimplePlan {
  const request = body === undefined || body === null || body === '' ? {} : body;
  if (!isRecord(request)) return refuse(400, 'the body must be empty or a JSON object like {"restart_pending": true}');
  for (const key of Object.keys(request)) {
    if (key === 'schedule' || key === 'timeout' || key === 'postgres_version') {
      return refuse(400, `"${key}" is not supported by pgwarden's restart: leave it out (restarts run in the agent's next cycle)`);
    }
    if (key !== 'restart_pending' && key !== 'role') {
      return refuse(400, `unknown restart option "${key}": accepted options are restart_pending and role`);
    }
  }
  if (!status) return refuse(503, 'this agent has not completed its first cycle yet: retry in a few seconds');
  if (request.restart_pending === true && !status.pendingRestart) {
    return refuse(503, 'restart conditions are not satisfied: no restart is pending on this member');
  }
  if (request.role !== undefined) {
    const role = request.role === 'master' ? 'primary' : request.role;
    if (role !== 'primary' && role !== 'replica') return refuse(400, 'role must be "primary" or "replica"');
    if (role !== status.role) {
      return refuse(503, `restart conditions are not satisfied: this member is ${status.role}, not ${role}`);
    }
  }
  return { ok: true, status: 202, message: 'restart requested: the agent restarts PostgreSQL in its next cycle' };
}

/** POST /reinitialize: never on the leader (it would wipe the only writable copy). */
export function planReinitialize(memberName: string, view: ClusterView | null): SimplePlan {
  if (!view) return refuse(503, 'this agent has not read the cluster from etcd yet: retry in a few seconds');
  if (view.leader?.name === memberName) {
    return refuse(503, 'this member is the leader and cannot be reinitialized: switch over first, then reinitialize it');
  }
  if (view.leader === null) {
    return refuse(503, 'there is no leader to clone from: wait for a leader, then retry');
  }
  return { ok: true, status: 202, message: `reinitialize requested: the agent clones again from "${view.leader.name}" in its next cycle` };
}
