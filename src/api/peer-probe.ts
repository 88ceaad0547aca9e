import { apiRequest } from './client.js';
import type { ApiClientTls } from '../config/api-tls.js';
import type { ClusterView, MemberStatus, Tags } from '../cluster/types.js';
import type { PeerProbe } from '../ha/types.js';
import { isRunningState } from '../cluster/predicates.js';

/**
 * Asks every other member's REST API for its current state, in parallel, each bounded by `timeoutMs`.
 * Used only when an election may happen, so that replicas compare live WAL positions rather than the
 * member keys published up to one loop ago.
 */
export async function probePeers(
  view: ClusterView,
  me: string,
  timeoutMs: number,
  tls: ApiClientTls | null = null,
): Promise<Record<string, PeerProbe>> {
  const others = Object.values(view.members).filter((m) => m.name !== me);
  const results = await Promise.all(others.map((m) => probeOne(m, timeoutMs, tls)));
  const out: Record<string, PeerProbe> = {};
  others.forEach((m, i) => (out[m.name] = results[i]!));
  return out;
}

const UNREACHABLE: PeerProbe = { reachable: false, walPosition: null, healthy: false, role: null, tags: null };

async function probeOne(member: MemberStatus, timeoutMs: number, tls: ApiClientTls | null): Promise<PeerProbe> {
  try {
    const res = await apiRequest(`${member.apiUrl}/patroni`, { timeoutMs, tls });
    const body = JSON.parse(res.text) as Record<string, unknown>;
    return parsePeerStatus(body);
  } catch {
    return UNREACHABLE;
  }
}

/** Reads the fields an election needs from a `/patroni` answer; anything malformed makes the peer count as unhealthy. */
export function parsePeerStatus(body: Record<string, unknown>): PeerProbe {
  const member = (body.member ?? body) as Partial<MemberStatus>;
  const wal = typeof member.walPosition === 'number' ? member.walPosition : null;
  const role = member.role === 'primary' || member.role === 'replica' ? member.role : null;
  const healthy = isRunningState(member.state);
  const tags = member.tags && typeof member.tags === 'object' ? (member.tags as Tags) : null;
  return { reachable: true, walPosition: wal, healthy, role, tags };
}
