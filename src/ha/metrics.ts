import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The agent's Prometheus metrics (served at the REST API's /metrics). */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly isLeader: Gauge;
  readonly pgRunning: Gauge;
  readonly pgPrimary: Gauge;
  readonly timeline: Gauge;
  readonly walPosition: Gauge;
  readonly lagBytes: Gauge;
  readonly paused: Gauge;
  readonly cycles: Counter;
  readonly cycleDuration: Histogram;
  readonly actions: Counter;
  readonly actionFailures: Counter;
  readonly dcsErrors: Counter;
  readonly emergencyStops: Counter;
  readonly rewinds: Counter;
  readonly reclones: Counter;

  /** `processMetrics`: Node's process metrics too (CPU, memory, event loop lag): one agent per process has them. */
  constructor(labels: { cluster: string; member: string }, processMetrics = true) {
    this.registry.setDefaultLabels(labels);
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'pgwarden_agent_' });
    const r = [this.registry];
    this.isLeader = new Gauge({ name: 'pgwarden_leader', help: '1 while this member holds the leader key', registers: r });
    this.pgRunning = new Gauge({ name: 'pgwarden_postgres_running', help: '1 while the local PostgreSQL runs', registers: r });
    this.pgPrimary = new Gauge({ name: 'pgwarden_postgres_primary', help: '1 while the local PostgreSQL runs as a primary', registers: r });
    this.timeline = new Gauge({ name: 'pgwarden_timeline', help: 'PostgreSQL timeline of this member', registers: r });
    this.walPosition = new Gauge({ name: 'pgwarden_wal_position_bytes', help: 'WAL position (primary: written; replica: received or replayed)', registers: r });
    this.lagBytes = new Gauge({ name: 'pgwarden_replication_lag_bytes', help: 'Bytes behind the last position the primary published', registers: r });
    this.paused = new Gauge({ name: 'pgwarden_paused', help: '1 while the cluster is in maintenance mode', registers: r });
    this.cycles = new Counter({ name: 'pgwarden_ha_cycles_total', help: 'HA loop cycles run', registers: r });
    this.cycleDuration = new Histogram({
      name: 'pgwarden_ha_cycle_duration_seconds',
      help: 'Duration of one HA loop cycle (observe, decide, act, publish)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    this.actions = new Counter({ name: 'pgwarden_ha_actions_total', help: 'Actions executed, by type', labelNames: ['action'], registers: r });
    this.actionFailures = new Counter({ name: 'pgwarden_ha_action_failures_total', help: 'Actions that failed, by type', labelNames: ['action'], registers: r });
    this.dcsErrors = new Counter({ name: 'pgwarden_dcs_errors_total', help: 'etcd calls that failed or timed out', registers: r });
    this.emergencyStops = new Counter({ name: 'pgwarden_lease_emergency_stops_total', help: 'Times the lease watchdog stopped PostgreSQL', registers: r });
    this.rewinds = new Counter({ name: 'pgwarden_rewinds_total', help: 'pg_rewind runs to rejoin as a replica, by result', labelNames: ['result'], registers: r });
    this.reclones = new Counter({
      name: 'pgwarden_reclones_total',
      help: "Times this member's data was replaced by a fresh clone (reinitialize: pg_rewind failed, or an operator asked)",
      registers: r,
    });
  }
}
