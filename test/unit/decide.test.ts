import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanShutdownRecord, decide, drainIdFor, MAX_START_FAILURES, noteShutdownHold, SHUTDOWN_CHECKPOINT_MAX_SPAN } from '../../src/ha/decide.js';
import { leaderSafeUntil, mustStepDown, safetyMarginSeconds } from '../../src/ha/lease.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../../src/cluster/dynamic-config.js';
import { type Action, type Decision, EMPTY_MEMORY, type Observation } from '../../src/ha/types.js';
import type { ClusterView } from '../../src/cluster/types.js';
import { cluster, NOW, type ClusterBuilder } from './cluster-builder.js';

/** Runs decide() and checks it left its inputs untouched. */
function run(view: ClusterView, obs: Observation, clock = NOW): Decision {
  const before = JSON.stringify([view, obs]);
  const d = decide(view, obs, view.config, clock);
  assert.equal(JSON.stringify([view, obs]), before, 'decide() must not modify its inputs');
  return d;
}

function decideFor(c: ClusterBuilder, name: string, o: Parameters<ClusterBuilder['observe']>[1] = {}, clock = NOW): Decision {
  return run(c.view(), c.observe(name, o), clock);
}

const types = (d: Decision): string[] => d.actions.map((a) => a.type);

describe('decide: bootstrap and cloning', () => {
  it('bootstraps when the initialize key is free', () => {
    const c = cluster().uninitialized(null);
    const d = decideFor(c, 'a', { pg: { dataDir: 'empty', running: false, accepting: false, inRecovery: null } });
    assert.deepEqual(d.actions, [{ type: 'bootstrap' }]);
    assert.equal(d.rule, 'bootstrap.init');
  });

  it('waits while another member bootstraps', () => {
    const c = cluster().uninitialized('');
    const d = decideFor(c, 'b', { pg: { dataDir: 'missing', running: false } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'bootstrap.wait-other');
  });

  it('a nofailover member never bootstraps', () => {
    const c = cluster().uninitialized(null);
    const d = decideFor(c, 'a', { pg: { dataDir: 'empty', running: false }, tags: { nofailover: true } });
    assert.deepEqual(d.actions, []);
  });

  it('clones from the running primary and starts following it', () => {
    const c = cluster().primary('a');
    const d = decideFor(c, 'b', { pg: { dataDir: 'empty', running: false } });
    assert.deepEqual(d.actions, [
      { type: 'clone', from: 'a' },
      { type: 'start', role: 'replica', follow: 'a' },
    ]);
  });

  it('waits for a primary before cloning', () => {
    const c = cluster().primary('a').leaderGone();
    const d = decideFor(c, 'b', { pg: { dataDir: 'empty', running: false } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'bootstrap.wait-primary');
  });

  it('refuses to act on a data directory of another system', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'b', { pg: { systemId: 'other' } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'system.foreign-data-directory');
    assert.match(d.reason, /belongs to system other/);
  });
});

describe('decide: steady state', () => {
  it('the primary refreshes its key and does nothing else', () => {
    const c = cluster().primary('a').replica('b').replica('c');
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
    assert.equal(d.rule, 'leader.keep');
    assert.equal(d.role, 'primary');
  });

  it('a streaming replica does nothing', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'b');
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'follower.streaming');
  });

  it('a replica pointed at the wrong server follows the leader', () => {
    const c = cluster().primary('a').replica('b').replica('c');
    const d = decideFor(c, 'c', { pg: { following: 'b' } });
    assert.deepEqual(d.actions, [{ type: 'follow', leader: 'a' }]);
  });

  it('a stopped replica is started following the leader', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'b', { pg: { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery' } });
    assert.deepEqual(d.actions, [{ type: 'start', role: 'replica', follow: 'a' }]);
  });

  it('the primary creates missing slots and drops slots of long-gone members', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', {
      pg: { slots: ['gone', 'recent'] },
      memory: { memberLastSeen: { gone: NOW.wall - 3_600_000, recent: NOW.wall - 60_000 } },
    });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }, { type: 'manageSlots', create: ['b'], drop: ['gone'] }]);
  });
});

describe('decide: PostgreSQL crash on the primary under a live agent', () => {
  const crashed = { running: false, accepting: false, inRecovery: null, controlState: 'in production' as const };

  it('releases the key at once when a replica can take over', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', { pg: crashed });
    assert.deepEqual(d.actions, [{ type: 'releaseLeader' }]);
    assert.equal(d.rule, 'leader.release-for-candidate');
    assert.match(d.reason, /b can take over/);
  });

  it('restarts in place when no replica is eligible', () => {
    const c = cluster().primary('a').replica('b', { tags: { nofailover: true } });
    const d = decideFor(c, 'a', { pg: crashed });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }, { type: 'start', role: 'primary', follow: null }]);
  });

  it('gives the key up after repeated start failures', () => {
    const c = cluster().primary('a');
    const d = decideFor(c, 'a', { pg: crashed, memory: { startFailures: MAX_START_FAILURES } });
    assert.deepEqual(d.actions, [{ type: 'releaseLeader' }]);
  });

  it('does not hand over to a replica lagging past maximum_lag_on_failover', () => {
    const c = cluster().primary('a', { wal: 10_000_000 }).replica('b', { wal: 10 });
    const d = decideFor(c, 'a', { pg: crashed });
    assert.deepEqual(types(d), ['refreshLeader', 'start']);
  });
});

