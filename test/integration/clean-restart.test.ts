/**
 * Clean restarts never fail over, against a real 3-node LocalCluster (etcd + 3 agents with PostgreSQL 15):
 *  - the whole cluster stopped as `pgwarden down` does (replicas, the primary, etcd) and started again with the
 *    agents one after the other, in each of the 6 orders: the same primary, the same timeline, no promotion in
 *    the history, no rewind, every row kept;
 *  - each agent restarted alone (SIGUSR2: PostgreSQL keeps running), the primary's included: the same primary,
 *    timeline and postmaster PIDs;
 *  - a former primary that does not come back: the replicas elect one of them after primary_start_timeout,
 *    with every row.
 * The tests run in order and share the cluster.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { SHUTDOWN_CHECKPOINT_MAX_SPAN } from '../../src/ha/decide.js';
import type { ClusterView } from '../../src/cluster/types.js';
import { sleep } from '../helpers/writer.js';
import { waitFor as pollFor } from '../helpers/pg.js';

/** pollFor with this file's default timeout. */
const waitFor = <T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 30_000): Promise<T> =>
  pollFor(what, probe, timeoutMs);

let lc: LocalCluster;
let dir: string;
/** Rows written so far, one per step; every member must hold them all. */
let rows = 0;

async function query<T extends pg.QueryResultRow>(member: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: lc.connectionString(member), connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}


async function writeRow(primary: string): Promise<void> {
  rows += 1;
  await query(primary, 'INSERT INTO kept VALUES ($1)', [rows]);
}

/** Every member holds every row written so far (replicas may need a moment to replay). */
async function assertRowsEverywhere(): Promise<void> {
  for (const m of lc.members()) {
    await waitFor(`${rows} rows on ${m}`, async () => {
      const [r] = await query<{ n: string }>(m, 'SELECT count(*) AS n FROM kept');
      return Number(r!.n) === rows;
    }, 20_000);
  }
}

/** The cluster as it stands: leader, its timeline, the number of promotions recorded. */
async function snapshot(): Promise<{ primary: string; timeline: number; history: number; view: ClusterView }> {
  const view = await lc.waitHealthy(60_000);
  const primary = view.leader!.name;
  const timeline = view.members[primary]!.timeline!;
  return { primary, timeline, history: view.history.length, view };
}

/** What each agent log gained since `sizes` was taken. */
function logsSince(sizes: Map<string, number>): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of lc.members()) {
    const text = readFileSync(lc.agentLogFile(m));
    out.set(m, text.subarray(sizes.get(m) ?? 0).toString('utf8'));
  }
  return out;
}

function logSizes(): Map<string, number> {
  return new Map(lc.members().map((m) => [m, statSync(lc.agentLogFile(m)).size]));
}

/** The member's PostgreSQL runs and its agent has published that since it started. */
async function waitRunning(member: string, since: number): Promise<void> {
  await waitFor(`${member} running`, async () => {
    const s = (await lc.view()).members[member];
    return !!s && s.updatedAt >= since && (s.state === 'running' || s.state === 'streaming');
  }, 30_000);
}

/** Whole-cluster stops and starts: every start order once, then the first four again. */
const RESTARTS = 10;

const PERMUTATIONS: ReadonlyArray<readonly [number, number, number]> = [
  [0, 1, 2],
  [1, 0, 2],
  [1, 2, 0],
  [2, 1, 0],
  [2, 0, 1],
  [0, 2, 1],
];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-restart-'));
  lc = await LocalCluster.open({
    dir,
    nodes: 3,
    cluster: 'restart',
    parameters: { fsync: 'off' },
    // Long enough that a replica started first still waits when the former primary's agent is started last.
    dynamic: { primary_start_timeout: 60 },
  });
  await lc.start();
  const { primary } = await snapshot();
  await query(primary, 'CREATE TABLE kept (id int PRIMARY KEY)');
});

