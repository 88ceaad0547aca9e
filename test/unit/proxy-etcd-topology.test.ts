/**
 * Routing from a cluster view (pure) and the fail-closed rule of EtcdTopology when etcd stops answering.
 * The DCS here is a stand-in that serves a fixed view and can be made to fail; the topology itself is real.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DRAIN_HOLD_GRACE_MS, drainHolds, EtcdTopology, routesFromView } from '../../src/proxy/etcd-topology.js';
import type { ClusterView } from '../../src/cluster/types.js';
import { cluster } from './cluster-builder.js';

const MB = 1024 * 1024;

/** What EtcdTopology reads of etcd (pure logic under test, etcd faked): a view that can change, loads that can fail. */
function fakeEtcd(view: ClusterView): { view: ClusterView; failing: boolean; dcs: { load(): Promise<ClusterView>; watch(): Promise<{ close(): Promise<void> }> } } {
  const etcd = {
    view,
    failing: false,
    dcs: {
      load: async (): Promise<ClusterView> => {
        if (etcd.failing) throw new Error('etcd down');
        return etcd.view;
      },
      watch: async () => ({ close: async () => undefined }),
    },
  };
  return etcd;
}

function lagged(view: ClusterView, lags: Record<string, number | null>): ClusterView {
  for (const [name, lag] of Object.entries(lags)) view.members[name].lagBytes = lag;
  return view;
}

describe('routesFromView', () => {
  it('routes rw to the leader running as primary and ro to healthy replicas within the lag limit', () => {
    const view = lagged(cluster().primary('a').replica('b').replica('c').replica('d', { tags: { noloadbalance: true } }).replica('e').view(), {
      b: 0,
      c: 100 * MB,
      d: 0,
      e: null,
    });
    const routes = routesFromView(view, 16 * MB);
    assert.deepEqual(routes.primary, { host: view.members.a.host, port: view.members.a.port });
    assert.deepEqual(
      routes.replicas.map((r) => r.name),
      ['b'],
    );
  });

  it('has no primary when the leader key is free or its holder does not run as primary', () => {
    const noLeader = cluster().primary('a').replica('b').view();
    noLeader.leader = null;
    assert.equal(routesFromView(noLeader, MB).primary, null);
    const stopped = cluster().primary('a', { state: 'stopped' }).replica('b').view();
    assert.equal(routesFromView(stopped, MB).primary, null);
    const demoted = cluster().primary('a').replica('b').view();
    demoted.members.a.role = 'replica';
    assert.equal(routesFromView(demoted, MB).primary, null);
  });

  it('skips replicas that are not running or streaming', () => {
    const view = lagged(cluster().primary('a').replica('b', { state: 'starting' }).replica('c', { state: 'running' }).view(), { b: 0, c: 0 });
    assert.deepEqual(
      routesFromView(view, MB).replicas.map((r) => r.name),
      ['c'],
    );
  });
});

describe('EtcdTopology', () => {
  it('refuses writes (primary null) once etcd has not answered for longer than the stale limit, and recovers', async () => {
    const view = cluster().primary('a').replica('b').view();
    const etcd = fakeEtcd(view);
    const topology = new EtcdTopology({ dcs: etcd.dcs, maxReplicaLagBytes: MB, pollMs: 20, staleAfterMs: 150 });
    let changes = 0;
    topology.on('change', () => changes++);
    await topology.start();
    try {
      assert.equal(topology.primary()?.port, view.members.a.port);
      etcd.failing = true;
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(topology.primary(), null);
      assert.equal(topology.isStale, true);
      const changesWhileStale = changes;
      assert.ok(changesWhileStale >= 2, 'a change is announced when the view goes stale');
      etcd.failing = false;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(topology.primary()?.port, view.members.a.port);
      assert.ok(changes > changesWhileStale);
    } finally {
      await topology.stop();
    }
  });
});

describe('EtcdTopology.members', () => {
  it('lists every member of the last view, whatever its state, sorted by name, and keeps it while stale', async () => {
    const etcd = fakeEtcd(cluster().replica('c', { state: 'stopped' }).primary('a').replica('b').view());
    const topology = new EtcdTopology({ dcs: etcd.dcs, maxReplicaLagBytes: MB, pollMs: 20, staleAfterMs: 100 });
    assert.deepEqual(topology.members(), []);
    await topology.start();
    try {
      const endpoints = (v: ClusterView): Array<{ name: string; host: string; port: number }> =>
        ['a', 'b', 'c'].filter((n) => n in v.members).map((name) => ({ name, host: v.members[name].host, port: v.members[name].port }));
      assert.deepEqual(topology.members(), endpoints(etcd.view));
      etcd.view = cluster().primary('a').replica('b').view();
      await new Promise((resolve) => setTimeout(resolve, 80));
      assert.deepEqual(topology.members(), endpoints(etcd.view), 'a member that left the view is no longer listed');
      etcd.failing = true;
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(topology.isStale, true);
      assert.deepEqual(topology.members(), endpoints(etcd.view));
    } finally {
      await topology.stop();
    }
  });
});

describe('switchover drain', () => {
  const drain = { id: 'switchover:1:b', from: 'a', to: 'b', requestedAt: 0, timeoutMs: 5000 };

  it('holds writes while the member that asked still holds the key, for its timeout plus a grace', () => {
    assert.equal(drainHolds(drain, 'a', 1000, 1000), true);
    assert.equal(drainHolds(drain, 'a', 1000, 1000 + 5000 + DRAIN_HOLD_GRACE_MS - 1), true);
    assert.equal(drainHolds(drain, 'a', 1000, 1000 + 5000 + DRAIN_HOLD_GRACE_MS), false, 'bounded whatever etcd says');
    assert.equal(drainHolds(drain, 'b', 1000, 1000), false, 'the new primary is used at once');
    assert.equal(drainHolds(drain, null, 1000, 1000), false, 'no leader: the ordinary no-primary wait applies');
    assert.equal(drainHolds(null, 'a', 1000, 1000), false);
  });

  it('EtcdTopology announces the hold and its end, and names the drain to acknowledge', async () => {
    const c = cluster().primary('a').replica('b');
    let view = c.view();
    const dcs = { load: async (): Promise<ClusterView> => view, watch: async () => ({ close: async () => undefined }) };
    const topology = new EtcdTopology({ dcs, maxReplicaLagBytes: MB, pollMs: 20 });
    let changes = 0;
    topology.on('change', () => changes++);
    await topology.start();
    try {
      assert.equal(topology.holdsWrites(), false);
      const before = changes;
      view = c.drain(drain).view();
      await new Promise((resolve) => setTimeout(resolve, 80));
      assert.equal(topology.holdsWrites(), true);
      assert.equal(topology.pendingDrain(), drain.id);
      assert.equal(changes, before + 1, 'one change when the hold starts');
      view = c.leader('b').setMember('a', { role: 'replica' }).setMember('b', { role: 'primary', state: 'running' }).view();
      await new Promise((resolve) => setTimeout(resolve, 80));
      assert.equal(topology.holdsWrites(), false);
      assert.equal(topology.pendingDrain(), null);
      assert.equal(topology.primary()?.port, view.members.b.port);
    } finally {
      await topology.stop();
    }
  });
});
