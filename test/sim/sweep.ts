/**
 * A sweep of simulation runs spread over worker threads (one per core by default). Each run is a pure function of
 * its options, so where it runs does not matter; the results are added up in (seed, mode) order, so the totals and
 * the report are the same whatever the number of workers.
 */
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { addRun, emptyTotals, type SweepTotals } from './summary.js';
import { runSimulation, type SimOptions, type SimResult } from './world.js';

export interface SweepOptions {
  seeds: number;
  start: number;
  modes: readonly boolean[];
  faultWindowMs: number;
  deadman?: boolean;
  /** Worker threads; default one per core (at most the number of runs). */
  workers?: number;
}

interface Job {
  index: number;
  options: SimOptions;
}

function jobsOf(o: SweepOptions): Job[] {
  const jobs: Job[] = [];
  for (let seed = o.start; seed < o.start + o.seeds; seed++) {
    for (const sync of o.modes) {
      jobs.push({ index: jobs.length, options: { seed, sync, faultWindowMs: o.faultWindowMs, deadman: o.deadman ?? true } });
    }
  }
  return jobs;
}

/** Runs every (seed, mode) of the sweep and returns the totals. */
export async function runSweep(o: SweepOptions): Promise<SweepTotals> {
  const jobs = jobsOf(o);
  const results: SimResult[] = new Array(jobs.length);
  const workers = Math.max(1, Math.min(o.workers ?? availableParallelism(), jobs.length));
  if (workers === 1) {
    for (const job of jobs) results[job.index] = await runSimulation(job.options);
  } else {
    // Interleaved shares: neighbouring seeds cost about the same.
    const shares = Array.from({ length: workers }, (_, w) => jobs.filter((j) => j.index % workers === w));
    await Promise.all(shares.map((share) => runInWorker(share, results)));
  }
  const totals = emptyTotals();
  for (const r of results) addRun(totals, r);
  return totals;
}

function runInWorker(share: Job[], results: SimResult[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: share });
    worker.on('message', (m: { index: number; result: SimResult }) => (results[m.index] = m.result));
    worker.on('error', reject);
    worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`a simulation worker exited with code ${code}`))));
  });
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  for (const job of workerData as Job[]) {
    const result = await runSimulation(job.options);
    // The trace and the event list are for replays of one seed; the totals do not read them.
    port.postMessage({ index: job.index, result: { ...result, events: [], trace: [] } });
  }
}
