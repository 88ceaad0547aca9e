/**
 * EtcdDcs against a real etcd (/usr/bin/etcd), one instance shared by the whole file. Each test uses its
 * own cluster name so that tests do not see each other's keys; the destructive ones (SIGSTOP, restart) run
 * last.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import { EtcdDcs, type EtcdDcsOptions } from '../../src/dcs/etcd.js';
import { clusterPrefix } from '../../src/cluster/keys.js';
import { isPgwardenError } from '../../src/errors.js';
import { isStopped } from '../../src/processes.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../../src/cluster/dynamic-config.js';
import type { HistoryEntry, MemberStatus } from '../../src/cluster/types.js';
import { startEtcd, type EtcdInstance } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';

let etcd: EtcdInstance;
/** Raw access, to check what is stored and to write values no pgwarden would. */
let raw: Etcd3;
const clients: EtcdDcs[] = [];
let clusterSeq = 0;

function newCluster(): string {
  clusterSeq += 1;
  return `t${clusterSeq}-${process.pid}`;
}

function client(cluster: string, options: Partial<EtcdDcsOptions> = {}): EtcdDcs {
  const dcs = new EtcdDcs({ endpoints: [etcd.endpoint], cluster, ...options });
  clients.push(dcs);
  return dcs;
}

function member(name: string): MemberStatus {
  return {
    name,
    role: 'replica',
    state: 'streaming',
    apiUrl: 'http://127.0.0.1:8008',
    host: '127.0.0.1',
    port: 5432,
    timeline: 1,
    walPosition: 100,
    receiveLsn: 100,
    replayLsn: 100,
    lagBytes: 0,
    following: null,
    tags: { nofailover: false, noloadbalance: false, nosync: false, failover_priority: 1 },
    paused: false,
    pendingRestart: false,
    reason: 'test',
    updatedAt: Date.now(),
    version: 'test',
    systemId: null,
  };
}

