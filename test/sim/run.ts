/**
 * Runs the simulation over many seeds and prints what it found.
 *
 *   node dist/test/sim/run.js --seeds 500 [--start 1] [--ticks 600] [--sync | --both] [--no-deadman] [--verbose-seed S]
 *
 * --ticks is the length of the fault window in 100 ms ticks (default 600 = 60 s of simulated time).
 * Exit code 1 when any invariant was violated; every failure prints the command that replays it with a trace.
 */
import { Command } from 'commander';
import { FAULT_KINDS, runSimulation, TICK_MS, type FaultKind, type SimResult } from './world.js';

interface Args {
  seeds: number;
  start: number;
  ticks: number;
  sync: boolean;
  both: boolean;
  verboseSeed?: number;
  deadman: boolean;
}

function parseArgs(argv: string[]): Args {
  const program = new Command()
    .name('sim')
    .description('deterministic simulation of the pgwarden HA policy (see test/sim/world.ts)')
    .option('--seeds <n>', 'number of seeds to run', (v) => Number.parseInt(v, 10), 200)
    .option('--start <s>', 'first seed', (v) => Number.parseInt(v, 10), 1)
    .option('--ticks <t>', 'fault window length in 100 ms ticks', (v) => Number.parseInt(v, 10), 600)
    .option('--sync', 'synchronous mode', false)
    .option('--both', 'run every seed in async and in synchronous mode', false)
    .option('--verbose-seed <s>', 'run only this seed and print its trace', (v) => Number.parseInt(v, 10))
    .option('--no-deadman', "model today's agent: its PostgreSQL keeps running when the agent process dies (default: a dead-man switch stops it)")
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ seeds: number; start: number; ticks: number; sync: boolean; both: boolean; verboseSeed?: number; deadman: boolean }>();
  return { seeds: o.seeds, start: o.start, ticks: o.ticks, sync: o.sync, both: o.both, verboseSeed: o.verboseSeed, deadman: o.deadman };
}

function replayCommand(r: SimResult, a: Args): string {
  return `node dist/test/sim/run.js --verbose-seed ${r.seed} --ticks ${a.ticks}${r.sync ? ' --sync' : ''}${a.deadman ? '' : ' --no-deadman'}`;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))]!;
}

function main(): number {
  const a = parseArgs(process.argv.slice(2));
  const windowMs = a.ticks * TICK_MS;
  if (a.verboseSeed !== undefined) {
    const r = runSimulation({
      seed: a.verboseSeed,
      sync: a.sync,
      faultWindowMs: windowMs,
      tracing: true,
      deadman: a.deadman,
      onTrace: (line) => console.log(line),
    });
    console.log('');
    console.log(r.summary);
    for (const v of r.violations) console.log(`  invariant ${v.invariant} at ${(v.at / 1000).toFixed(3)}s: ${v.message}`);
    return r.violations.length > 0 ? 1 : 0;
  }

  const modes = a.both ? [false, true] : [a.sync];
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const failures: SimResult[] = [];
  const convergence: number[] = [];
  const byInvariant = new Map<number, number>();
  let runs = 0;
  let acks = 0;
  let promotions = 0;
  let lostAsync = 0;
  let maxDual = 0;
  let maxCycles = 0;
  let maxCyclesSeed = 0;
  const t0 = performance.now();
  for (let seed = a.start; seed < a.start + a.seeds; seed++) {
    for (const sync of modes) {
      const r = runSimulation({ seed, sync, faultWindowMs: windowMs, deadman: a.deadman });
      runs++;
      acks += r.acks;
      promotions += r.promotions;
      lostAsync += r.lostAsyncAcks;
      maxDual = Math.max(maxDual, r.maxDualWritableMs);
      if (r.maxCyclesPerSecond > maxCycles) {
        maxCycles = r.maxCyclesPerSecond;
        maxCyclesSeed = r.seed;
      }
      for (const k of FAULT_KINDS) faults[k] += r.faults[k];
      if (r.finalConvergenceMs !== null) convergence.push(r.finalConvergenceMs);
      if (r.violations.length > 0) {
        failures.push(r);
        for (const v of r.violations) byInvariant.set(v.invariant, (byInvariant.get(v.invariant) ?? 0) + 1);
      }
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  convergence.sort((x, y) => x - y);
  console.log(`seeds ${a.start}..${a.start + a.seeds - 1} (${modes.map((m) => (m ? 'sync' : 'async')).join(' + ')}): ${runs} runs in ${elapsed.toFixed(1)} s`);
  console.log(
    a.deadman
      ? 'model: PostgreSQL stops when its agent process dies (dead-man switch); --no-deadman models the agent without one'
      : 'model: PostgreSQL keeps running when its agent process dies (no dead-man switch)',
  );
  console.log(`faults injected: ${FAULT_KINDS.map((k) => `${k} ${faults[k]}`).join(', ')}`);
  console.log(`acknowledged commits ${acks}, promotions ${promotions}, async commits lost on failover ${lostAsync}, longest time two servers accepted writes ${maxDual} ms`);
  console.log(
    `convergence after healing: ${convergence.length} runs, median ${(percentile(convergence, 0.5) / 1000).toFixed(1)} s, ` +
      `p95 ${(percentile(convergence, 0.95) / 1000).toFixed(1)} s, max ${(percentile(convergence, 1) / 1000).toFixed(1)} s`,
  );
  console.log(`most HA cycles one agent ran in one second: ${maxCycles} (seed ${maxCyclesSeed}; loop_wait is 1-2 s, so more than a few means a loop spinning on a failing action)`);
  const invariantText = [1, 2, 3, 4, 5].map((i) => `#${i}: ${byInvariant.get(i) ?? 0}`).join(', ');
  console.log(`runs with violations: ${failures.length} (violations by invariant ${invariantText})`);
  for (const r of failures.slice(0, 30)) {
    const v = r.violations[0]!;
    console.log(`  FAIL ${r.summary}`);
    console.log(`    invariant ${v.invariant} at ${(v.at / 1000).toFixed(3)}s: ${v.message}`);
    console.log(`    replay: ${replayCommand(r, a)}`);
  }
  if (failures.length > 30) console.log(`  … and ${failures.length - 30} more`);
  return failures.length > 0 ? 1 : 0;
}

process.exitCode = main();
