/**
 * One chaos run: a ChaosCluster (3-member etcd, 3 agents, 2 proxies, each on its own host), the workload writing
 * through both proxies and directly to every member, the seeded fault schedule round by round (inject, hold,
 * heal, wait until the cluster is healthy and writes flow again), then the checker over everything recorded.
 * Used by `npm run chaos` (run.ts) and by the short run in `npm test` (chaos.test.ts).
 */
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterView } from '../../src/cluster/types.js';
import { check, faultTable, impossibleReads, leaderSpans, type CheckReport, type FaultWindow } from './checker.js';
import { ChaosCluster } from './cluster.js';
import { parseRejoinCounters, roundRejoins, type RejoinCounters, type RejoinCounts } from './rejoins.js';
import { replayCommand, schedule, stepFor, type ChaosFault, type FaultStep } from './schedule.js';
import { Workload, createTable, readIds, type WorkloadEndpoint } from './workload.js';

export interface ChaosRunOptions {
  seed: number;
  /** Rounds 1..rounds of the schedule; ignored when `round` is set. */
  rounds: number;
  /** Replay only this round of the seed's schedule. */
  round?: number;
  faults: readonly ChaosFault[];
  /** Take the fault kinds in turn instead of drawing them (the short run: every main fault once). */
  cycle?: boolean;
  synchronous: boolean;
  mode?: 'auto' | 'netns' | 'relay';
  /** Where the JSON report goes; none when absent. */
  jsonFile?: string;
  log?: (line: string) => void;
  /** Per round: how long healing may take before the run is declared stuck. */
  recoveryTimeoutMs?: number;
}

export interface RoundRecord extends FaultStep {
  target: string;
  at: number;
  until: number;
  /** Set when the cluster did not become healthy again. */
  stuck?: string;
  /** pg_rewind runs and re-clones the agents counted between the round's start and its end. */
  rejoins?: RejoinCounts;
}

export interface ChaosRunResult {
  mode: 'netns' | 'relay';
  /** Why the loopback fallback ran, when it did. */
  fallbackReason: string | null;
  seed: number;
  synchronous: boolean;
  rounds: RoundRecord[];
  report: CheckReport;
  impossibleReads: string[];
  table: ReturnType<typeof faultTable>;
  writes: { attempted: number; acknowledged: number; viaProxy: number; direct: number };
  ok: boolean;
  /** Commands that replay the rounds that went wrong. */
  replay: string[];
}

const MAX_LAG_ON_FAILOVER = 1024 * 1024;

