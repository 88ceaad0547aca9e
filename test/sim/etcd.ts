/**
 * An in-memory etcd with the semantics pgwarden relies on (src/dcs/etcd.ts): leases whose expiry is measured
 * by etcd's clock from when a keep-alive was *received*, keys bound to leases, create-if-absent and
 * compare-and-swap transactions. Network faults are per member: a member cut from etcd gets no answer and
 * its calls fail after the call timeout; a quorum loss fails everyone's calls and freezes lease expiry until
 * a leader is elected again, which (like etcd's lessor on promotion) renews every lease by its TTL.
 *
 * SimDcsClient mirrors EtcdDcs method by method (same lease handling, same transactions), with every
 * round trip taking simulated time: a request is applied when it arrives, and an answer that does not come
 * back before the call's deadline is a DCS_UNAVAILABLE error even when the request was applied.
 */
import { decodeCluster, decodeHistory, encodeDrain, encodeHistory, encodeProxy, encodeShutdown, type ProxyRegistration } from '../../src/dcs/codec.js';
import { PgwardenError } from '../../src/errors.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from '../../src/cluster/dynamic-config.js';
import type { CleanShutdown, ClusterView, DrainRequest, FailoverIntent, HistoryEntry, Lsn, MemberStatus, SyncState } from '../../src/cluster/types.js';
import type { Kernel, SimProcess } from './kernel.js';
import type { Dcs } from '../../src/dcs/dcs.js';
import type { Rng } from './prng.js';

/** etcd answered that the lease is unknown or expired (EtcdLeaseInvalidError). */
export class LeaseInvalid extends Error {}

interface Kv {
  value: string;
  lease: number | null;
  createRev: number;
  modRev: number;
}

interface LeaseState {
  ttlMs: number;
  expiresAt: number;
}

export class SimEtcd {
  private readonly kv = new Map<string, Kv>();
  private readonly leases = new Map<number, LeaseState>();
  private rev = 1;
  private leaseSeq = 100;
  private quorumLost = false;
  /** Extra one-way latency while an "etcd slow" fault is active. */
  slowUntil = 0;
  /** Called after every change of a key (put or delete), with the key. */
  onChange: (key: string) => void = () => undefined;

  constructor(
    private readonly kernel: Kernel,
    /** Whether `member` can exchange packets with etcd right now (partitions are decided by the world). */
    private readonly linkUp: (member: string) => boolean,
  ) {}

  get now(): number {
    return this.kernel.now;
  }

  reachable(member: string): boolean {
    return !this.quorumLost && this.linkUp(member);
  }

  get outage(): boolean {
    return this.quorumLost;
  }

  loseQuorum(): void {
    this.quorumLost = true;
  }

  /** A new etcd leader renews every lease by its full TTL (etcd's lessor.Promote). */
  regainQuorum(): void {
    this.quorumLost = false;
    for (const [id, l] of this.leases) {
      l.expiresAt = Math.max(l.expiresAt, this.now + l.ttlMs);
      this.scheduleExpiry(id, l.expiresAt);
    }
  }

  // ---- primitives, applied at the moment a request arrives ----

  grant(ttlSeconds: number): number {
    this.expire();
    const id = this.leaseSeq++;
    const l = { ttlMs: ttlSeconds * 1000, expiresAt: this.now + ttlSeconds * 1000 };
    this.leases.set(id, l);
    this.scheduleExpiry(id, l.expiresAt);
    return id;
  }

  keepAlive(id: number): boolean {
    this.expire();
    const l = this.leases.get(id);
    if (!l) return false;
    l.expiresAt = this.now + l.ttlMs;
    this.scheduleExpiry(id, l.expiresAt);
    return true;
  }

  get(key: string): Kv | undefined {
    this.expire();
    return this.kv.get(key);
  }

  all(): Map<string, Kv> {
    this.expire();
    return this.kv;
  }

  put(key: string, value: string, lease: number | null = null): void {
    this.expire();
    if (lease !== null && !this.leases.has(lease)) throw new LeaseInvalid(`lease ${lease} not found`);
    const old = this.kv.get(key);
    this.rev++;
    this.kv.set(key, { value, lease, createRev: old?.createRev ?? this.rev, modRev: this.rev });
    this.onChange(key);
  }

  createIfAbsent(key: string, value: string, lease: number | null = null): boolean {
    this.expire();
    if (this.kv.has(key)) return false;
    this.put(key, value, lease);
    return true;
  }