after(async () => {
  await lc?.stop().catch(() => undefined);
  await lc?.close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('clean restarts keep the primary and its timeline', { concurrency: false }, () => {
  it('stopping the whole cluster 10 times and starting the agents in each of the 6 orders (and 4 again)', async () => {
    for (let round = 0; round < RESTARTS; round++) {
      const permutation = PERMUTATIONS[round % PERMUTATIONS.length]!;
      const before = await snapshot();
      const replicas = lc.members().filter((m) => m !== before.primary);
      // Order over roles: 0 is the primary, 1 and 2 the replicas.
      const roles = [before.primary, ...replicas];
      const order = permutation.map((i) => roles[i]!);
      await writeRow(before.primary);
      const sizes = logSizes();
      await lc.stop();
      const started = Date.now();
      await lc.startEtcd();
      const record = (await lc.view()).shutdown;
      assert.ok(record !== null && record.leader === before.primary && record.timeline === before.timeline, `the primary recorded its clean shutdown: ${JSON.stringify(record)}`);
      // One agent at a time, each given the time to act on what it finds (start its PostgreSQL and publish it).
      for (const m of order) {
        const at = Date.now();
        await lc.startAgent(m);
        await waitRunning(m, at);
        if (m !== before.primary && (await lc.view()).leader === null) {
          // A replica back before the former primary holds its WAL up to the shutdown checkpoint (the replicas
          // stopped first: none received the checkpoint record itself), and nothing more.
          const position = (await lc.view()).members[m]!.walPosition!;
          const past = position - record.checkpoint;
          console.log(`# round ${round + 1}: ${m}, back before the former primary, is ${past} bytes past its shutdown checkpoint location`);
          assert.ok(past >= 0 && past <= SHUTDOWN_CHECKPOINT_MAX_SPAN, `${m} holds all WAL before the shutdown checkpoint and nothing past it: ${past} bytes past its location`);
        }
      }
      const after = await snapshot();
      const logs = logsSince(sizes);
      console.log(`# round ${round + 1}: agents started ${order.join(', ')} (primary ${before.primary}); healthy after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      assert.equal(after.primary, before.primary, `order ${order.join(', ')}: the former primary is primary again`);
      assert.equal(after.timeline, before.timeline, `order ${order.join(', ')}: no new timeline`);
      assert.equal(after.history, before.history, `order ${order.join(', ')}: no promotion recorded`);
      for (const [m, text] of logs) assert.doesNotMatch(text, /rewind|reinitiali[sz]|cloning/i, `order ${order.join(', ')}: ${m} was not rewound or cloned`);
      assert.equal(after.view.shutdown, null, 'the primary cleared the clean shutdown record');
      await assertRowsEverywhere();
    }
  });

  it('restarting each agent alone (SIGUSR2) keeps PostgreSQL running, the primary and its timeline', async () => {
    const before = await snapshot();
    const postmasters = new Map(lc.members().map((m) => [m, lc.pgPid(m)]));
    const order = [...lc.members().filter((m) => m !== before.primary), before.primary];
    for (const m of order) {
      const sizes = logSizes();
      const exitedAt = Date.now();
      lc.killAgent(m, 'SIGUSR2');
      await waitFor(`the agent of ${m} to exit`, () => lc.agentPid(m) === null, 20_000);
      const restartAt = Date.now();
      await lc.startAgent(m);
      await waitFor(`${m} published by its new agent`, async () => ((await lc.view()).members[m]?.updatedAt ?? 0) >= restartAt, 20_000);
      const view = await lc.waitHealthy(30_000);
      console.log(`# agent of ${m} restarted: exited ${restartAt - exitedAt} ms after SIGUSR2, member key republished ${Date.now() - restartAt} ms after the new start`);
      const log = logsSince(sizes).get(m)!;
      assert.match(log, /leaving PostgreSQL running/, `the agent of ${m} exited leaving PostgreSQL running`);
      if (m === before.primary) {
        // The deadman stops PostgreSQL ttl − margin (3.75 s at the defaults) after the old agent's last refresh,
        // made as it exits, unless the new agent has rebound the key by then.
        const exitAt = /"time":"([^"]+)"[^\n]*"signal":"SIGUSR2"/.exec(log)?.[1];
        const rebindAt = /"time":"([^"]+)"[^\n]*"actions":\["acquireLeader"/.exec(log)?.[1];
        assert.ok(exitAt && rebindAt, `the log of ${m} shows the exit and the rebinding of the key:\n${log}`);
        console.log(`# primary ${m}: the new agent rebound the leader key ${Date.parse(rebindAt) - Date.parse(exitAt)} ms after the old one got SIGUSR2 (the deadman allows 3750 ms)`);
      }
      assert.equal(view.leader?.name, before.primary, `after restarting the agent of ${m}: same primary`);
      assert.equal(view.members[before.primary]?.timeline, before.timeline, `after restarting the agent of ${m}: same timeline`);
      assert.equal(view.history.length, before.history, `after restarting the agent of ${m}: no promotion`);
      for (const [member, pid] of postmasters) assert.equal(lc.pgPid(member), pid, `after restarting the agent of ${m}: the postmaster of ${member} kept running`);
      await writeRow(before.primary);
    }
    await assertRowsEverywhere();
  });

  it('a former primary that does not come back: the replicas elect one of them after primary_start_timeout', async () => {
    const before = await snapshot();
    await lc.dcs().setConfig({ ...before.view.config, primary_start_timeout: 4 });
    await waitFor('the agents to read primary_start_timeout 4', async () => {
      const v = await lc.view();
      return v.config.primary_start_timeout === 4;
    });
    await writeRow(before.primary);
    // In asynchronous mode only what the replicas received before they stopped can outlive the former primary.
    await assertRowsEverywhere();
    await lc.stop();
    await lc.startEtcd();
    const replicas = lc.members().filter((m) => m !== before.primary);
    const sizes = logSizes();
    const started = Date.now();
    await Promise.all(replicas.map((m) => lc.startAgent(m)));
    const HOLD = /waiting up to primary_start_timeout, (\d+) s left/;
    let leaderlessHolds = 0;
    const view = await waitFor('a new primary', async () => {
      const v = await lc.view();
      const l = v.leader?.name;
      // A point before the timeout, by the replicas' own count: no leader while each says how long it still holds.
      if (!l && replicas.every((m) => HOLD.test(v.members[m]?.reason ?? ''))) leaderlessHolds += 1;
      return l && l !== before.primary && v.members[l]?.role === 'primary' && v.members[l]?.state === 'running' ? v : null;
    }, 30_000);
    console.log(`# former primary ${before.primary} absent: ${view.leader!.name} promoted ${((Date.now() - started) / 1000).toFixed(1)} s after the replicas' agents started`);
    assert.ok(leaderlessHolds > 0, 'the replicas were seen holding for the former primary, with no leader');
    const newPrimary = view.leader!.name;
    // The new primary's log, one decision a line: the hold counted down from the whole primary_start_timeout (4 s)
    // and the key was taken only after the last hold line, never while one said time was left.
    const lines = logsSince(sizes).get(newPrimary)!.split('\n');
    const holds = lines.map((line, i) => ({ i, left: HOLD.exec(line)?.[1] })).filter((h) => h.left !== undefined).map((h) => ({ i: h.i, left: Number(h.left) }));
    const acquired = lines.findIndex((line) => line.includes('"acquireLeader"'));
    assert.ok(holds.length > 0 && acquired >= 0, `the log of ${newPrimary} shows the hold and the election`);
    assert.equal(holds[0]!.left, 4, 'the hold started with the whole primary_start_timeout');
    assert.ok(holds.every((h, k) => k === 0 || h.left <= holds[k - 1]!.left), 'the hold only counted down');
    assert.ok(holds[holds.length - 1]!.i < acquired, 'the key was taken after the hold ended');
    const [r] = await query<{ n: string }>(newPrimary, 'SELECT count(*) AS n FROM kept');
    assert.equal(Number(r!.n), rows, 'the new primary holds every row');
  });
});
