/**
 * Pure parts of the admin console and /metrics: SHOW STATS averages, RELOAD planning, histogram samples and the
 * primary-change counter.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { parseProxyConfig } from '../../src/config/proxy.js';
import { AdminConsole } from '../../src/proxy/admin/console.js';
import { ClientFailures } from '../../src/proxy/client-failures.js';
import { PauseGate } from '../../src/proxy/pause-gate.js';
import { planReload } from '../../src/proxy/admin/reload.js';
import { StatsPeriods, averagesBetween, zeroTotals } from '../../src/proxy/admin/stats.js';
import { LATENCY_BUCKETS_US } from '../../src/proxy/pool/counters.js';
import { createProxyMetricsRegistry, histogramSamples } from '../../src/proxy/metrics.js';
import type { Endpoint, Topology } from '../../src/proxy/topology.js';

describe('SHOW STATS averages', () => {
  it("follows PgBouncer's formulas: rates per second, times per transaction/query", () => {
    const before = { ...zeroTotals(), xactCount: 10, queryCount: 20, bytesReceived: 1000, bytesSent: 5000, xactTimeUs: 10_000, queryTimeUs: 8000, waitTimeUs: 0 };
    const after = { xactCount: 30, queryCount: 60, bytesReceived: 3000, bytesSent: 9000, xactTimeUs: 50_000, queryTimeUs: 48_000, waitTimeUs: 4000 };
    assert.deepEqual(averagesBetween(before, after, 2_000_000), {
      xactCount: 10,
      queryCount: 20,
      bytesReceived: 1000,
      bytesSent: 2000,
      xactTimeUs: 2000,
      queryTimeUs: 1000,
      waitTimeUs: 2000,
    });
    assert.deepEqual(averagesBetween(after, after, 1_000_000), zeroTotals(), 'no traffic: zeros, no division by zero');
    assert.deepEqual(averagesBetween(before, after, 0), zeroTotals());
  });

  it('keeps the last complete period until the next tick; zeros before the first', () => {
    const periods = new StatsPeriods();
    const t = (xacts: number) => new Map([['db', { ...zeroTotals(), xactCount: xacts }]]);
    periods.tick(t(0), 0);
    assert.equal(periods.averagesFor('db').xactCount, 0);
    periods.tick(t(100), 1_000_000);
    assert.equal(periods.averagesFor('db').xactCount, 100);
    periods.tick(t(100), 2_000_000);
    assert.equal(periods.averagesFor('db').xactCount, 0);
    assert.equal(periods.averagesFor('unknown').xactCount, 0);
  });
});

describe('RELOAD planning', () => {
  const parse = (raw: Record<string, unknown>, users = '"u" "p"\n') => parseProxyConfig({ auth_file: 'users.txt', ...raw }, { source: 'test', baseDir: '/x', readFile: () => users });

  it('applies live settings and keeps restart-only ones at their running values', () => {
    const running = parse({ listen: '127.0.0.1:6432', default_pool_size: 3, admin_users: ['a'] });
    const next = parse({ listen: '0.0.0.0:7000', default_pool_size: 9, admin_users: ['a', 'b'], pool_mode: 'session' });
    const plan = planReload(running, next);
    assert.deepEqual(plan.needRestart, ['listen', 'pool_mode']);
    assert.deepEqual(plan.applied, ['admin_users', 'default_pool_size']);
    assert.deepEqual(plan.config.listen, { host: '127.0.0.1', port: 6432 });
    assert.equal(plan.config.pool_mode, 'transaction');
    assert.equal(plan.config.default_pool_size, 9);
    assert.deepEqual(plan.config.admin_users, ['a', 'b']);
    assert.deepEqual(running.admin_users, ['a'], 'the running config is not modified');
  });

  it('keeps TLS to PostgreSQL (and what is derived from it) until a restart', () => {
    const running = parse({});
    const next = parse({ server_tls_sslmode: 'require' });
    const plan = planReload(running, next);
    assert.deepEqual(plan.needRestart, ['server_tls_sslmode']);
    assert.deepEqual(plan.applied, []);
    assert.equal(plan.config.server_tls_sslmode, 'disable');
    assert.deepEqual(plan.config.serverTls, running.serverTls);
  });

  it('notices a changed auth file even when its path is the same', () => {
    const plan = planReload(parse({}), parse({}, '"u" "p"\n"v" "q"\n'));
    assert.deepEqual(plan.applied, ['auth_file']);
    assert.equal(plan.config.users.get('v'), 'q');
    assert.deepEqual(planReload(parse({}), parse({})).applied, []);
  });
});

describe('proxy /metrics', () => {
  it('writes cumulative histogram buckets in seconds from per-bucket counts in µs', () => {
    const counts = new Float64Array(LATENCY_BUCKETS_US.length + 1);
    counts[0] = 2; // <= 100 µs
    counts[3] = 1; // <= 1 ms
    counts[LATENCY_BUCKETS_US.length] = 1; // > 10 s
    const samples = histogramSamples('h', { a: 'b' }, counts, 12_000_500);
    const buckets = samples.filter((s) => s.metricName === 'h_bucket');
    assert.equal(buckets.length, LATENCY_BUCKETS_US.length + 1);
    assert.deepEqual(buckets[0], { metricName: 'h_bucket', labels: { a: 'b', le: '0.0001' }, value: 2 });
    assert.equal(buckets[3].labels.le, '0.001');
    assert.equal(buckets[3].value, 3);
    assert.equal(buckets.at(-2)!.value, 3);
    assert.deepEqual(buckets.at(-1), { metricName: 'h_bucket', labels: { a: 'b', le: '+Inf' }, value: 4 });
    assert.deepEqual(samples.find((s) => s.metricName === 'h_count'), { metricName: 'h_count', labels: { a: 'b' }, value: 4 });
    assert.equal(samples.find((s) => s.metricName === 'h_sum')!.value, 12.0005);
  });

  it('counts changes of primary, not the moments without one', async () => {
    class MovingTopology extends EventEmitter implements Topology {
      current: Endpoint | null = { host: 'a', port: 5432 };
      primary(): Endpoint | null {
        return this.current;
      }
      replicas(): readonly Endpoint[] {
        return [];
      }
      move(to: Endpoint | null): void {
        this.current = to;
        this.emit('change');
      }
    }
    const topology = new MovingTopology();
    const config = parseProxyConfig({ auth_type: 'trust' }, { source: 'test', baseDir: '/x' });
    const proxy = { poolStats: () => new Map(), poolCounters: () => new Map(), serverPools: () => new Map(), clientFailures: new ClientFailures(undefined), clientList: () => [], applyConfig: () => undefined, reconnect: () => 0, closeNeededCount: () => 0, stop: async () => undefined, address: { host: '127.0.0.1', port: 1 }, pauseGate: new PauseGate() };
    const adminConsole = new AdminConsole(proxy, { config, topology });
    try {
      const registry = createProxyMetricsRegistry({ console: adminConsole, topology, proxy });
      const changes = async () => Number(/^pgwarden_proxy_primary_changes_total (\d+)$/m.exec(await registry.metrics())![1]);
      assert.equal(await changes(), 0);
      topology.move(null);
      topology.move({ host: 'b', port: 5432 });
      assert.equal(await changes(), 1, 'a -> none -> b is one failover');
      topology.move({ host: 'b', port: 5432 });
      assert.equal(await changes(), 1, 'the same primary again is no change');
      topology.move({ host: 'a', port: 5432 });
      assert.equal(await changes(), 2);
      assert.match(await registry.metrics(), /^pgwarden_proxy_primary\{host="a",port="5432"\} 1$/m);
    } finally {
      adminConsole.close();
    }
  });
});
