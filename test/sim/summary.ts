/**
 * Totals over a sweep of simulation runs, and the lines that report them (shared by run.ts and sim.test.ts).
 */
import { FAULT_KINDS, type FaultKind, type SimResult } from './world.js';

export interface SweepTotals {
  runs: number;
  faults: Record<FaultKind, number>;
  acks: number;
  promotions: number;
  lostAsyncAcks: number;
  deadmanStops: number;
  drainAcks: number;
  proxyCutReports: number;
  proxyHandovers: number;
  rewinds: number;
  reclones: number;
  maxDualWritableMs: number;
  maxCyclesPerSecond: number;
  maxCyclesSeed: number;
  /** ms from the last fault healing to convergence, sorted, for runs that converged. */
  convergence: number[];
  failed: SimResult[];
  violationsByInvariant: Record<1 | 2 | 3 | 4 | 5, number>;
}

export function emptyTotals(): SweepTotals {
  return {
    runs: 0,
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    acks: 0,
    promotions: 0,
    lostAsyncAcks: 0,
    deadmanStops: 0,
    drainAcks: 0,
    proxyCutReports: 0,
    proxyHandovers: 0,
    rewinds: 0,
    reclones: 0,
    maxDualWritableMs: 0,
    maxCyclesPerSecond: 0,
    maxCyclesSeed: 0,
    convergence: [],
    failed: [],
    violationsByInvariant: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 },
  };
}

export function addRun(t: SweepTotals, r: SimResult): void {
  t.runs++;
  for (const k of FAULT_KINDS) t.faults[k] += r.faults[k];
  t.acks += r.acks;
  t.promotions += r.promotions;
  t.lostAsyncAcks += r.lostAsyncAcks;
  t.deadmanStops += r.deadmanStops;
  t.drainAcks += r.drainAcks;
  t.proxyCutReports += r.proxyCutReports;
  t.proxyHandovers += r.proxyHandovers;
  t.rewinds += r.rewinds;
  t.reclones += r.reclones;
  t.maxDualWritableMs = Math.max(t.maxDualWritableMs, r.maxDualWritableMs);
  if (r.maxCyclesPerSecond > t.maxCyclesPerSecond) {
    t.maxCyclesPerSecond = r.maxCyclesPerSecond;
    t.maxCyclesSeed = r.seed;
  }
  if (r.finalConvergenceMs !== null) {
    const i = t.convergence.findIndex((x) => x > r.finalConvergenceMs!);
    t.convergence.splice(i === -1 ? t.convergence.length : i, 0, r.finalConvergenceMs);
  }
  if (r.violations.length > 0) {
    t.failed.push(r);
    for (const v of r.violations) t.violationsByInvariant[v.invariant]++;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))]!;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The report, one line per fact; `replay` names the command that replays a failed run with its trace. */
export function summaryLines(t: SweepTotals, heading: string, elapsedMs: number, replay: (r: SimResult) => string, maxFailures = 30): string[] {
  const c = t.convergence;
  const lines = [
    `${heading}: ${t.runs} runs in ${seconds(elapsedMs)}`,
    `faults injected: ${FAULT_KINDS.map((k) => `${k} ${t.faults[k]}`).join(', ')}`,
    `acknowledged commits ${t.acks}; promotions ${t.promotions}; async commits lost on failover ${t.lostAsyncAcks} (allowed in async mode)`,
    `deadman stops ${t.deadmanStops}; proxy drains acknowledged ${t.drainAcks}; proxy cut-off reports ${t.proxyCutReports} (switchovers asked for: ${t.proxyHandovers}); pg_rewind runs ${t.rewinds}; re-clones ${t.reclones}; longest time two servers accepted writes ${t.maxDualWritableMs} ms`,
    `convergence after healing: ${c.length} of ${t.runs} runs, median ${seconds(percentile(c, 0.5))}, p95 ${seconds(percentile(c, 0.95))}, max ${seconds(percentile(c, 1))}`,
    `most HA cycles one agent ran in one second: ${t.maxCyclesPerSecond} (seed ${t.maxCyclesSeed}; loop_wait is 1-2 s, so more than a few means a loop spinning on a failing action)`,
    `runs with violations: ${t.failed.length} (violations by invariant ${([1, 2, 3, 4, 5] as const).map((i) => `#${i}: ${t.violationsByInvariant[i]}`).join(', ')})`,
  ];
  for (const r of t.failed.slice(0, maxFailures)) {
    const v = r.violations[0]!;
    lines.push(`  FAIL ${r.summary}`);
    lines.push(`    invariant ${v.invariant} at ${(v.at / 1000).toFixed(3)}s: ${v.message}`);
    lines.push(`    replay: ${replay(r)}`);
  }
  if (t.failed.length > maxFailures) lines.push(`  … and ${t.failed.length - maxFailures} more`);
  return lines;
}
