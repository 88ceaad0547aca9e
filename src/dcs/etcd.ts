/**
 * The etcd implementation of `Dcs`, on the `etcd3` client.
 *
 * Time bounds: the HA loop's safety argument (demote before the leader lease can have expired) needs every
 * call to finish or fail within a known time. Each public method therefore gets one absolute deadline,
 * `callTimeoutMs` from its start, that is passed as the gRPC deadline of every round trip it makes and is
 * also enforced by a timer, whatever the client library's retries would do. etcd3's default fault handling
 * (3 retries, a 5 s circuit breaker per host, watch backoff up to 30 s) is replaced: a retry moves to another
 * endpoint only after a fast connection failure, and a host that failed is avoided for a while only while
 * another endpoint looks healthy, so a single-endpoint client is never refused locally after etcd comes back.
 *
 * Leases are never kept alive automatically: the agent decides when to refresh, so that a stalled agent loses
 * its leader key instead of being kept alive by a background timer.
 */
import {
  Etcd3,
  EtcdLeaseInvalidError,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
  type Lease,
  type Namespace,
  type Watcher,
} from 'etcd3';
import type { CleanShutdown, ClusterView, DrainRequest, FailoverIntent, HistoryEntry, Lsn, MemberStatus, SyncState } from '../cluster/types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';
import { PgwardenError, isPgwardenError } from '../errors.js';
import { KEYS, clusterPrefix } from '../cluster/keys.js';
import type { Dcs } from './dcs.js';
import type { EtcdTls } from './etcd-tls.js';
import {
  decodeCluster,
  decodeHistory,
  decodeProxies,
  encodeProxy,
  type ProxyRegistration,
  encodeConfig,
  encodeDrain,
  encodeShutdown,
  encodeFailover,
  encodeHistory,
  encodeInitialize,
  encodeLeader,
  encodeMember,
  encodeOptime,
  encodeSync,
} from './codec.js';

export interface EtcdDcsOptions {
  /** etcd client URLs (`http://host:2379`, `https://...`, or bare `host:port`). */
  endpoints: string[];
  cluster: string;
  username?: string;
  password?: string;
  /** Upper bound of every method's duration, ms. Default 1000. */
  callTimeoutMs?: number;
  /** TLS (https:// endpoints): the CA of etcd's certificate and the client certificate it may require. */
  tls?: EtcdTls | null;
}

export const DEFAULT_CALL_TIMEOUT_MS = 1000;

/** How long a failed endpoint is avoided while another one looks healthy. */
const SUSPECT_HOST_MS = 3000;
/** Watch stream reconnection backoff; capped low because a missed leader change delays failover. */
const WATCH_BACKOFF_INITIAL_MS = 100;
const WATCH_BACKOFF_MAX_MS = 1000;
/** After a watch is cancelled by etcd (e.g. compacted revision) it is re-created after this delay. */
const WATCH_RECREATE_MS = 200;

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type FaultPolicy = NonNullable<FaultHandling['global']>;
type WatchBackoff = NonNullable<FaultHandling['watchBackoff']>;

/** The options every round trip of one method shares: its absolute gRPC deadline. */
interface CallBudget {
  deadline: number;
}

class HostSkipped extends Error {
  constructor(host: string) {
    super(`etcd endpoint ${host} failed recently; trying another endpoint`);
  }
}

function isRecoverable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && isRecoverableError(error as Error);
}

function noEvent(): { dispose(): void } {
  return { dispose() {} };
}

function policy(execute: (fn: () => unknown) => Promise<unknown>): FaultPolicy {
  const signal = new AbortController().signal;
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: (fn: (context: { signal: AbortSignal }) => unknown) => execute(() => fn({ signal })),
  } as unknown as FaultPolicy;
}

function cappedBackoff(duration: number): WatchBackoff {
  return {
    duration,
    next: () => cappedBackoff(Math.min(WATCH_BACKOFF_MAX_MS, duration * 2)),
  } as WatchBackoff;
}

