/**
 * Smoke test of the chaos foundations: the labs' partitions really cut traffic (NetLab: namespaces + nftables;
 * RelayLab: the loopback fallback), and a ChaosCluster (3 etcd, 3 agents with PostgreSQL, 2 proxies) fails over
 * when its primary's host is cut from etcd and from the other members, the old primary stops taking writes, and
 * rejoins as a replica once healed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ChaosCluster } from './cluster.js';
import type { Lab } from './lab.js';
import { NetLab } from './netlab.js';
import { RelayLab } from './relaylab.js';

const execFileAsync = promisify(execFile);
const availability = await NetLab.available();
const netns = availability.ok;
console.log(
  netns ? 'chaos smoke: network namespace mode (ip netns + nftables)' : `chaos smoke: relay mode (loopback relays), because ${availability.ok ? '' : availability.why}`,
);

/** A program run on a host: a TCP server on `port` that answers "hi", or a UDP receiver printing what it gets. */
const TCP_SERVER = (host: string, port: number): string =>
  `require('net').createServer((s) => s.end('hi')).listen(${port}, '${host}', () => console.log('listening'))`;
const UDP_RECEIVER = (host: string, port: number): string =>
  `const s = require('dgram').createSocket('udp4'); s.on('message', (m) => console.log(String(m))); s.bind(${port}, '${host}', () => console.log('listening'))`;
/** Exits 0 when `host:port` answers "hi" within 1.5 s, else 1. */
const TCP_PROBE = (host: string, port: number): string =>
  `const s = require('net').connect(${port}, '${host}'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => process.exit(d === 'hi' ? 0 : 1)); s.on('error', () => process.exit(1)); setTimeout(() => process.exit(1), 1500)`;
const UDP_SEND = (host: string, port: number, text: string): string =>
  `const s = require('dgram').createSocket('udp4'); s.send('${text}', ${port}, '${host}', () => s.close())`;

async function probe(lab: Lab, from: string, host: string, port: number): Promise<boolean> {
  const r = await lab.exec(from, [process.execPath, '-e', TCP_PROBE(host, port)], { timeoutMs: 10_000 });
  return r.code === 0;
}