describe('decide: election when the leader key is free', () => {
  const base = () => cluster().primary('a', { wal: 1000 }).replica('b', { wal: 1000 }).replica('c', { wal: 900 }).leaderGone();

  it('the most advanced healthy replica takes the key and promotes', () => {
    const d = decideFor(base(), 'b');
    assert.deepEqual(d.actions, [
      { type: 'acquireLeader' },
      { type: 'recordHistory', reason: 'failover to b', timeline: 2, lsn: 1000, parent: 1 },
      { type: 'promote' },
      { type: 'checkpoint' },
    ]);
    assert.equal(d.rule, 'election.take-leader');
  });

  it('a less advanced replica defers to the more advanced one', () => {
    const d = decideFor(base(), 'c');
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-peer-ahead');
    assert.match(d.reason, /b is more advanced \(1000 > 900\)/);
  });

  it('an unreachable peer does not block the election', () => {
    const c = base();
    const obs = c.observe('c', {});
    obs.peers.b = { ...obs.peers.b!, reachable: false };
    const d = run(c.view(), obs);
    assert.deepEqual(types(d), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
  });

  it('equal positions: higher failover_priority wins', () => {
    const c = cluster().primary('a').replica('b', { wal: 1000 }).replica('c', { wal: 1000, tags: { failover_priority: 5 } }).leaderGone();
    assert.deepEqual(decideFor(c, 'b').actions, []);
    assert.deepEqual(types(decideFor(c, 'c')), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
  });

  it('a nofailover peer is ignored and never promotes itself', () => {
    const c = cluster().primary('a').replica('b', { wal: 2000, tags: { nofailover: true } }).replica('c', { wal: 1000 }).leaderGone();
    assert.deepEqual(types(decideFor(c, 'c')), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
    const d = decideFor(c, 'b');
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-nofailover');
  });

  it('failover_priority 0 behaves like nofailover', () => {
    const c = cluster().primary('a').replica('b', { tags: { failover_priority: 0 } }).leaderGone();
    assert.deepEqual(decideFor(c, 'b').actions, []);
  });

  it('a replica beyond maximum_lag_on_failover is never promoted', () => {
    const c = cluster().primary('a', { wal: 5_000_000 }).replica('b', { wal: 1000 }).leaderGone().config({ maximum_lag_on_failover: 1_000_000 });
    const d = decideFor(c, 'b');
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-lag');
    assert.match(d.reason, /lag of 4999000 bytes exceeds maximum_lag_on_failover/);
  });

  it('defers to a peer still running as primary', () => {
    const c = base();
    const obs = c.observe('b');
    obs.peers.a = { reachable: true, healthy: true, walPosition: 1000, role: 'primary', tags: null };
    const d = run(c.view(), obs);
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-peer-ahead');
    assert.match(d.reason, /a is still running as a primary/);
  });

  it('a replica whose PostgreSQL does not answer does not take the key', () => {
    const d = decideFor(base(), 'b', { pg: { accepting: false } });
    assert.deepEqual(d.actions, []);
  });

  it('a stopped replica starts so it can take part', () => {
    const d = decideFor(base(), 'b', { pg: { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery' } });
    assert.deepEqual(d.actions, [{ type: 'start', role: 'replica', follow: null }]);
  });
});

describe('decide: synchronous mode', () => {
  const syncCluster = () =>
    cluster().config({ synchronous_mode: true }).primary('a', { wal: 1000 }).replica('b', { wal: 900 }).replica('c', { wal: 1000 }).sync('a', ['b']);

  it('only a member listed in sync may be promoted, even if another is ahead', () => {
    const c = syncCluster().leaderGone();
    const dc = decideFor(c, 'c');
    assert.deepEqual(dc.actions, []);
    assert.equal(dc.rule, 'election.refuse-not-sync');
    const db = decideFor(c, 'b');
    assert.deepEqual(db.actions, [
      { type: 'acquireLeader' },
      { type: 'writeSync', members: [] },
      { type: 'recordHistory', reason: 'failover to b', timeline: 2, lsn: 900, parent: 1 },
      { type: 'promote' },
      { type: 'checkpoint' },
    ]);
  });

  it('nobody is promoted when sync is empty', () => {
    const c = syncCluster().sync('a', []).leaderGone();
    assert.deepEqual(decideFor(c, 'b').actions, []);
    assert.deepEqual(decideFor(c, 'c').actions, []);
  });

  it('adds a standby to synchronous_standby_names before it appears in sync', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a').replica('b');
    const d = decideFor(c, 'a', { pg: { synchronousStandbyNames: [] } });
    assert.deepEqual(d.actions, [
      { type: 'refreshLeader' },
      { type: 'writeSync', members: [] },
      { type: 'setSynchronousStandbys', names: ['b'] },
    ]);
  });

  it('adds the standby to sync only after it is synchronous and flushed past the point it was added', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a', { wal: 5000 }).replica('b', { wal: 4000 }).sync('a', []);
    const replication = [{ name: 'b', state: 'streaming', syncState: 'sync', flushLsn: 4000, replayLsn: 4000 }];
    const notYet = decideFor(c, 'a', { pg: { synchronousStandbyNames: ['b'], replication }, memory: { syncAddedAt: { b: 4500 } } });
    assert.deepEqual(notYet.actions, [{ type: 'refreshLeader' }]);
    const now = decideFor(c, 'a', {
      pg: { synchronousStandbyNames: ['b'], replication: [{ ...replication[0]!, flushLsn: 4600 }] },
      memory: { syncAddedAt: { b: 4500 } },
    });
    assert.deepEqual(now.actions, [{ type: 'refreshLeader' }, { type: 'writeSync', members: ['b'] }]);
  });

  it('removes a disconnected standby from sync before removing it from PostgreSQL', () => {
    const c = syncCluster();
    const d = decideFor(c, 'a', { pg: { replication: [{ name: 'c', state: 'streaming', syncState: 'async', flushLsn: 1000, replayLsn: 1000 }] } });
    const acts = d.actions.map((a: Action) => JSON.stringify(a));
    const w = acts.indexOf(JSON.stringify({ type: 'writeSync', members: [] }));
    const s = acts.indexOf(JSON.stringify({ type: 'setSynchronousStandbys', names: ['c'] }));
    assert.ok(w >= 0 && s >= 0 && w < s, `writeSync must come before setSynchronousStandbys: ${acts.join(' ')}`);
  });

  it('strict mode with no standby blocks writes with "*"', () => {
    const c = cluster().config({ synchronous_mode: true, synchronous_mode_strict: true }).primary('a').sync('a', []);
    const d = decideFor(c, 'a', { pg: { synchronousStandbyNames: [] } });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }, { type: 'setSynchronousStandbys', names: ['*'] }]);
    assert.equal(d.rule, 'leader.keep');
    assert.match(d.reason, /writes block \(strict mode\)/);
  });

  it('a nosync member never becomes synchronous', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a').replica('b', { tags: { nosync: true } }).sync('a', []);
    const d = decideFor(c, 'a', { pg: { synchronousStandbyNames: [] } });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
  });

  it('turning synchronous mode off clears synchronous_standby_names', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', { pg: { synchronousStandbyNames: ['b'] } });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }, { type: 'setSynchronousStandbys', names: [] }]);
  });
});

