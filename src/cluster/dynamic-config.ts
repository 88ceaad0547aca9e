/** The dynamic settings kept in etcd's `config` key, and their defaults. */

/** Dynamic settings kept in etcd's `config` key; they change at run time. */
export interface DynamicConfig {
  /** Leader lease time-to-live, seconds. */
  ttl: number;
  /** Seconds between HA loop cycles. */
  loop_wait: number;
  /** Seconds an etcd or PostgreSQL call may take before it counts as failed. */
  retry_timeout: number;
  /** A replica lagging more than this many bytes is never promoted. */
  maximum_lag_on_failover: number;
  synchronous_mode: boolean;
  synchronous_mode_strict: boolean;
  synchronous_node_count: number;
  /** Maintenance: agents stop acting, PostgreSQL keeps running. */
  pause: boolean;
  /** Seconds a member may be absent before its replication slot is dropped. */
  member_slots_ttl: number;
  /**
   * Seconds a former primary that shut down cleanly with the whole cluster (see CleanShutdown) has to come back
   * after a restart before the replicas elect one of them, counted from each replica agent's first cycle.
   */
  primary_start_timeout: number;
  /** PostgreSQL parameters applied on every member. */
  postgresql: { parameters: Record<string, string | number | boolean> };
  /**
   * Seconds a primary handing over (switchover) waits for the live proxies to finish their in-flight
   * transactions before it shuts down anyway.
   */
  drain_timeout: number;
  /**
   * Seconds every live proxy must have reported the primary's PostgreSQL unreachable, while a replica stays
   * reachable to all of them, before the primary hands over to that replica (a partition between the primary and
   * the proxies only, which etcd and the replicas cannot see); 0 turns this off.
   */
  proxy_unreachable_timeout: number;
}

export const DEFAULT_DYNAMIC_CONFIG: DynamicConfig = {
  ttl: 5,
  loop_wait: 1,
  retry_timeout: 2,
  maximum_lag_on_failover: 1024 * 1024,
  synchronous_mode: false,
  synchronous_mode_strict: false,
  synchronous_node_count: 1,
  pause: false,
  member_slots_ttl: 1800,
  primary_start_timeout: 30,
  postgresql: { parameters: {} },
  drain_timeout: 5,
  proxy_unreachable_timeout: 3,
};
