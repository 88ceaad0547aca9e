/**
 * Pure translation between the raw values stored under `/pgwarden/<cluster>/` and the shapes of
 * src/cluster/types.ts. Decoding never throws: etcd is shared with operators (`etcdctl put`), other pgwarden
 * versions and bugs, so a garbled value degrades to "absent" (or to defaults for `config`) instead of
 * stopping the HA loop that depends on reading the view every cycle.
 */
import { z } from 'zod';
import { DEFAULT_DYNAMIC_CONFIG, DYNAMIC_CONFIG_FIELDS, dynamicConfigSchema, type DynamicConfig } from '../cluster/dynamic-config.js';
import { pgParametersSchema } from '../cluster/pg-parameters.js';
import { type CleanShutdown, type ClusterView, DEFAULT_TAGS, type DrainRequest, type FailoverIntent, type HistoryEntry, type Lsn, type MemberStatus, type SyncState } from '../cluster/types.js';
import { KEYS } from '../cluster/keys.js';

/** Raw values keyed by their path relative to the cluster prefix (`leader`, `members/a`, ...). */
export type RawCluster = Readonly<Record<string, string>>;

const lsn = z.number().finite().nonnegative();
const nullableLsn = lsn.nullable().catch(null);

const MEMBER_ROLES = ['primary', 'replica', 'uninitialized'] as const;
const MEMBER_STATES = [
  'running',
  'streaming',
  'starting',
  'stopped',
  'stopping',
  'crashed',
  'bootstrapping',
  'cloning',
  'rewinding',
  'promoting',
  'demoting',
  'restarting',
  'start failed',
] as const;

const tagsSchema = z.object({
  nofailover: z.boolean().catch(DEFAULT_TAGS.nofailover),
  noloadbalance: z.boolean().catch(DEFAULT_TAGS.noloadbalance),
  nosync: z.boolean().catch(DEFAULT_TAGS.nosync),
  failover_priority: z.number().finite().catch(DEFAULT_TAGS.failover_priority),
});

/**
 * Identity and reachability fields are required (a member without them cannot be used for anything);
 * the descriptive rest falls back to "unknown" so that a member written by an older or newer pgwarden
 * still counts as present.
 */
const memberSchema = z.object({
  name: z.string().min(1),
  role: z.enum(MEMBER_ROLES),
  state: z.enum(MEMBER_STATES),
  apiUrl: z.string(),
  host: z.string(),
  port: z.number().int().min(0).max(65535),
  timeline: z.number().int().positive().nullable().catch(null),
  walPosition: nullableLsn,
  receiveLsn: nullableLsn,
  replayLsn: nullableLsn,
  lagBytes: z.number().finite().nullable().catch(null),
  following: z.string().nullable().catch(null),
  tags: tagsSchema.catch(() => ({ ...DEFAULT_TAGS })),
  paused: z.boolean().catch(false),
  pendingRestart: z.boolean().catch(false),
  reason: z.string().catch(''),
  updatedAt: z.number().finite().catch(0),
  version: z.string().catch(''),
  systemId: z.string().nullable().catch(null),
  // Optional: a member written by an older pgwarden has none, and decodes as it was written.
  reclone: z.object({ at: z.number().finite(), reason: z.string() }).nullable().optional().catch(undefined),
});

const syncSchema = z.object({
  leader: z.string().min(1),
  members: z.array(z.string().min(1)),
});

const failoverSchema = z.object({
  kind: z.enum(['switchover', 'failover']),
  from: z.string().min(1).nullable().catch(null),
  to: z.string().min(1).nullable().catch(null),
  at: z.number().finite().nullable().catch(null),
  requestedAt: z.number().finite(),
});

const historyEntrySchema = z.object({
  timeline: z.number().int().positive(),
  lsn,
  at: z.number().finite(),
  reason: z.string().catch(''),
  leader: z.string(),
  parent: z.number().int().positive().optional().catch(undefined),
});