export async function runChaos(options: ChaosRunOptions): Promise<ChaosRunResult> {
  const log = options.log ?? (() => undefined);
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const steps = options.round !== undefined ? [stepFor(options.seed, options.round, options.faults)] : schedule(options.seed, options.rounds, options.faults, 5000, options.cycle ?? false);
  const { why } = await ChaosCluster.chooseLab(options.mode ?? 'auto');
  const cluster = new ChaosCluster({
    mode: options.mode ?? 'auto',
    synchronous_mode: options.synchronous,
    dynamic: { maximum_lag_on_failover: MAX_LAG_ON_FAILOVER },
    log: (l) => log(`  ${l}`),
  });
  let failed = true;
  const rounds: RoundRecord[] = [];
  const leaderChanges: Array<{ at: number; holder: string | null }> = [];
  let watch: { close(): Promise<void> } | null = null;
  let workload: Workload | null = null;
  try {
    log(`chaos: seed ${options.seed}, ${steps.length} rounds, ${options.synchronous ? 'synchronous' : 'asynchronous'} mode; starting the cluster…`);
    await cluster.start();
    log(`chaos: network mode ${cluster.mode}${cluster.mode === 'relay' ? ` (loopback fault relays: ${why ?? 'relay mode was asked for'})` : ' (network namespaces, nftables cuts)'}`);
    let view = await cluster.waitHealthy();
    watch = await followLeader(cluster, now, leaderChanges);
    await createTable(cluster.connectionString(view.leader!.name));
    const writers: WorkloadEndpoint[] = [];
    for (const proxy of cluster.proxyHosts) {
      for (const n of [1, 2]) writers.push({ name: `${proxy}-w${n}`, via: proxy, connectionString: cluster.proxyConnectionString(proxy, 'rw') });
    }
    for (const member of cluster.agentHosts) writers.push({ name: `direct-${member}`, via: 'direct', connectionString: cluster.connectionString(member) });
    const readers = cluster.proxyHosts.map((proxy) => ({ name: `${proxy}-r`, via: proxy, connectionString: cluster.proxyConnectionString(proxy, 'ro') }));
    workload = new Workload({ writers, readers, now });
    workload.start();

    view = await cluster.waitHealthy(options.recoveryTimeoutMs ?? 120_000);
    let counters = await scrapeRejoins(cluster);
    for (const step of steps) {
      view = await cluster.waitHealthy(options.recoveryTimeoutMs ?? 120_000);
      await writesFlowing(workload, now, 30_000);
      const record = await runRound(cluster, step, view, now, log);
      rounds.push(record);
      try {
        await cluster.waitHealthy(options.recoveryTimeoutMs ?? 120_000);
        await writesFlowing(workload, now, 30_000);
      } catch (e) {
        record.stuck = (e as Error).message;
      }
      record.until = now();
      // Healthy means every member streams again: a rejoin this fault called for has happened by now.
      const next = await scrapeRejoins(cluster);
      record.rejoins = roundRejoins(counters, next);
      counters = next;
      const { rewinds, rewindFailures, reclones } = record.rejoins;
      log(
        `chaos: round ${step.round} ${step.fault} on ${record.target}: recovered ${record.stuck === undefined ? 'ok' : `NOT (${record.stuck.split('\n')[0]})`} after ${((record.until - record.at) / 1000).toFixed(1)} s; ${rewinds} rewinds${rewindFailures ? ` (${rewindFailures} failed)` : ''}, ${reclones} re-clones`,
      );
      if (record.stuck !== undefined) break;
    }
    await sleep(500);
    await workload.stop();
    view = await cluster.waitHealthy(options.recoveryTimeoutMs ?? 120_000).catch(() => cluster.view());
    const primary = view.leader?.name;
    if (primary === undefined) throw new Error('no primary at the end of the run');
    const ids = await readIds(cluster.connectionString(primary));
    const faults: FaultWindow[] = rounds.map((r) => ({ round: r.round, kind: r.fault, target: r.target, at: r.at, until: r.until, ...(r.rejoins ? { rejoins: r.rejoins } : {}) }));
    const promotions = view.history.map((h) => ({ timeline: h.timeline, lsn: h.lsn, leader: h.leader }));
    const report = check(workload.writes, leaderSpans(leaderChanges), faults, { ids }, promotions, {
      synchronous: options.synchronous,
      maximumLagOnFailover: MAX_LAG_ON_FAILOVER,
      watchMarginMs: 250,
    });
    const badReads = impossibleReads(workload.reads, workload.writes);
    for (const r of rounds) if (r.stuck !== undefined) report.problems.push(`round ${r.round} (${r.fault}) did not recover: ${r.stuck.split('\n')[0]}`);
    report.problems.push(...badReads.slice(0, 5));
    const ok = report.problems.length === 0;
    report.ok = ok;
    const badRounds = rounds.filter((r) => r.stuck !== undefined || report.faults.some((f) => f.round === r.round && (f.lost > 0 || f.dualPrimary > 0 || f.reclones > 0)));
    const result: ChaosRunResult = {
      mode: cluster.mode,
      fallbackReason: cluster.mode === 'relay' ? why : null,
      seed: options.seed,
      synchronous: options.synchronous,
      rounds,
      report,
      impossibleReads: badReads,
      table: faultTable(report),
      writes: {
        attempted: workload.writes.length,
        acknowledged: report.acknowledged,
        viaProxy: workload.writes.filter((w) => w.via !== 'direct' && w.outcome === 'ok').length,
        direct: workload.writes.filter((w) => w.via === 'direct' && w.outcome === 'ok').length,
      },
      ok,
      replay: (ok ? [] : badRounds.length > 0 ? badRounds : rounds).map((r) => replayCommand(options.seed, r, options.synchronous)),
    };
    if (options.jsonFile !== undefined) await writeFile(options.jsonFile, `${JSON.stringify({ ...result, report: { ...report, dualPrimary: report.dualPrimary.slice(0, 100) } }, null, 2)}\n`);
    failed = !ok;
    return result;
  } finally {
    await workload?.stop().catch(() => undefined);
    await watch?.close().catch(() => undefined);
    if (failed) log(`chaos: keeping the cluster's files for a post-mortem in ${safeDir(cluster)}`);
    await cluster.stop({ keepFiles: failed });
  }
}

