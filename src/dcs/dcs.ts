import type { CleanShutdown, ClusterView, DrainRequest, FailoverIntent, HistoryEntry, Lsn, MemberStatus, SyncState } from '../cluster/types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

/**
 * The distributed configuration store as the rest of pgwarden sees it. The etcd implementation is the only
 * one used outside tests; nothing outside `src/dcs` knows etcd.
 *
 * Leases: each agent owns one lease (TTL = `ttl`); its member key and, while it is primary, the leader key
 * are bound to it. `keepAlive()` refreshes both at once.
 *
 * Every method rejects with a `PgwardenError` of code DCS_UNAVAILABLE when etcd does not answer within the
 * per-call timeout, so callers never hang on a partitioned etcd.
 */
export interface Dcs {
  readonly cluster: string;

  /** Reads every key of the cluster in one round trip. */
  load(): Promise<ClusterView>;

  /** Calls `onChange` (with the key relative to the cluster prefix) whenever any cluster key changes. */
  watch(onChange: (key: string) => void): Promise<{ close(): Promise<void> }>;

  /** Creates (or re-creates after expiry) this client's lease with the given TTL in seconds. */
  ensureLease(ttlSeconds: number): Promise<void>;
  /** Refreshes the lease once. Resolves true when etcd confirmed it, false when the lease had expired. */
  keepAlive(): Promise<boolean>;

  /** Puts `members/<name>` bound to the lease. */
  publishMember(status: MemberStatus): Promise<void>;
  deleteMember(name: string): Promise<void>;

  /** Create-if-absent of `leader` = name, bound to the lease. True when this call created it. */
  acquireLeader(name: string): Promise<boolean>;
  /**
   * Refreshes the lease and confirms `leader` still holds `name`. False when the key is gone or held by
   * someone else (the caller must stop accepting writes).
   */
  refreshLeader(name: string): Promise<boolean>;
  /** Deletes `leader` only if it holds `name`. */
  releaseLeader(name: string): Promise<void>;

  /** Create-if-absent of `initialize` with '' (bootstrap in progress). True when this call won the race. */
  claimInitialize(): Promise<boolean>;
  /** Records the system identifier once the bootstrap succeeded. */
  setInitialize(systemId: string): Promise<void>;
  /** Removes a failed bootstrap's claim so another member can try. */
  deleteInitialize(): Promise<void>;

  /** Stores the dynamic config (replaces it whole). */
  setConfig(config: DynamicConfig): Promise<void>;
  /** Create-if-absent of the dynamic config (bootstrap). */
  initConfig(config: DynamicConfig): Promise<boolean>;

  setSync(sync: SyncState): Promise<void>;
  setFailover(intent: FailoverIntent): Promise<void>;
  clearFailover(): Promise<void>;
  appendHistory(entry: HistoryEntry): Promise<void>;
  setOptime(lsn: Lsn): Promise<void>;
  /** Puts `drain` bound to the lease: the request vanishes with the primary that asked. */
  setDrain(drain: DrainRequest): Promise<void>;
  clearDrain(): Promise<void>;
  /** Puts `shutdown` without a lease: it must outlive the agent that writes it. */
  setShutdown(shutdown: CleanShutdown): Promise<void>;
  clearShutdown(): Promise<void>;

  /** Revokes the lease (members and leader keys vanish at once) and closes the connection. */
  close(options?: { revoke?: boolean }): Promise<void>;
}
