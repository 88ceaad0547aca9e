/**
 * docs/ha.md "Switchover without errors", end to end: a real 3-node cluster with its proxy (LocalCluster, as
 * `pgwarden up` runs it), pgbench writing through the proxy's rw port, and `pgwarden switchover` in the middle of
 * the run. The old primary asks the proxy to drain, the proxy lets in-flight transactions finish, holds new ones,
 * acknowledges under proxies/<id>; the primary shuts down; the proxy resumes on the new primary. pgbench must end
 * with zero failed transactions, every client still connected, and its writes on the new primary.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { agentChildEnv } from '../../src/config/cli.js';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { psql, waitFor } from '../helpers/pg.js';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

let dir: string;
let lc: LocalCluster;

interface PgbenchResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** pgbench against `url` (a libpq URL with the password), collecting its output. */
function pgbench(url: string, args: string[]): Promise<PgbenchResult> {
  return new Promise((resolve) => {
    const child = spawn('/usr/bin/pgbench', [...args, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function processed(out: string): number {
  const m = /number of transactions actually processed: (\d+)/.exec(out);
  return m === null ? -1 : Number(m[1]);
}

function failed(out: string): number {
  const m = /number of failed transactions: (\d+)/.exec(out);
  return m === null ? -1 : Number(m[1]);
}

/** One client inserting in a loop through the proxy: the longest time between two acknowledged writes. */
class GapWriter {
  maxGapMs = 0;
  writes = 0;
  readonly errors: string[] = [];
  private stopped = false;

  constructor(private readonly url: string) {}

  async run(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', () => undefined);
    await client.connect();
    await client.query('CREATE TABLE IF NOT EXISTS gap_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    let last = Date.now();
    try {
      while (!this.stopped) {
        try {
          await client.query('INSERT INTO gap_writes DEFAULT VALUES');
          const now = Date.now();
          this.maxGapMs = Math.max(this.maxGapMs, now - last);
          last = now;
          this.writes++;
        } catch (e) {
          this.errors.push((e as Error).message);
          if (this.errors.length > 20) return;
        }
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  stop(): void {
    this.stopped = true;
  }
}

async function leaderOf(): Promise<string> {
  return waitFor('a running primary', async () => {
    const view = await lc.view().catch(() => null);
    const leader = view?.leader?.name;
    if (leader === undefined || view!.members[leader]?.role !== 'primary' || view!.members[leader]?.state !== 'running') return undefined;
    return leader;
  }, 60_000);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-pxs-'));
  lc = await LocalCluster.open({ dir, nodes: 3, cluster: 'pxs', parameters: { fsync: 'off' } });
  await lc.start();
  await lc.waitHealthy(90_000);
  const leader = await leaderOf();
  const init = await pgbench(lc.connectionString(leader), ['-i', '-q', '-s', '1']);
  assert.equal(init.code, 0, init.stderr);
  // Replicas must have the pgbench tables before a switchover can pick one that is caught up.
  await waitFor('replicas streaming', async () => {
    const view = await lc.view();
    return Object.values(view.members).filter((m) => m.role === 'replica' && m.state === 'streaming').length === 2 || undefined;
  }, 60_000);
});

after(async () => {
  await lc?.stop().catch(() => undefined);
  await lc?.close().catch(() => undefined);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('switchover under pgbench through the proxy', { timeout: 180_000 }, () => {
  for (const protocol of ['prepared', 'simple'] as const) {
    it(`-M ${protocol}: zero failed transactions, the new primary serves the rest of the run`, () => switchoverUnderPgbench(protocol));
  }

  it('with the proxy on 2 worker threads, -M prepared: zero failed transactions (every worker drains before the acknowledgement)', async () => {
    await lc.stopProxy();
    await lc.close();
    lc = await LocalCluster.open({ dir, proxyWorkers: 2 });
    await lc.startProxy();
    assert.match(await readFile(lc.proxyConfigFile(), 'utf8'), /^workers: 2$/m);
    await switchoverUnderPgbench('prepared');
    assert.match(await readFile(lc.proxyLogFile(), 'utf8'), /"workers":2[^\n]*proxy listening/);
  });
});

async function switchoverUnderPgbench(protocol: 'prepared' | 'simple'): Promise<void> {
  const old = await leaderOf();
  const candidate = lc.members().find((m) => m !== old)!;
  const rw = lc.proxyConnectionString('rw');
  const history = async (): Promise<number> => Number((await psql<{ n: number }>({ connectionString: lc.connectionString(old) }, 'SELECT count(*)::int AS n FROM pgbench_history'))[0]!.n);
  const historyBefore = await history();

  const bench = pgbench(rw, ['-n', '-c', '4', '-j', '2', '-T', '10', '-M', protocol]);
  const writer = new GapWriter(rw);
  const writing = writer.run();
  // The switchover comes under load: once pgbench has committed transactions and the writing client has written.
  await waitFor('pgbench and the writing client to be under way', async () => (writer.writes >= 10 && (await history()) > historyBefore) || undefined, 15_000);
  const started = Date.now();
  const so = await run(process.execPath, [MAIN, 'switchover', '--candidate', candidate, '--force', '--dir', dir], {
    env: agentChildEnv(),
    timeout: 60_000,
  });
  const switchoverMs = Date.now() - started;
  assert.match(so.stderr, new RegExp(`${candidate} is the new primary`));
  const result = await bench;
  writer.stop();
  await writing;
  console.log(
    `# -M ${protocol}: switchover took ${switchoverMs} ms; pgbench: ${processed(result.stdout)} transactions, ${failed(result.stdout)} failed; ` +
      `a client writing in a loop saw a pause of at most ${writer.maxGapMs} ms, ${writer.errors.length} errors`,
  );
  assert.deepEqual(writer.errors, [], 'the writing client saw no error');
  assert.ok(writer.writes > 0);
  assert.equal(result.code, 0, `pgbench failed:\n${result.stdout}\n${result.stderr}`);
  assert.equal(failed(result.stdout), 0, result.stdout);
  assert.doesNotMatch(result.stderr, /error|aborted/i, result.stderr);
  const n = processed(result.stdout);
  assert.ok(n > 0, result.stdout);

  // Every transaction pgbench counted is on the new primary (pgbench_history gets one row per transaction).
  assert.equal(await leaderOf(), candidate);
  const onNew = new pg.Client({ connectionString: lc.connectionString(candidate) });
  await onNew.connect();
  try {
    const after = Number((await onNew.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n);
    assert.equal(after - historyBefore, n, 'one pgbench_history row per acknowledged transaction');
  } finally {
    await onNew.end();
  }

  // The proxy drained and said so; the old primary waited for it.
  const proxyLog = await readFile(lc.proxyLogFile(), 'utf8');
  assert.match(proxyLog, /drained for the switchover/);
  const agentLog = await readFile(lc.agentLogFile(old), 'utf8');
  assert.match(agentLog, /1 proxy drained; shut down cleanly and released the leader key/);
}