function faultHandling(endpoints: string[]): FaultHandling {
  const suspectUntil = new Map<string, number>();
  const healthy = (host: string, now: number): boolean => (suspectUntil.get(host) ?? 0) <= now;
  return {
    host: (host: string) =>
      policy(async (fn) => {
        const now = Date.now();
        if (!healthy(host, now) && endpoints.some((other) => other !== host && healthy(other, now))) {
          throw new HostSkipped(host);
        }
        try {
          const result = await fn();
          suspectUntil.delete(host);
          return result;
        } catch (error) {
          if (isRecoverable(error)) suspectUntil.set(host, Date.now() + SUSPECT_HOST_MS);
          throw error;
        }
      }),
    // Retry on another endpoint only after a fast failure (refused, reset); a timed-out attempt has used
    // the whole budget, and retrying it would only mark a healthy endpoint as failed.
    global: policy(async (fn) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn();
        } catch (error) {
          if (attempt >= endpoints.length || !isRecoverable(error) || error instanceof GRPCDeadlineExceededError) {
            throw error;
          }
        }
      }
    }),
    watchBackoff: cappedBackoff(WATCH_BACKOFF_INITIAL_MS),
  };
}

function validateOptions(options: EtcdDcsOptions): void {
  if (options.endpoints.length === 0 || options.endpoints.some((e) => e.trim() === '')) {
    throw new PgwardenError('CONFIG_INVALID', 'etcd endpoints are empty: give at least one URL such as http://127.0.0.1:2379');
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(options.cluster)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `cluster name ${JSON.stringify(options.cluster)} is invalid: use letters, digits, '.', '_' or '-' (it becomes part of etcd keys)`,
    );
  }
  const timeout = options.callTimeoutMs;
  if (timeout !== undefined && (!Number.isFinite(timeout) || timeout <= 0)) {
    throw new PgwardenError('CONFIG_INVALID', `etcd call timeout must be a positive number of ms, got ${timeout}`);
  }
  if ((options.username === undefined) !== (options.password === undefined)) {
    throw new PgwardenError('CONFIG_INVALID', 'etcd username and password must be given together');
  }
}

export class EtcdDcs implements Dcs {
  readonly cluster: string;
  readonly endpoints: readonly string[];
  readonly callTimeoutMs: number;
  /** TLS is in use (https:// endpoints or certificates given): failures then also point at the certificate settings. */
  private readonly usesTls: boolean;

  private readonly client: Etcd3;
  private readonly ns: Namespace;

  private lease: Lease | null = null;
  private leaseId: string | null = null;
  /** etcd said the lease is expired or revoked: the next lease-bound write grants a new one. */
  private leaseLost = false;
  private ttlSeconds: number | null = null;
  private readonly watches = new Set<{ close(): Promise<void> }>();
  private closed = false;

  constructor(options: EtcdDcsOptions) {
    validateOptions(options);
    this.cluster = options.cluster;
    this.endpoints = [...options.endpoints];
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.usesTls = !!options.tls || options.endpoints.some((e) => e.startsWith('https://'));
    const timeout = this.callTimeoutMs;
    this.client = new Etcd3({
      hosts: [...options.endpoints],
      auth:
        options.username !== undefined && options.password !== undefined
          ? { username: options.username, password: options.password }
          : undefined,
      // grpc's createSsl: a null CA means the system's CAs. The type wants a Buffer, the call takes null.
      ...(options.tls
        ? {
            credentials: {
              rootCertificate: options.tls.cacert as Buffer,
              ...(options.tls.key ? { privateKey: options.tls.key } : {}),
              ...(options.tls.cert ? { certChain: options.tls.cert } : {}),
            },
          }
        : {}),
      // Fallback for calls made without explicit options (the auth token exchange); streams stay open.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
      // The host policy factory is called with each entry of `hosts` exactly as given.
      faultHandling: faultHandling([...options.endpoints]),
      grpcOptions: {
        // gRPC's default reconnect backoff grows to 120 s: after an etcd restart that would keep us blind.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        // Detect a silently dead connection under a long-lived watch. etcd refuses pings more often than 5 s.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 3000,
      },
    });
    this.ns = this.client.namespace(clusterPrefix(this.cluster));
  }

  /** Creates a client and checks that etcd answers; rejects with DCS_UNAVAILABLE (client closed) if not. */
  static async connect(options: EtcdDcsOptions): Promise<EtcdDcs> {
    const dcs = new EtcdDcs(options);
    try {
      await dcs.call('a first read', (budget) => dcs.ns.get(KEYS.initialize).options(budget).exec());
      return dcs;
    } catch (error) {
      await dcs.close();
      throw error;
    }
  }

