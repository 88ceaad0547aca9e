/**
 * The topology as etcd says it is: the primary is the member holding `leader` while its own key says it runs as
 * primary; the replicas are the running ones within the lag limit. The view is reloaded on every watched change
 * and once a second besides (a watch can be silently broken). When etcd has not answered for longer than the
 * lease TTL the view is stale: the leader may have changed without us seeing it, so primary() is null and writes
 * wait instead of reaching a server that may no longer be the primary (fail closed).
 */
import { EventEmitter } from 'node:events';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterView, DrainRequest, MemberStatus } from '../cluster/types.js';
import type { Endpoint, Topology } from './topology.js';
import { isHealthyReplica } from '../cluster/predicates.js';

export interface Routes {
  /** The member holding `leader`, whether or not it runs as primary yet. */
  leader: string | null;
  primary: Endpoint | null;
  /** Healthy replicas, with the member name and its lag for balancing and display. */
  replicas: Array<Endpoint & { name: string }>;
}

/** Pure: where rw and ro connections may go according to one cluster view. */
export function routesFromView(view: ClusterView, maxReplicaLagBytes: number): Routes {
  let primary: Endpoint | null = null;
  const leader = view.leader?.name;
  const holder: MemberStatus | undefined = leader === undefined ? undefined : view.members[leader];
  if (holder !== undefined && holder.role === 'primary' && holder.state === 'running') primary = { host: holder.host, port: holder.port };
  const replicas: Routes['replicas'] = [];
  for (const name of Object.keys(view.members).sort()) {
    const m = view.members[name];
    if (name === leader || !isHealthyReplica(m)) continue;
    if (m.tags.noloadbalance) continue;
    // Unknown lag is not "within the limit": such a replica may be arbitrarily far behind.
    if (m.lagBytes === null || m.lagBytes > maxReplicaLagBytes) continue;
    replicas.push({ name, host: m.host, port: m.port });
  }
  return { leader: leader ?? null, primary, replicas };
}

/**
 * A drain stops applying when the member that asked no longer holds the key (the handover happened: the new
 * primary is used as soon as it runs as one) and, whatever etcd says, once its timeout plus this grace has passed
 * since the proxy first saw it: a primary that asked and then could not hand over must not stall writes for long.
 */
export const DRAIN_HOLD_GRACE_MS = 2000;

/** Pure: whether a drain seen first at `seenAt` holds rw transactions now. */
export function drainHolds(drain: DrainRequest | null, leader: string | null, seenAt: number, now: number): boolean {
  if (drain === null || leader !== drain.from) return false;
  return now - seenAt < drain.timeoutMs + DRAIN_HOLD_GRACE_MS;
}

export function sameRoutes(a: Routes, b: Routes): boolean {
  const same = (x: Endpoint | null, y: Endpoint | null): boolean => (x === null ? y === null : y !== null && x.host === y.host && x.port === y.port);
  return a.leader === b.leader && same(a.primary, b.primary) && a.replicas.length === b.replicas.length && a.replicas.every((r, i) => same(r, b.replicas[i]));
}

export interface EtcdTopologyOptions {
  dcs: Pick<Dcs, 'load' | 'watch'>;
  maxReplicaLagBytes: number;
  /** Safety-net reload period; default 1000 ms. */
  pollMs?: number;
  /** After this long without a successful load the view counts as stale; default the cluster's ttl. */
  staleAfterMs?: number;
  onError?: (error: unknown) => void;
}

/**
 * Everything the topology's answers are computed from, as plain data: what a worker thread of the proxy gets
 * (TopologyMirror) so that it answers exactly as the main thread's EtcdTopology, staleness and drain expiry
 * included (both are judged against the clock at each call; Date.now() is the same in every thread).
 */
export interface TopologySnapshot {
  routes: Routes;
  /** Every member of the last view loaded, whatever its state (the proxy probes them all). */
  members: Array<{ name: string; host: string; port: number }>;
  drain: DrainRequest | null;
  /** Local time the current drain was first seen (its hold is bounded from here, not by the agent's clock). */
  drainSeenAt: number;
  lastLoadAt: number;
  stale: boolean;
  staleLimitMs: number;
}

/** The answers of a topology from a TopologySnapshot: EtcdTopology loads the snapshot, TopologyMirror is given it. */
export class ViewTopology extends EventEmitter implements Topology {
  protected view: TopologySnapshot = { routes: { leader: null, primary: null, replicas: [] }, members: [], drain: null, drainSeenAt: 0, lastLoadAt: 0, stale: true, staleLimitMs: 5000 };

  // Staleness is judged on every call, not only by the timer, so no write slips through between two ticks; the
  // 'change' event for it comes from the timer (emitting here would re-enter the pool that is asking).
  primary(): Endpoint | null {
    return this.isStale ? null : this.view.routes.primary;
  }

