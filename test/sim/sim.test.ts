import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { DEFAULT_TAGS, type Tags } from '../../src/cluster/types.js';
import { Rng } from './prng.js';
import { summaryLines } from './summary.js';
import { runSweep } from './sweep.js';
import { FAULT_KINDS, runSimulation, type SimEvent, type SimOptions, type SimResult, type Simulation } from './world.js';

/**
 * Every seed runs twice, in asynchronous and in synchronous mode, with the lease deadman of src/ha/deadman.ts
 * on every host (a killed agent's PostgreSQL stops at the last safety deadline it armed). The scenario
 * "without the lease deadman ..." below shows that no policy keeps invariant 1 without it.
 */
const SWEEP = { seeds: 1000, faultWindowMs: 40_000 } as const;

function replay(r: SimResult): string {
  return `node dist/test/sim/run.js --verbose-seed ${r.seed} --ticks ${SWEEP.faultWindowMs / 100}${r.sync ? ' --sync' : ''}`;
}

/** Three plain members, fixed timings: the scenarios below reason about exact deadlines. */
function scenario(extra: Partial<SimOptions> & { seed: number }): SimOptions {
  const plain: Record<string, Partial<Tags>> = { a: { ...DEFAULT_TAGS }, b: { ...DEFAULT_TAGS }, c: { ...DEFAULT_TAGS } };
  return {
    members: 3,
    tags: plain,
    config: { ttl: 5, loop_wait: 1, maximum_lag_on_failover: 1024 * 1024, synchronous_mode_strict: false, synchronous_node_count: 1 },
    recordEvents: true,
    scenarioMs: 30_000,
    ...extra,
  };
}

function eventsOf(r: SimResult, kind: SimEvent['kind'], member?: string): SimEvent[] {
  return r.events.filter((e) => e.kind === kind && (member === undefined || e.member === member));
}

describe('simulation: prng', () => {
  it('is deterministic per seed and spreads values', async () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 1000 }, () => a.next());
    assert.deepEqual(xs, Array.from({ length: 1000 }, () => b.next()));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
    const other = new Rng(43);
    assert.notDeepEqual(xs.slice(0, 10), Array.from({ length: 10 }, () => other.next()));
  });

  it('a run replays exactly from its seed: the same seed twice gives the same trace (hashed), another seed another', async () => {
    const digest = (r: SimResult): string =>
      createHash('sha256')
        .update(r.trace.join('\n'))
        .update(JSON.stringify(r.events))
        .digest('hex');
    for (const sync of [false, true]) {
      const first = await runSimulation({ seed: 7, sync, faultWindowMs: 20_000, tracing: true, recordEvents: true });
      const again = await runSimulation({ seed: 7, sync, faultWindowMs: 20_000, tracing: true, recordEvents: true });
      const other = await runSimulation({ seed: 8, sync, faultWindowMs: 20_000, tracing: true, recordEvents: true });
      assert.ok(first.trace.length > 50 && first.events.length > 50, `a trace of ${first.trace.length} lines, ${first.events.length} events`);
      assert.equal(digest(again), digest(first), `seed 7 (${sync ? 'sync' : 'async'}) replayed differently`);
      assert.notEqual(digest(other), digest(first));
    }
  });
});

describe('simulation: seed sweep', () => {
  it(`seeds 1..${SWEEP.seeds}, each in async and in synchronous mode: no invariant violated, every fault injected, every run converges`, async (t) => {
    const started = performance.now();
    const totals = await runSweep({ seeds: SWEEP.seeds, start: 1, modes: [false, true], faultWindowMs: SWEEP.faultWindowMs });
    const lines = summaryLines(totals, `simulation sweep, fault window ${SWEEP.faultWindowMs / 1000} s`, performance.now() - started, replay, 10);
    for (const line of lines) t.diagnostic(line);
    // The sweep only means something if the scheduler really injected every kind of fault, many times.
    for (const k of FAULT_KINDS) assert.ok(totals.faults[k] >= 100, `fault ${k} injected only ${totals.faults[k]} times`);
    assert.ok(totals.acks > 200_000, `only ${totals.acks} commits acknowledged`);
    assert.ok(totals.promotions > 2000, `only ${totals.promotions} promotions`);
    assert.ok(totals.drainAcks > 50, `proxies acknowledged only ${totals.drainAcks} switchover drains`);
    assert.ok(totals.proxyHandovers > 10, `primaries cut off from every proxy asked for only ${totals.proxyHandovers} switchovers`);
    assert.ok(totals.deadmanStops > 100, `the lease deadman stopped PostgreSQL only ${totals.deadmanStops} times`);
    assert.equal(totals.failed.length, 0, `${totals.failed.length} of ${totals.runs} runs violated an invariant:\n${lines.slice(7).join('\n')}`);
    assert.equal(totals.convergence.length, totals.runs);
  });
});