describe('decide: the leader lease and a primary cut off from etcd', () => {
  it('safety deadline is ttl minus margin after the last refresh was sent', () => {
    const cfg = { ...DEFAULT_DYNAMIC_CONFIG, ttl: 5 };
    assert.equal(safetyMarginSeconds(cfg), 1.25);
    const memory = { ...EMPTY_MEMORY, holdsLeader: true, leaderRefreshSentAt: 10_000 };
    assert.equal(leaderSafeUntil(memory, cfg), 13_750);
    assert.equal(mustStepDown(memory, cfg, 13_749), false);
    assert.equal(mustStepDown(memory, cfg, 13_750), true);
    assert.equal(mustStepDown({ ...memory, holdsLeader: false }, cfg, 10_001), true);
    assert.equal(safetyMarginSeconds({ ...cfg, ttl: 2 }), 1);
    assert.equal(safetyMarginSeconds({ ...cfg, ttl: 30 }), 7.5);
  });

  it('keeps writing while the lease is safe and etcd is unreachable', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', { dcsReachable: false, memory: { leaderRefreshSentAt: NOW.mono - 3000 } });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
  });

  it('stops before the lease can expire when etcd stays unreachable', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', { dcsReachable: false, memory: { leaderRefreshSentAt: NOW.mono - 3750 } });
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
    assert.equal(d.rule, 'dcs.demote');
  });

  it('a primary whose agent lost the key stops when etcd is unreachable', () => {
    const c = cluster().primary('a');
    const d = decideFor(c, 'a', { dcsReachable: false, memory: { holdsLeader: false, leaderRefreshSentAt: null } });
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
  });

  it('a replica does nothing while etcd is unreachable', () => {
    const c = cluster().primary('a').replica('b');
    assert.deepEqual(decideFor(c, 'b', { dcsReachable: false }).actions, []);
  });
});

describe('decide: a former primary rejoins', () => {
  const after = () => cluster().primary('b', { timeline: 2, wal: 2000 }).replica('a');

  it('a running former primary stops at once when another holds the key', () => {
    const d = decideFor(after(), 'a', { pg: { inRecovery: false, following: null, streaming: false } });
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
    assert.equal(d.rule, 'follower.demote');
  });

  it('a running server that cannot be queried and may be a primary is stopped too', () => {
    const d = decideFor(after(), 'a', { pg: { inRecovery: null, accepting: false } });
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
  });

  it('rewinds, then starts as a replica of the new primary', () => {
    const d = decideFor(after(), 'a', { pg: { running: false, accepting: false, inRecovery: null, controlState: 'shut down', controlTimeline: 1 } });
    assert.deepEqual(d.actions, [
      { type: 'rewind', from: 'b' },
      { type: 'start', role: 'replica', follow: 'b' },
    ]);
  });

  it('clones again when pg_rewind failed', () => {
    const d = decideFor(after(), 'a', {
      pg: { running: false, accepting: false, inRecovery: null, controlState: 'in production', controlTimeline: 1 },
      memory: { rewindFailed: true },
    });
    assert.deepEqual(d.actions, [
      { type: 'reinitialize', from: 'b' },
      { type: 'start', role: 'replica', follow: 'b' },
    ]);
  });

  // Found by the chaos suite: a diverged replica was stopped, pg_rewind failed, and the agent then tried to start
  // it as a replica forever ("requested timeline 2 does not contain minimum recovery point").
  const stoppedReplica = { running: false, accepting: false, inRecovery: null, controlState: 'shut down in recovery', controlTimeline: 1 } as const;

  it('a stopped replica whose pg_rewind failed is cloned again, not started', () => {
    const d = decideFor(after(), 'a', { pg: stoppedReplica, memory: { rewindFailed: true } });
    assert.deepEqual(d.actions, [
      { type: 'reinitialize', from: 'b' },
      { type: 'start', role: 'replica', follow: 'b' },
    ]);
    assert.equal(d.rule, 'follower.reclone');
    assert.match(d.reason, /pg_rewind failed, cloning again/);
  });

  it('a replica that keeps failing to start is rewound, then cloned again', () => {
    assert.deepEqual(types(decideFor(after(), 'a', { pg: stoppedReplica, memory: { startFailures: MAX_START_FAILURES - 1 } })), ['start']);
    const rewind = decideFor(after(), 'a', { pg: stoppedReplica, memory: { startFailures: MAX_START_FAILURES } });
    assert.deepEqual(types(rewind), ['rewind', 'start']);
    assert.equal(rewind.rule, 'follower.rewind');
    assert.match(rewind.reason, /failed to start as a replica 3 times: rewinding it first/);
    const reclone = decideFor(after(), 'a', { pg: stoppedReplica, memory: { startFailures: MAX_START_FAILURES * 2 } });
    assert.deepEqual(types(reclone), ['reinitialize', 'start']);
    assert.equal(reclone.rule, 'follower.reclone');
  });

  it('a running primary whose key expired takes it back when nothing happened meanwhile', () => {
    const c = cluster().primary('a').replica('b').leaderGone(true);
    const d = decideFor(c, 'a', { memory: { holdsLeader: false } });
    assert.deepEqual(d.actions, [{ type: 'acquireLeader' }]);
  });

  it('but stops when a newer timeline exists', () => {
    const c = cluster().primary('a').replica('b').leaderGone(true).history([{ timeline: 2, lsn: 900, at: 0, reason: 'failover', leader: 'b' }]);
    const d = decideFor(c, 'a', { memory: { holdsLeader: false } });
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
    assert.equal(d.rule, 'former-primary.demote');
    assert.match(d.reason, /timeline 2 was started by b/);
  });
});

