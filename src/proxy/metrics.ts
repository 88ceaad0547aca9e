/**
 * The proxy's Prometheus /metrics (prom-client): pool gauges under pgbouncer_exporter's metric names, labelled
 * database/user, so dashboards built for PgBouncer read them as is; plus the current primary and pinned clients.
 * Values are read from the admin console at scrape time: nothing is counted on the hot path.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gauge, Registry } from 'prom-client';
import type { AdminConsole } from './admin/console.js';
import type { Topology } from './topology.js';

export interface ProxyMetricsOptions {
  console: AdminConsole;
  topology: Topology;
}

export function createProxyMetricsRegistry(options: ProxyMetricsOptions): Registry {
  const registry = new Registry();
  const labelNames = ['database', 'user'] as const;
  const poolGauge = (name: string, help: string, pick: (r: ReturnType<AdminConsole['poolRows']>[number]) => number): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const r of options.console.poolRows()) this.set({ database: r.database, user: r.user }, pick(r));
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
  poolGauge('pgbouncer_pools_client_maxwait_seconds', 'Age of the oldest waiting client', (r) => r.maxwaitUs / 1e6);
  new Gauge({
    name: 'pgbouncer_up',
    help: 'The proxy is serving (1)',
    registers: [registry],
    collect() {
      this.set(1);
    },
  });
  new Gauge({
    name: 'pgwarden_proxy_paused',
    help: '1 while PAUSE holds new transactions',
    registers: [registry],
    collect() {
      this.set(options.console.paused ? 1 : 0);
    },
  });
  new Gauge({
    name: 'pgwarden_proxy_primary',
    help: 'The primary new rw transactions go to (value 1), labelled by address; none while no primary is known',
    labelNames: ['host', 'port'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const p = options.topology.primary();
      if (p !== null) this.set({ host: p.host, port: String(p.port) }, 1);
    },
  });
  new Gauge({
    name: 'pgwarden_proxy_pinned_clients',
    help: 'Clients pinned to one server connection (session state in transaction mode); not tracked yet, always 0',
    registers: [registry],
    collect() {
      this.set(0);
    },
  });
  return registry;
}

/** Serves GET /metrics on `listen` with node:http. */
export class ProxyMetricsServer {
  private readonly server: Server;

  constructor(private readonly registry: Registry) {
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