function safeDir(cluster: ChaosCluster): string {
  try {
    return cluster.dir;
  } catch {
    return '(not created)';
  }
}

/** Every agent's rewind and re-clone counters (null for an agent that did not answer). */
async function scrapeRejoins(cluster: ChaosCluster): Promise<Map<string, RejoinCounters | null>> {
  const entries = await Promise.all(
    cluster.agentHosts.map(async (member): Promise<[string, RejoinCounters | null]> => {
      try {
        const res = await fetch(`${cluster.apiUrl(member)}/metrics`, { signal: AbortSignal.timeout(2000) });
        return [member, res.ok ? parseRejoinCounters(await res.text()) : null];
      } catch {
        return [member, null];
      }
    }),
  );
  return new Map(entries);
}

/** Records every change of the leader key on the harness clock (one load at a time, in order). */
async function followLeader(cluster: ChaosCluster, now: () => number, changes: Array<{ at: number; holder: string | null }>): Promise<{ close(): Promise<void> }> {
  const dcs = cluster.dcs();
  let chain = Promise.resolve();
  const record = (): void => {
    const seenAt = now();
    chain = chain.then(async () => {
      const holder = await cluster.leader().catch(() => undefined);
      if (holder === undefined) return;
      const last = changes[changes.length - 1];
      // The change is dated when the watch fired, not when the read came back.
      if (last === undefined || last.holder !== holder) changes.push({ at: Math.max(seenAt, last?.at ?? 0), holder });
    });
  };
  record();
  await chain;
  return dcs.watch((key) => {
    if (key === 'leader' || key === '') record();
  });
}

/** Waits until a write through a proxy is acknowledged after this moment. */
async function writesFlowing(workload: Workload, now: () => number, timeoutMs: number): Promise<void> {
  const from = now();
  const deadline = from + timeoutMs;
  while (now() < deadline) {
    if (workload.writes.some((w) => w.via !== 'direct' && w.outcome === 'ok' && w.sentAt > from)) return;
    await sleep(50);
  }
  throw new Error(`no write through a proxy was acknowledged within ${timeoutMs / 1000} s`);
}