describe('decide: switchover and failover requests', () => {
  const c3 = () => cluster().primary('a').replica('b').replica('c');

  it('the primary shuts down cleanly and releases the key for the candidate', () => {
    const d = decideFor(c3().failover({ from: 'a', to: 'b' }), 'a');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }]);
    assert.equal(d.rule, 'handover.release');
  });

  it('the named candidate promotes, and clears the request', () => {
    const c = c3().failover({ from: 'a', to: 'c' }).leaderGone();
    const d = decideFor(c, 'c', { pg: { walPosition: 1000 } });
    assert.deepEqual(d.actions, [
      { type: 'acquireLeader' },
      { type: 'recordHistory', reason: 'switchover to c', timeline: 2, lsn: 1000, parent: 1 },
      { type: 'promote' },
      { type: 'clearFailover' },
      { type: 'checkpoint' },
    ]);
  });

  it('other replicas leave the key to the named candidate', () => {
    const c = c3().failover({ from: 'a', to: 'c' }).leaderGone();
    const d = decideFor(c, 'b');
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-requested-elsewhere');
  });

  it('a stale request no longer holds the election back', () => {
    const c = c3().failover({ from: 'a', to: 'c', requestedAt: NOW.wall - 3_600_000 }).leaderGone();
    assert.deepEqual(types(decideFor(c, 'b')), ['acquireLeader', 'recordHistory', 'promote', 'clearFailover', 'checkpoint']);
  });

  it('waits while the candidate is not streaming', () => {
    const c = c3().failover({ to: 'b' });
    const d = decideFor(c, 'a', { pg: { replication: [] } });
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
    assert.equal(d.rule, 'handover.wait-candidate');
    assert.match(d.reason, /b is not streaming from this primary/);
  });

  it('refuses a nofailover candidate', () => {
    const c = cluster().primary('a').replica('b', { tags: { nofailover: true } }).failover({ to: 'b' });
    const d = decideFor(c, 'a');
    assert.equal(d.rule, 'handover.wait-candidate');
    assert.match(d.reason, /b is tagged nofailover/);
  });

  it('drops a request naming another leader', () => {
    const d = decideFor(c3().failover({ from: 'x', to: 'b' }), 'a');
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }, { type: 'clearFailover' }]);
  });

  it('a scheduled switchover waits for its time', () => {
    const c = c3().failover({ to: 'b', at: NOW.wall + 60_000 });
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
    assert.equal(d.rule, 'handover.scheduled');
  });

  it('with no candidate named, hands over to the best replica', () => {
    const c = cluster().primary('a', { wal: 1000 }).replica('b', { wal: 800 }).replica('c', { wal: 1000 }).failover({});
    const d = decideFor(c, 'a');
    assert.equal(d.rule, 'handover.release');
    assert.match(d.reason, /released the leader key for c/);
  });

  it('a forced failover to a lagging member is allowed, a switchover is not', () => {
    const c = cluster().primary('a', { wal: 5_000_000 }).replica('b', { wal: 10 }).leaderGone();
    const fo = c.failover({ kind: 'failover', to: 'b' });
    assert.deepEqual(types(decideFor(fo, 'b')), ['acquireLeader', 'recordHistory', 'promote', 'clearFailover', 'checkpoint']);
    const so = c.failover({ kind: 'switchover', to: 'b' });
    assert.deepEqual(decideFor(so, 'b').actions, []);
  });
});

describe('decide: pause and operator requests', () => {
  it('paused primary only keeps its key', () => {
    const c = cluster().config({ pause: true }).primary('a').replica('b');
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [{ type: 'refreshLeader' }]);
    assert.equal(d.rule, 'pause.keep-leader');
  });

  it('paused replicas do not fail over', () => {
    const c = cluster().config({ pause: true }).primary('a').replica('b').leaderGone();
    const d = decideFor(c, 'b');
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'pause.idle');
  });

  it('paused: a crashed primary is not restarted', () => {
    const c = cluster().config({ pause: true }).primary('a').replica('b');
    const d = decideFor(c, 'b', { pg: { running: false, inRecovery: null, controlState: 'in archive recovery' } });
    assert.deepEqual(d.actions, []);
  });

  it('reinitialize on a replica wipes and clones from the primary', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'b', { memory: { requests: { restart: false, reload: false, reinitialize: true } } });
    assert.deepEqual(types(d), ['clearRequests', 'stop', 'reinitialize', 'start']);
  });

  it('reinitialize is refused on the leader', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', { memory: { requests: { restart: false, reload: false, reinitialize: true } } });
    assert.deepEqual(types(d), ['clearRequests', 'refreshLeader']);
    assert.equal(d.rule, 'request.reinit-refused');
  });

  it('restart on the primary keeps the key first', () => {
    const c = cluster().primary('a');
    const d = decideFor(c, 'a', { memory: { requests: { restart: true, reload: false, reinitialize: false } } });
    assert.deepEqual(types(d), ['refreshLeader', 'clearRequests', 'restart']);
  });
});

