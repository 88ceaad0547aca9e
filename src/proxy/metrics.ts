/**
 * The proxy's Prometheus /metrics (prom-client): pool gauges and traffic counters under pgbouncer_exporter's
 * metric names (database/user labels), so dashboards built for PgBouncer read them as is; plus what PgBouncer
 * has no word for: transaction and query latency histograms, where transactions and server connections go
 * (rw/ro, which server), clients pinned by session state, the current primary and how many primary changes the
 * proxy followed.
 * Values are read from the pools' counters and the admin console at scrape time: nothing is counted on the hot
 * path beyond PoolCounters' additions. With worker threads each worker has such a registry and the main thread
 * serves their sum (prom-client's AggregatorRegistry, each metric naming how its values combine).
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Registry, prometheusContentType } from 'prom-client';
import type { AdminConsole } from './admin/console.js';
import type { StatsTotals } from './admin/stats.js';
import { LATENCY_BUCKETS_US } from './pool/counters.js';
import type { ProxyServer } from './server.js';
import type { Endpoint, Topology } from './topology.js';

export interface ProxyMetricsOptions {
  console: AdminConsole;
  topology: Topology;
  /** The pools' counters and connections. */
  proxy: Pick<ProxyServer, 'poolCounters' | 'serverPools' | 'clientFailures'>;
}

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}

/**
 * A metric whose samples are computed at scrape time. prom-client's Histogram only observes values one by one;
 * the pools already keep bucket counts (PoolCounters), so the histogram is written from them as is.
 */
function registerCollected(registry: Registry, name: string, help: string, type: 'counter' | 'gauge' | 'histogram', samples: () => Sample[]): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: samples() }),
    reset: () => undefined,
  };
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
}

/** Prometheus histogram samples (cumulative buckets in seconds, _sum, _count) from per-bucket counts in µs. */
export function histogramSamples(name: string, labels: Labels, bucketCounts: ArrayLike<number>, sumUs: number): Sample[] {
  const samples: Sample[] = [];
  let cumulative = 0;
  for (let i = 0; i < LATENCY_BUCKETS_US.length; i++) {
    cumulative += bucketCounts[i];
    samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(LATENCY_BUCKETS_US[i] / 1e6) }, value: cumulative });
  }
  cumulative += bucketCounts[LATENCY_BUCKETS_US.length];
  samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cumulative });
  samples.push({ metricName: `${name}_sum`, labels, value: sumUs / 1e6 });
  samples.push({ metricName: `${name}_count`, labels, value: cumulative });
  return samples;
}

/** Labels of a pool key: its database and user, and the listener kind (rw: the primary, ro: replicas). */
function poolLabels(key: string): Labels {
  const [dbname, user, role] = key.split('/');
  return { database: dbname, user, port: role ?? 'rw' };
}

