/**
 * The topology as etcd says it is: the primary is the member holding `leader` while its own key says it runs as
 * primary; the replicas are the running ones within the lag limit. The view is reloaded on every watched change
 * and once a second besides (a watch can be silently broken). When etcd has not answered for longer than the
 * lease TTL the view is stale: the leader may have changed without us seeing it, so primary() is null and writes
 * wait instead of reaching a server that may no longer be the primary (fail closed).
 */
import { EventEmitter } from 'node:events';
import type { Dcs } from '../dcs/dcs.js';
import type { ClusterView, DrainRequest, MemberStatus } from '../ha/types.js';
import type { Endpoint, Topology } from './topology.js';

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
    if (name === leader || m.role !== 'replica') continue;
    if (m.state !== 'running' && m.state !== 'streaming') continue;
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

export class EtcdTopology extends EventEmitter implements Topology {
  private routes: Routes = { leader: null, primary: null, replicas: [] };
  /** Every member of the last view loaded, whatever its state (the proxy probes them all). */
  private memberEndpoints: Array<{ name: string; host: string; port: number }> = [];
  private drain: DrainRequest | null = null;
  /** Local time the current drain was first seen (its hold is bounded from here, not by the agent's clock). */
  private drainSeenAt = 0;
  private drainHolding = false;
  private lastLoadAt = 0;
  private ttlMs = 5000;
  private stale = true;
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

  // Staleness is judged on every call, not only by the timer, so no write slips through between two ticks; the
  // 'change' event for it comes from the timer (emitting here would re-enter the pool that is asking).
  primary(): Endpoint | null {
    return this.isStale ? null : this.routes.primary;
  }

  replicas(): readonly Endpoint[] {
    return this.isStale ? [] : this.routes.replicas;
  }

  holdsWrites(): boolean {
    return drainHolds(this.drain, this.routes.leader, this.drainSeenAt, Date.now());
  }

  /** Every member of the last cluster view loaded (kept while the view is stale), sorted by name. */
  members(): Array<{ name: string; host: string; port: number }> {
    return this.memberEndpoints.map((m) => ({ ...m }));
  }

  /** The id of the drain this proxy must complete and acknowledge, or null. */
  pendingDrain(): string | null {
    return this.holdsWrites() ? this.drain!.id : null;
  }

  /** True while the last successful load is older than the stale limit. */
  get isStale(): boolean {
    return this.stale || Date.now() - this.lastLoadAt > this.staleLimitMs();
  }

  private staleLimitMs(): number {
    return this.options.staleAfterMs ?? this.ttlMs;
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

  private async loadOnce(): Promise<void> {
    const view = await this.options.dcs.load();
    if (this.stopped) return;
    this.lastLoadAt = Date.now();
    this.ttlMs = view.config.ttl * 1000;
    const next = routesFromView(view, this.options.maxReplicaLagBytes);
    this.memberEndpoints = Object.keys(view.members)
      .sort()
      .map((name) => ({ name, host: view.members[name].host, port: view.members[name].port }));
    const wasStale = this.stale;
    this.stale = false;
    const drainChanged = (view.drain?.id ?? null) !== (this.drain?.id ?? null);
    if (drainChanged) {
      this.drain = view.drain;
      this.drainSeenAt = Date.now();
    }
    const holding = drainHolds(this.drain, next.leader, this.drainSeenAt, Date.now());
    const holdChanged = holding !== this.drainHolding;
    this.drainHolding = holding;
    if (wasStale || holdChanged || !sameRoutes(this.routes, next)) {
      this.routes = next;
      this.emit('change');
    }
  }

  /** A drain whose hold ran out releases the waiting transactions without waiting for etcd. */
  private checkDrainExpiry(): void {
    if (this.drainHolding && !this.holdsWrites()) {
      this.drainHolding = false;
      this.emit('change');
    }
  }

  private checkStale(): void {
    if (this.stale) return;
    if (Date.now() - this.lastLoadAt > this.staleLimitMs()) {
      this.stale = true;
      this.emit('change');
    }
  }
}