interface WatchEvent {
  key: string;
  at: number;
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Waits (up to `deadlineMs`, a guard against a hang, not a measurement) for `call` to reject with DCS_UNAVAILABLE,
 * and returns the error's cause (what ended the call) and how long it took, for diagnostics.
 */
async function unavailable(call: () => Promise<unknown>, deadlineMs: number): Promise<{ cause: unknown; ms: number }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the call was still pending after ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    await Promise.race([call(), hung]);
  } catch (error) {
    assert.ok(isPgwardenError(error), `expected a PgwardenError, got ${String(error)}`);
    assert.equal(error.code, 'DCS_UNAVAILABLE');
    return { cause: error.cause, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
  return assert.fail('the call succeeded');
}

/** The id of the lease `key` is bound to ('0' for none). */
async function leaseOf(key: string): Promise<string> {
  const response = await raw.get(key).exec();
  assert.equal(response.kvs.length, 1, `${key} exists`);
  return response.kvs[0]!.lease;
}

/** etcd's own reading of a lease: the TTL it was granted, and whole seconds left (-1 once expired or revoked). */
async function leaseReading(id: string): Promise<{ granted: number; left: number }> {
  const response = await raw.leaseClient.leaseTimeToLive({ ID: id });
  return { granted: Number(response.grantedTTL), left: Number(response.TTL) };
}

before(async () => {
  etcd = await startEtcd();
  raw = new Etcd3({ hosts: etcd.endpoint });
});

after(async () => {
  for (const dcs of clients) await dcs.close();
  raw?.close();
  await etcd?.stop();
});

describe('EtcdDcs against a real etcd', () => {
  it('loads an empty cluster as never bootstrapped, default config', async () => {
    const view = await client(newCluster()).load();
    assert.deepEqual(view, {
      initialize: null,
      config: DEFAULT_DYNAMIC_CONFIG,
      leader: null,
      members: {},
      sync: null,
      failover: null,
      optime: null,
      history: [],
      drain: null,
      proxies: [],
      shutdown: null,
    });
  });

  it('connect() checks that etcd answers', async () => {
    const dcs = await EtcdDcs.connect({ endpoints: [etcd.endpoint], cluster: newCluster() });
    clients.push(dcs);
    assert.equal((await dcs.load()).leader, null);
  });

  it('claimInitialize: of two racing clients exactly one wins', async () => {
    const cluster = newCluster();
    const [a, b] = [client(cluster), client(cluster)];
    const results = await Promise.all([a.claimInitialize(), b.claimInitialize()]);
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal((await a.load()).initialize, '');
    assert.equal(await a.claimInitialize(), false);

    // A failed bootstrap gives the claim back; a recorded system id is never removed that way.
    await b.deleteInitialize();
    assert.equal((await a.load()).initialize, null);
    assert.equal(await b.claimInitialize(), true);
    await b.setInitialize('7312345678901234567');
    await a.deleteInitialize();
    assert.equal((await a.load()).initialize, '7312345678901234567');
  });

  it('acquireLeader: of two racing clients exactly one wins; refresh and release only by the holder', async () => {
    const cluster = newCluster();
    const [a, b] = [client(cluster), client(cluster)];
    await Promise.all([a.ensureLease(5), b.ensureLease(5)]);
    const [aWon, bWon] = await Promise.all([a.acquireLeader('a'), b.acquireLeader('b')]);
    assert.equal(Number(aWon) + Number(bWon), 1);
    const [holder, holderName, loser, loserName] = aWon ? [a, 'a', b, 'b'] : [b, 'b', a, 'a'];

    assert.deepEqual((await loser.load()).leader, { name: holderName });
    assert.equal(await loser.acquireLeader(loserName), false);
    assert.equal(await holder.refreshLeader(holderName), true);
    assert.equal(await loser.refreshLeader(loserName), false);
    // The loser's lease does not carry the key, so it cannot refresh it even under the holder's name.
    assert.equal(await loser.refreshLeader(holderName), false);

    await loser.releaseLeader(loserName);
    assert.deepEqual((await holder.load()).leader, { name: holderName });
    await holder.releaseLeader(holderName);
    assert.equal((await holder.load()).leader, null);
    assert.equal(await holder.refreshLeader(holderName), false);
    assert.equal(await loser.acquireLeader(loserName), true);
    assert.equal(await loser.refreshLeader(loserName), true);

    // Stored so that `etcdctl get` reads it: the bare name, exactly under /pgwarden/<cluster>/leader.
    assert.equal(await raw.get(`${clusterPrefix(cluster)}leader`).string(), loserName);
  });

  it('a key left under our name by an earlier incarnation is rebound to the new lease, and only by acquire', async () => {
    const cluster = newCluster();
    const previous = client(cluster);
    await previous.ensureLease(30);
    assert.equal(await previous.acquireLeader('a'), true);
    assert.equal(await previous.acquireLeader('a'), true, 'acquiring a key we already hold is idempotent');

    const restarted = client(cluster);
    await restarted.ensureLease(30);
    assert.equal(await restarted.refreshLeader('a'), false, 'a refresh never adopts a key bound to another lease');
    assert.equal(await restarted.acquireLeader('b'), false, 'another name cannot take it');
    assert.equal(await restarted.acquireLeader('a'), true, 'the same member name rebinds it');
    assert.equal(await restarted.refreshLeader('a'), true);
    assert.equal(await previous.refreshLeader('a'), false, 'the earlier incarnation no longer holds it');
    // Revoking the old lease no longer removes the key.
    await previous.close({ revoke: true });
    assert.equal((await restarted.load()).leader?.name, 'a');
  });

  it('lease expiry removes leader and member keys when etcd expires the lease, not before, and a watcher hears it', async (t) => {
    const cluster = newCluster();
    const agent = client(cluster);
    const observer = client(cluster);
    const events: WatchEvent[] = [];
    const watch = await observer.watch((key) => events.push({ key, at: performance.now() }));

    await agent.ensureLease(2);
    assert.equal(await agent.acquireLeader('a'), true);
    await agent.publishMember(member('a'));
    const lastRefreshSent = performance.now();
    assert.equal(await agent.refreshLeader('a'), true);
    assert.deepEqual(Object.keys((await observer.load()).members), ['a']);
    const leaseId = await leaseOf(`${clusterPrefix(cluster)}leader`);
    assert.equal(await leaseOf(`${clusterPrefix(cluster)}members/a`), leaseId, 'leader and member keys share the lease');
    const fresh = await leaseReading(leaseId);
    assert.equal(fresh.granted, 2);
    assert.ok(fresh.left >= 1, `just refreshed, yet etcd gives the lease ${fresh.left} s`);

    // No more keepalives. Each round reads the keys, then etcd's lease: keys gone while etcd still counted the lease
    // alive would be an expiry before the TTL; keys present with the lease alive are the time before it.
    let roundsWhileAlive = 0;
    await waitFor(
      'the lease to expire and the keys to go',
      async () => {
        const view = await observer.load();
        const { left } = await leaseReading(leaseId);
        if (view.leader !== null || Object.keys(view.members).length > 0) {
          assert.ok(view.leader !== null && Object.keys(view.members).length > 0, 'both keys go with the lease at once');
          if (left >= 0) roundsWhileAlive += 1;
          return undefined;
        }
        assert.equal(left, -1, `the keys vanished while etcd still gave their lease ${left} s`);
        return true;
      },
      10_000,
    );
    assert.ok(roundsWhileAlive > 0, 'the keys were seen while their lease was alive');
    const deletion = await waitFor('the watch to hear the leader key go', () => events.find((e) => e.key === 'leader' && e.at > lastRefreshSent), 5000);
    t.diagnostic(`leader deletion heard ${(deletion.at - lastRefreshSent).toFixed(0)} ms after the last refresh (ttl 2 s)`);
    await waitFor('the watch to hear the member key go', () => events.find((e) => e.key === 'members/a' && e.at > lastRefreshSent), 5000);

    assert.equal(await agent.keepAlive(), false);
    assert.equal(await agent.refreshLeader('a'), false);

    // The next lease-bound write takes a fresh lease; that lease can be kept alive again.
    await agent.ensureLease(2);
    assert.equal(await agent.keepAlive(), true);
    await agent.publishMember(member('a'));
    assert.deepEqual(Object.keys((await observer.load()).members), ['a']);
    assert.equal(await agent.acquireLeader('a'), true);
    assert.equal(await agent.refreshLeader('a'), true);
    await watch.close();
  });

  it('a lease-bound write after an unnoticed expiry re-grants the lease by itself', async () => {
    const cluster = newCluster();
    const agent = client(cluster);
    await agent.ensureLease(1);
    await agent.publishMember(member('a'));
    await waitFor('the member key to expire', async () => ((await agent.load()).members.a ? undefined : true), 5000);
    await agent.publishMember(member('a'));
    assert.deepEqual(Object.keys((await agent.load()).members), ['a']);
    assert.equal(await agent.keepAlive(), true);
  });

  it('close({ revoke: true }) frees the leader key at once', async (t) => {
    const cluster = newCluster();
    const agent = client(cluster);
    const observer = client(cluster);
    const events: WatchEvent[] = [];
    const watch = await observer.watch((key) => events.push({ key, at: performance.now() }));
    await agent.ensureLease(30);
    assert.equal(await agent.acquireLeader('a'), true);
    await agent.publishMember(member('a'));
    const leaseId = await leaseOf(`${clusterPrefix(cluster)}leader`);
    assert.ok((await leaseReading(leaseId)).left > 20, 'the lease is far from its expiry');

    const closing = performance.now();
    await agent.close({ revoke: true });
    // At once: when close() returns the keys are gone and etcd knows the lease no more (revoked: it had ~30 s left).
    const view = await observer.load();
    assert.equal(view.leader, null);
    assert.deepEqual(view.members, {});
    assert.equal((await leaseReading(leaseId)).left, -1);
    const deletion = await waitFor('the watch to hear the leader key go', () => events.find((e) => e.key === 'leader' && e.at >= closing), 5000);
    t.diagnostic(`leader deletion heard ${(deletion.at - closing).toFixed(0)} ms after close({ revoke: true }) began`);
    await watch.close();
  });

  it('drain is bound to the lease of the primary that asked, and proxies acknowledge under their own key', async () => {
    const cluster = newCluster();
    const primary = client(cluster);
    const proxy = client(cluster);
    const observer = client(cluster);
    await primary.ensureLease(30);
    await proxy.ensureLease(30);
    const drain = { id: 'switchover:1:b', from: 'a', to: 'b', requestedAt: 1, timeoutMs: 5000 };
    await primary.setDrain(drain);
    await proxy.publishProxy({ id: 'p1', rw: '127.0.0.1:6432', ro: null, updatedAt: 2, drained: drain.id, unreachable: { c: 1234 } });
    let view = await observer.load();
    assert.deepEqual(view.drain, drain);
    assert.deepEqual(view.proxies, [{ id: 'p1', drained: drain.id, unreachable: { c: 1234 } }]);
    await primary.clearDrain();
    assert.equal((await observer.load()).drain, null);
    await primary.setDrain(drain);
    await primary.close({ revoke: true });
    view = await observer.load();
    assert.equal(view.drain, null, 'the request vanishes with the primary that asked');
    await proxy.close({ revoke: true });
    assert.deepEqual((await observer.load()).proxies, []);
  });

  it('shutdown has no lease: it outlives the primary that wrote it until cleared', async () => {
    const cluster = newCluster();
    const primary = client(cluster);
    const observer = client(cluster);
    await primary.ensureLease(30);
    const record = { leader: 'a', checkpoint: 50_331_688, timeline: 2, at: 1 };
    await primary.setShutdown(record);
    await primary.close({ revoke: true });
    assert.deepEqual((await observer.load()).shutdown, record);
    await observer.clearShutdown();
    assert.equal((await observer.load()).shutdown, null);
  });

  it('close() without revoke leaves the keys to expire with the lease', async () => {
    const cluster = newCluster();
    const agent = client(cluster);
    await agent.ensureLease(30);
    assert.equal(await agent.acquireLeader('a'), true);
    await agent.close();
    assert.deepEqual((await client(cluster).load()).leader, { name: 'a' });
    await raw.delete().key(`${clusterPrefix(cluster)}leader`);
  });

  it('appendHistory from two clients at once keeps every entry, and a repeated entry once', async () => {
    const cluster = newCluster();
    const [a, b] = [client(cluster), client(cluster)];
    const entry = (who: string, i: number): HistoryEntry => ({
      timeline: i + 2,
      lsn: i * 1000,
      at: 1_700_000_000_000 + i,
      reason: `${who} ${i}`,
      leader: who,
    });
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => [a.appendHistory(entry('a', i)), b.appendHistory(entry('b', i))]).flat(),
    );
    const history = (await a.load()).history;
    assert.equal(history.length, 16);
    for (let i = 0; i < 8; i++) {
      assert.ok(history.some((h) => h.reason === `a ${i}`), `a ${i} kept`);
      assert.ok(history.some((h) => h.reason === `b ${i}`), `b ${i} kept`);
    }
    await a.appendHistory(entry('a', 0));
    assert.equal((await a.load()).history.length, 16);
  });

  it('config: initConfig only once, setConfig replaces, garbage reads as defaults', async () => {
    const cluster = newCluster();
    const dcs = client(cluster);
    const first = { ...DEFAULT_DYNAMIC_CONFIG, ttl: 7, postgresql: { parameters: { max_connections: 150 } } };
    assert.equal(await dcs.initConfig(first), true);
    assert.equal(await dcs.initConfig({ ...DEFAULT_DYNAMIC_CONFIG, ttl: 9 }), false);
    assert.deepEqual((await dcs.load()).config, first);

    const second = { ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: true, pause: true };
    await dcs.setConfig(second);
    assert.deepEqual((await dcs.load()).config, second);

    await raw.put(`${clusterPrefix(cluster)}config`).value('{"ttl": "ten", "loop_wait": 3');
    assert.deepEqual((await dcs.load()).config, DEFAULT_DYNAMIC_CONFIG);
    await raw.put(`${clusterPrefix(cluster)}config`).value('{"ttl": "ten", "loop_wait": 3}');
    assert.deepEqual((await dcs.load()).config, { ...DEFAULT_DYNAMIC_CONFIG, loop_wait: 3 });
  });

  it('sync, failover, optime and member keys round-trip', async () => {
    const cluster = newCluster();
    const dcs = client(cluster);
    await dcs.ensureLease(30);
    await dcs.setSync({ leader: 'a', members: ['b', 'c'] });
    const intent = { kind: 'switchover' as const, from: 'a', to: 'b', at: null, requestedAt: 42 };
    await dcs.setFailover(intent);
    await dcs.setOptime(123_456_789);
    const b = member('b');
    await dcs.publishMember(b);
    await raw.put(`${clusterPrefix(cluster)}members/garbled`).value('{');
    let view = await dcs.load();
    assert.deepEqual(view.sync, { leader: 'a', members: ['b', 'c'] });
    assert.deepEqual(view.failover, intent);
    assert.equal(view.optime, 123_456_789);
    assert.deepEqual(view.members, { b }, 'the garbled member is skipped');
    assert.equal(JSON.parse((await raw.get(`${clusterPrefix(cluster)}members/b`).string()) ?? 'null').name, 'b');

    await dcs.clearFailover();
    await dcs.deleteMember('b');
    view = await dcs.load();
    assert.equal(view.failover, null);
    assert.deepEqual(view.members, {});
  });

  it('watch reports relative keys of puts and deletes, and stops after close', async () => {
    const cluster = newCluster();
    const dcs = client(cluster);
    const seen: string[] = [];
    const watch = await dcs.watch((key) => seen.push(key));
    await dcs.setOptime(1);
    await dcs.setSync({ leader: 'a', members: [] });
    await dcs.clearFailover(); // deleting an absent key is no event
    await raw.put(`/pgwarden/${cluster}x/leader`).value('other cluster'); // outside the prefix
    await dcs.setFailover({ kind: 'failover', from: null, to: null, at: null, requestedAt: 1 });
    await dcs.clearFailover();
    await waitFor('four events', () => (seen.length >= 4 ? true : undefined), 2000);
    assert.deepEqual(seen, ['optime', 'sync', 'failover', 'failover']);
    await watch.close();
    // A watch opened now on the same client hears a later write; one client's watches get events in revision order,
    // so by then the closed watch would have heard the earlier one.
    const later: string[] = [];
    const probe = await dcs.watch((key) => later.push(key));
    await dcs.setOptime(2);
    await dcs.setSync({ leader: 'b', members: [] });
    await waitFor('the open watch to hear the later write', () => (later.includes('sync') ? true : undefined), 5000);
    assert.deepEqual(later, ['optime', 'sync']);
    assert.equal(seen.length, 4);
    await probe.close();
  });

  it('an endpoint that refuses connections fails fast, and a live second endpoint is used', async (t) => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    // Fast means ended by the refusal, not by the call's deadline (30 s here, so waiting for it would show).
    const lonely = client(newCluster(), { endpoints: [dead], callTimeoutMs: 30_000 });
    const refused = await unavailable(() => lonely.load(), 10_000);
    assert.ok(refused.cause instanceof GRPCUnavailableError, `ended by ${String(refused.cause)}`);
    assert.match(refused.cause.message, /ECONNREFUSED/);
    t.diagnostic(`refused connection reported after ${refused.ms.toFixed(0)} ms`);

    const cluster = newCluster();
    const both = client(cluster, { endpoints: [dead, etcd.endpoint], callTimeoutMs: 1000 });
    await both.setOptime(5);
    for (let i = 0; i < 10; i++) assert.equal((await both.load()).optime, 5);
  });

  it('a stopped (SIGSTOP) etcd makes every call reject with DCS_UNAVAILABLE within the call timeout', async (t) => {
    const callTimeoutMs = 500;
    const cluster = newCluster();
    const dcs = client(cluster, { callTimeoutMs });
    await dcs.ensureLease(10);
    assert.equal(await dcs.acquireLeader('a'), true);
    const seen: string[] = [];
    const watch = await client(cluster).watch((key) => seen.push(key));

    etcd.kill('SIGSTOP');
    // The stop is delivered asynchronously: a call sent before it lands would still be answered.
    await waitFor('etcd to be stopped', () => (isStopped(etcd.pid) ? true : undefined), 1000);
    try {
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['load', () => dcs.load()],
        ['keepAlive', () => dcs.keepAlive()],
        ['refreshLeader', () => dcs.refreshLeader('a')],
        ['acquireLeader', () => dcs.acquireLeader('a')],
        ['publishMember', () => dcs.publishMember(member('a'))],
        ['appendHistory', () => dcs.appendHistory({ timeline: 2, lsn: 0, at: 0, reason: '', leader: 'a' })],
        ['claimInitialize', () => dcs.claimInitialize()],
        ['watch', () => dcs.watch(() => undefined)],
        ['connect', () => EtcdDcs.connect({ endpoints: [etcd.endpoint], cluster, callTimeoutMs })],
      ];
      for (const [name, call] of calls) {
        // A stopped etcd never answers: each call is ended by its own deadline (or sooner, when an earlier
        // timed-out call makes etcd3 reset the connection under it), never left hanging.
        const { cause, ms } = await unavailable(call, 10 * callTimeoutMs);
        t.diagnostic(`${name}: DCS_UNAVAILABLE after ${ms.toFixed(0)} ms (${String(cause)})`);
        assert.ok(
          cause instanceof GRPCDeadlineExceededError || cause instanceof GRPCUnavailableError,
          `${name} was ended by ${String(cause)}, not by its ${callTimeoutMs} ms deadline or a connection reset`,
        );
      }
    } finally {
      etcd.kill('SIGCONT');
    }
    // Once etcd runs again the same client works again without being recreated.
    await waitFor('etcd to answer again', async () => dcs.load().then(() => true, () => undefined), 5000);
    assert.equal(await dcs.refreshLeader('a'), true);
    // The watch opened before the stall still delivers (timed-out calls reset the connection under it).
    await dcs.setOptime(77);
    await waitFor('the watch to deliver after the stall', () => (seen.includes('optime') ? true : undefined), 5000);
    await watch.close();
  });

  it('a watch keeps working across an etcd restart on the same data dir', async () => {
    const cluster = newCluster();
    const watcherClient = client(cluster);
    const writer = client(cluster);
    const seen: string[] = [];
    const watch = await watcherClient.watch((key) => seen.push(key));
    await writer.setOptime(1);
    await waitFor('the first event', () => (seen.includes('optime') ? true : undefined), 2000);

    await etcd.halt();
    await etcd.start();
    await waitFor('the writer to reach etcd again', async () => writer.setSync({ leader: 'a', members: [] }).then(() => true, () => undefined), 10_000);
    await waitFor('the watch to deliver an event written after the restart', () => (seen.includes('sync') ? true : undefined), 5000);
    assert.deepEqual(seen, ['optime', 'sync']);
    await watch.close();
  });
});

