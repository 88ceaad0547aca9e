/**
 * The health endpoints' rules (Patroni semantics), as pure functions of what the agent last saw. No I/O, no clock:
 * `now` is passed in. The HTTP layer (server.ts) only maps paths to these and writes the code.
 */
import { DEFAULT_DYNAMIC_CONFIG } from '../cluster/dynamic-config.js';
import type { ClusterView, MemberStatus } from '../cluster/types.js';
import { isRunningState } from '../cluster/predicates.js';

export type HealthCheckName =
  | 'primary'
  | 'leader'
  | 'standby-leader'
  | 'replica'
  | 'read-only'
  | 'read-only-sync'
  | 'synchronous'
  | 'asynchronous'
  | 'health'
  | 'liveness'
  | 'readiness';

/** Every health path Patroni answers that pgwarden answers too, with the check behind it. */
export const HEALTH_ROUTES: Readonly<Record<string, HealthCheckName>> = {
  '/': 'primary',
  '/primary': 'primary',
  '/master': 'primary',
  '/read-write': 'primary',
  '/leader': 'leader',
  '/standby-leader': 'standby-leader',
  '/standby_leader': 'standby-leader',
  '/replica': 'replica',
  '/read-only': 'read-only',
  '/read-only-sync': 'read-only-sync',
  '/read-only-synchronous': 'read-only-sync',
  '/synchronous': 'synchronous',
  '/sync': 'synchronous',
  '/asynchronous': 'asynchronous',
  '/async': 'asynchronous',
  '/health': 'health',
  '/liveness': 'liveness',
  '/readiness': 'readiness',
};

export interface HealthInputs {
  memberName: string;
  status: MemberStatus | null;
  view: ClusterView | null;
  pgRunning: boolean;
  /** Wall-clock ms of the request. */
  now: number;
  /** Wall-clock ms the agent started: liveness counts from here until the first status is published. */
  startedAt: number;
}

/** Query parameters, first value of each. */
export type HealthQuery = Readonly<Record<string, string | undefined>>;

export interface HealthResult {
  code: 200 | 503;
  /** Why, in a few words (sent in a header, logged at debug). */
  reason: string;
}

const ok = (reason: string): HealthResult => ({ code: 200, reason });
const fail = (reason: string): HealthResult => ({ code: 503, reason });

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1024,
  mb: 1024 ** 2,
  gb: 1024 ** 3,
  tb: 1024 ** 4,
};

/**
 * A size as Patroni and PostgreSQL write it: bytes ("1048576") or a number with a 1024-based unit ("16kB", "10MB",
 * "1GB", "1TB"; case-insensitive, fractions allowed). Null when it is not a size.
 */
export function parseSize(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) return null;
  const multiplier = match[2] === '' ? 1 : SIZE_UNITS[match[2].toLowerCase()];
  if (multiplier === undefined) return null;
  return Math.round(Number(match[1]) * multiplier);
}

function ttlMs(view: ClusterView | null): number {
  return (view?.config.ttl ?? DEFAULT_DYNAMIC_CONFIG.ttl) * 1000;
}

/**
 * This member holds the leader key as of the last view, and that view is recent: the agent publishes its status
 * every cycle, so a status older than ttl means the loop stalled and the lease may have expired since. Failing
 * closed here keeps load balancers from sending writes to a primary that may no longer hold the key.
 */
export function holdsLeader(inputs: HealthInputs): boolean {
  const { status, view } = inputs;
  if (!status || !view || view.leader?.name !== inputs.memberName) return false;
  return inputs.now - status.updatedAt <= ttlMs(view);
}

function primaryCheck(inputs: HealthInputs): HealthResult {
  const { status } = inputs;
  if (!status) return fail('no status published yet');
  if (!holdsLeader(inputs)) return fail('does not hold the leader key');
  if (status.role !== 'primary') return fail(`holds the leader key but runs as ${status.role}`);
  if (!inputs.pgRunning || !isRunningState(status.state)) return fail(`PostgreSQL is ${inputs.pgRunning ? status.state : 'not running'}`);
  return ok('primary holding the leader key');
}

/** Bytes this member is behind: its own published figure, else the leader's last optime minus its replay LSN. */
export function replicaLag(status: MemberStatus, view: ClusterView | null): number | null {
  if (status.lagBytes !== null) return status.lagBytes;
  const replayed = status.replayLsn ?? status.walPosition;
  if (view?.optime != null && replayed !== null) return Math.max(0, view.optime - replayed);
  return null;
}