  /** Put only if the key's mod revision is still `modRev`. */
  putIfModRev(key: string, modRev: number, value: string, lease: number | null): boolean {
    this.expire();
    if (this.kv.get(key)?.modRev !== modRev) return false;
    this.put(key, value, lease);
    return true;
  }

  delete(key: string): void {
    this.expire();
    if (!this.kv.has(key)) return;
    this.rev++;
    this.kv.delete(key);
    this.onChange(key);
  }

  deleteIfValue(key: string, value: string): boolean {
    this.expire();
    if (this.kv.get(key)?.value !== value) return false;
    this.delete(key);
    return true;
  }

  /** The leader key's holder as etcd sees it now (the invariants' ground truth). */
  leaderName(): string | null {
    return this.get('leader')?.value ?? null;
  }

  /** Revokes a lease at once: its keys go. */
  revoke(id: number): void {
    const l = this.leases.get(id);
    if (!l) return;
    l.expiresAt = this.now;
    this.expire();
  }

  /** Lease expiry happens on etcd's clock, never while etcd has no leader. */
  expire(): void {
    if (this.quorumLost) return;
    for (const [id, l] of this.leases) {
      if (l.expiresAt > this.now) continue;
      this.leases.delete(id);
      for (const [key, kv] of this.kv) {
        if (kv.lease === id) {
          this.rev++;
          this.kv.delete(key);
          this.onChange(key);
        }
      }
    }
  }

  private scheduleExpiry(id: number, at: number): void {
    this.kernel.at(at, () => {
      const l = this.leases.get(id);
      if (l && l.expiresAt <= this.now) this.expire();
    });
  }
}

/** EtcdDcs's test for an entry already appended (a retry after a lost answer). */
function sameHistoryEntry(a: HistoryEntry, b: HistoryEntry): boolean {
  return a.timeline === b.timeline && a.lsn === b.lsn && a.at === b.at && a.reason === b.reason && a.leader === b.leader;
}

/** The ClusterView from raw values, decoded by the real codec (src/dcs/codec.ts) as EtcdDcs.load() does. */
function decodeView(kvs: Map<string, Kv>): ClusterView {
  const raw: Record<string, string> = {};
  for (const [key, kv] of kvs) raw[key] = kv.value;
  return decodeCluster(raw);
}

export interface LatencyModel {
  /** One-way latency of a request or an answer, ms. */
  oneWay(): number;
}

export function defaultLatency(rng: Rng, etcd: SimEtcd): LatencyModel {
  return {
    oneWay(): number {
      if (etcd.slowUntil > etcd.now) return rng.int(100, 700);
      // Mostly a LAN round trip; now and then a slow fsync on etcd's side.
      return rng.chance(0.01) ? rng.int(50, 400) : rng.int(1, 5);
    },
  };
}

function unavailable(what: string): PgwardenError {
  return new PgwardenError('DCS_UNAVAILABLE', `simulated etcd did not ${what} in time`);
}

export interface ClientHooks {
  onCycle?: () => void;
  onFailoverRequest?: () => void;
}

/**
 * One agent incarnation's etcd client: the EtcdDcs methods the HA loop uses, as simulated-time processes.
 * Every method has one deadline (`callTimeoutMs` from its start) for all its round trips, like EtcdDcs.call.
 */
export class SimDcsClient implements Dcs {
  readonly cluster = 'sim';
  private lease: number | null = null;
  private leaseLost = false;
  private ttlSeconds: number | null = null;
  private readonly kernel: Kernel;
  private readonly watchers = new Set<(key: string) => void>();

  constructor(
    private readonly etcd: SimEtcd,
    private readonly proc: SimProcess,
    readonly member: string,
    private readonly latency: LatencyModel,
    /** What the world counts: HA cycles (the loop's first call is ensureLease) and switchovers an agent asked for. */
    private readonly hooks: ClientHooks = {},
    readonly callTimeoutMs = 1000,
  ) {
    this.kernel = proc.kernel;
  }

  /** The watch stream delivers a change of `key` ('' after a reconnection: anything may have changed). */
  notify(key: string): void {
    this.proc.enter(() => {
      for (const w of this.watchers) w(key);
    });
  }

  async watch(onChange: (key: string) => void): Promise<{ close(): Promise<void> }> {
    this.watchers.add(onChange);
    return {
      close: async () => {
        this.watchers.delete(onChange);
      },
    };
  }

  /** The lease id this client currently uses (for the trace). */
  get leaseId(): number | null {
    return this.lease;
  }

