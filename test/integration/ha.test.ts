/**
 * The HA core against real processes: a 3-node LocalCluster (etcd + 3 agents, each with its PostgreSQL 15),
 * faults injected by PID, and a client that writes every 20 ms to whichever member says it is primary.
 * The scenarios run in order on one cluster, each leaving it healthy for the next.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { parsePeerStatus } from '../../src/api/peer-probe.js';
import type { ClusterView } from '../../src/cluster/types.js';
import type { PeerProbe } from '../../src/ha/types.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../helpers/ports.js';
import { TcpRelay } from '../helpers/relay.js';
import { PrimaryWriter, sleep } from '../helpers/writer.js';
import { waitFor as pollFor } from '../helpers/pg.js';
import { Etcd3 } from 'etcd3';
import { KEYS, clusterPrefix } from '../../src/cluster/keys.js';

/** pollFor with this file's default timeout. */
const waitFor = <T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 30_000): Promise<T> =>
  pollFor(what, probe, timeoutMs);

let lc: LocalCluster;
let dir: string;

async function query<T extends pg.QueryResultRow>(member: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: lc.connectionString(member), connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}


async function leaderName(): Promise<string> {
  const view = await lc.view();
  assert.ok(view.leader, 'the cluster has a leader');
  return view.leader.name;
}

/** A view where `member` holds the key, runs as primary and the others stream from it. */
async function waitPrimaryIs(member: string | ((name: string) => boolean), timeoutMs = 30_000): Promise<ClusterView> {
  const accept = typeof member === 'string' ? (n: string) => n === member : member;
  return waitFor(`a new primary`, async () => {
    const view = await lc.view();
    const l = view.leader?.name;
    if (!l || !accept(l)) return null;
    return view.members[l]?.role === 'primary' && view.members[l]?.state === 'running' ? view : null;
  }, timeoutMs);
}

/** Waits for `count` writes acknowledged (by `member`, when given) after `after` on the writer's clock. */
async function acknowledged(w: PrimaryWriter, count: number, options: { member?: string; after?: number } = {}): Promise<void> {
  const counted = () => w.acks.filter((a) => (options.member === undefined || a.member === options.member) && a.at > (options.after ?? -Infinity)).length;
  await waitFor(`${count} acknowledged writes${options.member ? ` on ${options.member}` : ''}`, () => counted() >= count);
}

/**
 * Waits until each of `members` has run `cycles` more HA cycles (each cycle publishes the member's status once): how
 * long "long enough for the agents to have acted" is, counted in their decisions rather than in seconds.
 */
async function cyclesOf(members: readonly string[], cycles: number, timeoutMs = 60_000): Promise<void> {
  const counts = new Map(members.map((m) => [m, 0]));
  const watch = await lc.dcs().watch((key) => {
    const name = key.startsWith(KEYS.members) ? key.slice(KEYS.members.length) : null;
    if (name !== null && counts.has(name)) counts.set(name, counts.get(name)! + 1);
  });
  try {
    await waitFor(`${cycles} HA cycles of ${members.join(', ')}`, () => [...counts.values()].every((c) => c >= cycles), timeoutMs);
  } finally {
    await watch.close();
  }
}

/** Writers of the running test: one that failed before its own stop() is stopped before the next test starts. */
const writers = new Set<PrimaryWriter>();

function writer(): PrimaryWriter {
  const w = new PrimaryWriter(lc.members().map((m) => ({ name: m, apiUrl: lc.apiUrl(m), connectionString: lc.connectionString(m) })));
  writers.add(w);
  return w;
}

afterEach(async () => {
  for (const w of writers) await w.stop();
  writers.clear();
});

async function postApi(member: string, route: string, body: unknown): Promise<Response> {
  const { username, password } = lc.apiCredentials();
  return fetch(`${lc.apiUrl(member)}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` },
    body: JSON.stringify(body),
  });
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-ha-'));
  lc = await LocalCluster.open({ dir, nodes: 3, cluster: 'hatest', parameters: { fsync: 'off', synchronous_commit: 'on' } });
  await lc.start();
  await lc.waitHealthy(90_000);
});

