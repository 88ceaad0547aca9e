/**
 * Small builders for decide() scenario tables:
 *   cluster().primary('a').replica('b', { wal: 900 }).observe('b', { pg: { running: false } })
 * The view and the observation are consistent by default (replicas stream from the leader, the primary
 * sees them in pg_stat_replication and has their slots), so a test states only what differs.
 */
import { slotNameFor } from '../../src/ha/slots.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../../src/cluster/dynamic-config.js';
import { type ClusterView, DEFAULT_TAGS, type FailoverIntent, type MemberStatus, type ProxyState, type Tags } from '../../src/cluster/types.js';
import { type AgentMemory, type Clock, EMPTY_MEMORY, type Observation, type PeerProbe } from '../../src/ha/types.js';
import type { PgObservation } from '../../src/postgres/observation.js';
import type { RuleInput } from '../../src/ha/rules/input.js';

export const NOW: Clock = { mono: 1_000_000, wall: Date.UTC(2026, 0, 1) };

interface MemberOptions {
  wal?: number;
  timeline?: number;
  tags?: Partial<Tags>;
  state?: MemberStatus['state'];
}

export class ClusterBuilder {
  private readonly members: Record<string, MemberStatus> = {};
  private leaderName: string | null = null;
  private cfg: DynamicConfig = structuredClone(DEFAULT_DYNAMIC_CONFIG);
  private syncState: ClusterView['sync'] = null;
  private intent: FailoverIntent | null = null;
  private optimeValue: number | null = null;
  private initialize: string | null = 'sys1';
  private historyEntries: ClusterView['history'] = [];
  private drainRequest: ClusterView['drain'] = null;
  private proxyStates: ClusterView['proxies'] = [];
  private shutdownRecord: ClusterView['shutdown'] = null;

  primary(name: string, o: MemberOptions = {}): this {
    this.leaderName = name;
    this.members[name] = this.status(name, 'primary', o);
    this.optimeValue = o.wal ?? 1000;
    return this;
  }

  replica(name: string, o: MemberOptions = {}): this {
    this.members[name] = this.status(name, 'replica', o);
    return this;
  }

  /** The leader key expired (host crash): the old primary's member key is gone too unless `keepMember`. */
  leaderGone(keepMember = false): this {
    if (this.leaderName && !keepMember) delete this.members[this.leaderName];
    this.leaderName = null;
    return this;
  }

  leader(name: string | null): this {
    this.leaderName = name;
    return this;
  }

  config(c: Partial<DynamicConfig>): this {
    this.cfg = { ...this.cfg, ...c };
    return this;
  }

  sync(leader: string, members: string[]): this {
    this.syncState = { leader, members };
    return this;
  }

  failover(i: Partial<FailoverIntent>): this {
    this.intent = { kind: 'switchover', from: null, to: null, at: null, requestedAt: NOW.wall - 100, ...i };
    return this;
  }

  optime(lsn: number | null): this {
    this.optimeValue = lsn;
    return this;
  }

  uninitialized(value: string | null = null): this {
    this.initialize = value;
    return this;
  }

  /** The `drain` key as the primary wrote it. */
  drain(d: ClusterView['drain']): this {
    this.drainRequest = d;
    return this;
  }

  /** Live proxies, the drain each acknowledged and the members each cannot reach (none unless given). */
  proxies(list: ReadonlyArray<Omit<ProxyState, 'unreachable'> & Partial<Pick<ProxyState, 'unreachable'>>>): this {
    this.proxyStates = list.map((p) => ({ ...p, unreachable: p.unreachable ?? {} }));
    return this;
  }

  /** The `shutdown` key: `leader` shut down cleanly with its shutdown checkpoint at `checkpoint`. */
  shutdown(leader: string, checkpoint: number, timeline = 1): this {
    this.shutdownRecord = { leader, checkpoint, timeline, at: NOW.wall - 60_000 };
    return this;
  }

  history(entries: ClusterView['history']): this {
    this.historyEntries = entries;
    return this;
  }

  setMember(name: string, patch: Partial<MemberStatus>): this {
    this.members[name] = { ...this.members[name]!, ...patch };
    return this;
  }