export function createProxyMetricsRegistry(options: ProxyMetricsOptions): Registry {
  const registry = new Registry();
  const { console: adminConsole, topology, proxy } = options;
  const labelNames = ['database', 'user'] as const;
  const poolGauge = (name: string, help: string, pick: (r: ReturnType<AdminConsole['poolRows']>[number]) => number, aggregator: 'sum' | 'max' = 'sum'): void => {
    new Gauge({
      name,
      help,
      labelNames,
      aggregator,
      registers: [registry],
      collect() {
        this.reset();
        for (const r of adminConsole.poolRows()) this.set({ database: r.database, user: r.user }, pick(r));
      },
    });
  };
  poolGauge('pgbouncer_pools_client_active_connections', 'Client connections linked to a server connection or idle and ready', (r) => r.clActive);
  poolGauge('pgbouncer_pools_client_waiting_connections', 'Client connections waiting for a server connection', (r) => r.clWaiting);
  poolGauge('pgbouncer_pools_server_active_connections', 'Server connections linked to a client', (r) => r.svActive);
  poolGauge('pgbouncer_pools_server_idle_connections', 'Server connections idle and ready for a client', (r) => r.svIdle);
  poolGauge('pgbouncer_pools_server_used_connections', 'Server connections idle more than server_check_delay (always 0 here)', () => 0);
  poolGauge('pgbouncer_pools_server_testing_connections', 'Server connections being tested (always 0 here)', () => 0);
  poolGauge('pgbouncer_pools_server_login_connections', 'Server connections logging in', (r) => r.svLogin);
  poolGauge('pgbouncer_pools_client_maxwait_seconds', 'Age of the oldest waiting client', (r) => r.maxwaitUs / 1e6, 'max');

  // SHOW STATS totals per database, under the prometheus-community exporter's names and units.
  const statsCounter = (name: string, help: string, pick: (t: StatsTotals) => number): void => {
    registerCollected(registry, name, help, 'counter', () => [...adminConsole.statsTotals()].map(([database, t]) => ({ labels: { database }, value: pick(t) })));
  };
  statsCounter('pgbouncer_stats_sql_transactions_pooled_total', 'Transactions pooled (SHOW STATS total_xact_count)', (t) => t.xactCount);
  statsCounter('pgbouncer_stats_queries_pooled_total', 'Queries pooled (SHOW STATS total_query_count)', (t) => t.queryCount);
  statsCounter('pgbouncer_stats_received_bytes_total', 'Bytes received from clients (SHOW STATS total_received)', (t) => t.bytesReceived);
  statsCounter('pgbouncer_stats_sent_bytes_total', 'Bytes sent to clients (SHOW STATS total_sent)', (t) => t.bytesSent);
  statsCounter('pgbouncer_stats_server_in_transaction_seconds_total', 'Seconds server connections spent in transactions (SHOW STATS total_xact_time)', (t) => t.xactTimeUs / 1e6);
  statsCounter('pgbouncer_stats_queries_duration_seconds_total', 'Seconds server connections spent running queries (SHOW STATS total_query_time)', (t) => t.queryTimeUs / 1e6);
  statsCounter('pgbouncer_stats_client_wait_seconds_total', 'Seconds clients waited for a server connection (SHOW STATS total_wait_time)', (t) => t.waitTimeUs / 1e6);

  const latency = (name: string, help: string, which: 'xact' | 'query'): void => {
    registerCollected(registry, name, help, 'histogram', () => {
      const samples: Sample[] = [];
      for (const [key, c] of proxy.poolCounters()) {
        if (which === 'xact') samples.push(...histogramSamples(name, poolLabels(key), c.xactLatency, c.xactTimeUs));
        else samples.push(...histogramSamples(name, poolLabels(key), c.queryLatency, c.queryTimeUs));
      }
      return samples;
    });
  };
  latency('pgwarden_proxy_transaction_duration_seconds', 'Transaction durations through the proxy (first message to ReadyForQuery idle), per pool; port rw: the primary, ro: replicas', 'xact');
  latency('pgwarden_proxy_query_duration_seconds', 'Query durations through the proxy (Query or Sync to ReadyForQuery), per pool; port rw: the primary, ro: replicas', 'query');

  registerCollected(registry, 'pgwarden_proxy_routed_transactions_total', 'Transactions routed per listener: port rw went to the primary, ro to a replica (or the primary with ro_fallback_primary)', 'counter', () =>
    [...proxy.poolCounters()].map(([key, c]) => ({ labels: poolLabels(key), value: c.xactCount })),
  );
  registerCollected(registry, 'pgwarden_proxy_server_connections', 'Server connections open now per server and listener (where the pools route)', 'gauge', () => {
    const counts = new Map<string, Sample>();
    for (const [key, pool] of proxy.serverPools()) {
      const port = poolLabels(key).port;
      for (const conn of pool.connectionsNow().all) {
        if (conn.closed) continue;
        const id = `${port}|${conn.endpoint.host}|${conn.endpoint.port}`;
        const sample = counts.get(id) ?? { labels: { port, server: `${conn.endpoint.host}:${conn.endpoint.port}` }, value: 0 };
        sample.value++;
        counts.set(id, sample);
      }
    }
    return [...counts.values()];
  });

  registerCollected(registry, 'pgwarden_proxy_pinned_clients', 'Clients pinned to their server connection now by session state (transaction mode: advisory locks, LISTEN, session SET, SQL PREPARE, WITH HOLD cursors, temporary tables)', 'gauge', () =>
    [...proxy.poolCounters()].map(([key, c]) => ({ labels: poolLabels(key), value: c.pinnedClients })),
  );

  // Counted per thread where the client was served; with workers the sums are the proxy's.
  registerCollected(registry, 'pgwarden_proxy_failed_logins_total', 'Client logins refused, by reason (wrong_password, unknown_user, unknown_database, not_allowed, unsupported, too_many_clients, server_unavailable, other)', 'counter', () =>
    [...proxy.clientFailures.failedLogins].map(([reason, value]) => ({ labels: { reason }, value })),
  );
  registerCollected(registry, 'pgwarden_proxy_protocol_errors_total', 'Client connections closed for a protocol violation (malformed, oversized or out-of-order messages)', 'counter', () => [
    { labels: {}, value: proxy.clientFailures.protocolErrors },
  ]);

  // The rest is the same in every worker: combined, the largest value is the proxy's.
  new Gauge({
    name: 'pgbouncer_up',
    help: 'The proxy is serving (1)',
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.set(1);
    },
  });
  new Gauge({
    name: 'pgwarden_proxy_paused',
    help: '1 while PAUSE or KILL holds new transactions of some database',
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.set(adminConsole.paused ? 1 : 0);
    },
  });
  new Gauge({
    name: 'pgwarden_proxy_primary',
    help: 'The primary new rw transactions go to (value 1), labelled by address; none while no primary is known',
    labelNames: ['host', 'port'] as const,
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.reset();
      const p = topology.primary();
      if (p !== null) this.set({ host: p.host, port: String(p.port) }, 1);
    },
  });
  const primaryChanges = new Counter({
    name: 'pgwarden_proxy_primary_changes_total',
    help: 'Times the proxy followed a new primary (failover or switchover seen in the topology) since it started',
    aggregator: 'max',
    registers: [registry],
  });
  // Counted on the topology's events, not at scrape time: a change between two scrapes must not be missed.
  let lastPrimary: Endpoint | null = topology.primary();
  topology.on('change', () => {
    const p = topology.primary();
    if (p === null) return;
    if (lastPrimary !== null && (lastPrimary.host !== p.host || lastPrimary.port !== p.port)) primaryChanges.inc();
    lastPrimary = p;
  });
  return registry;
}

/** What /metrics serves: a Registry, or the workers' registries combined (workerMetrics). */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** The sum of the workers' registries (each as getMetricsAsJSON()), fetched anew at every scrape by `collect`. */
export function workerMetrics(collect: () => Promise<object[][]>): MetricsSource {
  return {
    contentType: prometheusContentType,
    metrics: async () => AggregatorRegistry.aggregate(await collect()).metrics(),
  };
}

/** Serves GET /metrics on `listen` with node:http. */
export class ProxyMetricsServer {
  private readonly server: Server;

  constructor(private readonly registry: MetricsSource) {
    this.server = createHttpServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the proxy serves only GET /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(e as Error).message}\n`),
      );
    });
  }

  async start(listen: { host: string; port: number }): Promise<void> {
    this.server.listen(listen.port, listen.host);
    await Promise.race([
      once(this.server, 'listening'),
      once(this.server, 'error').then(([e]) => {
        throw e;
      }),
    ]);
  }

  get address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