  async load(): Promise<ClusterView> {
    const raw = await this.call('read the cluster', (budget) => this.ns.getAll().options(budget).strings());
    return decodeCluster(raw);
  }

  /**
   * Calls `onChange(key)` for every put or delete under the cluster prefix. A watch that etcd cancels
   * (history compacted while disconnected) is re-created and reports `onChange('')`: "anything may have
   * changed, reload everything". Reconnection after an etcd restart replays the missed revisions.
   */
  async watch(onChange: (key: string) => void): Promise<{ close(): Promise<void> }> {
    let active = true;
    let current: Watcher | null = null;
    let retryTimer: NodeJS.Timeout | null = null;

    const attach = (watcher: Watcher): void => {
      const notify = (kv: IKeyValue): void => {
        if (active && current === watcher) onChange(kv.key.toString());
      };
      watcher.on('put', notify);
      watcher.on('delete', notify);
      watcher.on('error', () => {
        if (!active || current !== watcher) return;
        current = null;
        const recreate = (): void => {
          retryTimer = null;
          if (!active || this.closed) return;
          this.startWatcher()
            .then((next) => {
              if (!active) {
                void next.cancel().catch(() => undefined);
                return;
              }
              current = next;
              attach(next);
              onChange('');
            })
            .catch(() => {
              retryTimer = setTimeout(recreate, WATCH_RECREATE_MS);
            });
        };
        retryTimer = setTimeout(recreate, WATCH_RECREATE_MS);
      });
    };

    current = await this.startWatcher();
    attach(current);

    const handle = {
      close: async (): Promise<void> => {
        if (!active) return;
        active = false;
        this.watches.delete(handle);
        if (retryTimer !== null) clearTimeout(retryTimer);
        const watcher = current;
        current = null;
        // Cancelling waits for etcd's acknowledgement; an unreachable etcd must not hold up shutdown.
        if (watcher !== null) await this.bounded(watcher.cancel()).catch(() => undefined);
      },
    };
    this.watches.add(handle);
    return handle;
  }

  async ensureLease(ttlSeconds: number): Promise<void> {
    if (!Number.isFinite(ttlSeconds) || ttlSeconds < 1) {
      throw new PgwardenError('CONFIG_INVALID', `lease ttl must be at least 1 second, got ${ttlSeconds}`);
    }
    // A TTL change applies at the next grant: re-granting now would orphan the keys bound to the live lease.
    this.ttlSeconds = Math.ceil(ttlSeconds);
    if (this.lease !== null && !this.leaseLost) return;
    await this.call('grant a lease', (budget) => this.grantLease(budget));
  }

  async keepAlive(): Promise<boolean> {
    const lease = this.lease;
    if (lease === null || this.leaseLost) return false;
    return this.call('refresh the lease', (budget) => this.keepAliveOnce(lease, budget));
  }

  async publishMember(status: MemberStatus): Promise<void> {
    if (status.name === '' || status.name.includes('/')) {
      throw new PgwardenError('CONFIG_INVALID', `member name ${JSON.stringify(status.name)} is invalid: it must be non-empty and contain no '/'`);
    }
    await this.call(`publish member ${status.name}`, (budget) =>
      this.withLease(budget, (lease) =>
        lease.put(KEYS.members + status.name).value(encodeMember(status)).options(budget).exec(),
      ),
    );
  }

  async deleteMember(name: string): Promise<void> {
    await this.call(`delete member ${name}`, (budget) =>
      this.ns.delete().key(KEYS.members + name).options(budget).exec(),
    );
  }

