/**
 * What the CLI prints, as pure functions of the cluster view: tables for people, JSON for scripts, config diffs.
 */
import YAML from 'yaml';
import type { ProxyRegistration } from '../dcs/codec.js';
import type { ClusterView, FailoverIntent, HistoryEntry, MemberStatus } from '../cluster/types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';
import { formatLsn } from '../postgres/lsn.js';

const MB = 1024 * 1024;
/** Longer reasons are cut in the table (the JSON output carries them whole). */
const MAX_REASON = 100;

/** A bordered text table (the style of patronictl's), every cell left-aligned except right-aligned columns. */
export function renderTable(headers: string[], rows: string[][], options: { alignRight?: number[] } = {}): string {
  const right = new Set(options.alignRight ?? []);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const row = (cells: string[], isHeader: boolean) =>
    `|${widths
      .map((w, i) => {
        const cell = cells[i] ?? '';
        return ` ${!isHeader && right.has(i) ? cell.padStart(w) : cell.padEnd(w)} `;
      })
      .join('|')}|`;
  return [line, row(headers, true), line, ...rows.map((r) => row(r, false)), line].join('\n');
}

/** Replication lag in MB with one decimal ("0.0", "12.5"); '' for no lag to show, 'unknown' when not known. */
export function formatLagMb(bytes: number | null, role: MemberStatus['role']): string {
  if (role === 'primary') return '';
  if (bytes === null) return 'unknown';
  return (Math.max(0, bytes) / MB).toFixed(1);
}

/** ISO time to the second, in UTC ("2026-11-21 10:00:00Z"). */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function sortedMembers(view: ClusterView): MemberStatus[] {
  return Object.values(view.members).sort((a, b) => a.name.localeCompare(b.name));
}

/** The role as `list` shows it: who holds the leader key, and which replicas may take over in sync mode. */
export function displayRole(member: MemberStatus, view: ClusterView): string {
  const leader = view.leader?.name ?? null;
  if (member.role === 'primary') return leader === member.name ? 'primary' : 'primary (no leader key)';
  if (leader === member.name) return `${member.role} (leader key)`;
  if (member.role === 'replica' && view.config.synchronous_mode && view.sync?.members.includes(member.name)) {
    return 'sync replica';
  }
  return member.role;
}

export interface ListMemberJson {
  name: string;
  role: 'primary' | 'replica';
  state: MemberStatus['state'];
  host: string;
  port: number;
  api_url: string;
  timeline: number | null;
  lag_bytes: number | null;
  reason: string;
  /** The member's last re-clone (its data replaced by a fresh copy) and why; null when it never had one. */
  reclone: { time: string; reason: string } | null;
}

export interface ListProxyJson {
  id: string;
  rw: string;
  ro: string | null;
  updated_at: number;
  /** Members whose PostgreSQL the proxy cannot reach, sorted. */
  unreachable: string[];
  /** The admin console as a libpq URL (database pgbouncer on the rw listener). */
  admin: string;
  /** The Prometheus endpoint, or null when the proxy has none (or is too old to say). */
  metrics: string | null;
}

/** What a proxy published; one too old to publish its console had it on its rw listener all the same. */
function proxyOperations(p: ProxyRegistration): { admin: string; metrics: string | null } {
  return { admin: p.admin ?? `postgresql://${p.rw}/pgbouncer`, metrics: p.metrics ?? null };
}

export interface ListJson {
  cluster: string;
  members: ListMemberJson[];
  /** Live proxies (`proxies/<id>` in etcd). */
  proxies: ListProxyJson[];
}

/** `pgwarden list --format json`: a stable shape for scripts. */
export function listJson(cluster: string, view: ClusterView, proxies: readonly ProxyRegistration[] = []): ListJson {
  return {
    cluster,
    members: sortedMembers(view).map((m) => ({
      name: m.name,
      role: m.role === 'primary' ? 'primary' : 'replica',
      state: m.state,
      host: m.host,
      port: m.port,
      api_url: m.apiUrl,
      timeline: m.timeline,
      lag_bytes: m.role === 'primary' ? 0 : m.lagBytes,
      reason: m.reason,
      reclone: m.reclone ? { time: new Date(m.reclone.at).toISOString(), reason: m.reclone.reason } : null,
    })),
    proxies: proxies.map((p) => ({
      id: p.id,
      rw: p.rw,
      ro: p.ro,
      updated_at: p.updatedAt,
      unreachable: Object.keys(p.unreachable ?? {}).sort(),
      ...proxyOperations(p),
    })),
  };
}