  /**
   * One round trip. The request is applied when it arrives (even when the caller gave up waiting); the
   * answer counts only if it comes back before the deadline over a working link.
   */
  private async rpc<T>(what: string, deadline: number, op: () => T): Promise<T> {
    const k = this.kernel;
    const there = this.latency.oneWay();
    const back = this.latency.oneWay();
    if (k.now + there >= deadline) {
      // The request may still be applied after the caller's deadline passed.
      k.at(k.now + there, () => {
        if (this.etcd.reachable(this.member)) {
          try {
            op();
          } catch {
            // Nobody is listening for the answer any more.
          }
        }
      });
      await this.proc.sleep(deadline - k.now);
      throw unavailable(what);
    }
    await this.proc.sleep(there);
    if (!this.etcd.reachable(this.member)) {
      await this.proc.sleep(Math.max(0, deadline - k.now));
      throw unavailable(what);
    }
    let result: T | undefined;
    let error: unknown = null;
    try {
      result = op();
    } catch (e) {
      error = e;
    }
    if (k.now + back >= deadline) {
      await this.proc.sleep(deadline - k.now);
      throw unavailable(what);
    }
    await this.proc.sleep(back);
    if (!this.etcd.reachable(this.member)) {
      await this.proc.sleep(Math.max(0, deadline - k.now));
      throw unavailable(what);
    }
    if (error !== null) throw error;
    return result as T;
  }

  private deadline(): number {
    return this.kernel.now + this.callTimeoutMs;
  }

  async load(): Promise<ClusterView> {
    const kvs = await this.rpc('read the cluster', this.deadline(), () => new Map(this.etcd.all()));
    return decodeView(kvs);
  }

  async ensureLease(ttlSeconds: number): Promise<void> {
    this.hooks.onCycle?.();
    this.ttlSeconds = Math.ceil(ttlSeconds);
    if (this.lease !== null && !this.leaseLost) return;
    await this.grantLease(this.deadline());
  }

  async keepAlive(): Promise<boolean> {
    const lease = this.lease;
    if (lease === null || this.leaseLost) return false;
    return await this.keepAliveOnce(lease, this.deadline());
  }

  async publishMember(status: MemberStatus): Promise<void> {
    const deadline = this.deadline();
    await this.withLease(deadline, (lease) =>
      this.rpc('publish the member', deadline, () => this.etcd.put(`members/${status.name}`, JSON.stringify(status), lease)),
    );
  }

  async acquireLeader(name: string): Promise<boolean> {
    const deadline = this.deadline();
    return await this.withLease(deadline, (lease) => this.acquireWith(name, lease, deadline));
  }

  private async acquireWith(name: string, lease: number, deadline: number): Promise<boolean> {
    const first = await this.rpc('acquire the leader key', deadline, () => {
      if (this.etcd.createIfAbsent('leader', name, lease)) return { created: true as const };
      return { created: false as const, existing: this.etcd.get('leader') };
    });
    if (first.created) return true;
    const existing = first.existing;
    if (existing === undefined || existing.value !== name) return false;
    if (existing.lease === lease) return true;
    // Our previous incarnation's key: rebind it to our lease by a compare-and-swap on its revision.
    return await this.rpc('rebind the leader key', deadline, () => this.etcd.putIfModRev('leader', existing.modRev, name, lease));
  }

  async refreshLeader(name: string): Promise<boolean> {
    const lease = this.lease;
    if (lease === null || this.leaseLost) return false;
    const deadline = this.deadline();
    if (!(await this.keepAliveOnce(lease, deadline))) return false;
    const kv = await this.rpc('read the leader key', deadline, () => this.etcd.get('leader'));
    return kv !== undefined && kv.value === name && kv.lease === lease;
  }

  async releaseLeader(name: string): Promise<void> {
    await this.rpc('release the leader key', this.deadline(), () => this.etcd.deleteIfValue('leader', name));
  }

  async deleteMember(name: string): Promise<void> {
    await this.rpc('delete the member', this.deadline(), () => this.etcd.delete(`members/${name}`));
  }

  async setConfig(config: DynamicConfig): Promise<void> {
    await this.rpc('store the config', this.deadline(), () => this.etcd.put('config', JSON.stringify(config)));
  }

  async setShutdown(shutdown: CleanShutdown): Promise<void> {
    await this.rpc('record the clean shutdown', this.deadline(), () => this.etcd.put('shutdown', encodeShutdown(shutdown)));
  }

  async close(options: { revoke?: boolean } = {}): Promise<void> {
    this.watchers.clear();
    const lease = this.lease;
    this.lease = null;
    if (options.revoke && lease !== null) await this.rpc('revoke the lease', this.deadline(), () => this.etcd.revoke(lease)).catch(() => undefined);
  }

