/**
 * `npm run chaos -- [--rounds 100] [--seed S] [--round R] [--faults a,b] [--async] [--mode auto|netns|relay]
 * [--json chaos-report.json]`: the long chaos run. Prints the fault table and the verdict; exits 1 when a promise
 * was broken, printing the commands that replay the failing rounds.
 */
import { parseArgs } from 'node:util';
import { exitOnSignals } from './lab.js';
import { formatTable, runChaos } from './runner.js';
import { CHAOS_FAULTS, type ChaosFault } from './schedule.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    seed: { type: 'string' },
    round: { type: 'string' },
    faults: { type: 'string' },
    async: { type: 'boolean', default: false },
    cycle: { type: 'boolean', default: false },
    mode: { type: 'string', default: 'auto' },
    json: { type: 'string', default: 'chaos-report.json' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm run chaos -- [options]
  --rounds N        rounds of faults (default 20; docs/chaos.md's table uses 100)
  --seed S          schedule seed (default: random, printed)
  --round R         replay only round R of the seed's schedule
  --faults a,b      fault kinds to draw from (default all): ${CHAOS_FAULTS.join(', ')}
  --cycle           take the fault kinds in turn instead of drawing them
  --async           asynchronous replication (lost writes are counted and checked against maximum_lag_on_failover)
  --mode M          auto (default: network namespaces when possible), netns, relay (loopback fault relays)
  --json FILE       where the JSON report goes (default chaos-report.json)
`);
  process.exit(0);
}

function faultList(text: string | undefined): ChaosFault[] {
  if (text === undefined) return [...CHAOS_FAULTS];
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) {
    if (!(CHAOS_FAULTS as readonly string[]).includes(n)) throw new Error(`unknown fault "${n}"; the faults are: ${CHAOS_FAULTS.join(', ')}`);
  }
  return names as ChaosFault[];
}

async function main(): Promise<void> {
  exitOnSignals();
  const mode = values.mode;
  if (mode !== 'auto' && mode !== 'netns' && mode !== 'relay') throw new Error(`--mode must be auto, netns or relay; got "${mode}"`);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be a whole number; got "${values.seed}"`);
  const result = await runChaos({
    seed,
    rounds: Math.max(1, Number(values.rounds)),
    ...(values.round === undefined ? {} : { round: Number(values.round) }),
    faults: faultList(values.faults),
    synchronous: !values.async,
    cycle: values.cycle,
    mode,
    jsonFile: values.json,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  for (const line of formatTable(result)) console.log(line);
  console.log(`(JSON report: ${values.json})`);
  process.exitCode = result.ok ? 0 : 1;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(2);
});