function lagWithin(status: MemberStatus, view: ClusterView | null, limitText: string | undefined, fallback: number | null): HealthResult | null {
  let limit = fallback;
  if (limitText !== undefined) {
    limit = parseSize(limitText);
    // A load balancer cannot see a 400; refusing is the safe reading of a limit we do not understand.
    if (limit === null) return fail(`lag=${limitText} is not a size (write bytes, or units like 16kB, 10MB, 1GB)`);
  }
  if (limit === null) return null;
  const lag = replicaLag(status, view);
  if (lag === null) return fail('replication lag is unknown');
  if (lag > limit) return fail(`replication lag ${lag} bytes exceeds ${limit}`);
  return null;
}

function replicaCheck(inputs: HealthInputs, query: HealthQuery): HealthResult {
  const { status } = inputs;
  if (!status) return fail('no status published yet');
  if (status.role !== 'replica') return fail(`runs as ${status.role}, not replica`);
  if (!inputs.pgRunning || !isRunningState(status.state)) return fail(`PostgreSQL is ${inputs.pgRunning ? status.state : 'not running'}`);
  if (status.tags.noloadbalance) return fail('the noloadbalance tag is set');
  const wantedState = query.replication_state;
  if (wantedState !== undefined && wantedState !== status.state) {
    return fail(`replication state is ${status.state}, not ${wantedState}`);
  }
  return lagWithin(status, inputs.view, query.lag, null) ?? ok('running replica');
}

function inSync(inputs: HealthInputs): boolean {
  const { view } = inputs;
  // A sync key written by a former leader promises nothing about the current one.
  return !!view?.sync && view.sync.leader === view.leader?.name && view.sync.members.includes(inputs.memberName);
}

/** `?tag_<key>=<value>` filters: each must equal the member's tag (booleans as "true"/"false"). */
function tagFilter(status: MemberStatus | null, query: HealthQuery): HealthResult | null {
  for (const [param, wanted] of Object.entries(query)) {
    if (!param.startsWith('tag_') || wanted === undefined) continue;
    const key = param.slice('tag_'.length);
    const value = status ? (status.tags as unknown as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) return fail(`the member has no tag ${key}`);
    const text = typeof value === 'string' ? value : String(value).toLowerCase();
    if (text !== wanted) return fail(`tag ${key} is ${text}, not ${wanted}`);
  }
  return null;
}

function livenessCheck(inputs: HealthInputs): HealthResult {
  const { status, view } = inputs;
  if (view?.config.pause || status?.paused) return ok('paused: the loop is not expected to act');
  // Patroni's tolerance: a primary's probe fails after one ttl (its lease is gone by then), a replica's after two.
  const isPrimary = status?.role === 'primary' && inputs.pgRunning;
  const limit = ttlMs(view) * (isPrimary ? 1 : 2);
  const last = status?.updatedAt ?? inputs.startedAt;
  const age = inputs.now - last;
  return age <= limit ? ok('the loop ran recently') : fail(`the loop last ran ${Math.round(age)} ms ago (limit ${limit} ms)`);
}

function readinessCheck(inputs: HealthInputs, query: HealthQuery): HealthResult {
  const { status, view } = inputs;
  if (!status) return fail('no status published yet');
  if (holdsLeader(inputs) && status.role === 'primary') return ok('leader');
  if (!inputs.pgRunning) return fail('PostgreSQL is not running');
  if (status.role !== 'replica') return fail(`runs as ${status.role} without the leader key`);
  if (status.state !== 'streaming') return fail(`replication state is ${status.state}, not streaming`);
  const fallback = view?.config.maximum_lag_on_failover ?? DEFAULT_DYNAMIC_CONFIG.maximum_lag_on_failover;
  return lagWithin(status, view, query.lag, fallback) ?? ok('streaming replica');
}

