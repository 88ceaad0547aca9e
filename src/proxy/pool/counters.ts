/**
 * Running totals of one pool, as PgBouncer keeps them for SHOW STATS / STATS_TOTALS / STATS_AVERAGES and the
 * exporter's `pgbouncer_stats_*` metrics. Plain numeric fields so the hot path pays one add per event; readers
 * (admin console, /metrics) compute rates and averages from two snapshots.
 */
export class PoolCounters {
  /** Transactions finished (a server connection went back to idle status, or a session's transaction ended). */
  xactCount = 0;
  /** Queries finished (ReadyForQuery after a Query or Sync). */
  queryCount = 0;
  /** Bytes from clients to servers / from servers to clients. */
  bytesReceived = 0;
  bytesSent = 0;
  /** Microseconds spent in transactions / in queries (first client message to ReadyForQuery). */
  xactTimeUs = 0;
  queryTimeUs = 0;
  /** Microseconds clients waited for a server connection. */
  waitTimeUs = 0;
  /**
   * A gauge, not a total: clients pinned to their server connection right now by session state (transaction
   * mode: advisory locks, LISTEN, session SET, ...). Each holds a server connection between transactions.
   */
  pinnedClients = 0;

  /** Cumulative-free bucket counts for the latency histograms in /metrics (bounds in LATENCY_BUCKETS_US). */
  readonly xactLatency = new Float64Array(LATENCY_BUCKETS_US.length + 1);
  readonly queryLatency = new Float64Array(LATENCY_BUCKETS_US.length + 1);

  /** One finished transaction that took `us` microseconds. */
  recordXact(us: number): void {
    this.xactCount++;
    this.xactTimeUs += us;
    this.xactLatency[bucketOf(us)]++;
  }

  /** One finished query (ReadyForQuery after Query/Sync) that took `us` microseconds. */
  recordQuery(us: number): void {
    this.queryCount++;
    this.queryTimeUs += us;
    this.queryLatency[bucketOf(us)]++;
  }

  snapshot(): PoolCountersSnapshot {
    return {
      xactCount: this.xactCount,
      queryCount: this.queryCount,
      bytesReceived: this.bytesReceived,
      bytesSent: this.bytesSent,
      xactTimeUs: this.xactTimeUs,
      queryTimeUs: this.queryTimeUs,
      waitTimeUs: this.waitTimeUs,
    };
  }
}

export type PoolCountersSnapshot = Pick<PoolCounters, 'xactCount' | 'queryCount' | 'bytesReceived' | 'bytesSent' | 'xactTimeUs' | 'queryTimeUs' | 'waitTimeUs'>;

/** Upper bounds (µs) of the latency buckets; the last bucket (index length) is +Inf. */
export const LATENCY_BUCKETS_US: readonly number[] = [100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

function bucketOf(us: number): number {
  // A linear scan beats a binary search over 16 entries; most transactions land in the first few buckets.
  let i = 0;
  while (i < LATENCY_BUCKETS_US.length && us > LATENCY_BUCKETS_US[i]) i++;
  return i;
}