describe('decide: regressions found by the simulator', () => {
  it('a restarted agent whose key is still bound to its old lease rebinds it with acquireLeader', () => {
    const c = cluster().primary('a').replica('b');
    const d = decideFor(c, 'a', { memory: { holdsLeader: false, leaderRefreshSentAt: null } });
    assert.deepEqual(d.actions, [{ type: 'acquireLeader' }]);
  });

  it('a stopped former primary does not defer to a peer too far behind to take the key', () => {
    const c = cluster().primary('a', { wal: 50_000_000 }).replica('b', { wal: 10 }).leaderGone(true).config({ maximum_lag_on_failover: 1_000_000 });
    const d = decideFor(c, 'a', {
      pg: { running: false, accepting: false, inRecovery: null, controlState: 'shut down', controlTimeline: 1, walPosition: null },
      memory: { holdsLeader: false },
    });
    assert.deepEqual(types(d), ['acquireLeader', 'start']);
  });

  it('synchronous mode: the member named as sync leader stays eligible (it took the key but did not promote)', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a').replica('b').replica('c').sync('b', []).leaderGone();
    assert.deepEqual(types(decideFor(c, 'b')), ['acquireLeader', 'writeSync', 'recordHistory', 'promote', 'checkpoint']);
    assert.deepEqual(decideFor(c, 'c').actions, []);
  });

  it('promotion records the new timeline before promoting', () => {
    const c = cluster().primary('a').replica('b', { timeline: 3, wal: 777 }).leaderGone();
    const d = decideFor(c, 'b', { pg: { timeline: 3 } });
    assert.deepEqual(d.actions[1], { type: 'recordHistory', reason: 'failover to b', timeline: 4, lsn: 777, parent: 3 });
  });

  it('a running former primary does not retake the key when the last promotion in history is someone else', () => {
    const c = cluster().primary('a', { timeline: 2 }).replica('b').leaderGone(true).history([
      { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'a' },
      { timeline: 2, lsn: 500, at: 1, reason: 'failover', leader: 'b' },
    ]);
    const d = decideFor(c, 'a', { pg: { timeline: 2 }, memory: { holdsLeader: false } });
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }]);
  });

  it('a waiting switchover does not freeze synchronous standby bookkeeping', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a').replica('b').replica('c').sync('a', []).failover({ to: 'c' });
    const d = decideFor(c, 'a', {
      pg: { synchronousStandbyNames: [], replication: [{ name: 'b', state: 'streaming', syncState: 'async', flushLsn: 1000, replayLsn: 1000 }] },
    });
    assert.deepEqual(types(d), ['refreshLeader', 'setSynchronousStandbys']);
    assert.equal(d.rule, 'handover.wait-candidate');
    assert.match(d.reason, /switchover waiting: c is not a synchronous standby/);
  });

  it('a replica holding WAL past the fork of the new timeline is rewound', () => {
    const c = cluster().primary('b', { timeline: 2 }).replica('a', { timeline: 1, wal: 2000 }).history([
      { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'x' },
      { timeline: 2, lsn: 1500, at: 1, reason: 'failover', leader: 'b' },
    ]);
    const recent = decideFor(c, 'a', { pg: { timeline: 1, walPosition: 2000, streaming: false, following: 'b' }, memory: { notStreamingSince: NOW.mono - 3000 } });
    assert.deepEqual(recent.actions, [], 'not streaming for less than ttl + loop_wait: the primary may just have died');
    const d = decideFor(c, 'a', { pg: { timeline: 1, walPosition: 2000, streaming: false, following: 'b' }, memory: { notStreamingSince: NOW.mono - 6000 } });
    assert.deepEqual(d.actions, [
      { type: 'stop', mode: 'fast' },
      { type: 'rewind', from: 'b' },
      { type: 'start', role: 'replica', follow: 'b' },
    ]);
    assert.equal(d.rule, 'follower.diverged-rewind');
    const behind = decideFor(c, 'a', { pg: { timeline: 1, walPosition: 1400, streaming: false, following: 'b' }, memory: { notStreamingSince: NOW.mono - 6000 } });
    assert.deepEqual(behind.actions, [], 'a replica before the fork just catches up');
  });

  it('a replica waits while the leader has not published its address', () => {
    const c = cluster().primary('a').replica('b').leader('z');
    const d = decideFor(c, 'b', { pg: { following: 'a' } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'follower.wait-address');
  });
});

describe('decide: timelines and the history (simulator findings)', () => {
  it('a promotion numbers its timeline after the newest one in the history, even from an older timeline', () => {
    const c = cluster().primary('a', { timeline: 3 }).replica('b', { timeline: 1, wal: 1000 }).leaderGone().history([
      { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'a' },
      { timeline: 2, lsn: 500, at: 1, reason: 'failover', leader: 'c', parent: 1 },
      { timeline: 3, lsn: 800, at: 2, reason: 'failover', leader: 'a', parent: 2 },
    ]);
    const d = decideFor(c, 'b', { pg: { timeline: 1 } });
    assert.deepEqual(
      d.actions.find((a) => a.type === 'recordHistory'),
      { type: 'recordHistory', reason: 'failover to b', timeline: 4, lsn: 1000, parent: 1 },
    );
  });

  it('a primary that crashed before the checkpoint after its promotion takes its key back: the last promotion is its own', () => {
    const c = cluster().primary('a', { timeline: 2 }).replica('b', { tags: { nofailover: true } }).leaderGone(true).history([
      { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'b' },
      { timeline: 2, lsn: 500, at: 1, reason: 'failover', leader: 'a', parent: 1 },
    ]);
    const stopped = { running: false, accepting: false, inRecovery: null, timeline: null, walPosition: 1000, controlState: 'in production' as const };
    const d = decideFor(c, 'a', { pg: { ...stopped, controlTimeline: 1 }, memory: { holdsLeader: false } });
    assert.deepEqual(d.actions, [{ type: 'acquireLeader' }, { type: 'start', role: 'primary', follow: null }]);
  });

  it('a replica on a branch the leader does not descend from is rewound, whatever its position', () => {
    const c = cluster().primary('c', { timeline: 3 }).replica('b', { timeline: 2, wal: 2000 }).history([
      { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'x' },
      { timeline: 2, lsn: 1500, at: 1, reason: 'failover', leader: 'a', parent: 1 },
      { timeline: 3, lsn: 2500, at: 2, reason: 'failover', leader: 'c', parent: 1 },
    ]);
    const long = { notStreamingSince: NOW.mono - 60_000 };
    const d = decideFor(c, 'b', { pg: { timeline: 2, walPosition: 2000, streaming: false, following: 'c' }, memory: long });
    assert.deepEqual(types(d), ['stop', 'rewind', 'start']);
    const onAncestor = decideFor(c, 'b', { pg: { timeline: 1, walPosition: 2400, streaming: false, following: 'c' }, memory: long });
    assert.deepEqual(onAncestor.actions, [], 'timeline 1 up to 2500 is part of the leader\'s history');
  });

  it('the leader checkpoints while pg_control still names the timeline before its promotion', () => {
    const c = cluster().primary('a', { timeline: 2 }).replica('b');
    assert.ok(types(decideFor(c, 'a', { pg: { timeline: 2, controlTimeline: 1 } })).includes('checkpoint'));
    assert.ok(!types(decideFor(c, 'a', { pg: { timeline: 2, controlTimeline: 2 } })).includes('checkpoint'));
  });

  it('synchronous mode: the primary the sync key names takes its key back past a promotion that was recorded but never happened', () => {
    const c = cluster().config({ synchronous_mode: true }).primary('a', { timeline: 2 }).replica('b').leaderGone(true).sync('a', []).history([
      { timeline: 1, lsn: 0, at: 0, reason: 'bootstrap', leader: 'b' },
      { timeline: 2, lsn: 500, at: 1, reason: 'failover', leader: 'a', parent: 1 },
      { timeline: 3, lsn: 900, at: 2, reason: 'failover', leader: 'b', parent: 2 },
    ]);
    const stopped = { running: false, accepting: false, inRecovery: null, timeline: null, walPosition: 1000, controlState: 'shut down' as const, controlTimeline: 2 };
    const d = decideFor(c, 'a', { pg: stopped, memory: { holdsLeader: false } });
    assert.deepEqual(d.actions, [{ type: 'acquireLeader' }, { type: 'start', role: 'primary', follow: null }]);
  });
});