/** Starts `script` on `host` and resolves once it printed "listening"; returns the child and its output. */
async function startListener(lab: Lab, host: string, script: string): Promise<{ stop: () => void; output: () => string }> {
  const child = lab.spawn(host, [process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const deadline = Date.now() + 10_000;
  while (!out.includes('listening')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new ListenerFailed(host, out, err);
    await sleep(50);
  }
  return {
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    },
    output: () => out,
  };
}

class ListenerFailed extends Error {
  constructor(
    host: string,
    out: string,
    readonly stderr: string,
  ) {
    super(`listener on ${host} did not start: ${out}${stderr}`);
  }
  get portTaken(): boolean {
    return this.stderr.includes('EADDRINUSE');
  }
}

function ourNamespaces(prefix: string): string[] {
  try {
    return readdirSync('/run/netns').filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

describe('NetLab', () => {
  if (!netns) {
    it('says why network namespaces cannot be used here', () => {
      assert.equal(availability.ok, false);
      assert.match(availability.ok ? '' : availability.why, /\S/);
    });
    return;
  }
  const lab = new NetLab();
  const stops: Array<() => void> = [];
  before(async () => {
    await lab.create(['a', 'b']);
  });
  after(async () => {
    for (const s of stops) s();
    await lab.destroy();
    assert.deepEqual(ourNamespaces(`${lab.prefix}-`), [], 'no namespace of the lab is left');
    assert.ok(!readdirSync('/sys/class/net').includes(lab.prefix), 'the root link of the lab is gone');
  });

  it('cuts one way and heals', async () => {
    const a = lab.address('a');
    const b = lab.address('b');
    const server = await startListener(lab, 'a', TCP_SERVER(a, 7000));
    stops.push(server.stop);
    const udpOnB = await startListener(lab, 'b', UDP_RECEIVER(b, 7001));
    stops.push(udpOnB.stop);
    const udpOnA = await startListener(lab, 'a', UDP_RECEIVER(a, 7001));
    stops.push(udpOnA.stop);

    assert.equal(await probe(lab, 'b', a, 7000), true, 'b reaches a before any cut');
    await lab.cut(['b'], ['a'], { oneWay: true });
    assert.deepEqual(lab.cuts(), [{ from: 'b', to: 'a' }]);
    assert.equal(await probe(lab, 'b', a, 7000), false, 'b cannot reach a across the cut');
    // One way: datagrams a→b still arrive, b→a do not.
    await lab.exec('a', [process.execPath, '-e', UDP_SEND(b, 7001, 'from-a')]);
    await lab.exec('b', [process.execPath, '-e', UDP_SEND(a, 7001, 'from-b')]);
    await sleep(300);
    assert.match(udpOnB.output(), /from-a/, 'a→b is not cut');
    assert.doesNotMatch(udpOnA.output(), /from-b/, 'b→a is cut');
    // The harness (root namespace) is never cut.
    assert.equal(await probeFromHarness(a, 7000), true, 'the harness still reaches a');
    assert.match(await lab.listRules('b'), /ip daddr 10\.213\.\d+\.\d+ drop/);

    await lab.heal(['b'], ['a']);
    assert.deepEqual(lab.cuts(), []);
    assert.equal(await probe(lab, 'b', a, 7000), true, 'b reaches a again after heal');
  });
});

/** The harness's own view: a probe run from the root namespace, not through any lab host. */
async function probeFromHarness(host: string, port: number): Promise<boolean> {
  try {
    await execFileAsync(process.execPath, ['-e', TCP_PROBE(host, port)], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

describe('RelayLab', () => {
  const lab = new RelayLab();
  const stops: Array<() => void> = [];
  after(async () => {
    for (const s of stops) s();
    await lab.destroy();
  });

  it('attributes connections to hosts and cuts them', async () => {
    await lab.create(['a', 'b']);
    // expose() picks a port that was free a moment ago; a test file running in parallel may bind it first.
    let svc = await lab.expose('a', 'hi', 7000);
    for (let attempt = 1; ; attempt++) {
      try {
        stops.push((await startListener(lab, 'a', TCP_SERVER(svc.listen.host, svc.listen.port))).stop);
        break;
      } catch (e) {
        if (!(e instanceof ListenerFailed && e.portTaken) || attempt === 3) throw e;
        svc = await lab.expose('a', 'hi', 7000);
      }
    }
    const { host, port } = svc.advertise;
    assert.equal(await probe(lab, 'b', host, port), true, 'b reaches a through the relay');
    await lab.cut(['b'], ['a']);
    assert.equal(await probe(lab, 'b', host, port), false, 'b cannot reach a across the cut');
    assert.equal(await probeFromHarness(host, port), true, 'the harness is not a host and is never cut');
    await lab.heal();
    assert.equal(await probe(lab, 'b', host, port), true, 'b reaches a after heal');
  });
});

describe('ChaosCluster', () => {
  const cluster = new ChaosCluster({ log: (line) => console.log(`  ${line}`) });
  let failed = true;

  before(async () => {
    await cluster.start();
  });

  after(async () => {
    if (failed) {
      for (const h of cluster.agentHosts) console.log(`--- ${h} agent log\n${await cluster.logTail(h, 30)}`);
      for (const h of cluster.proxyHosts) console.log(`--- ${h} log\n${await cluster.logTail(h, 15)}`);
    }
    let prefix: string | null = null;
    try {
      prefix = cluster.mode === 'netns' ? (cluster.lab as NetLab).prefix : null;
    } catch {
      // start() failed before the lab existed.
    }
    const pids = cluster.hosts().map((h) => cluster.pid(h));
    const postmasters = cluster.agentHosts.map((m) => cluster.postmasterPid(m));
    await cluster.stop();
    for (const pid of [...pids, ...postmasters]) {
      if (pid === null) continue;
      assert.throws(() => process.kill(pid, 0), `process ${pid} was ended`);
    }
    if (prefix !== null) assert.deepEqual(ourNamespaces(`${prefix}-`), [], 'no namespace is left');
  });

  it('fails over when the primary is partitioned, refuses writes on the old primary, and rejoins it after heal', { timeout: 150_000 }, async () => {
    const healthy = await cluster.waitHealthy(90_000);
    const old = healthy.leader!.name;
    const others = cluster.agentHosts.filter((m) => m !== old);
    console.log(`  primary ${old}, sync ${JSON.stringify(healthy.sync)}`);

    const rw = new pg.Pool({ connectionString: cluster.proxyConnectionString('proxy1', 'rw'), max: 1, connectionTimeoutMillis: 10_000 });
    try {
      await rw.query('CREATE TABLE chaos_smoke (id int PRIMARY KEY, note text)');
      await rw.query("INSERT INTO chaos_smoke VALUES (1, 'before the partition')");

      await cluster.cut([old], [...cluster.etcdHosts, ...others]);
      const t0 = Date.now();
      let next: string | null = null;
      for (const deadline = Date.now() + 45_000; Date.now() < deadline; await sleep(250)) {
        const v = await cluster.view().catch(() => null);
        const l = v?.leader?.name ?? null;
        if (l !== null && l !== old && v!.members[l]?.role === 'primary' && v!.members[l]?.state === 'running') {
          next = l;
          break;
        }
      }
      assert.ok(next !== null, `a new primary was elected after ${old} was cut off`);
      assert.ok(others.includes(next));
      console.log(`  ${next} is primary ${Date.now() - t0} ms after the cut`);

      // The proxy follows etcd: the next write lands on the new primary (it may wait for it, or fail once).
      let written = false;
      for (const deadline = Date.now() + 30_000; !written && Date.now() < deadline; ) {
        try {
          await rw.query("INSERT INTO chaos_smoke VALUES (2, 'after the failover')");
          written = true;
        } catch (e) {
          if ((e as { code?: string }).code === '23505') written = true; // an earlier try did commit
          else await sleep(500);
        }
      }
      assert.ok(written, 'a write through proxy1 succeeded after the failover');
      const onNew = new pg.Client({ connectionString: cluster.connectionString(next) });
      await onNew.connect();
      try {
        const rows = (await onNew.query('SELECT id FROM chaos_smoke ORDER BY id')).rows.map((r) => r.id as number);
        assert.deepEqual(rows, [1, 2], 'the new primary has the row written before the partition and the one through the proxy');
        assert.equal((await onNew.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, false);
      } finally {
        await onNew.end();
      }

      // The old primary lost its lease: it must not accept writes (read-only, or not accepting connections).
      let refused = false;
      let lastAnswer = '';
      for (const deadline = Date.now() + 20_000; !refused && Date.now() < deadline; await sleep(500)) {
        const c = new pg.Client({ connectionString: cluster.connectionString(old), connectionTimeoutMillis: 3000 });
        try {
          await c.connect();
          await c.query("INSERT INTO chaos_smoke VALUES (3, 'on the old primary')");
          lastAnswer = 'the insert was accepted';
          break; // A write accepted on a primary that lost its lease: fail below.
        } catch (e) {
          refused = true;
          lastAnswer = `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`;
        } finally {
          await c.end().catch(() => undefined);
        }
      }
      assert.ok(refused, `the old primary ${old} refused a write after losing its lease (${lastAnswer})`);
      console.log(`  ${old} refused the write: ${lastAnswer}`);

      await cluster.healAll();
      let rejoined = false;
      for (const deadline = Date.now() + 60_000; !rejoined && Date.now() < deadline; await sleep(500)) {
        const v = await cluster.view().catch(() => null);
        const m = v?.members[old];
        rejoined = v?.leader?.name === next && m?.role === 'replica' && m.state === 'streaming' && m.following === next;
      }
      assert.ok(rejoined, `${old} rejoined as a replica streaming from ${next}`);
      const onOld = new pg.Client({ connectionString: cluster.connectionString(old) });
      await onOld.connect();
      try {
        let rows: number[] = [];
        for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(300)) {
          rows = (await onOld.query('SELECT id FROM chaos_smoke ORDER BY id')).rows.map((r) => r.id as number);
          if (rows.length === 2) break;
        }
        assert.deepEqual(rows, [1, 2], 'the old primary replays the new primary\'s writes and has none of its own');
        assert.equal((await onOld.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
      } finally {
        await onOld.end();
      }
      failed = false;
    } finally {
      await rw.end().catch(() => undefined);
    }
  });
});