async function runRound(cluster: ChaosCluster, step: FaultStep, view: ClusterView, now: () => number, log: (line: string) => void): Promise<RoundRecord> {
  const primary = view.leader!.name;
  const others = cluster.agentHosts.filter((m) => m !== primary);
  let target = primary;
  let heal: () => Promise<void> = async () => undefined;
  const at = now();
  switch (step.fault) {
    case 'pg-kill':
      cluster.kill(primary, 'pg');
      break;
    case 'agent-kill':
      cluster.kill(primary, 'agent');
      heal = () => cluster.startAgent(primary);
      break;
    case 'host-crash':
      // Everything on the host dies at once: agent, deadman, postmaster and backends.
      cluster.kill(primary, 'host');
      heal = () => cluster.startAgent(primary);
      break;
    case 'primary-freeze': {
      // A paused VM: every process of the host stops, backends and the deadman included, and wakes up later.
      const frozen = cluster.sigstop(primary, 'host');
      heal = async () => {
        for (const pid of frozen) {
          try {
            process.kill(pid, 'SIGCONT');
          } catch {
            // Ended meanwhile.
          }
        }
      };
      break;
    }
      break;
    case 'partition-primary': {
      const rest = [...cluster.etcdHosts, ...others];
      await cluster.cut([primary], rest);
      heal = () => cluster.heal([primary], rest);
      break;
    }
    case 'partition-primary-proxies':
      await cluster.cut([primary], cluster.proxyHosts);
      heal = () => cluster.heal([primary], cluster.proxyHosts);
      break;
    case 'asymmetric-primary-etcd': {
      const [from, to] = step.direction === 'from-etcd' ? [cluster.etcdHosts, [primary]] : [[primary], cluster.etcdHosts];
      target = step.direction === 'from-etcd' ? `etcd→${primary}` : `${primary}→etcd`;
      await cluster.cut(from, to, { oneWay: true });
      heal = () => cluster.heal(from, to, { oneWay: true });
      break;
    }
    case 'etcd-member-loss':
    case 'etcd-leader-loss': {
      const leader = await cluster.etcdLeader();
      const victim = step.fault === 'etcd-leader-loss' ? leader ?? cluster.etcdHosts[0]! : cluster.etcdHosts.find((h) => h !== leader)!;
      target = victim;
      cluster.kill(victim);
      heal = () => cluster.startEtcd(victim);
      break;
    }
    case 'proxy-kill': {
      const proxy = cluster.proxyHosts[(step.proxyIndex ?? 0) % cluster.proxyHosts.length]!;
      target = proxy;
      cluster.kill(proxy);
      heal = () => cluster.startProxy(proxy);
      break;
    }
    case 'switchover': {
      const res = await cluster.switchover(null);
      if (res.status >= 300) throw new Error(`the switchover was refused (${res.status}): ${res.body}`);
      break;
    }
  }
  log(`chaos: round ${step.round}: ${step.fault} on ${target}${step.holdMs > 0 ? ` for ${(step.holdMs / 1000).toFixed(1)} s` : ''}`);
  if (step.holdMs > 0) await sleep(step.holdMs);
  await heal();
  // The round may not end before the fault has had its effect: a health check right after a kill can still see
  // the old state. Faults that must move the leader key are waited for; the others get a lease's time.
  const ttlMs = view.config.ttl * 1000;
  if (MOVES_LEADER.has(step.fault)) {
    await waitUntil(async () => (await cluster.leader().catch(() => primary)) !== primary, ttlMs * 6);
  } else {
    const settleUntil = at + ttlMs + view.config.loop_wait * 1000;
    if (now() < settleUntil) await sleep(settleUntil - now());
  }
  return { ...step, target, at, until: at };
}

/** Faults after which the leader key must be held by another member (synchronous or not: a standby is there). */
const MOVES_LEADER: ReadonlySet<ChaosFault> = new Set<ChaosFault>(['pg-kill', 'host-crash', 'partition-primary', 'switchover']);

async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await probe()) return true;
    await sleep(50);
  }
  return false;
}

/** The chaos table (fault × rounds × recovery × writes × rejoins), as text. */
export function formatTable(result: ChaosRunResult): string[] {
  const ms = (v: number | null): string => (v === null ? '-' : (v / 1000).toFixed(2));
  const lines = [
    `chaos run: seed ${result.seed}, ${result.rounds.length} rounds, ${result.synchronous ? 'synchronous' : 'asynchronous'} mode, network ${result.mode}${result.fallbackReason ? ` (fallback: ${result.fallbackReason})` : ''}`,
    `writes: ${result.writes.attempted} attempted, ${result.writes.acknowledged} acknowledged (${result.writes.viaProxy} through the proxies, ${result.writes.direct} directly)`,
    '',
    '| fault | rounds | recovery median s | p95 s | max s | failed writes (proxies) | lost acknowledged | dual-primary windows | rewinds (failed) | re-clones |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const row of result.table) {
    lines.push(
      `| ${row.fault} | ${row.rounds} | ${ms(row.recoveryMedianMs)} | ${ms(row.recoveryP95Ms)} | ${ms(row.recoveryMaxMs)} | ${row.failedWrites} | ${row.lost} | ${row.dualPrimary} | ${row.rewinds} (${row.rewindFailures}) | ${row.reclones} |`,
    );
  }
  lines.push('');
  if (result.ok) {
    lines.push(
      `verdict: OK — ${result.report.lost.length} acknowledged writes lost${result.synchronous ? '' : ' (asynchronous mode, all within maximum_lag_on_failover)'}, 0 dual-primary windows, no duplicates, no phantoms, 0 re-clones`,
    );
  } else {
    lines.push('verdict: FAILED');
    for (const p of result.report.problems) lines.push(`  - ${p}`);
    lines.push('replay:');
    for (const c of result.replay) lines.push(`  ${c}`);
  }
  return lines;
}