  view(): ClusterView {
    return structuredClone({
      initialize: this.initialize,
      config: this.cfg,
      leader: this.leaderName ? { name: this.leaderName } : null,
      members: this.members,
      sync: this.syncState,
      failover: this.intent,
      optime: this.optimeValue,
      history: this.historyEntries,
      drain: this.drainRequest,
      proxies: this.proxyStates,
      shutdown: this.shutdownRecord,
    });
  }

  /** The observation `name` makes, consistent with the view unless overridden. */
  observe(
    name: string,
    o: { pg?: Partial<PgObservation>; memory?: Partial<AgentMemory>; peers?: Record<string, PeerProbe>; dcsReachable?: boolean; tags?: Partial<Tags> } = {},
  ): Observation {
    const m = this.members[name];
    const isPrimary = m?.role === 'primary';
    const others = Object.values(this.members).filter((x) => x.name !== name);
    const pg: PgObservation = {
      dataDir: 'initialized',
      running: true,
      accepting: true,
      inRecovery: !isPrimary,
      timeline: m?.timeline ?? 1,
      systemId: 'sys1',
      walPosition: m?.walPosition ?? 1000,
      receiveLsn: isPrimary ? null : (m?.walPosition ?? 1000),
      replayLsn: isPrimary ? null : (m?.walPosition ?? 1000),
      controlState: null,
      controlTimeline: null,
      checkpointLsn: null,
      following: isPrimary ? null : this.leaderName,
      streaming: !isPrimary && this.leaderName !== null,
      synchronousStandbyNames: isPrimary && this.cfg.synchronous_mode && this.syncState ? [...this.syncState.members] : [],
      replication: isPrimary
        ? others
            .filter((x) => x.role === 'replica')
            .map((x) => ({
              name: x.name,
              state: 'streaming',
              syncState: this.syncState?.members.includes(x.name) ? 'sync' : 'async',
              flushLsn: x.walPosition,
              replayLsn: x.walPosition,
            }))
        : [],
      slots: isPrimary ? others.map((x) => slotNameFor(x.name)) : [],
      pendingRestart: false,
      ...o.pg,
    };
    const peers: Record<string, PeerProbe> = {};
    for (const x of others) {
      peers[x.name] = {
        reachable: true,
        healthy: x.state === 'running' || x.state === 'streaming',
        walPosition: x.walPosition,
        role: x.role,
        tags: x.tags,
      };
    }
    const memory: AgentMemory = {
      ...structuredClone(EMPTY_MEMORY),
      holdsLeader: this.leaderName === name,
      leaderRefreshSentAt: this.leaderName === name ? NOW.mono - 500 : null,
      syncAddedAt: isPrimary && this.syncState ? Object.fromEntries(this.syncState.members.map((n) => [n, 0])) : {},
      ...o.memory,
    };
    return {
      me: name,
      tags: { ...(m?.tags ?? DEFAULT_TAGS), ...o.tags },
      pg,
      dcsReachable: o.dcsReachable ?? true,
      peers: o.peers ?? peers,
      memory,
    };
  }

  /**
   * decide()'s arguments in the shape the rules of src/ha/rules/ take, deep-frozen: a rule that modified its input
   * would throw (ESM code runs in strict mode).
   */
  input(name: string, o: Parameters<ClusterBuilder['observe']>[1] = {}, clock: Clock = NOW): RuleInput {
    const view = this.view();
    return deepFreeze({ view, obs: this.observe(name, o), config: view.config, clock: { ...clock } });
  }

  private status(name: string, role: 'primary' | 'replica', o: MemberOptions): MemberStatus {
    return {
      name,
      role,
      state: o.state ?? (role === 'primary' ? 'running' : 'streaming'),
      apiUrl: `http://127.0.0.1:80${name.charCodeAt(0)}`,
      host: '127.0.0.1',
      port: 5400 + name.charCodeAt(0),
      timeline: o.timeline ?? 1,
      walPosition: o.wal ?? 1000,
      receiveLsn: role === 'replica' ? (o.wal ?? 1000) : null,
      replayLsn: role === 'replica' ? (o.wal ?? 1000) : null,
      lagBytes: role === 'replica' ? 0 : null,
      following: null,
      tags: { ...DEFAULT_TAGS, ...o.tags },
      paused: false,
      pendingRestart: false,
      reason: '',
      updatedAt: NOW.wall,
      version: 'test',
      systemId: 'sys1',
    };
  }
}

export function cluster(): ClusterBuilder {
  return new ClusterBuilder();
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
