/**
 * A proxy as the agents see it: the production ProxyRegistrar (src/proxy/registration.ts) keeps `proxies/<id>` on
 * its own lease through a simulated etcd client, acknowledges a switchover drain once the proxy's transactions in
 * flight are done, and publishes which members the proxy cannot reach. Around it, modelled: how long the
 * transactions in flight take to finish (now and then a stuck one that never does: the primary must hand over
 * anyway after drain_timeout), which drain the proxy holds for (the production drainHolds rule on what its etcd
 * watch delivered), proxies that crash (their key expires with their lease) or come back, and what they cannot
 * reach (src/proxy/reachability.ts): now and then the leader for a few seconds (a partition between the primary and
 * this proxy: with every proxy reporting it long enough, the primary hands over), or every member at once (the
 * proxy's own network is down: nothing may move).
 */
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { decodeDrain, type ProxyRegistration } from '../../src/dcs/codec.js';
import { drainHolds } from '../../src/proxy/etcd-topology.js';
import type { Clock } from '../../src/proxy/clock.js';
import { ProxyRegistrar, type DrainSource, type ReachabilitySource, type RegisteredProxy } from '../../src/proxy/registration.js';
import { defaultLatency, SimDcsClient, type SimEtcd } from './etcd.js';
import { type Kernel, SimProcess } from './kernel.js';
import type { Rng } from './prng.js';

const SILENT = pino({ level: 'silent' });

/** The proxy process's clock: wall-clock ms on etcd's time plus an epoch, timers of this process only. */
function processClock(proc: SimProcess, wallEpoch: number): Clock {
  const k = proc.kernel;
  return {
    wallNow: () => k.now + wallEpoch,
    every(ms, fn) {
      let stopped = false;
      const tick = (): void => {
        if (stopped) return;
        fn();
        proc.at(k.now + ms, tick);
      };
      proc.at(k.now + ms, tick);
      return () => (stopped = true);
    },
    after(ms, fn) {
      let cancelled = false;
      proc.at(k.now + ms, () => {
        if (!cancelled) fn();
      });
      return () => (cancelled = true);
    },
  };
}

export class SimProxy {
  private proc: SimProcess | null = null;
  /** What the proxy's topology and reachability watchers tell the registrar. */
  private readonly events = new EventEmitter();
  /** The drain this proxy is holding transactions for, when it saw it, and when its transactions are done. */
  private drain: { id: string; seenAt: number; doneAt: number } | null = null;
  private lastAcknowledged: string | null = null;
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
    private readonly kernel: Kernel,
    private readonly rng: Rng,
    private readonly ttlSeconds: number,
    /** Added to the kernel's clock to give wall-clock ms, as the agents' clocks do (theirs with some skew). */
    private readonly wallEpoch: number,
  ) {}

  private get up(): boolean {
    return this.proc?.alive ?? false;
  }

  /** A cut-off is being reported: a fault the world waits to heal before it checks convergence. */
  get cutOff(): boolean {
    return Object.keys(this.unreachable).length > 0;
  }

  /** Called every simulation tick; new cut-offs begin only while `mayCut` (the fault window). */
  tick(now: number, mayCut: boolean): void {
    if (!this.up) {
      if (!this.etcd.outage && this.rng.chance(0.002)) this.start();
      return;
    }
    if (this.rng.chance(0.0005)) {
      // Crashed: nothing refreshes the lease any more; the key expires with it.
      this.proc!.kill();
      this.proc = null;
      return;
    }
    this.reachability(now, this.etcd.get('leader')?.value ?? null, mayCut);
    this.topologyChanged();
  }

  /** The proxy's etcd watch saw `drain` or `leader` change (or the tick polls). */
  topologyChanged(): void {
    if (!this.up) return;
    const drain = decodeDrain(this.etcd.get('drain')?.value);
    if (drain !== null && drain.id !== this.drain?.id) {
      // How long the transactions in flight take to finish; now and then one that never does.
      const doneAt = this.rng.chance(0.1) ? Infinity : this.kernel.now + this.rng.int(0, 800);
      this.drain = { id: drain.id, seenAt: this.kernel.now + this.wallEpoch, doneAt };
    }
    this.proc!.enter(() => this.events.emit('change'));
  }

  private reachability(now: number, leader: string | null, mayCut: boolean): void {
    const cut = Object.keys(this.unreachable).length > 0;
    if (cut && now >= this.cutUntil) {
      this.unreachable = {};
      this.proc!.enter(() => this.events.emit('reachability'));
    } else if (!cut && mayCut && leader !== null && this.rng.chance(0.001)) {
      this.cutUntil = now + this.rng.int(1000, 12_000);
      const since = now + this.wallEpoch;
      this.unreachable = { [leader]: since };
      if (this.rng.chance(0.25)) {
        for (const key of this.etcd.all().keys()) if (key.startsWith('members/')) this.unreachable[key.slice('members/'.length)] = since;
      }
      this.cutReports++;
      this.proc!.enter(() => this.events.emit('reachability'));
    }
  }

  /** A new proxy process: the production registrar with this proxy's simulated surroundings. */
  start(): void {
    const proc = new SimProcess(this.kernel);
    this.proc = proc;
    this.drain = null;
    const dcs = new SimDcsClient(this.etcd, proc, this.id, defaultLatency(this.rng.fork(this.kernel.now), this.etcd));
    const clock = processClock(proc, this.wallEpoch);
    const counting = {
      ensureLease: (ttl: number) => dcs.ensureLease(ttl),
      keepAlive: () => dcs.keepAlive(),
      publishProxy: async (r: ProxyRegistration) => {
        await dcs.publishProxy(r);
        if (r.drained && r.drained !== this.lastAcknowledged) {
          this.lastAcknowledged = r.drained;
          this.acks++;
        }
      },
    };
    const registered: RegisteredProxy = {
      address: { host: this.id, port: 6432 },
      roAddress: null,
      rwTransactionsInFlight: () => (this.drain !== null && this.kernel.now < this.drain.doneAt ? 1 : 0),
    };
    const drains: DrainSource = {
      pendingDrain: () => {
        const drain = decodeDrain(this.etcd.get('drain')?.value);
        const leader = this.etcd.get('leader')?.value ?? null;
        if (drain === null || this.drain === null || drain.id !== this.drain.id) return null;
        return drainHolds(drain, leader, this.drain.seenAt, clock.wallNow()) ? drain.id : null;
      },
      on: (_event, listener) => this.events.on('change', listener),
      off: (_event, listener) => this.events.off('change', listener),
    };
    const reachability: ReachabilitySource = {
      unreachable: () => ({ ...this.unreachable }),
      on: (_event, listener) => this.events.on('reachability', listener),
      off: (_event, listener) => this.events.off('reachability', listener),
    };
    this.events.removeAllListeners();
    const registrar = new ProxyRegistrar(counting, this.id, registered, drains, SILENT, reachability, null, clock);
    proc.enter(() => {
      // A proxy that cannot register exits (src/proxy/run.ts); it is started again later.
      registrar.start(this.ttlSeconds).catch(() => {
        if (this.proc === proc) {
          proc.kill();
          this.proc = null;
        }
      });
    });
  }
}
