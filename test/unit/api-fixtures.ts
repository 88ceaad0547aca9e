/** Member statuses and cluster views for the REST API tests (unit and integration). */
import { DEFAULT_DYNAMIC_CONFIG } from '../../src/cluster/dynamic-config.js';
import { type ClusterView, DEFAULT_TAGS, type MemberStatus } from '../../src/cluster/types.js';
import type { HealthInputs } from '../../src/api/health.js';

export const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
export const MB = 1024 * 1024;

export function member(name: string, role: MemberStatus['role'], o: Partial<MemberStatus> = {}): MemberStatus {
  const index = name.charCodeAt(0) - 'a'.charCodeAt(0);
  return {
    name,
    role,
    state: role === 'primary' ? 'running' : 'streaming',
    apiUrl: `http://127.0.0.1:${8008 + index}`,
    host: '127.0.0.1',
    port: 5432 + index,
    timeline: 3,
    walPosition: 50 * MB,
    receiveLsn: role === 'primary' ? null : 50 * MB,
    replayLsn: role === 'primary' ? null : 50 * MB,
    lagBytes: role === 'primary' ? null : 0,
    following: role === 'primary' ? null : 'a',
    tags: { ...DEFAULT_TAGS },
    paused: false,
    pendingRestart: false,
    reason: `${name} is doing fine`,
    updatedAt: NOW - 500,
    version: '0.1.0',
    systemId: '7300000000000000001',
    ...o,
  };
}

/** A view holding `members`; the leader is the first primary unless `leader` is given. */
export function viewOf(members: MemberStatus[], o: Partial<ClusterView> = {}): ClusterView {
  const primary = members.find((m) => m.role === 'primary');
  return {
    initialize: '7300000000000000001',
    config: structuredClone(DEFAULT_DYNAMIC_CONFIG),
    leader: primary ? { name: primary.name } : null,
    members: Object.fromEntries(members.map((m) => [m.name, m])),
    sync: null,
    failover: null,
    optime: 50 * MB,
    history: [],
    drain: null,
    proxies: [],
    shutdown: null,
    ...o,
  };
}

/** Health inputs for member `name` of `view` (its status taken from the view unless given). */
export function inputsFor(name: string, view: ClusterView | null, o: Partial<HealthInputs> = {}): HealthInputs {
  return {
    memberName: name,
    status: view?.members[name] ?? null,
    view,
    pgRunning: true,
    now: NOW,
    startedAt: NOW - 60_000,
    ...o,
  };
}