export function describeIntent(intent: FailoverIntent): string {
  const target = intent.to ?? 'the best replica';
  const from = intent.from ? ` from ${intent.from}` : '';
  const when = intent.at !== null ? ` scheduled at ${formatTime(intent.at)}` : ` requested at ${formatTime(intent.requestedAt)}`;
  return `${intent.kind}${from} to ${target}${when}`;
}

/** `pgwarden list`: the cluster line, the members table and notes on pause and pending requests. */
export function renderList(cluster: string, view: ClusterView, source: string, proxies: readonly ProxyRegistration[] = []): string {
  const system = view.initialize ? `system ${view.initialize}` : view.initialize === '' ? 'bootstrapping' : 'not bootstrapped';
  const out = [`Cluster: ${cluster} (${system}, ${source})`];
  const members = sortedMembers(view);
  if (members.length === 0) {
    out.push('No member is registered: are the agents running?');
  } else {
    const rows = members.map((m) => [
      m.name,
      `${m.host}:${m.port}`,
      displayRole(m, view),
      m.state,
      m.timeline === null ? '' : String(m.timeline),
      formatLagMb(m.lagBytes, m.role),
      truncate(m.reason, MAX_REASON),
    ]);
    out.push(renderTable(['Member', 'Host', 'Role', 'State', 'TL', 'Lag in MB', 'Last reason'], rows, { alignRight: [4, 5] }));
  }
  // A re-clone copies the whole data directory and hides a rewind that failed: it stays in view with its reason.
  for (const m of members) {
    if (m.reclone) out.push(`Re-cloned: ${m.name} at ${formatTime(m.reclone.at)}: ${truncate(m.reclone.reason, MAX_REASON * 3)}`);
  }
  if (view.leader === null && members.length > 0) out.push('No member holds the leader key: the cluster has no primary.');
  if (view.config.pause) out.push('Maintenance mode: on (agents take no automatic action; `pgwarden resume` ends it)');
  if (view.failover) out.push(`Pending: ${describeIntent(view.failover)}`);
  if (proxies.length > 0) {
    out.push(
      renderTable(
        ['Proxy', 'rw (primary)', 'ro (replicas)', 'Admin console', 'Metrics', 'cannot reach'],
        proxies.map((p) => {
          const { admin, metrics } = proxyOperations(p);
          return [p.id, p.rw, p.ro ?? '-', admin, metrics ?? '-', Object.keys(p.unreachable ?? {}).sort().join(', ') || '-'];
        }),
      ),
    );
  }
  return out.join('\n');
}

/** `pgwarden history`. */
export function renderHistory(history: HistoryEntry[]): string {
  if (history.length === 0) return 'No timeline switch yet: the cluster has run on its first timeline since it was created.';
  const rows = history.map((h) => [String(h.timeline), formatLsn(h.lsn), formatTime(h.at), h.reason, h.leader]);
  return renderTable(['TL', 'LSN', 'Time', 'Reason', 'New leader'], rows, { alignRight: [0] });
}

export interface HistoryJson {
  timeline: number;
  lsn: string;
  time: string;
  reason: string;
  leader: string;
}

export function historyJson(history: HistoryEntry[]): HistoryJson[] {
  return history.map((h) => ({ timeline: h.timeline, lsn: formatLsn(h.lsn), time: new Date(h.at).toISOString(), reason: h.reason, leader: h.leader }));
}

/** The dynamic configuration as YAML (what `show-config` prints). */
export function renderConfig(config: DynamicConfig): string {
  return YAML.stringify(config).trimEnd();
}

function flatten(value: unknown, prefix: string, out: Map<string, string>): void {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    // An empty mapping holds no setting, so it has no line of its own.
    for (const [key, child] of Object.entries(value)) flatten(child, prefix === '' ? key : `${prefix}.${key}`, out);
    return;
  }
  out.set(prefix, JSON.stringify(value));
}

/**
 * What changes between two configurations, one line per setting: "-key: old" then "+key: new" (dotted keys
 * for nested settings). Empty when nothing changes.
 */
export function configDiff(before: DynamicConfig, after: DynamicConfig): string[] {
  const a = new Map<string, string>();
  const b = new Map<string, string>();
  flatten(before, '', a);
  flatten(after, '', b);
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  const lines: string[] = [];
  for (const key of keys) {
    const old = a.get(key);
    const next = b.get(key);
    if (old === next) continue;
    if (old !== undefined) lines.push(`-${key}: ${old}`);
    if (next !== undefined) lines.push(`+${key}: ${next}`);
  }
  return lines;
}