/** The status code (and why) of one health check. */
export function evaluateHealth(check: HealthCheckName, inputs: HealthInputs, query: HealthQuery = {}): HealthResult {
  let result: HealthResult;
  switch (check) {
    case 'primary':
      return primaryCheck(inputs);
    case 'leader':
      return holdsLeader(inputs) ? ok('holds the leader key') : fail('does not hold the leader key');
    case 'standby-leader':
      return fail('pgwarden runs no standby clusters');
    case 'liveness':
      return livenessCheck(inputs);
    case 'readiness':
      return readinessCheck(inputs, query);
    case 'replica':
      result = replicaCheck(inputs, query);
      break;
    case 'read-only': {
      const primary = primaryCheck(inputs);
      result = primary.code === 200 ? primary : replicaCheck(inputs, query);
      break;
    }
    case 'read-only-sync': {
      const primary = primaryCheck(inputs);
      if (primary.code === 200) result = primary;
      else result = inSync(inputs) ? replicaCheck(inputs, query) : fail('not a synchronous standby');
      break;
    }
    case 'synchronous':
      if (!inputs.view) result = fail('the cluster view was never read');
      else result = inSync(inputs) ? replicaCheck(inputs, query) : fail('not a synchronous standby');
      break;
    case 'asynchronous':
      if (!inputs.view) result = fail('the cluster view was never read');
      else result = inSync(inputs) ? fail('is a synchronous standby') : replicaCheck(inputs, query);
      break;
    case 'health':
      result = inputs.pgRunning ? ok('PostgreSQL is running') : fail('PostgreSQL is not running');
      break;
  }
  if (result.code === 200) return tagFilter(inputs.status, query) ?? result;
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Response bodies (Patroni's field names where Patroni has the field)
// ---------------------------------------------------------------------------------------------------------

/** GET /patroni and the GET health endpoints' body. */
export interface MemberStatusBody {
  state: string;
  role: string;
  timeline: number | null;
  xlog:
    | { location: number | null }
    | { received_location: number | null; replayed_location: number | null; replayed_timestamp: null; paused: boolean };
  replication_state?: 'streaming';
  cluster_unlocked?: boolean;
  sync_standby?: boolean;
  pending_restart: boolean;
  pause: boolean;
  database_system_identifier: string | null;
  tags: MemberStatus['tags'];
  patroni: { version: string; scope: string; name: string };
  // pgwarden's own fields
  name: string;
  api_url: string;
  host: string;
  port: number;
  wal_position: number | null;
  lag: number | null;
  following: string | null;
  reason: string;
  updated_at: number;
  /** The member key's value as published (what peers read during an election, see src/ha/peers.ts). */
  member: MemberStatus;
}

export function memberStatusBody(inputs: HealthInputs, scope: string): MemberStatusBody | null {
  const { status, view } = inputs;
  if (!status) return null;
  const body: MemberStatusBody = {
    // Patroni reports PostgreSQL's state ("running") and the replication state apart.
    state: status.state === 'streaming' ? 'running' : status.state,
    role: status.role,
    timeline: status.timeline,
    xlog:
      status.role === 'primary'
        ? { location: status.walPosition }
        : { received_location: status.receiveLsn, replayed_location: status.replayLsn, replayed_timestamp: null, paused: false },
    pending_restart: status.pendingRestart,
    pause: (view?.config.pause ?? false) || status.paused,
    database_system_identifier: status.systemId,
    tags: status.tags,
    patroni: { version: status.version, scope, name: status.name },
    name: status.name,
    api_url: status.apiUrl,
    host: status.host,
    port: status.port,
    wal_position: status.walPosition,
    lag: status.role === 'replica' ? replicaLag(status, view) : null,
    following: status.following,
    reason: status.reason,
    updated_at: status.updatedAt,
    member: status,
  };
  if (status.state === 'streaming') body.replication_state = 'streaming';
  if (view) body.cluster_unlocked = view.leader === null;
  if (inSync(inputs)) body.sync_standby = true;
  return body;
}

export interface ClusterMemberBody {
  name: string;
  /** Patroni's role names: leader, sync_standby, replica. */
  role: 'leader' | 'sync_standby' | 'replica';
  /** pgwarden's role as the member published it. */
  member_role: MemberStatus['role'];
  state: string;
  host: string;
  port: number;
  api_url: string;
  timeline: number | null;
  lag?: number | 'unknown';
  tags: MemberStatus['tags'];
  pending_restart?: boolean;
  reason: string;
}

export interface ClusterBody {
  members: ClusterMemberBody[];
  scope: string;
  pause: boolean;
  scheduled_switchover?: { at: string; from: string | null; to: string | null };
}

export function clusterBody(view: ClusterView, scope: string): ClusterBody {
  const leader = view.leader?.name ?? null;
  const syncMembers = view.sync && view.sync.leader === leader ? view.sync.members : [];
  const members = Object.values(view.members)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m): ClusterMemberBody => {
      const role = m.name === leader ? 'leader' : syncMembers.includes(m.name) ? 'sync_standby' : 'replica';
      const entry: ClusterMemberBody = {
        name: m.name,
        role,
        member_role: m.role,
        state: m.state,
        host: m.host,
        port: m.port,
        // Patroni clients (patronictl) take scheme and host from this and append their own path.
        api_url: `${m.apiUrl.replace(/\/+$/, '')}/patroni`,
        timeline: m.timeline,
        tags: m.tags,
        reason: m.reason,
      };
      if (role !== 'leader') entry.lag = replicaLag(m, view) ?? 'unknown';
      if (m.pendingRestart) entry.pending_restart = true;
      return entry;
    });
  const body: ClusterBody = { members, scope, pause: view.config.pause };
  if (view.failover?.at != null) {
    body.scheduled_switchover = { at: new Date(view.failover.at).toISOString(), from: view.failover.from, to: view.failover.to };
  }
  return body;
}

/** Patroni's /history rows: [timeline, lsn, reason, timestamp, new leader]. */
export function historyBody(view: ClusterView): Array<[number, number, string, string, string]> {
  return view.history.map((h) => [h.timeline, h.lsn, h.reason, new Date(h.at).toISOString(), h.leader]);
}