after(async () => {
  await lc?.stop().catch(() => undefined);
  await lc?.close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('HA core against real etcd and PostgreSQL', { concurrency: false }, () => {
  it('bootstraps 3 nodes: data written on the primary is read on both replicas; replicas refuse writes', async () => {
    const view = await lc.waitHealthy(30_000);
    const primary = view.leader!.name;
    const replicas = lc.members().filter((m) => m !== primary);
    assert.equal(replicas.length, 2);
    for (const r of replicas) assert.equal(view.members[r]?.role, 'replica');
    await query(primary, 'CREATE TABLE t (id int PRIMARY KEY, v text)');
    await query(primary, "INSERT INTO t VALUES (1, 'one')");
    for (const r of replicas) {
      const rows = await waitFor(`row on ${r}`, async () => {
        const got = await query<{ v: string }>(r, 'SELECT v FROM t WHERE id = 1').catch(() => []);
        return got.length ? got : null;
      });
      assert.equal(rows[0]!.v, 'one');
      await assert.rejects(query(r, "INSERT INTO t VALUES (2, 'x')"), (e: { code?: string }) => e.code === '25006');
    }
    // Every member has a slot on the primary and streams through it.
    const slots = await query<{ slot_name: string; active: boolean }>(primary, 'SELECT slot_name, active FROM pg_replication_slots ORDER BY 1');
    assert.deepEqual(slots.map((s) => s.slot_name).sort(), replicas.map((r) => r.replace(/[^a-z0-9_]/g, '_')).sort());
  });

  it('kill -9 of PostgreSQL on the primary: a replica takes over, the old primary rejoins holding the new writes', async () => {
    const w = writer();
    await w.prepare();
    w.start();
    await acknowledged(w, 10);
    const old = await leaderName();
    // What the old primary's API says the moment its leader key goes: the replicas probe it then, before an election.
    // (The key is refreshed through its lease, not rewritten: its first event after the kill is the release.)
    const seen: { killed: boolean; answer: Promise<PeerProbe> | null } = { killed: false, answer: null };
    const watch = await lc.dcs().watch((key) => {
      if (!seen.killed || seen.answer !== null || !(key === 'leader' || key.endsWith('/leader'))) return;
      seen.answer = fetch(`${lc.apiUrl(old)}/patroni`).then(async (r) => parsePeerStatus((await r.json()) as Record<string, unknown>));
    });
    const t = w.now();
    seen.killed = true;
    lc.killPostgres(old, 'SIGKILL');
    const view = await waitPrimaryIs((n) => n !== old, 20_000);
    await watch.close();
    assert.ok(seen.answer !== null, 'the leader key changed');
    const said = await seen.answer;
    assert.notDeepEqual({ role: said.role, healthy: said.healthy }, { role: 'primary', healthy: true }, "once its key is released, the crashed primary's API no longer says it runs as primary");
    const fresh = view.leader!.name;
    assert.ok(await w.waitForAckAfter(t, 10_000), 'writes resume on the new primary');
    await w.stop();
    console.log(`# postgres crash: write gap ${w.maxGapAfter(t)?.toFixed(0)} ms, new primary ${fresh}`);
    await query(fresh, "INSERT INTO t VALUES (10, 'after-crash')");
    await lc.waitHealthy(60_000);
    const v = await lc.view();
    assert.equal(v.members[old]?.role, 'replica', 'the former primary is a replica now');
    const rows = await waitFor('new write on the former primary', async () => {
      const got = await query<{ v: string }>(old, 'SELECT v FROM t WHERE id = 10').catch(() => []);
      return got.length ? got : null;
    });
    assert.equal(rows[0]!.v, 'after-crash');
    assert.ok(v.history.length >= 2, 'the failover is in the history');
  });

  it('kill -9 of the primary agent and PostgreSQL together: takeover after the lease expires', async () => {
    const w = writer();
    await w.prepare();
    w.start();
    await acknowledged(w, 10);
    const old = await leaderName();
    const bystanderPids = new Map(lc.members().filter((m) => m !== old).map((m) => [m, lc.pgPid(m)]));
    // etcd's reading of the dead primary's lease when its leader key first changes (the key is refreshed through
    // the lease, not rewritten, so that change is its removal).
    const raw = new Etcd3({ hosts: lc.etcdEndpoint() });
    const oldLease = (await raw.get(`${clusterPrefix('hatest')}leader`).exec()).kvs[0]!.lease;
    const firstChange: { leaseLeft: Promise<number> | null } = { leaseLeft: null };
    const leaderWatch = await lc.dcs().watch((key) => {
      if (key !== KEYS.leader || firstChange.leaseLeft !== null) return;
      firstChange.leaseLeft = raw.leaseClient.leaseTimeToLive({ ID: oldLease }).then((r) => Number(r.TTL));
    });
    const t = w.now();
    lc.killAgent(old, 'SIGKILL');
    lc.killPostgres(old, 'SIGKILL');
    const view = await waitPrimaryIs((n) => n !== old, 20_000);
    await leaderWatch.close();
    assert.ok(firstChange.leaseLeft !== null, 'the leader key changed');
    const leaseLeft = await firstChange.leaseLeft;
    raw.close();
    assert.equal(leaseLeft, -1, 'a dead host is only detected by lease expiry: the key went when etcd expired its lease');
    assert.ok(await w.waitForAckAfter(t, 10_000));
    // Regression: replicas that lost their primary once misjudged themselves as diverged and wiped their data.
    const bystander = [...bystanderPids.keys()].find((m) => m !== view.leader!.name)!;
    await waitFor(`${bystander} streaming from the new primary`, async () => (await lc.view()).members[bystander]?.state === 'streaming', 20_000);
    assert.equal(lc.pgPid(bystander), bystanderPids.get(bystander), 'the other replica followed the new primary without a restart or a re-clone');
    await w.stop();
    console.log(`# host crash: write gap ${w.maxGapAfter(t)?.toFixed(0)} ms, new primary ${view.leader!.name}`);
    await lc.startAgent(old);
    await lc.waitHealthy(60_000);
    assert.equal((await lc.view()).members[old]?.role, 'replica');
    const missing = await w.missingOn(lc.connectionString(view.leader!.name));
    // Asynchronous mode: only writes acknowledged by the dead primary in its last instant may be missing.
    assert.ok(missing.length <= 5, `few acknowledged writes lost in async mode, got ${missing.length}`);
  });

  it('kill -9 of the primary agent alone: the lease deadman stops PostgreSQL before a replica is promoted', async () => {
    const w = writer();
    await w.prepare();
    w.start();
    await acknowledged(w, 10);
    const old = await leaderName();
    const t = w.now();
    lc.killAgent(old, 'SIGKILL');
    // Nothing is left to refresh the lease; the writer keeps writing to the orphaned primary directly.
    const direct = new pg.Client({ connectionString: lc.connectionString(old) });
    await direct.connect();
    direct.on('error', () => undefined);
    let lastDirectAck = 0;
    const directLoop = (async () => {
      for (let i = 0; i < 400; i++) {
        try {
          await direct.query("INSERT INTO t VALUES ($1, 'orphan') ON CONFLICT DO NOTHING", [100_000 + i]);
          lastDirectAck = w.now();
        } catch {
          return;
        }
        await sleep(20); // the pace of the writes, as PrimaryWriter's
      }
    })();
    const view = await waitPrimaryIs((n) => n !== old, 20_000);
    const fresh = view.leader!.name;
    assert.ok(await w.waitForAckAfter(t, 10_000));
    await directLoop;
    await direct.end().catch(() => undefined);
    await w.stop();
    const firstNew = Math.min(...w.acks.filter((a) => a.member === fresh && a.at > t).map((a) => a.at));
    console.log(`# agent killed: orphaned primary's last ack at ${(lastDirectAck - t).toFixed(0)} ms, new primary's first at ${(firstNew - t).toFixed(0)} ms`);
    assert.ok(lastDirectAck > 0 && lastDirectAck < firstNew, 'the orphaned primary stopped accepting writes before the new primary started');
    await lc.startAgent(old);
    await lc.waitHealthy(60_000);
    assert.equal((await lc.view()).members[old]?.role, 'replica');
  });

  it('switchover to a named member through the REST API', async () => {
    const old = await leaderName();
    const target = lc.members().find((m) => m !== old)!;
    // The primary checks the candidate against its own view, one cycle old at most: wait until it lists everyone.
    await waitFor(`${old}'s API to list every member`, async () => {
      const body = (await (await fetch(`${lc.apiUrl(old)}/cluster`)).json()) as { members?: { name: string }[] };
      return lc.members().every((m) => body.members?.some((x) => x.name === m));
    });
    const w = writer();
    await w.prepare();
    w.start();
    await acknowledged(w, 10);
    const t = w.now();
    const res = await postApi(old, '/switchover', { leader: old, candidate: target });
    assert.ok(res.status === 200 || res.status === 202, `switchover accepted, got ${res.status}: ${await res.text()}`);
    await waitPrimaryIs(target, 20_000);
    assert.ok(await w.waitForAckAfter(t, 10_000));
    await w.stop();
    console.log(`# switchover: write gap ${w.maxGapAfter(t)?.toFixed(0)} ms`);
    assert.deepEqual(await w.missingOn(lc.connectionString(target)), [], 'a switchover loses no acknowledged write');
    await lc.waitHealthy(60_000);
    const v = await lc.view();
    assert.equal(v.members[old]?.role, 'replica');
    assert.equal(v.failover, null, 'the request was cleared');
  });

  it('an HAProxy configured as for Patroni routes to the primary, and to the new one after a switchover', async () => {
    const port = await freePort();
    const servers = lc
      .members()
      .map((m) => `    server ${m} 127.0.0.1:${lc.pgPort(m)} maxconn 100 check port ${new URL(lc.apiUrl(m)).port}`)
      .join('\n');
    // The configuration Patroni's documentation gives, unchanged but for addresses.
    const cfg = [
      'global',
      '    maxconn 100',
      'defaults',
      '    mode tcp',
      '    retries 2',
      '    timeout client 30m',
      '    timeout connect 4s',
      '    timeout server 30m',
      '    timeout check 5s',
      'listen primary',
      `    bind 127.0.0.1:${port}`,
      '    option httpchk OPTIONS /primary',
      '    http-check expect status 200',
      '    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions',
      servers,
      '',
    ].join('\n');
    const file = path.join(dir, 'haproxy.cfg');
    await writeFile(file, cfg);
    const haproxy: ChildProcess = spawn('/usr/sbin/haproxy', ['-db', '-f', file], { stdio: 'ignore' });
    const through = async (): Promise<{ port: number; recovery: boolean }> => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: lc.pgCredentials().superuser.password, database: 'postgres', connectionTimeoutMillis: 2000 });
      await c.connect();
      try {
        const r = await c.query<{ port: number; recovery: boolean }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS recovery');
        return r.rows[0]!;
      } finally {
        await c.end();
      }
    };
    try {
      const primary = await leaderName();
      const first = await waitFor('HAProxy to route to the primary', async () => {
        const r = await through().catch(() => null);
        return r && r.port === lc.pgPort(primary) ? r : null;
      }, 15_000);
      assert.equal(first.recovery, false, 'HAProxy routed to a writable server');
      const target = lc.members().find((m) => m !== primary)!;
      await waitFor('the switchover to be accepted', async () => (await postApi(primary, '/switchover', { leader: primary, candidate: target })).status < 300);
      await waitPrimaryIs(target, 30_000);
      const second = await waitFor('HAProxy to route to the new primary', async () => {
        const r = await through().catch(() => null);
        return r && r.port === lc.pgPort(target) ? r : null;
      }, 15_000);
      assert.equal(second.recovery, false);
    } finally {
      haproxy.kill('SIGTERM');
    }
    await lc.waitHealthy(60_000);
  });

  it('pause stops failover; resume lets the cluster heal', async () => {
    const dcs = lc.dcs();
    const primary = await leaderName();
    const cfg = (await lc.view()).config;
    await dcs.setConfig({ ...cfg, pause: true });
    await waitFor('every member paused', async () => {
      const v = await lc.view();
      return Object.values(v.members).every((m) => m.paused) || null;
    });
    lc.killPostgres(primary, 'SIGKILL');
    // Once the primary's agent has seen its PostgreSQL gone, every agent gets as many cycles as an active cluster
    // would need to restart or replace it, with the lease's expiry thrown in (ttl + 3 s of loop_wait).
    await waitFor(`${primary} to report its PostgreSQL down`, async () => {
      const status = (await lc.view()).members[primary];
      return status !== undefined && status.state !== 'running';
    });
    await cyclesOf(lc.members(), Math.ceil((cfg.ttl + 3) / cfg.loop_wait));
    const v = await lc.view();
    assert.equal(v.leader?.name, primary, 'the leader key stays where it was');
    for (const m of lc.members().filter((x) => x !== primary)) assert.equal(v.members[m]?.role, 'replica', `${m} was not promoted`);
    await dcs.setConfig({ ...cfg, pause: false });
    await lc.waitHealthy(60_000);
  });

  it('a primary cut off from etcd demotes itself before anyone else is promoted', async () => {
    const old = await leaderName();
    // Route the primary's agent through a relay that can drop all its etcd traffic.
    const etcd = new URL(lc.etcdEndpoint());
    const relay = new TcpRelay(etcd.hostname, Number(etcd.port));
    await relay.start();
    const file = lc.configFile(old);
    const original = await readFile(file, 'utf8');
    const doc = YAML.parse(original) as { etcd: { endpoints: string[] } };
    doc.etcd.endpoints = [relay.endpoint];
    await writeFile(file, YAML.stringify(doc));
    try {
      await lc.stopAgent(old);
      await lc.startAgent(old);
      await waitFor(`${old} back as a streaming replica`, async () => {
        const v = await lc.view();
        return v.leader && v.leader.name !== old && v.members[old]?.state === 'streaming';
      }, 60_000);
      // Stopping the agent handed leadership over: switch it back so that the relayed member is the primary.
      const current = await leaderName();
      if (current !== old) {
        // The leader's agent validates against its own view, up to one loop old: retry while it has not seen old.
        await waitFor('the switchover to be accepted', async () => (await postApi(current, '/switchover', { leader: current, candidate: old })).status < 300);
        await waitPrimaryIs(old, 30_000);
        await lc.waitHealthy(60_000);
      }
      const holder = await leaderName();
      assert.equal(holder, old);
      const w = writer();
      await w.prepare();
      w.start();
      await acknowledged(w, 10, { member: holder });
      const t = w.now();
      relay.blackhole();
      const view = await waitPrimaryIs((n) => n !== holder, 30_000);
      const fresh = view.leader!.name;
      assert.ok(await w.waitForAckAfter(t, 10_000));
      await w.stop();
      const lastOld = Math.max(...w.acks.filter((a) => a.member === holder).map((a) => a.at));
      const firstNew = Math.min(...w.acks.filter((a) => a.member === fresh).map((a) => a.at));
      console.log(`# etcd partition of the primary: old primary's last ack at ${lastOld.toFixed(0)} ms, new primary's first at ${firstNew.toFixed(0)} ms`);
      assert.ok(lastOld < firstNew, 'no write is accepted by the old primary once the new one accepts writes');
      // The isolated server itself refuses writes (it stopped before its lease could expire).
      await assert.rejects(query(holder, "INSERT INTO t VALUES (99, 'split')"));
      relay.heal();
    } finally {
      relay.heal();
      await writeFile(file, original);
      await lc.stopAgent(old);
      await lc.startAgent(old);
      await relay.stop();
    }
    await lc.waitHealthy(60_000);
    assert.equal((await lc.view()).members[old]?.role, 'replica');
  });

  it('synchronous mode: a client inserting continuously loses no acknowledged row across kill -9 of the primary', async () => {
    const dcs = lc.dcs();
    const cfg = (await lc.view()).config;
    await dcs.setConfig({ ...cfg, synchronous_mode: true });
    const synced = await waitFor('a synchronous standby in the sync key', async () => {
      const v = await lc.view();
      return v.sync && v.leader && v.sync.leader === v.leader.name && v.sync.members.length > 0 ? v : null;
    });
    const old = synced.leader!.name;
    const w = writer();
    await w.prepare();
    w.start();
    await acknowledged(w, 50);
    const t = w.now();
    lc.killPostgres(old, 'SIGKILL');
    const view = await waitPrimaryIs((n) => n !== old, 30_000);
    assert.ok(synced.sync!.members.includes(view.leader!.name), 'the new primary was a synchronous standby');
    assert.ok(await w.waitForAckAfter(t, 15_000));
    await acknowledged(w, 10, { member: view.leader!.name, after: t });
    await w.stop();
    const acked = w.acks.length;
    assert.ok(acked > 50, `the workload ran (${acked} acknowledged writes)`);
    assert.deepEqual(await w.missingOn(lc.connectionString(view.leader!.name)), [], 'no acknowledged write lost');
    await dcs.setConfig({ ...cfg, synchronous_mode: false });
    await lc.waitHealthy(60_000);
  });

  it('synchronous_mode_strict: with no standby left the primary blocks commits, and a returning standby releases them', async () => {
    const dcs = lc.dcs();
    const cfg = (await lc.view()).config;
    await dcs.setConfig({ ...cfg, synchronous_mode: true, synchronous_mode_strict: true });
    const primary = await leaderName();
    await waitFor('a synchronous standby', async () => {
      const v = await lc.view();
      return v.sync?.leader === primary && v.sync.members.length > 0;
    });
    const replicas = lc.members().filter((m) => m !== primary);
    for (const r of replicas) await lc.stopAgent(r);
    await waitFor('synchronous_standby_names = *', async () => {
      const rows = await query<{ s: string }>(primary, "SELECT current_setting('synchronous_standby_names') AS s").catch(() => []);
      return rows[0]?.s === '*';
    });
    const c = new pg.Client({ connectionString: lc.connectionString(primary) });
    await c.connect();
    const backend = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    let committed = false;
    const insert = c.query("INSERT INTO t VALUES (500, 'strict')").then(() => (committed = true));
    const waitEvent = async (): Promise<string | null> =>
      (await query<{ w: string | null }>(primary, 'SELECT wait_event AS w FROM pg_stat_activity WHERE pid = $1', [backend]))[0]?.w ?? null;
    await waitFor('the commit to wait for a synchronous standby', async () => (await waitEvent()) === 'SyncRep');
    // And it keeps waiting while the primary's agent runs on (it must not lift '*' without a standby).
    await cyclesOf([primary], 3);
    assert.equal(committed, false, 'the commit waits while no synchronous standby exists');
    assert.equal(await waitEvent(), 'SyncRep');
    await lc.startAgent(replicas[0]!);
    await insert;
    await c.end();
    assert.ok(committed, 'the commit completed once a standby came back');
    for (const r of replicas.slice(1)) await lc.startAgent(r);
    await dcs.setConfig({ ...cfg, synchronous_mode: false, synchronous_mode_strict: false });
    await lc.waitHealthy(60_000);
  });
});
