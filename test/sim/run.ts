/**
 * Runs the simulation over many seeds and prints what it found.
 *
 *   node dist/test/sim/run.js --seeds 500 [--start 1] [--ticks 600] [--sync | --both] [--no-deadman] [--workers N] [--verbose-seed S]
 *
 * --ticks is the length of the fault window in 100 ms ticks (default 600 = 60 s of simulated time).
 * Exit code 1 when any invariant was violated; every failure prints the command that replays it with a trace.
 */
import { Command } from 'commander';
import { summaryLines } from './summary.js';
import { runSweep } from './sweep.js';
import { runSimulation, TICK_MS, type SimResult } from './world.js';

interface Args {
  seeds: number;
  start: number;
  ticks: number;
  sync: boolean;
  both: boolean;
  verboseSeed?: number;
  deadman: boolean;
  workers?: number;
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
    .option('--workers <n>', 'worker threads (default: one per core)', (v) => Number.parseInt(v, 10))
    .option('--verbose-seed <s>', 'run only this seed and print its trace', (v) => Number.parseInt(v, 10))
    .option('--no-deadman', 'leave out the lease deadman (src/ha/deadman.ts): a killed agent leaves its PostgreSQL running, to show why the deadman exists')
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ seeds: number; start: number; ticks: number; sync: boolean; both: boolean; verboseSeed?: number; deadman: boolean; workers?: number }>();
  return { seeds: o.seeds, start: o.start, ticks: o.ticks, sync: o.sync, both: o.both, verboseSeed: o.verboseSeed, deadman: o.deadman, workers: o.workers };
}

function replayCommand(r: SimResult, a: Args): string {
  return `node dist/test/sim/run.js --verbose-seed ${r.seed} --ticks ${a.ticks}${r.sync ? ' --sync' : ''}${a.deadman ? '' : ' --no-deadman'}`;
}

async function main(): Promise<number> {
  const a = parseArgs(process.argv.slice(2));
  const windowMs = a.ticks * TICK_MS;
  if (a.verboseSeed !== undefined) {
    const r = await runSimulation({
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
  const t0 = performance.now();
  const totals = await runSweep({ seeds: a.seeds, start: a.start, modes, faultWindowMs: windowMs, deadman: a.deadman, workers: a.workers });
  const heading =
    `seeds ${a.start}..${a.start + a.seeds - 1} (${modes.map((m) => (m ? 'sync' : 'async')).join(' + ')}), fault window ${windowMs / 1000} s, ` +
    (a.deadman ? 'with the lease deadman' : 'WITHOUT the lease deadman (--no-deadman)');
  for (const line of summaryLines(totals, heading, performance.now() - t0, (r) => replayCommand(r, a))) console.log(line);
  return totals.failed.length > 0 ? 1 : 0;
}

process.exitCode = await main();