  /**
   * Create-if-absent bound to our lease. A key holding `name` under another lease (e.g. left by a previous
   * incarnation of this agent) is deliberately not taken over: two processes configured with the same
   * member name would otherwise steal the key from each other and both act as primary between refreshes.
   * Such a key is free again once its lease expires (at most one TTL).
   */
  async acquireLeader(name: string): Promise<boolean> {
    return this.call(`acquire the leader key for ${name}`, (budget) =>
      this.withLease(budget, async (lease, leaseId) => {
        const response = await this.ns
          .if(KEYS.leader, 'Create', '==', 0)
          .then(lease.put(KEYS.leader).value(encodeLeader(name)))
          .else(this.ns.get(KEYS.leader))
          .options(budget)
          .commit();
        if (response.succeeded) return true;
        const existing = response.responses[0]?.response_range?.kvs[0];
        if (existing === undefined || existing.value.toString() !== name) return false;
        // Already ours (a retry after a lost response) counts as acquired.
        if (existing.lease === leaseId) return true;
        // Held under our name by an earlier incarnation of this agent (restarted while primary): a member name
        // stands for one PostgreSQL server, so the key is rebound to our lease — compare-and-swap on its
        // revision — instead of leaving the cluster without a writable primary until the old lease runs out.
        const rebound = await this.ns
          .if(KEYS.leader, 'Mod', '==', existing.mod_revision)
          .then(lease.put(KEYS.leader).value(encodeLeader(name)))
          .options(budget)
          .commit();
        return rebound.succeeded;
      }),
    );
  }

  async refreshLeader(name: string): Promise<boolean> {
    const lease = this.lease;
    const leaseId = this.leaseId;
    if (lease === null || leaseId === null || this.leaseLost) return false;
    return this.call(`refresh the leader key for ${name}`, async (budget) => {
      if (!(await this.keepAliveOnce(lease, budget))) return false;
      const response = await this.ns.get(KEYS.leader).options(budget).exec();
      const kv = response.kvs[0];
      // The key must be bound to the lease just refreshed, or its expiry is not what we think it is.
      return kv !== undefined && kv.value.toString() === name && kv.lease === leaseId;
    });
  }

  async releaseLeader(name: string): Promise<void> {
    await this.call(`release the leader key of ${name}`, (budget) =>
      this.ns
        .if(KEYS.leader, 'Value', '==', encodeLeader(name))
        .then(this.ns.delete().key(KEYS.leader))
        .options(budget)
        .commit(),
    );
  }

  async claimInitialize(): Promise<boolean> {
    return this.createIfAbsent('claim the bootstrap', KEYS.initialize, '');
  }

  async setInitialize(systemId: string): Promise<void> {
    await this.put('record the system identifier', KEYS.initialize, encodeInitialize(systemId));
  }

  /** Deletes `initialize` only while it still says "bootstrap in progress", never a recorded system id. */
  async deleteInitialize(): Promise<void> {
    await this.call('remove the bootstrap claim', (budget) =>
      this.ns
        .if(KEYS.initialize, 'Value', '==', '')
        .then(this.ns.delete().key(KEYS.initialize))
        .options(budget)
        .commit(),
    );
  }

  async setConfig(config: DynamicConfig): Promise<void> {
    await this.put('store the dynamic config', KEYS.config, encodeConfig(config));
  }

  async initConfig(config: DynamicConfig): Promise<boolean> {
    return this.createIfAbsent('initialise the dynamic config', KEYS.config, encodeConfig(config));
  }

  async setSync(sync: SyncState): Promise<void> {
    await this.put('store the sync state', KEYS.sync, encodeSync(sync));
  }

  async setFailover(intent: FailoverIntent): Promise<void> {
    await this.put('store the failover request', KEYS.failover, encodeFailover(intent));
  }

  async clearFailover(): Promise<void> {
    await this.call('clear the failover request', (budget) => this.ns.delete().key(KEYS.failover).options(budget).exec());
  }

  /**
   * Compare-and-swap on the key's mod revision until it sticks, so concurrent writers never drop each
   * other's entries. An entry already present (a retry after a lost response) is not added twice.
   */
  async appendHistory(entry: HistoryEntry): Promise<void> {
    await this.call('append to the history', async (budget) => {
      while (Date.now() < budget.deadline) {
        const current = await this.ns.get(KEYS.history).options(budget).exec();
        const kv = current.kvs[0];
        const entries = decodeHistory(kv?.value.toString());
        if (entries.some((e) => sameHistoryEntry(e, entry))) return;
        const written = await this.ns
          .if(KEYS.history, 'Mod', '==', kv?.mod_revision ?? '0')
          .then(this.ns.put(KEYS.history).value(encodeHistory([...entries, entry])))
          .options(budget)
          .commit();
        if (written.succeeded) return;
      }
      throw new PgwardenError('DCS_CONFLICT', 'history kept changing under concurrent writers; retry the append');
    });
  }

