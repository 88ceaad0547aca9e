/**
 * The proxy's key `proxies/<id>` in etcd: liveness on the proxy's own lease (re-published after an etcd outage
 * cost the lease), and its side of the zero-error switchover (docs/ha.md). When the primary asks for a drain, the
 * EtcdTopology makes the rw pools hold new transactions; this registrar watches the transactions still running
 * and, once none is left, acknowledges the drain under the proxy's key so the primary can shut down.
 * With a reachability source it also publishes which members' PostgreSQL the proxy cannot reach, again on every
 * change, so that the primary can tell when every proxy is cut off from it.
 */
import type { Logger } from 'pino';
import type { Dcs } from '../dcs/dcs.js';
import type { ProxyRegistration } from '../dcs/codec.js';
import { formatHostPort } from '../config/schema.js';
import { describeError } from '../errors.js';
import { type Clock, realClock } from './clock.js';

/** How often the registration's lease is refreshed, as a share of its TTL. */
const KEEPALIVE_SHARE = 1 / 3;
/** How often the transactions in flight are counted while a drain waits for them. */
const DRAIN_POLL_MS = 5;

export interface RegisteredProxy {
  readonly address: { host: string; port: number };
  readonly roAddress: { host: string; port: number } | null;
  rwTransactionsInFlight(): number;
}

/** Where operators find the proxy's console and metrics, published so that `pgwarden list` can show them. */
export interface OperationsAddresses {
  /** The metrics listener (metrics_listen as bound), or null without one. */
  metrics: { host: string; port: number } | null;
}

export interface DrainSource {
  /** The id of the drain to complete and acknowledge, or null. */
  pendingDrain(): string | null;
  on(event: 'change', listener: () => void): unknown;
  off(event: 'change', listener: () => void): unknown;
}

/** Which members' PostgreSQL this proxy cannot reach (MemberReachability), published with the registration. */
export interface ReachabilitySource {
  /** Member name → wall-clock ms since when it has been unreachable. */
  unreachable(): Record<string, number>;
  on(event: 'change', listener: () => void): unknown;
  off(event: 'change', listener: () => void): unknown;
}

export class ProxyRegistrar {
  private stopRefresh: (() => void) | null = null;
  private stopDrainPoll: (() => void) | null = null;
  /** The last drain acknowledged in etcd. */
  private drained: string | null = null;
  private acknowledging: string | null = null;
  private drainStartedAt = 0;
  private readonly onTopology = (): void => this.checkDrain();
  /** The put of `proxies/<id>` in flight, and the one queued behind it that every later publish() shares. */
  private putting: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** What etcd holds may be older than what this proxy knows (a put failed): the next refresh publishes. */
  private outdated = false;
  private running = false;
  private readonly onReachability = (): void => {
    if (!this.running) return;
    this.publish().catch((e: unknown) => {
      if (this.running) this.log.warn({ err: describeError(e) }, "could not publish this proxy's reachability of the members in etcd; retrying");
    });
  };

  constructor(
    private readonly dcs: Pick<Dcs, 'ensureLease' | 'keepAlive'> & { publishProxy(r: ProxyRegistration): Promise<void> },
    private readonly id: string,
    private readonly proxy: RegisteredProxy,
    private readonly drains: DrainSource,
    private readonly log: Logger,
    private readonly reachability: ReachabilitySource | null = null,
    private readonly operations: OperationsAddresses | null = null,
    /** Time and timers; the process's own by default (the simulator passes simulated ones). */
    private readonly clock: Clock = realClock,
  ) {}

  async start(ttl: number): Promise<void> {
    await this.dcs.ensureLease(ttl);
    this.running = true;
    // Subscribed before the first put: a change while it is in flight is published right after it.
    this.reachability?.on('change', this.onReachability);
    await this.publish();
    this.stopRefresh = this.clock.every(ttl * 1000 * KEEPALIVE_SHARE, () => void this.refresh());
    this.drains.on('change', this.onTopology);
    this.checkDrain();
  }

  stop(): void {
    this.stopRefresh?.();
    this.stopRefresh = null;
    this.stopPolling();
    this.drains.off('change', this.onTopology);
    this.running = false;
    this.reachability?.off('change', this.onReachability);
  }

  /**
   * Puts the registration as it is now. Puts never overlap: two concurrent puts of the key may land in either
   * order, and a stale one landing last could erase a drain acknowledgement. A call while one is in flight shares
   * the single put queued behind it, which reads the state only when it starts, so bursts cost one put.
   */
  private publish(): Promise<void> {
    if (this.queued !== null) return this.queued;
    if (this.putting === null) return this.put();
    const queued = this.putting
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.put();
      });
    this.queued = queued;
    return queued;
  }

  private put(): Promise<void> {
    const rw = this.proxy.address;
    const ro = this.proxy.roAddress;
    this.outdated = false;
    const put = this.dcs
      .publishProxy({
        id: this.id,
        rw: `${rw.host}:${rw.port}`,
        ro: ro === null ? null : `${ro.host}:${ro.port}`,
        updatedAt: this.clock.wallNow(),
        drained: this.drained,
        ...(this.reachability === null ? {} : { unreachable: this.reachability.unreachable() }),
        ...(this.operations === null
          ? {}
          : {
              // The console answers on the rw listener, as database pgbouncer (or pgwarden).
              admin: `postgresql://${formatHostPort(rw.host, rw.port)}/pgbouncer`,
              metrics: this.operations.metrics === null ? null : `http://${formatHostPort(this.operations.metrics.host, this.operations.metrics.port)}/metrics`,
            }),
      })
      .catch((e: unknown) => {
        this.outdated = true;
        throw e;
      })
      .finally(() => {
        if (this.putting === put) this.putting = null;
      });
    this.putting = put;
    return put;
  }

  private async refresh(): Promise<void> {
    try {
      if (!(await this.dcs.keepAlive()) || this.outdated) await this.publish();
    } catch (e) {
      this.log.warn({ err: describeError(e) }, "could not refresh this proxy's registration in etcd; retrying");
    }
  }

  /** Acknowledges the pending drain once no rw transaction runs; polls until then. */
  private checkDrain(): void {
    const id = this.drains.pendingDrain();
    if (id === null || id === this.drained) {
      this.stopPolling();
      return;
    }
    if (this.stopDrainPoll === null) {
      this.drainStartedAt = this.clock.wallNow();
      this.log.info({ drain: id }, 'switchover drain requested: holding new read-write transactions, letting those in flight finish');
      this.stopDrainPoll = this.clock.every(DRAIN_POLL_MS, () => this.checkDrain());
    }
    if (this.acknowledging === id || this.proxy.rwTransactionsInFlight() > 0) return;
    this.acknowledging = id;
    this.drained = id;
    this.publish().then(
      () => {
        this.acknowledging = null;
        this.log.info({ drain: id, ms: this.clock.wallNow() - this.drainStartedAt }, 'drained for the switchover: no read-write transaction in flight; acknowledged');
        this.checkDrain();
      },
      (e: unknown) => {
        // Retried by the poll: the primary waits for the acknowledgement (at most its drain_timeout).
        this.acknowledging = null;
        if (this.drained === id) this.drained = null;
        this.log.warn({ err: describeError(e) }, 'could not acknowledge the drain in etcd; retrying');
      },
    );
  }

  private stopPolling(): void {
    this.stopDrainPoll?.();
    this.stopDrainPoll = null;
  }
}