describe('decide: draining the proxies before a switchover', () => {
  const base = () => cluster().primary('a').replica('b').replica('c');
  const proxies = [{ id: 'p1', drained: null }, { id: 'p2', drained: null }];
  const intentOf = (c: ClusterBuilder) => c.view().failover!;

  it('asks the live proxies to drain first, and keeps the key', () => {
    const c = base().failover({ from: 'a', to: 'b' }).proxies(proxies);
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [
      { type: 'refreshLeader' },
      { type: 'requestDrain', drain: { id: drainIdFor(intentOf(c)), from: 'a', to: 'b', requestedAt: NOW.wall, timeoutMs: 5000 } },
    ]);
    assert.equal(d.rule, 'drain.request');
  });

  it('waits for every acknowledgement, doing its primary work meanwhile and keeping the request', () => {
    const c = base().failover({ from: 'a', to: 'b' });
    const id = drainIdFor(intentOf(c));
    c.drain({ id, from: 'a', to: 'b', requestedAt: NOW.wall - 1000, timeoutMs: 5000 }).proxies([{ id: 'p1', drained: id }, { id: 'p2', drained: null }]);
    const d = decideFor(c, 'a');
    assert.equal(d.actions[0].type, 'refreshLeader');
    assert.ok(!types(d).includes('stop') && !types(d).includes('clearDrain'), `no stop, no clearDrain: ${types(d).join(',')}`);
    assert.equal(d.rule, 'drain.wait');
    assert.match(d.reason, /waiting for proxy p2 to drain \(4 s left\)/);
  });

  it('shuts down once every proxy acknowledged', () => {
    const c = base().failover({ from: 'a', to: 'b' });
    const id = drainIdFor(intentOf(c));
    c.drain({ id, from: 'a', to: 'b', requestedAt: NOW.wall - 300, timeoutMs: 5000 }).proxies([{ id: 'p1', drained: id }, { id: 'p2', drained: id }]);
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }]);
    assert.equal(d.rule, 'handover.release-drained');
  });

  it('shuts down anyway after drain_timeout, naming the proxies that did not answer', () => {
    const c = base().failover({ from: 'a', to: 'b' });
    const id = drainIdFor(intentOf(c));
    c.drain({ id, from: 'a', to: 'b', requestedAt: NOW.wall - 5001, timeoutMs: 5000 }).proxies([{ id: 'p1', drained: id }, { id: 'p2', drained: 'older' }]);
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }]);
    assert.equal(d.rule, 'handover.release-drain-timeout');
    assert.match(d.reason, /drain timed out for p2 after 5 s/);
  });

  it('an acknowledgement of an older drain does not count: a new request is drained afresh', () => {
    const c = base().failover({ from: 'a', to: 'b' });
    c.drain({ id: 'switchover:1:b', from: 'a', to: 'b', requestedAt: NOW.wall - 100, timeoutMs: 5000 }).proxies([{ id: 'p1', drained: 'switchover:1:b' }]);
    assert.deepEqual(types(decideFor(c, 'a')), ['refreshLeader', 'requestDrain']);
  });

  it('without proxies, or with drain_timeout 0, hands over at once', () => {
    assert.deepEqual(types(decideFor(base().failover({ from: 'a', to: 'b' }), 'a')), ['stop', 'releaseLeader']);
    const c = base().failover({ from: 'a', to: 'b' }).proxies(proxies).config({ drain_timeout: 0 });
    assert.deepEqual(types(decideFor(c, 'a')), ['stop', 'releaseLeader']);
  });

  it('does not drain while the candidate is not ready, and clears a drain it no longer waits for', () => {
    const c = base().failover({ from: 'a', to: 'b' });
    const id = drainIdFor(intentOf(c));
    c.drain({ id, from: 'a', to: 'b', requestedAt: NOW.wall - 100, timeoutMs: 5000 }).proxies(proxies);
    const d = decideFor(c, 'a', { pg: { replication: [] } });
    assert.ok(types(d).includes('clearDrain'), types(d).join(','));
    assert.ok(!types(d).includes('stop'));
    assert.equal(d.rule, 'handover.wait-candidate');
    assert.match(d.reason, /b is not streaming from this primary/);
  });

  it('the new primary clears the drain request of the handover it finished', () => {
    const c = cluster().primary('b').replica('a').replica('c').proxies(proxies);
    c.drain({ id: 'switchover:1:b', from: 'a', to: 'b', requestedAt: NOW.wall - 2000, timeoutMs: 5000 });
    const d = decideFor(c, 'b');
    assert.ok(types(d).includes('clearDrain'), types(d).join(','));
  });

  it('a replica never touches the drain request', () => {
    const c = base().proxies(proxies);
    c.drain({ id: 'switchover:1:b', from: 'a', to: 'b', requestedAt: NOW.wall - 2000, timeoutMs: 5000 });
    assert.ok(!types(decideFor(c, 'b')).includes('clearDrain'));
  });
});

