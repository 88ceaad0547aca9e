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