  /** EtcdDcs.publishProxy: `proxies/<id>` bound to this client's lease. */
  async publishProxy(registration: ProxyRegistration): Promise<void> {
    const deadline = this.deadline();
    await this.withLease(deadline, (lease) =>
      this.rpc(`publish proxy ${registration.id}`, deadline, () => this.etcd.put(`proxies/${registration.id}`, encodeProxy(registration), lease)),
    );
  }

  async claimInitialize(): Promise<boolean> {
    return await this.rpc('claim the bootstrap', this.deadline(), () => this.etcd.createIfAbsent('initialize', ''));
  }

  async setInitialize(systemId: string): Promise<void> {
    await this.rpc('record the system id', this.deadline(), () => this.etcd.put('initialize', systemId));
  }

  async deleteInitialize(): Promise<void> {
    await this.rpc('remove the bootstrap claim', this.deadline(), () => this.etcd.deleteIfValue('initialize', ''));
  }

  async initConfig(config: DynamicConfig): Promise<boolean> {
    return await this.rpc('initialise the config', this.deadline(), () => this.etcd.createIfAbsent('config', JSON.stringify(config)));
  }

  async setSync(sync: SyncState): Promise<void> {
    await this.rpc('store the sync state', this.deadline(), () => this.etcd.put('sync', JSON.stringify(sync)));
  }

  async setDrain(drain: DrainRequest): Promise<void> {
    const deadline = this.deadline();
    await this.withLease(deadline, (lease) => this.rpc('ask the proxies to drain', deadline, () => this.etcd.put('drain', encodeDrain(drain), lease)));
  }

  async clearDrain(): Promise<void> {
    await this.rpc('clear the drain request', this.deadline(), () => this.etcd.delete('drain'));
  }

  async clearShutdown(): Promise<void> {
    await this.rpc('clear the clean shutdown record', this.deadline(), () => this.etcd.delete('shutdown'));
  }

  async setFailover(intent: FailoverIntent): Promise<void> {
    await this.rpc('request a switchover', this.deadline(), () => this.etcd.put('failover', JSON.stringify(intent)));
    // The HA loop writes `failover` only for a primary that every proxy reports unreachable (requestSwitchover).
    this.hooks.onFailoverRequest?.();
  }

  async clearFailover(): Promise<void> {
    await this.rpc('clear the failover request', this.deadline(), () => this.etcd.delete('failover'));
  }

  async appendHistory(entry: HistoryEntry): Promise<void> {
    const deadline = this.deadline();
    // One read-modify-write with a revision check, retried like EtcdDcs.appendHistory.
    while (this.kernel.now < deadline) {
      const current = await this.rpc('read the history', deadline, () => this.etcd.get('history'));
      const entries = decodeHistory(current?.value);
      if (entries.some((e) => sameHistoryEntry(e, entry))) return;
      const written = await this.rpc('append to the history', deadline, () => {
        if ((this.etcd.get('history')?.modRev ?? 0) !== (current?.modRev ?? 0)) return false;
        this.etcd.put('history', encodeHistory([...entries, entry]));
        return true;
      });
      if (written) return;
    }
    throw new PgwardenError('DCS_CONFLICT', 'history kept changing under concurrent writers; retry the append');
  }

  async setOptime(lsn: Lsn): Promise<void> {
    await this.rpc('store the optime', this.deadline(), () => this.etcd.put('optime', JSON.stringify(lsn)));
  }

  // ---- lease handling, as in EtcdDcs ----

  private async grantLease(deadline: number): Promise<number> {
    const ttl = this.ttlSeconds;
    if (ttl === null) throw new PgwardenError('INTERNAL', 'a lease-bound write was made before ensureLease()');
    const id = await this.rpc('grant a lease', deadline, () => this.etcd.grant(ttl));
    this.lease = id;
    this.leaseLost = false;
    return id;
  }

  private async keepAliveOnce(lease: number, deadline: number): Promise<boolean> {
    const ok = await this.rpc('refresh the lease', deadline, () => this.etcd.keepAlive(lease));
    if (!ok && this.lease === lease) this.leaseLost = true;
    return ok;
  }

  private async withLease<T>(deadline: number, write: (lease: number) => Promise<T>): Promise<T> {
    let lease = this.lease;
    if (lease === null || this.leaseLost) lease = await this.grantLease(deadline);
    try {
      return await write(lease);
    } catch (e) {
      if (!(e instanceof LeaseInvalid)) throw e;
      if (this.lease === lease) this.leaseLost = true;
      const fresh = await this.grantLease(deadline);
      return await write(fresh);
    }
  }
}