describe('simulation: targeted scenarios', () => {
  it('a primary cut from etcd stops acknowledging before its lease can expire, and a replica takes over', async () => {
    let primary = '';
    let cutAt = 0;
    const r = await runSimulation(
      scenario({
        seed: 101,
        script: [
          {
            at: 3000,
            run: (sim: Simulation) => {
              primary = sim.etcd.leaderName()!;
              cutAt = sim.kernel.now;
              sim.setPartition(primary, true);
            },
          },
        ],
      }),
    );
    assert.deepEqual(r.violations, []);
    assert.ok(primary !== '');
    const lastAck = Math.max(...eventsOf(r, 'ack', primary).map((e) => e.t));
    const keyFreed = eventsOf(r, 'leader').find((e) => e.t > cutAt && e.member === null);
    const promoted = eventsOf(r, 'promoted').find((e) => e.t > cutAt);
    assert.ok(keyFreed && promoted, 'the key expired and another member was promoted');
    assert.notEqual(promoted.member, primary);
    // The watchdog stops it ttl - margin (3.75 s) after the last refresh was sent: well before the key expires.
    assert.ok(lastAck < keyFreed.t, `last ack at ${lastAck} ms, key expired at ${keyFreed.t} ms`);
    assert.ok(keyFreed.t - lastAck >= 1000, 'at least the safety margin (minus one refresh interval) between the last ack and expiry');
    assert.ok(lastAck < promoted.t);
    const stopped = eventsOf(r, 'pg', primary).find((e) => e.t > cutAt && e.detail === 'shut down');
    assert.ok(stopped && stopped.t < keyFreed.t, 'the partitioned primary shut down before its key expired');
    // The new primary took writes afterwards.
    assert.ok(eventsOf(r, 'ack', promoted.member!).some((e) => e.t > promoted.t));
  });

  it('host crash of the primary: a replica is promoted after the lease expires, within ttl plus a few loops', async () => {
    let primary = '';
    let crashAt = 0;
    const ttlMs = 5000;
    const r = await runSimulation(
      scenario({
        seed: 202,
        script: [
          {
            at: 3000,
            run: (sim: Simulation) => {
              primary = sim.etcd.leaderName()!;
              crashAt = sim.kernel.now;
              sim.crashHost(primary);
            },
          },
        ],
      }),
    );
    assert.deepEqual(r.violations, []);
    const keyFreed = eventsOf(r, 'leader').find((e) => e.t > crashAt && e.member === null)!;
    const promoted = eventsOf(r, 'promoted').find((e) => e.t > crashAt)!;
    assert.ok(keyFreed && promoted);
    // The lease was last refreshed at most one keeper interval (1 s) before the crash.
    assert.ok(keyFreed.t - crashAt >= ttlMs - 1100 && keyFreed.t - crashAt <= ttlMs + 100, `key freed ${keyFreed.t - crashAt} ms after the crash`);
    assert.ok(promoted.t > keyFreed.t);
    assert.ok(promoted.t - crashAt <= ttlMs + 3000, `promoted ${promoted.t - crashAt} ms after the crash`);
    assert.notEqual(promoted.member, primary);
  });

  it('synchronous mode: the primary host crashes, a synchronous standby takes over with every acknowledged commit', async () => {
    let primary = '';
    let syncMembers: string[] = [];
    let crashAt = 0;
    const r = await runSimulation(
      scenario({
        seed: 303,
        sync: true,
        script: [
          {
            at: 5000,
            run: (sim: Simulation) => {
              primary = sim.etcd.leaderName()!;
              syncMembers = (JSON.parse(sim.etcd.get('sync')!.value) as { members: string[] }).members;
              crashAt = sim.kernel.now;
              sim.crashHost(primary);
            },
          },
        ],
      }),
    );
    assert.deepEqual(r.violations, [], 'invariant 3 is checked when the standby is promoted and at the end');
    assert.equal(syncMembers.length, 1);
    const promoted = eventsOf(r, 'promoted').find((e) => e.t > crashAt)!;
    assert.ok(promoted);
    assert.equal(promoted.member, syncMembers[0]);
    assert.ok(eventsOf(r, 'ack', primary).filter((e) => e.t < crashAt).length > 20);
    assert.ok(eventsOf(r, 'ack', promoted.member!).some((e) => e.t > promoted.t));
  });

  it('etcd loses its quorum: the primary stops before its lease could expire, and the cluster recovers afterwards', async () => {
    let lostAt = 0;
    const r = await runSimulation(
      scenario({
        seed: 404,
        scenarioMs: 40_000,
        script: [
          {
            at: 3000,
            run: (sim: Simulation) => {
              lostAt = sim.kernel.now;
              sim.etcd.loseQuorum();
            },
          },
          { at: 13_000, run: (sim: Simulation) => sim.etcd.regainQuorum() },
        ],
      }),
    );
    assert.deepEqual(r.violations, []);
    const acksDuring = r.events.filter((e) => e.kind === 'ack' && e.t > lostAt + 4000 && e.t < lostAt + 10_000);
    assert.deepEqual(acksDuring, [], 'no commit is acknowledged once the lease can no longer be refreshed');
    assert.ok(r.events.some((e) => e.kind === 'ack' && e.t > lostAt + 15_000), 'writes resume after etcd is back');
  });

  it('the agent of the primary is killed: its deadman stops PostgreSQL before the key expires; without one, invariant 1 catches it', async () => {
    let primary = '';
    let killedAt = 0;
    const run = (deadman: boolean): Promise<SimResult> =>
      runSimulation(
        scenario({
          seed: 505,
          deadman,
          script: [
            {
              at: 3000,
              run: (sim: Simulation) => {
                primary = sim.etcd.leaderName()!;
                killedAt = sim.kernel.now;
                sim.crashAgent(primary);
              },
            },
          ],
        }),
      );
    // Without it PostgreSQL keeps accepting writes after the lease expired: nothing in the policy can stop it.
    const without = await run(false);
    assert.ok(
      without.violations.some((v) => v.invariant === 1),
      `expected invariant 1 to be violated, got ${JSON.stringify(without.violations.slice(0, 2))}`,
    );
    const withDeadman = await run(true);
    assert.deepEqual(withDeadman.violations, []);
    const fired = eventsOf(withDeadman, 'deadman', primary)[0];
    const keyFreed = eventsOf(withDeadman, 'leader').find((e) => e.t > killedAt && e.member === null);
    assert.ok(fired && keyFreed, 'the deadman fired and the key expired');
    assert.ok(fired.t < keyFreed.t, `deadman at ${fired.t} ms, key expired at ${keyFreed.t} ms`);
    const lastAck = Math.max(...eventsOf(withDeadman, 'ack', primary).map((e) => e.t));
    assert.ok(lastAck <= fired.t, 'no commit acknowledged after the deadman stopped PostgreSQL');
    const promoted = eventsOf(withDeadman, 'promoted').find((e) => e.t > killedAt);
    assert.ok(promoted && promoted.member !== primary, 'another member took over');
  });

  it('the agent of the primary restarts while etcd answers slowly: the deadline its predecessor armed still stops PostgreSQL in time', async () => {
    let primary = '';
    const r = await runSimulation(
      scenario({
        seed: 5,
        script: [
          {
            at: 3000,
            run: (sim: Simulation) => {
              primary = sim.etcd.leaderName()!;
              sim.crashAgent(primary);
              // The new agent's first calls time out: it cannot rebind the key before the old lease runs out.
              sim.etcd.slowUntil = sim.kernel.now + 6000;
              sim.kernel.after(300, () => sim.startAgent(primary));
            },
          },
        ],
      }),
    );
    assert.deepEqual(r.violations, []);
    assert.ok(eventsOf(r, 'deadman', primary).length > 0, 'the deadman armed by the killed agent fired');
  });

  it('the agent is killed in the middle of a promotion: PostgreSQL finishes promoting, and the deadman stops it before the key expires', async () => {
    let victim = '';
    let killedAt = 0;
    const r = await runSimulation(
      scenario({
        seed: 606,
        scenarioMs: 40_000,
        script: [{ at: 3000, run: (sim: Simulation) => sim.crashHost(sim.etcd.leaderName()!) }],
        onPromote: (sim, member) => {
          if (victim !== '' || sim.kernel.now < 3000) return;
          victim = member;
          killedAt = sim.kernel.now;
          sim.crashAgent(member);
        },
      }),
    );
    assert.ok(victim !== '', 'a promotion started after the host crash');
    assert.ok(eventsOf(r, 'promoted', victim).some((e) => e.t >= killedAt), 'pg_promote completed after the agent died');
    assert.deepEqual(r.violations, [], 'its PostgreSQL must not outlive the key it was promoted under');
    assert.ok(eventsOf(r, 'deadman', victim).length > 0, 'the deadman stopped it');
  });
});