  replicas(): readonly Endpoint[] {
    return this.isStale ? [] : this.view.routes.replicas;
  }

  holdsWrites(): boolean {
    return drainHolds(this.view.drain, this.view.routes.leader, this.view.drainSeenAt, Date.now());
  }

  /** Every member of the last cluster view loaded (kept while the view is stale), sorted by name. */
  members(): Array<{ name: string; host: string; port: number }> {
    return this.view.members.map((m) => ({ ...m }));
  }

  /** The id of the drain this proxy must complete and acknowledge, or null. */
  pendingDrain(): string | null {
    return this.holdsWrites() ? this.view.drain!.id : null;
  }

  /** True while the last successful load is older than the stale limit. */
  get isStale(): boolean {
    return this.view.stale || Date.now() - this.view.lastLoadAt > this.view.staleLimitMs;
  }

  snapshot(): TopologySnapshot {
    return this.view;
  }
}

/** A worker thread's copy of the main thread's EtcdTopology, given every snapshot it emits 'change' with. */
export class TopologyMirror extends ViewTopology {
  constructor(snapshot: TopologySnapshot) {
    super();
    this.view = snapshot;
  }

  /** The main thread's view now; `changed` as its 'change' event (else only fresher: no event). */
  apply(snapshot: TopologySnapshot, changed: boolean): void {
    this.view = snapshot;
    if (changed) this.emit('change');
  }
}

export class EtcdTopology extends ViewTopology {
  private drainHolding = false;
  private timer: NodeJS.Timeout | null = null;
  private watchHandle: { close(): Promise<void> } | null = null;
  private loading: Promise<void> | null = null;
  private reloadAgain = false;
  private stopped = false;

  constructor(private readonly options: EtcdTopologyOptions) {
    super();
  }

  /** Loads the view once (rejects when etcd does not answer), then follows it. */
  async start(): Promise<void> {
    await this.loadOnce();
    this.watchHandle = await this.options.dcs.watch(() => this.reload());
    if (this.stopped) {
      await this.watchHandle.close();
      return;
    }
    this.timer = setInterval(() => {
      this.checkStale();
      this.checkDrainExpiry();
      this.reload();
    }, this.options.pollMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    const handle = this.watchHandle;
    this.watchHandle = null;
    if (handle !== null) await handle.close();
  }

  /** Reloads now; coalesces bursts of watch events into at most one load in flight plus one after it. */
  reload(): void {
    if (this.stopped) return;
    if (this.loading !== null) {
      this.reloadAgain = true;
      return;
    }
    this.loading = this.loadOnce()
      .catch((e: unknown) => this.options.onError?.(e))
      .finally(() => {
        this.loading = null;
        if (this.reloadAgain) {
          this.reloadAgain = false;
          this.reload();
        }
      });
  }

  /**
   * Loads the cluster view. Each load makes a new snapshot object (never changed afterwards), so a snapshot
   * handed to worker threads stays what it was when it was sent.
   */
  private async loadOnce(): Promise<void> {
    const view = await this.options.dcs.load();
    if (this.stopped) return;
    const now = Date.now();
    const before = this.view;
    const next = routesFromView(view, this.options.maxReplicaLagBytes);
    const drainChanged = (view.drain?.id ?? null) !== (before.drain?.id ?? null);
    const drain = drainChanged ? view.drain : before.drain;
    const drainSeenAt = drainChanged ? now : before.drainSeenAt;
    const routesChanged = !sameRoutes(before.routes, next);
    this.view = {
      routes: routesChanged ? next : before.routes,
      members: Object.keys(view.members)
        .sort()
        .map((name) => ({ name, host: view.members[name].host, port: view.members[name].port })),
      drain,
      drainSeenAt,
      lastLoadAt: now,
      stale: false,
      staleLimitMs: this.options.staleAfterMs ?? view.config.ttl * 1000,
    };
    const holding = drainHolds(drain, next.leader, drainSeenAt, now);
    const holdChanged = holding !== this.drainHolding;
    this.drainHolding = holding;
    if (before.stale || holdChanged || routesChanged) this.emit('change');
    // After every load, changed or not: a copy of the view (TopologyMirror) must learn that it is still fresh.
    this.emit('loaded');
  }

  /** A drain whose hold ran out releases the waiting transactions without waiting for etcd. */
  private checkDrainExpiry(): void {
    if (this.drainHolding && !this.holdsWrites()) {
      this.drainHolding = false;
      this.emit('change');
    }
  }

  private checkStale(): void {
    if (this.view.stale) return;
    if (Date.now() - this.view.lastLoadAt > this.view.staleLimitMs) {
      this.view = { ...this.view, stale: true };
      this.emit('change');
    }
  }
}