describe('EtcdDcs with etcd authentication', () => {
  let secured: EtcdInstance;

  before(async () => {
    secured = await startEtcd();
    const admin = new Etcd3({ hosts: secured.endpoint });
    try {
      await admin.role('root').create();
      await admin.user('root').create('rootpw');
      await admin.user('root').addRole('root');
      await admin.role('pgwarden').create();
      await admin.role('pgwarden').grant({ permission: 'Readwrite', range: admin.range({ prefix: '/pgwarden/' }) });
      await admin.user('agent').create('agentpw');
      await admin.user('agent').addRole('pgwarden');
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
  });

  after(async () => {
    await secured?.stop();
  });

  it('works with the right credentials and reports wrong ones as DCS_UNAVAILABLE without waiting', async () => {
    const good = new EtcdDcs({ endpoints: [secured.endpoint], cluster: 'auth', username: 'agent', password: 'agentpw' });
    clients.push(good);
    await good.ensureLease(5);
    assert.equal(await good.acquireLeader('a'), true);
    assert.equal(await good.refreshLeader('a'), true);
    assert.deepEqual((await good.load()).leader, { name: 'a' });

    // Without waiting: ended by etcd's refusal, not by the call's deadline (30 s here, so waiting for it would show).
    const bad = new EtcdDcs({ endpoints: [secured.endpoint], cluster: 'auth', username: 'agent', password: 'wrong', callTimeoutMs: 30_000 });
    clients.push(bad);
    await assert.rejects(bad.load(), (error: unknown) => {
      assert.ok(isPgwardenError(error));
      assert.equal(error.code, 'DCS_UNAVAILABLE');
      assert.match(error.message, /password/);
      assert.match(error.message, /refused to read the cluster/);
      assert.ok(!(error.cause instanceof GRPCDeadlineExceededError), `ended by ${String(error.cause)}`);
      return true;
    });

    const anonymous = new EtcdDcs({ endpoints: [secured.endpoint], cluster: 'auth' });
    clients.push(anonymous);
    await assert.rejects(anonymous.load(), (error: unknown) => isPgwardenError(error) && error.code === 'DCS_UNAVAILABLE');
  });
});
