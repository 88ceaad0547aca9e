/**
 * SHOW STATS / STATS_TOTALS / STATS_AVERAGES arithmetic, pure: totals summed per database over its pools, and
 * PgBouncer's averages, recomputed once per stats_period from the totals at the start and end of the period (so
 * they stay the same between two ticks, as PgBouncer's do): counts and bytes per second, transaction and query
 * times as the mean duration (µs) of those finished in the period, wait time in µs per second.
 */
import type { PoolCountersSnapshot } from '../pool/counters.js';

export type StatsTotals = PoolCountersSnapshot;

export interface StatsAverages {
  xactCount: number;
  queryCount: number;
  bytesReceived: number;
  bytesSent: number;
  xactTimeUs: number;
  queryTimeUs: number;
  waitTimeUs: number;
}

export function zeroTotals(): StatsTotals {
  return { xactCount: 0, queryCount: 0, bytesReceived: 0, bytesSent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0 };
}

export function addTotals(into: StatsTotals, add: StatsTotals): void {
  into.xactCount += add.xactCount;
  into.queryCount += add.queryCount;
  into.bytesReceived += add.bytesReceived;
  into.bytesSent += add.bytesSent;
  into.xactTimeUs += add.xactTimeUs;
  into.queryTimeUs += add.queryTimeUs;
  into.waitTimeUs += add.waitTimeUs;
}

/** Averages over one period of `periodUs` between totals `before` and `after` (PgBouncer's stats.c formulas). */
export function averagesBetween(before: StatsTotals, after: StatsTotals, periodUs: number): StatsAverages {
  if (periodUs <= 0) return zeroTotals();
  const perSecond = (d: number): number => Math.floor((d * 1e6) / periodUs);
  const xacts = Math.max(0, after.xactCount - before.xactCount);
  const queries = Math.max(0, after.queryCount - before.queryCount);
  return {
    xactCount: perSecond(xacts),
    queryCount: perSecond(queries),
    bytesReceived: perSecond(after.bytesReceived - before.bytesReceived),
    bytesSent: perSecond(after.bytesSent - before.bytesSent),
    xactTimeUs: xacts > 0 ? Math.floor((after.xactTimeUs - before.xactTimeUs) / xacts) : 0,
    queryTimeUs: queries > 0 ? Math.floor((after.queryTimeUs - before.queryTimeUs) / queries) : 0,
    waitTimeUs: perSecond(after.waitTimeUs - before.waitTimeUs),
  };
}

/**
 * Per-database averages of the last complete stats period. `tick(totals, nowUs)` closes a period; until the first
 * tick after the first sample every average is 0, as in PgBouncer right after start.
 */
export class StatsPeriods {
  private previous: { totals: Map<string, StatsTotals>; atUs: number } | null = null;
  private averages = new Map<string, StatsAverages>();

  tick(totals: Map<string, StatsTotals>, nowUs: number): void {
    const prev = this.previous;
    if (prev !== null) {
      const next = new Map<string, StatsAverages>();
      for (const [db, t] of totals) next.set(db, averagesBetween(prev.totals.get(db) ?? zeroTotals(), t, nowUs - prev.atUs));
      this.averages = next;
    }
    this.previous = { totals: new Map([...totals].map(([db, t]) => [db, { ...t }])), atUs: nowUs };
  }

  averagesFor(database: string): StatsAverages {
    return this.averages.get(database) ?? zeroTotals();
  }
}