function parseJson(raw: string | undefined): unknown {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function defaultDynamicConfig(): DynamicConfig {
  return structuredClone(DEFAULT_DYNAMIC_CONFIG);
}

/**
 * The stored config over the defaults, field by field with the rules of src/cluster/dynamic-config.ts: a field (or
 * one PostgreSQL parameter) that fails its rule keeps its default alone, unknown fields are ignored, and the
 * cross-field timing rules are not applied (an operator's `etcdctl put` is taken as far as each field allows).
 */
export function decodeConfig(raw: string | undefined): DynamicConfig {
  const config = defaultDynamicConfig();
  const parsed = parseJson(raw);
  if (!isPlainObject(parsed)) return config;
  const fields = config as unknown as Record<string, unknown>;
  for (const field of DYNAMIC_CONFIG_FIELDS) {
    if (field === 'postgresql' || parsed[field] === undefined) continue;
    const result = dynamicConfigSchema.shape[field].safeParse(parsed[field]);
    if (result.success) fields[field] = result.data;
  }
  const postgresql = parsed.postgresql;
  if (isPlainObject(postgresql) && isPlainObject(postgresql.parameters)) {
    for (const [name, value] of Object.entries(postgresql.parameters)) {
      const result = pgParametersSchema.safeParse({ [name]: value });
      if (result.success) config.postgresql.parameters[name] = value as string | number | boolean;
    }
  }
  return config;
}

export function decodeMember(raw: string | undefined): MemberStatus | null {
  const result = memberSchema.safeParse(parseJson(raw));
  return result.success ? (result.data as MemberStatus) : null;
}

export function decodeSync(raw: string | undefined): SyncState | null {
  const result = syncSchema.safeParse(parseJson(raw));
  return result.success ? result.data : null;
}

export function decodeFailover(raw: string | undefined): FailoverIntent | null {
  const result = failoverSchema.safeParse(parseJson(raw));
  return result.success ? result.data : null;
}

/** A garbled entry is dropped alone; a value that is not an array at all reads as no history. */
export function decodeHistory(raw: string | undefined): HistoryEntry[] {
  const parsed = parseJson(raw);
  if (!Array.isArray(parsed)) return [];
  const entries: HistoryEntry[] = [];
  for (const item of parsed) {
    const result = historyEntrySchema.safeParse(item);
    if (result.success) entries.push(result.data);
  }
  return entries;
}

export function decodeOptime(raw: string | undefined): Lsn | null {
  if (raw === undefined || raw.trim() === '') return null;
  const value = Number(raw);
  return Number.isFinite(value) && value >= 0 ? value : null;
}

/** `leader` holds the bare member name so `etcdctl get` reads naturally; anything else counts as absent. */
export function decodeLeader(raw: string | undefined): { name: string } | null {
  if (raw === undefined) return null;
  const name = raw.trim();
  return name === '' ? null : { name };
}

export function decodeInitialize(raw: string | undefined): string | null {
  return raw === undefined ? null : raw.trim();
}

export function decodeCluster(raw: RawCluster): ClusterView {
  const members: Record<string, MemberStatus> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!key.startsWith(KEYS.members)) continue;
    const name = key.slice(KEYS.members.length);
    if (name === '' || name.includes('/')) continue;
    const member = decodeMember(value);
    // The key is authoritative: a body naming someone else would let one agent impersonate another.
    if (member !== null && member.name === name) members[name] = member;
  }
  const get = (key: string): string | undefined => (Object.hasOwn(raw, key) ? raw[key] : undefined);
  return {
    initialize: decodeInitialize(get(KEYS.initialize)),
    config: decodeConfig(get(KEYS.config)),
    leader: decodeLeader(get(KEYS.leader)),
    members,
    sync: decodeSync(get(KEYS.sync)),
    failover: decodeFailover(get(KEYS.failover)),
    optime: decodeOptime(get(KEYS.optime)),
    history: decodeHistory(get(KEYS.history)),
    drain: decodeDrain(get(KEYS.drain)),
    proxies: decodeProxies(raw).map((p) => ({ id: p.id, drained: p.drained ?? null, unreachable: p.unreachable ?? {} })),
    shutdown: decodeShutdown(get(KEYS.shutdown)),
  };
}