describe('decide: a primary cut off from every proxy hands over', () => {
  const base = () => cluster().primary('a').replica('b').replica('c');
  const cut = (since: number, extra: Record<string, number> = {}) => ({ a: since, ...extra });

  it('every live proxy reported it unreachable for proxy_unreachable_timeout: asks for a switchover to a replica they all reach', () => {
    const c = base().proxies([
      { id: 'p1', drained: null, unreachable: cut(NOW.wall - 4000) },
      { id: 'p2', drained: null, unreachable: cut(NOW.wall - 3500, { c: NOW.wall - 3500 }) },
    ]);
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [
      { type: 'refreshLeader' },
      { type: 'requestSwitchover', intent: { kind: 'switchover', from: 'a', to: 'b', at: null, requestedAt: NOW.wall } },
    ]);
    assert.equal(d.rule, 'cutoff.request-switchover');
  });

  it('not for long enough yet: keeps going, and says so', () => {
    const c = base().proxies([{ id: 'p1', drained: null, unreachable: cut(NOW.wall - 2000) }]);
    const d = decideFor(c, 'a');
    assert.ok(!types(d).includes('requestSwitchover'), types(d).join(','));
    assert.equal(d.rule, 'cutoff.wait');
    assert.match(d.reason, /every live proxy reports this server unreachable \(2\.0 s of 3 s\)/);
  });

  it('one proxy that still reaches it, no replica all proxies reach, or the setting at 0: nothing happens', () => {
    const oneReaches = base().proxies([
      { id: 'p1', drained: null, unreachable: cut(NOW.wall - 9000) },
      { id: 'p2', drained: null },
    ]);
    assert.ok(!types(decideFor(oneReaches, 'a')).includes('requestSwitchover'));
    // A proxy cut from everything (its own network is down) must not move the primary.
    const isolated = base().proxies([{ id: 'p1', drained: null, unreachable: { a: NOW.wall - 9000, b: NOW.wall - 9000, c: NOW.wall - 9000 } }]);
    const d = decideFor(isolated, 'a');
    assert.ok(!types(d).includes('requestSwitchover'));
    assert.equal(d.rule, 'cutoff.no-candidate');
    const off = base().proxies([{ id: 'p1', drained: null, unreachable: cut(NOW.wall - 9000) }]).config({ proxy_unreachable_timeout: 0 });
    assert.ok(!types(decideFor(off, 'a')).includes('requestSwitchover'));
  });

  it('only a replica that could take over cleanly: streaming from it, and in synchronous mode a synchronous standby', () => {
    const notStreaming = base().proxies([{ id: 'p1', drained: null, unreachable: cut(NOW.wall - 9000) }]);
    assert.ok(!types(decideFor(notStreaming, 'a', { pg: { replication: [] } })).includes('requestSwitchover'));
    const sync = base()
      .config({ synchronous_mode: true })
      .sync('a', ['c'])
      .proxies([{ id: 'p1', drained: null, unreachable: cut(NOW.wall - 9000) }]);
    const d = decideFor(sync, 'a');
    const request = d.actions.find((x) => x.type === 'requestSwitchover');
    assert.ok(request && request.type === 'requestSwitchover' && request.intent.to === 'c', JSON.stringify(d.actions));
  });

  it('the switchover it asked for skips the drain of proxies that cannot reach it: it hands over at once', () => {
    const c = base()
      .failover({ from: 'a', to: 'b' })
      .proxies([
        { id: 'p1', drained: null, unreachable: cut(NOW.wall - 4000) },
        { id: 'p2', drained: null, unreachable: cut(NOW.wall - 4000) },
      ]);
    const d = decideFor(c, 'a');
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast' }, { type: 'releaseLeader' }]);
    // A proxy that still reaches it is drained as usual.
    const mixed = base()
      .failover({ from: 'a', to: 'b' })
      .proxies([
        { id: 'p1', drained: null, unreachable: cut(NOW.wall - 4000) },
        { id: 'p2', drained: null },
      ]);
    const m = decideFor(mixed, 'a');
    assert.deepEqual(types(m), ['refreshLeader', 'requestDrain']);
    assert.equal(m.rule, 'drain.request');
    assert.match(m.reason, /asked 1 proxy to drain/);
  });
});

