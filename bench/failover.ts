/**
 * `npm run bench:failover [-- --rounds 5 --async]`: brings up a local 3-node cluster and measures the write
 * unavailability window seen by a client writing every 20 ms to whichever member `GET /primary` says, for
 * three faults: PostgreSQL killed under a live agent, agent and PostgreSQL killed together (host crash), and a
 * planned switchover. Prints median and max per fault and the acknowledged writes lost (synchronous mode by
 * default, where that must be zero). `--via proxy` measures what a client of the proxy's rw port sees instead.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseBenchArgs } from './args.js';
import { LocalCluster } from '../src/up/local-cluster.js';
import { PrimaryWriter, sleep } from '../test/helpers/writer.js';

type Fault = 'postgres crash' | 'host crash' | 'switchover';
const FAULTS: Fault[] = ['postgres crash', 'host crash', 'switchover'];
const TARGET_MS: Record<Fault, number> = { 'postgres crash': 3000, 'host crash': 6000, switchover: 2000 };

const { values } = parseBenchArgs('bench:failover', {
  options: {
    rounds: { type: 'string', default: '5' },
    async: { type: 'boolean', default: false },
    /** `proxy`: the client writes through the proxy's rw port instead of asking the agents for /primary. */
    via: { type: 'string', default: 'api' },
    keep: { type: 'boolean', default: false },
    /** The local cluster's proxy: its `workers` setting (default: the proxy's own default, auto). */
    'proxy-workers': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm run bench:failover -- [options]
  The write unavailability window after PostgreSQL is killed, after a host crash, and during a switchover, on a
  local 3-node cluster; median and max per fault, and acknowledged writes lost.
  --rounds N          rounds of each fault (default 5)
  --async             asynchronous replication (default synchronous)
  --via W             api (default): the client asks the agents' GET /primary; proxy: it writes through the proxy
  --keep              leave the cluster's directory in place
  --proxy-workers N   the proxy's worker threads (default: its own default, one per CPU)
`);
  process.exit(0);
}
const rounds = Math.max(1, Number(values.rounds));
const synchronous = !values.async;
if (values.via !== 'api' && values.via !== 'proxy') throw new Error(`--via must be "api" or "proxy", got "${values.via}"`);
const viaProxy = values.via === 'proxy';

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | false | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await probe().catch(() => null);
    if (v) return v;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-bench-'));
  const lc = await LocalCluster.open({
    dir,
    nodes: 3,
    cluster: 'bench',
    log: (l) => log(`  ${l}`),
    dynamic: { synchronous_mode: synchronous },
    ...(values['proxy-workers'] === undefined ? {} : { proxyWorkers: Number(values['proxy-workers']) }),
  });
  const results: Record<Fault, { windows: number[]; lost: number }> = {
    'postgres crash': { windows: [], lost: 0 },
    'host crash': { windows: [], lost: 0 },
    switchover: { windows: [], lost: 0 },
  };
  try {
    log(`starting a 3-node cluster in ${dir} (${synchronous ? 'synchronous' : 'asynchronous'} mode)…`);
    await lc.start();
    await lc.waitHealthy(120_000);
    const targets = lc.members().map((m) => ({ name: m, apiUrl: lc.apiUrl(m), connectionString: lc.connectionString(m) }));
    for (let round = 1; round <= rounds; round++) {
      for (const fault of FAULTS) {
        await lc.waitHealthy(120_000);
        if (synchronous) {
          await waitFor('a synchronous standby', async () => {
            const v = await lc.view();
            return v.sync && v.leader && v.sync.leader === v.leader.name && v.sync.members.length > 0;
          }, 60_000);
        }
        const before = await lc.view();
        const old = before.leader!.name;
        const writer = viaProxy ? PrimaryWriter.through('proxy', lc.proxyConnectionString('rw')) : new PrimaryWriter(targets);
        await writer.prepare();
        writer.start();
        await sleep(1000);
        const t = writer.now();
        if (fault === 'postgres crash') {
          lc.killPostgres(old, 'SIGKILL');
        } else if (fault === 'host crash') {
          lc.killAgent(old, 'SIGKILL');
          lc.killPostgres(old, 'SIGKILL');
        } else {
          const candidate = synchronous ? before.sync!.members[0]! : lc.members().find((m) => m !== old)!;
          const { username, password } = lc.apiCredentials();
          const res = await fetch(`${lc.apiUrl(old)}/switchover`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` },
            body: JSON.stringify({ leader: old, candidate }),
          });
          if (res.status >= 300) throw new Error(`switchover refused: ${await res.text()}`);
        }
        const fresh = await waitFor('a new primary', async () => {
          const v = await lc.view();
          const l = v.leader?.name;
          return l && l !== old && v.members[l]?.role === 'primary' && v.members[l]?.state === 'running' ? l : null;
        }, 60_000);
        if (!(await writer.waitForAckAfter(t, 30_000))) throw new Error(`writes did not resume after ${fault}`);
        await sleep(500);
        await writer.stop();
        const window = writer.maxGapAfter(t)!;
        const lost = (await writer.missingOn(lc.connectionString(fresh))).length;
        results[fault].windows.push(window);
        results[fault].lost += lost;
        log(`round ${round}/${rounds} ${fault}: ${old} → ${fresh}, writes unavailable ${window.toFixed(0)} ms, lost ${lost}`);
        if (fault === 'host crash') await lc.startAgent(old);
      }
    }
  } finally {
    if (!values.keep) {
      await lc.stop().catch(() => undefined);
      await lc.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }
  console.log(
    `\nFailover benchmark: ${rounds} rounds, ${synchronous ? 'synchronous' : 'asynchronous'} mode, default timings (ttl 5 s, loop_wait 1 s), ` +
      `client writing ${viaProxy ? "through the proxy's rw port" : 'to the member answering /primary'}`,
  );
  console.log('fault            | median ms | max ms | target ms | acknowledged writes lost');
  console.log('-----------------|-----------|--------|-----------|-------------------------');
  for (const fault of FAULTS) {
    const r = results[fault];
    console.log(
      `${fault.padEnd(16)} | ${median(r.windows).toFixed(0).padStart(9)} | ${Math.max(...r.windows).toFixed(0).padStart(6)} | ${String(TARGET_MS[fault]).padStart(9)} | ${r.lost}`,
    );
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