const shutdownSchema = z.object({
  leader: z.string().min(1),
  // formatLsn() takes whole byte offsets only.
  checkpoint: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  timeline: z.number().int().positive(),
  at: z.number().finite().catch(0),
});

export function encodeShutdown(shutdown: CleanShutdown): string {
  return JSON.stringify(shutdown);
}

/** A malformed record counts as absent: replicas then elect without waiting for the former primary. */
export function decodeShutdown(raw: string | undefined): CleanShutdown | null {
  const result = shutdownSchema.safeParse(parseJson(raw));
  return result.success ? result.data : null;
}

const drainSchema = z.object({
  id: z.string().min(1),
  from: z.string().min(1),
  to: z.string().nullable().catch(null),
  requestedAt: z.number().finite(),
  timeoutMs: z.number().finite().nonnegative(),
});

export function encodeDrain(drain: DrainRequest): string {
  return JSON.stringify(drain);
}

/** A malformed drain request counts as absent: nobody waits on it and the leader clears it. */
export function decodeDrain(raw: string | undefined): DrainRequest | null {
  const result = drainSchema.safeParse(parseJson(raw));
  return result.success ? result.data : null;
}

export function encodeMember(status: MemberStatus): string {
  return JSON.stringify(status);
}

export function encodeLeader(name: string): string {
  return name;
}

export function encodeInitialize(systemId: string): string {
  return systemId;
}

export function encodeConfig(config: DynamicConfig): string {
  return JSON.stringify(config);
}

export function encodeSync(sync: SyncState): string {
  return JSON.stringify(sync);
}

export function encodeFailover(intent: FailoverIntent): string {
  return JSON.stringify(intent);
}

export function encodeHistory(entries: readonly HistoryEntry[]): string {
  return JSON.stringify(entries);
}

export function encodeOptime(position: Lsn): string {
  return JSON.stringify(position);
}

/** Value of `proxies/<id>`: a live proxy and where clients reach it. */
export interface ProxyRegistration {
  id: string;
  /** "host:port" of the read-write listener. */
  rw: string;
  /** "host:port" of the read-only listener, or null when it has none. */
  ro: string | null;
  /** Wall-clock ms when published. */
  updatedAt: number;
  /** The id of the last `drain` this proxy completed (in-flight rw transactions finished, new ones held). */
  drained?: string | null;
  /**
   * Members whose PostgreSQL this proxy cannot reach (TCP connects to it keep failing), each with the wall-clock ms
   * since when; absent or empty when it reaches them all.
   */
  unreachable?: Record<string, number>;
  /** The admin console as a libpq URL (database pgbouncer on the rw listener); absent from older proxies. */
  admin?: string;
  /** The Prometheus endpoint's URL (metrics_listen), or null without one; absent from older proxies. */
  metrics?: string | null;
}

const proxySchema = z.object({
  id: z.string().min(1),
  rw: z.string(),
  ro: z.string().nullable().catch(null),
  updatedAt: z.number().finite().catch(0),
  drained: z.string().nullable().optional().catch(null),
  unreachable: z.record(z.string(), z.number().finite()).optional().catch(undefined),
  admin: z.string().optional().catch(undefined),
  metrics: z.string().nullable().optional().catch(undefined),
});

export function encodeProxy(registration: ProxyRegistration): string {
  return JSON.stringify(registration);
}

export function decodeProxy(raw: string | undefined): ProxyRegistration | null {
  const result = proxySchema.safeParse(parseJson(raw));
  return result.success ? result.data : null;
}

/** Every well-formed `proxies/<id>` of a raw cluster, sorted by id. */
export function decodeProxies(raw: RawCluster): ProxyRegistration[] {
  const proxies: ProxyRegistration[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (!key.startsWith(KEYS.proxies)) continue;
    const proxy = decodeProxy(value);
    if (proxy !== null && proxy.id === key.slice(KEYS.proxies.length)) proxies.push(proxy);
  }
  return proxies.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