describe('decide: clean restarts keep the primary (issue 16)', () => {
  /**
   * Where a's shutdown checkpoint record starts. Replicas stopped before it (as `pgwarden down` does) report exactly
   * this position; one that received the record reports its end, 120 bytes on.
   */
  const C = 50_000_000;
  const stoppedCleanly = {
    pg: { running: false, accepting: false, inRecovery: null, controlState: 'shut down' as const, controlTimeline: 1, checkpointLsn: C, walPosition: null, streaming: false },
    memory: { holdsLeader: false },
  };
  /** The whole cluster was stopped cleanly and b and c came back first, running as replicas without an upstream. */
  const restarted = (bWal = C) =>
    cluster().primary('a', { wal: C - 4000 }).replica('b', { wal: bWal, state: 'running' }).replica('c', { wal: C, state: 'running' }).leaderGone().shutdown('a', C);

  it('the former primary takes the key back although the replicas that started first hold all its WAL', () => {
    for (const replicaWal of [C, C + 120]) {
      const d = decideFor(restarted(replicaWal), 'a', stoppedCleanly);
      assert.deepEqual(d.actions, [{ type: 'acquireLeader' }, { type: 'start', role: 'primary', follow: null }], `replica at ${replicaWal}`);
      assert.equal(d.rule, 'former-primary.resume');
      assert.match(d.reason, /shut down cleanly at 0\/2FAF080 and no other member is ahead of it/);
    }
  });

  it('a peer with WAL past the shutdown checkpoint record is more advanced: the former primary stays stopped', () => {
    const d = decideFor(restarted(C + SHUTDOWN_CHECKPOINT_MAX_SPAN + 8), 'a', stoppedCleanly);
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'former-primary.yield');
    assert.match(d.reason, /former primary stays stopped: b is more advanced/);
  });

  it('a malformed position in a peer\'s answer does not make decide() throw', () => {
    const c = restarted();
    const obs = c.observe('a', stoppedCleanly);
    obs.peers.b = { ...obs.peers.b!, walPosition: 1.5e300 };
    const d = run(c.view(), obs);
    assert.equal(d.rule, 'former-primary.yield');
    assert.match(d.reason, /former primary stays stopped: b is more advanced \(1\.5e\+300/);
  });

  it('without the shutdown record (stopped alone) a running replica holding all its WAL takes over instead', () => {
    for (const replicaWal of [C, C + 120]) {
      const c = cluster().primary('a', { wal: C - 4000 }).replica('b', { wal: replicaWal, state: 'running' }).leaderGone();
      const d = decideFor(c, 'a', stoppedCleanly);
      assert.deepEqual(d.actions, []);
      assert.equal(d.rule, 'former-primary.yield');
      assert.match(d.reason, /b holds all of this server's WAL up to its shutdown checkpoint at 0\/2FAF080 and is running/);
    }
  });

  it('a peer that lacks records before the shutdown checkpoint is behind a cleanly shut down former primary, not ahead of it', () => {
    const c = cluster().primary('a', { wal: C - 4000 }).replica('b', { wal: C - 8, state: 'running' }).leaderGone();
    assert.deepEqual(types(decideFor(c, 'a', stoppedCleanly)), ['acquireLeader', 'start']);
  });

  it('a record left by another shutdown (checkpoint differs) gives the former primary no precedence', () => {
    const c = restarted().shutdown('a', C - 8192);
    const d = decideFor(c, 'a', stoppedCleanly);
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'former-primary.yield');
    assert.match(d.reason, /holds all of this server's WAL/);
  });

  it('a replica that starts first waits primary_start_timeout for the former primary', () => {
    const d = decideFor(restarted(), 'b', { memory: { shutdownHoldSince: NOW.mono - 10_000 } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-shutdown-hold');
    assert.match(d.reason, /not taking the free leader key: a shut down cleanly at 0\/2FAF080 and may come back as primary \(waiting up to primary_start_timeout, 20 s left\)/);
  });

  it('after primary_start_timeout the replicas elect one of them', () => {
    const d = decideFor(restarted(), 'b', { memory: { shutdownHoldSince: NOW.mono - 30_000 } });
    assert.deepEqual(types(d), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
  });

  it('a record that a later primary position outdates, or one naming a nofailover member, holds nobody back', () => {
    const stale = restarted().optime(C + 1_000_000);
    assert.deepEqual(types(decideFor(stale, 'b', { memory: { shutdownHoldSince: NOW.mono } })), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
    const nofailover = restarted().replica('a', { tags: { nofailover: true }, state: 'stopped' });
    assert.deepEqual(types(decideFor(nofailover, 'b', { memory: { shutdownHoldSince: NOW.mono } })), ['acquireLeader', 'recordHistory', 'promote', 'checkpoint']);
  });

  it('an operator\'s failover to a replica is not held back', () => {
    const c = restarted().failover({ kind: 'failover', to: 'b' });
    assert.deepEqual(types(decideFor(c, 'b', { memory: { shutdownHoldSince: NOW.mono } })), ['acquireLeader', 'recordHistory', 'promote', 'clearFailover', 'checkpoint']);
  });

  it('the primary running again clears the record', () => {
    const c = cluster().primary('a').replica('b').replica('c').shutdown('a', C);
    assert.ok(types(decideFor(c, 'a')).includes('clearShutdown'));
    assert.ok(!types(decideFor(cluster().primary('a').replica('b'), 'a')).includes('clearShutdown'));
  });

  it('the wait counts from the first leaderless cycle that saw the record, and ends when the record is cleared', () => {
    const memory = structuredClone(EMPTY_MEMORY);
    noteShutdownHold(memory, cluster().primary('a').replica('b').shutdown('a', C).view(), 50);
    assert.equal(memory.shutdownHoldSince, null, 'a leader holds the key: nothing to wait for');
    noteShutdownHold(memory, restarted().view(), 100);
    noteShutdownHold(memory, restarted().view(), 200);
    assert.equal(memory.shutdownHoldSince, 100);
    // The former primary took the key but did not start (and released it): the wait goes on, not from scratch.
    noteShutdownHold(memory, restarted().leader('a').view(), 300);
    noteShutdownHold(memory, restarted().view(), 400);
    assert.equal(memory.shutdownHoldSince, 100);
    noteShutdownHold(memory, cluster().primary('a').replica('b').view(), 500);
    assert.equal(memory.shutdownHoldSince, null);
  });

  it('a former primary whose start failed no longer goes before a replica that holds all its WAL', () => {
    const d = decideFor(restarted(), 'a', { ...stoppedCleanly, memory: { holdsLeader: false, startFailures: 1 } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'former-primary.yield');
    assert.match(d.reason, /holds all of this server's WAL/);
  });

  it('synchronous mode: the former primary named in `sync` takes the key back; the replicas outside `sync` never take it', () => {
    const c = restarted().config({ synchronous_mode: true }).sync('a', []);
    assert.deepEqual(types(decideFor(c, 'a', stoppedCleanly)), ['acquireLeader', 'start']);
    const d = decideFor(c, 'b', { memory: { shutdownHoldSince: NOW.mono - 60_000 } });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rule, 'election.refuse-not-sync');
  });

  it('the primary records its clean shutdown only when no replica is left to take over', () => {
    const after = { ...cluster().observe('a').pg, ...stoppedCleanly.pg };
    assert.deepEqual(cleanShutdownRecord(cluster().primary('a').view(), 'a', after, 7), { leader: 'a', checkpoint: C, timeline: 1, at: 7 });
    // Replicas stopped too, their agents gone or their servers down: nobody to hand over to.
    assert.notEqual(cleanShutdownRecord(cluster().primary('a').replica('b', { state: 'stopped' }).view(), 'a', after, 7), null);
    // A replica streaming: it takes over at once, as when the primary's agent is stopped alone.
    assert.equal(cleanShutdownRecord(cluster().primary('a').replica('b').view(), 'a', after, 7), null);
    assert.deepEqual(cleanShutdownRecord(cluster().primary('a').replica('b', { tags: { nofailover: true } }).view(), 'a', after, 7), { leader: 'a', checkpoint: C, timeline: 1, at: 7 });
    // Not a clean shutdown after all (the stop escalated to immediate): no record.
    assert.equal(cleanShutdownRecord(cluster().primary('a').view(), 'a', { ...after, controlState: 'in production' }, 7), null);
  });
});
