/**
 * A proxy as the agents see it (src/proxy/registration.ts): `proxies/<id>` on its own lease, and the
 * acknowledgement of a switchover drain once its transactions in flight are done. Modelled only from the agents'
 * side: the delay before it acknowledges (in-flight transactions finishing), proxies that never acknowledge
 * (a stuck proxy: the primary must hand over anyway after drain_timeout) and proxies that crash (their key
 * expires with their lease) or come back. And what it reports it cannot reach (src/proxy/reachability.ts): now and
 * then the leader for a few seconds (a partition between the primary and this proxy: with every proxy reporting
 * it long enough, the primary hands over), or every member at once (the proxy's own network is down: nothing may
 * move).
 */
import { decodeDrain, encodeProxy } from '../../src/dcs/codec.js';
import type { Rng } from './prng.js';
import type { SimEtcd } from './etcd.js';

export class SimProxy {
  private lease: number | null = null;
  private lastKeepAlive = 0;
  private drained: string | null = null;
  private pending: string | null = null;
  private ackAt = Infinity;
  private up = false;
  /** Drains acknowledged. */
  acks = 0;
  /** Times this proxy began reporting members unreachable. */
  cutReports = 0;
  /** Members reported unreachable, with since when (wall-clock ms). */
  private unreachable: Record<string, number> = {};
  private cutUntil = 0;

  constructor(
    readonly id: string,
    private readonly etcd: SimEtcd,
    private readonly rng: Rng,
    private readonly ttlSeconds: number,
    /** Added to the kernel's clock to give wall-clock ms, as the agents' clocks do (theirs with some skew). */
    private readonly wallEpoch: number,
  ) {}

  /** A cut-off is being reported: a fault the world waits to heal before it checks convergence. */
  get cutOff(): boolean {
    return Object.keys(this.unreachable).length > 0;
  }

  /** Called every simulation tick; new cut-offs begin only while `mayCut` (the fault window). */
  tick(now: number, mayCut: boolean): void {
    if (this.etcd.outage) return;
    if (!this.up) {
      if (this.rng.chance(0.002)) this.start(now);
      return;
    }
    if (this.rng.chance(0.0005)) {
      // Crashed: nothing refreshes the lease any more; the key expires with it.
      this.up = false;
      this.lease = null;
      return;
    }
    if (this.lease === null || now - this.lastKeepAlive >= (this.ttlSeconds * 1000) / 3) {
      if (this.lease === null || !this.etcd.keepAlive(this.lease)) {
        this.lease = this.etcd.grant(this.ttlSeconds);
        this.publish();
      }
      this.lastKeepAlive = now;
    }
    const leader = this.etcd.get('leader')?.value ?? null;
    this.reachability(now, leader, mayCut);
    const drain = decodeDrain(this.etcd.get('drain')?.value);
    if (drain === null || drain.from !== leader || drain.id === this.drained) return;
    if (this.pending !== drain.id) {
      this.pending = drain.id;
      this.ackAt = this.rng.chance(0.1) ? Infinity : now + this.rng.int(0, 800);
    }
    if (now >= this.ackAt) {
      this.drained = drain.id;
      this.acks++;
      this.publish();
    }
  }

  private reachability(now: number, leader: string | null, mayCut: boolean): void {
    const cut = Object.keys(this.unreachable).length > 0;
    if (cut && now >= this.cutUntil) {
      this.unreachable = {};
      this.publish();
    } else if (!cut && mayCut && leader !== null && this.rng.chance(0.001)) {
      this.cutUntil = now + this.rng.int(1000, 12_000);
      const since = now + this.wallEpoch;
      this.unreachable = { [leader]: since };
      if (this.rng.chance(0.25)) {
        for (const key of this.etcd.all().keys()) if (key.startsWith('members/')) this.unreachable[key.slice('members/'.length)] = since;
      }
      this.cutReports++;
      this.publish();
    }
  }

  start(now: number): void {
    this.up = true;
    this.lease = this.etcd.grant(this.ttlSeconds);
    this.lastKeepAlive = now;
    this.publish();
  }

  private publish(): void {
    this.etcd.put(
      `proxies/${this.id}`,
      encodeProxy({ id: this.id, rw: `${this.id}:6432`, ro: null, updatedAt: 0, drained: this.drained, unreachable: this.unreachable }),
      this.lease,
    );
  }
}
