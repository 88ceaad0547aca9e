import type { ClusterView, FailoverIntent, MemberStatus } from '../cluster/types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

/**
 * What the REST API needs from the agent. The API only reads state and writes intents through these methods;
 * it never promotes, demotes or touches PostgreSQL itself.
 */
export interface ApiBackend {
  /** This member's name (as in `members/<name>`). */
  readonly memberName: string;
  /** The cluster's name (Patroni's "scope"). */
  readonly cluster: string;
  /** This member's latest published status, or null before the agent's first cycle. */
  status(): MemberStatus | null;
  /** The last cluster view read from etcd, or null when it was never read. */
  view(): ClusterView | null;
  /** The local PostgreSQL is running and answered its last probe. */
  pgRunning(): boolean;
  /** Writes the intent to etcd's `failover` key; rejects (PgwardenError DCS_UNAVAILABLE…) when it could not. */
  requestFailover(intent: FailoverIntent): Promise<void>;
  /** Replaces etcd's `config` key with an already validated configuration. */
  setDynamicConfig(config: DynamicConfig): Promise<void>;
  /** Flags for the agent's next cycle (AgentMemory.requests); they return at once. */
  requestRestart(): void;
  requestReload(): void;
  requestReinitialize(): void;
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  readonly metricsContentType: string;
}