  async setDrain(drain: DrainRequest): Promise<void> {
    await this.call('ask the proxies to drain', (budget) =>
      this.withLease(budget, (lease) => lease.put(KEYS.drain).value(encodeDrain(drain)).options(budget).exec()),
    );
  }

  async clearDrain(): Promise<void> {
    await this.call('clear the drain request', (budget) => this.ns.delete().key(KEYS.drain).options(budget).exec());
  }

  async setShutdown(shutdown: CleanShutdown): Promise<void> {
    await this.put('record the clean shutdown of the primary', KEYS.shutdown, encodeShutdown(shutdown));
  }

  async clearShutdown(): Promise<void> {
    await this.call('clear the clean shutdown record', (budget) => this.ns.delete().key(KEYS.shutdown).options(budget).exec());
  }

  /** Puts `proxies/<id>` bound to this client's lease (ensureLease first): it vanishes when the proxy dies. */
  async publishProxy(registration: ProxyRegistration): Promise<void> {
    await this.call(`publish proxy ${registration.id}`, (budget) =>
      this.withLease(budget, (lease) => lease.put(KEYS.proxies + registration.id).value(encodeProxy(registration)).options(budget).exec()),
    );
  }

  async deleteProxy(id: string): Promise<void> {
    await this.call(`remove proxy ${id}`, (budget) => this.ns.delete().key(KEYS.proxies + id).options(budget).exec());
  }

  /** The live proxies (`proxies/<id>`), sorted by id. */
  async loadProxies(): Promise<ProxyRegistration[]> {
    const raw = await this.call('read the proxies', (budget) => this.ns.getAll().prefix(KEYS.proxies).options(budget).strings());
    // getAll under a prefix returns keys relative to the namespace, i.e. still starting with proxies/.
    return decodeProxies(raw);
  }

  async setOptime(lsn: Lsn): Promise<void> {
    await this.put('store the optime', KEYS.optime, encodeOptime(lsn));
  }

  /** Never rejects: with `revoke` a failed revocation only means the keys expire after the TTL instead. */
  async close(options: { revoke?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    const lease = this.lease;
    const revoking =
      lease !== null && options.revoke === true && !this.leaseLost
        ? this.call('revoke the lease', (budget) => lease.revoke(budget)).catch(() => undefined)
        : lease?.release();
    // Both are bounded by the call timeout and run side by side, so closing takes at most one timeout.
    await Promise.all([revoking, ...[...this.watches].map((w) => w.close())]);
    this.closed = true;
    this.lease = null;
    this.leaseId = null;
    this.client.close();
  }

  // ---- internals ----

  private async put(what: string, key: string, value: string): Promise<void> {
    await this.call(what, (budget) => this.ns.put(key).value(value).options(budget).exec());
  }

  private async createIfAbsent(what: string, key: string, value: string): Promise<boolean> {
    const response = await this.call(what, (budget) =>
      this.ns.if(key, 'Create', '==', 0).then(this.ns.put(key).value(value)).options(budget).commit(),
    );
    return response.succeeded;
  }

  private async grantLease(budget: CallBudget): Promise<{ lease: Lease; leaseId: string }> {
    const ttl = this.ttlSeconds;
    if (ttl === null) throw new PgwardenError('INTERNAL', 'a lease-bound write was made before ensureLease()');
    const lease = this.ns.lease(ttl, { autoKeepAlive: false, deadline: budget.deadline });
    lease.on('lost', () => {
      if (this.lease === lease) this.leaseLost = true;
    });
    let leaseId: string;
    try {
      leaseId = await lease.grant();
    } catch (error) {
      lease.release();
      throw error;
    }
    if (this.closed) {
      lease.release();
      throw new PgwardenError('INTERNAL', 'the etcd client was closed while a lease was being granted');
    }
    this.lease?.release();
    this.lease = lease;
    this.leaseId = leaseId;
    this.leaseLost = false;
    return { lease, leaseId };
  }

  /** Resolves false when etcd says the lease is gone (and marks it lost); rejects on other failures. */
  private async keepAliveOnce(lease: Lease, budget: CallBudget): Promise<boolean> {
    try {
      await lease.keepaliveOnce(budget);
      return true;
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) {
        if (this.lease === lease) this.leaseLost = true;
        return false;
      }
      throw error;
    }
  }

