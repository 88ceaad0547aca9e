import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_TAGS, type Tags } from '../../src/ha/types.js';
import { Rng } from './prng.js';
import { FAULT_KINDS, runSimulation, type FaultKind, type SimEvent, type SimOptions, type SimResult, type Simulation } from './world.js';

/**
 * The sweep assumes the agent's PostgreSQL stops when the agent dies (a dead-man switch): without one no
 * policy can keep invariant 1 when an agent process is killed — see the scenario "invariant 1 catches ..."
 * below, which runs the same fault without it.
 */
const SWEEP = { seedsPerMode: 500, faultWindowMs: 40_000, deadman: true } as const;

function replay(r: SimResult): string {
  return `node dist/test/sim/run.js --verbose-seed ${r.seed} --ticks ${SWEEP.faultWindowMs / 100}${r.sync ? ' --sync' : ''}`;
}

function describeFailures(failed: SimResult[]): string {
  return failed
    .slice(0, 10)
    .map((r) => {
      const v = r.violations[0]!;
      return `seed ${r.seed} (${r.sync ? 'sync' : 'async'}): invariant ${v.invariant} at ${(v.at / 1000).toFixed(3)}s: ${v.message}\n    replay: ${replay(r)}`;
    })
    .join('\n');
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
  it('is deterministic per seed and spreads values', () => {
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

  it('a run replays exactly from its seed', () => {
    const first = runSimulation({ seed: 7, faultWindowMs: 20_000, tracing: true });
    const again = runSimulation({ seed: 7, faultWindowMs: 20_000, tracing: true });
    assert.equal(first.trace.join('\n'), again.trace.join('\n'));
    assert.ok(first.trace.length > 50);
  });
});

describe('simulation: seed sweep', () => {
  it(`${SWEEP.seedsPerMode} seeds in async and ${SWEEP.seedsPerMode} in synchronous mode: no invariant violated, every fault injected`, () => {
    const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
    const failed: SimResult[] = [];
    let acks = 0;
    let promotions = 0;
    let converged = 0;
    for (const sync of [false, true]) {
      for (let seed = 1; seed <= SWEEP.seedsPerMode; seed++) {
        const r = runSimulation({ seed, sync, faultWindowMs: SWEEP.faultWindowMs, deadman: true });
        for (const k of FAULT_KINDS) faults[k] += r.faults[k];
        acks += r.acks;
        promotions += r.promotions;
        if (r.finalConvergenceMs !== null) converged++;
        if (r.violations.length > 0) failed.push(r);
      }
    }
    // The sweep only means something if the scheduler really injected every kind of fault, many times.
    for (const k of FAULT_KINDS) assert.ok(faults[k] >= 50, `fault ${k} injected only ${faults[k]} times`);
    assert.ok(acks > 100_000, `only ${acks} commits acknowledged`);
    assert.ok(promotions > 1000, `only ${promotions} promotions`);
    assert.equal(failed.length, 0, `${failed.length} of ${2 * SWEEP.seedsPerMode} runs violated an invariant:\n${describeFailures(failed)}`);
    assert.equal(converged, 2 * SWEEP.seedsPerMode);
  });
});

describe('simulation: targeted scenarios', () => {
  it('a primary cut from etcd stops acknowledging before its lease can expire, and a replica takes over', () => {
    let primary = '';
    let cutAt = 0;
    const r = runSimulation(
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

  it('host crash of the primary: a replica is promoted after the lease expires, within ttl plus a few loops', () => {
    let primary = '';
    let crashAt = 0;
    const ttlMs = 5000;
    const r = runSimulation(
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

  it('synchronous mode: the primary host crashes, a synchronous standby takes over with every acknowledged commit', () => {
    let primary = '';
    let syncMembers: string[] = [];
    let crashAt = 0;
    const r = runSimulation(
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

  it('etcd loses its quorum: the primary stops before its lease could expire, and the cluster recovers afterwards', () => {
    let lostAt = 0;
    const r = runSimulation(
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

  it('invariant 1 catches a primary that keeps acknowledging after its agent died (no dead-man switch)', () => {
    const run = (deadman: boolean): SimResult =>
      runSimulation(
        scenario({
          seed: 505,
          deadman,
          script: [{ at: 3000, run: (sim: Simulation) => sim.crashAgent(sim.etcd.leaderName()!) }],
        }),
      );
    // Without it PostgreSQL keeps accepting writes after the lease expired: nothing in the policy can stop it.
    const without = run(false);
    assert.ok(
      without.violations.some((v) => v.invariant === 1),
      `expected invariant 1 to be violated, got ${JSON.stringify(without.violations.slice(0, 2))}`,
    );
    // With PostgreSQL stopping when its agent dies, the same fault is a plain failover.
    const withSwitch = run(true);
    assert.deepEqual(withSwitch.violations, []);
    assert.ok(withSwitch.promotions >= 1);
  });
});