  /**
   * Runs a lease-bound write on the live lease, granting a new one (same TTL) when the old one is known to
   * be lost or etcd reports it gone during the write. A key bound to a fresh lease is never mistaken for a
   * refreshed leadership: refreshLeader checks the lease id the leader key is bound to.
   */
  private async withLease<T>(budget: CallBudget, write: (lease: Lease, leaseId: string) => Promise<T>): Promise<T> {
    let lease = this.lease;
    let leaseId = this.leaseId;
    if (lease === null || leaseId === null || this.leaseLost) ({ lease, leaseId } = await this.grantLease(budget));
    try {
      return await write(lease, leaseId);
    } catch (error) {
      if (!(error instanceof EtcdLeaseInvalidError)) throw error;
      if (this.lease === lease) this.leaseLost = true;
      const fresh = await this.grantLease(budget);
      return write(fresh.lease, fresh.leaseId);
    }
  }

  private startWatcher(): Promise<Watcher> {
    return this.call('start a watch', () => {
      const watcher = this.ns.watch().prefix('').watcher();
      // An EventEmitter 'error' without a listener throws; an abandoned watcher may still emit one.
      watcher.on('error', () => undefined);
      return new Promise<Watcher>((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          void watcher.cancel().catch(() => undefined);
          reject(new GRPCDeadlineExceededError('watch was not confirmed in time'));
        }, this.callTimeoutMs);
        const onConnected = (): void => {
          cleanup();
          resolve(watcher);
        };
        const onError = (error: Error): void => {
          cleanup();
          reject(error);
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          watcher.removeListener('connected', onConnected);
          watcher.removeListener('error', onError);
        };
        watcher.on('connected', onConnected);
        watcher.on('error', onError);
      });
    });
  }

  /** Resolves or rejects with `work`, or rejects when the call budget has passed, whichever comes first. */
  private bounded<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new GRPCDeadlineExceededError(`no answer within ${this.callTimeoutMs} ms`)),
        this.callTimeoutMs,
      );
    });
    // The loser of the race may still settle later; it must not become an unhandled rejection.
    work.catch(() => undefined);
    return Promise.race([work, expired]).finally(() => clearTimeout(timer));
  }

  private async call<T>(what: string, run: (budget: CallBudget) => Promise<T>): Promise<T> {
    if (this.closed) {
      throw new PgwardenError('INTERNAL', `cannot ${what}: the etcd client for cluster ${this.cluster} was closed`);
    }
    const budget: CallBudget = { deadline: Date.now() + this.callTimeoutMs };
    try {
      return await this.bounded(Promise.resolve().then(() => run(budget)));
    } catch (error) {
      throw this.translate(what, error);
    }
  }

  private translate(what: string, error: unknown): PgwardenError {
    if (isPgwardenError(error)) return error;
    const endpoints = this.endpoints.join(', ');
    const detail = error instanceof Error ? error.message : String(error);
    if (error instanceof EtcdAuthenticationFailedError || error instanceof EtcdPermissionDeniedError) {
      return new PgwardenError(
        'DCS_UNAVAILABLE',
        `etcd at ${endpoints} refused to ${what} (${detail}); check the etcd username, password and role permissions`,
        { cause: error },
      );
    }
    if (this.usesTls) {
      return new PgwardenError(
        'DCS_UNAVAILABLE',
        `etcd at ${endpoints} did not ${what} within ${this.callTimeoutMs} ms (${detail}); check that etcd is running and reachable, ` +
          'and that etcd.cacert, etcd.cert and etcd.key name the CA of etcd\'s certificate and a client certificate etcd trusts (etcd --trusted-ca-file)',
        { cause: error },
      );
    }
    return new PgwardenError(
      'DCS_UNAVAILABLE',
      `etcd at ${endpoints} did not ${what} within ${this.callTimeoutMs} ms (${detail}); check that etcd is running and reachable`,
      { cause: error },
    );
  }
}

function sameHistoryEntry(a: HistoryEntry, b: HistoryEntry): boolean {
  return a.timeline === b.timeline && a.lsn === b.lsn && a.at === b.at && a.reason === b.reason && a.leader === b.leader;
}
