/**
 * ProxyRegistrar + MemberReachability against a real etcd: `proxies/<id>` carries the members whose port this
 * proxy cannot connect to (a real listener stands for a reachable PostgreSQL, a closed port for an unreachable one),
 * follows their changes, never has two puts of the key in flight, and catches up after a failed put.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { ProxyRegistration } from '../../src/dcs/codec.js';
import { EtcdDcs } from '../../src/dcs/etcd.js';
import { MemberReachability, type ProbedMember } from '../../src/proxy/reachability.js';
import { ProxyRegistrar } from '../../src/proxy/registration.js';
import { startEtcd, type EtcdInstance } from '../helpers/etcd.js';

const HOST = '127.0.0.1';
const log = pino({ level: 'silent' });

let etcd: EtcdInstance;
const servers: Server[] = [];
const clients: EtcdDcs[] = [];
let clusterSeq = 0;

async function listen(port = 0): Promise<number> {
  const server = createServer((socket) => socket.on('error', () => undefined));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => resolve());
  });
  servers.push(server);
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

async function refusedPort(): Promise<number> {
  const port = await listen();
  const server = servers.pop()!;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function client(cluster: string): EtcdDcs {
  const dcs = new EtcdDcs({ endpoints: [etcd.endpoint], cluster });
  clients.push(dcs);
  return dcs;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The proxy side the registrar needs: an address and no transaction running, no drain asked. */
const proxyStub = { address: { host: HOST, port: 6432 }, roAddress: null, rwTransactionsInFlight: () => 0 };
const noDrains = Object.assign(new EventEmitter(), { pendingDrain: (): string | null => null });

before(async () => {
  etcd = await startEtcd();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close({ revoke: true })));
  await Promise.all(servers.filter((s) => s.listening).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  await etcd?.stop();
});

describe('proxy registration with member reachability', { timeout: 60_000 }, () => {
  it('publishes exactly the refused member as unreachable, and drops it once it is reachable again', async () => {
    const cluster = `reach-${++clusterSeq}-${process.pid}`;
    const upPort = await listen();
    const downPort = await refusedPort();
    const members: ProbedMember[] = [
      { name: 'a', host: HOST, port: upPort },
      { name: 'b', host: HOST, port: downPort },
    ];
    const reach = new MemberReachability(() => members, { intervalMs: 50, timeoutMs: 200 });
    const registrar = new ProxyRegistrar(client(cluster), 'p1', proxyStub, noDrains, log, reach);
    const observer = client(cluster);
    const mine = async (): Promise<ProxyRegistration | undefined> => (await observer.loadProxies()).find((p) => p.id === 'p1');
    reach.start();
    try {
      await registrar.start(10);
      const first = await mine();
      assert.ok(first !== undefined, 'registered at start');
      assert.deepEqual(first.rw, `${HOST}:6432`);

      const down = await waitFor('b published as unreachable', async () => {
        const p = await mine();
        return p?.unreachable !== undefined && Object.keys(p.unreachable).length > 0 ? p : undefined;
      });
      assert.deepEqual(Object.keys(down.unreachable!), ['b']);
      assert.equal(down.unreachable!.b, reach.unreachable().b, 'the since-time is published as measured');
      const view = await observer.load();
      assert.deepEqual(
        view.proxies.map((p) => ({ id: p.id, unreachable: Object.keys(p.unreachable) })),
        [{ id: 'p1', unreachable: ['b'] }],
      );

      await listen(downPort);
      const up = await waitFor('b reachable again', async () => {
        const p = await mine();
        return p !== undefined && Object.keys(p.unreachable ?? {}).length === 0 ? p : undefined;
      });
      assert.equal(up.id, 'p1');
      assert.deepEqual(reach.unreachable(), {});
    } finally {
      registrar.stop();
      reach.stop();
    }
  });

  it('bursts of changes cost few puts, never two at once, and a failed put is caught up by the refresh', async () => {
    const cluster = `reach-${++clusterSeq}-${process.pid}`;
    const dcs = client(cluster);
    let inFlight = 0;
    let maxInFlight = 0;
    let puts = 0;
    let failNext = false;
    // The real etcd client, counted; the registrar under test is unchanged.
    const counted = {
      ensureLease: (ttl: number) => dcs.ensureLease(ttl),
      keepAlive: () => dcs.keepAlive(),
      publishProxy: async (r: ProxyRegistration): Promise<void> => {
        puts++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          if (failNext) {
            failNext = false;
            throw new Error('injected put failure');
          }
          await dcs.publishProxy(r);
        } finally {
          inFlight--;
        }
      },
    };
    let unreachable: Record<string, number> = {};
    const source = Object.assign(new EventEmitter(), { unreachable: () => ({ ...unreachable }) });
    const registrar = new ProxyRegistrar(counted, 'p2', proxyStub, noDrains, log, source);
    const observer = client(cluster);
    const mine = async (): Promise<ProxyRegistration | undefined> => (await observer.loadProxies()).find((p) => p.id === 'p2');
    // ttl 3 s: the refresh runs every second.
    await registrar.start(3);
    try {
      const putsAtStart = puts;
      for (let i = 1; i <= 50; i++) {
        unreachable = { a: i };
        source.emit('change');
      }
      await waitFor('the last state in etcd', async () => ((await mine())?.unreachable?.a === 50 ? true : undefined));
      assert.equal(maxInFlight, 1, 'never two puts of proxies/p2 at once');
      assert.ok(puts - putsAtStart <= 2, `${puts - putsAtStart} puts for a burst of 50 changes`);

      failNext = true;
      unreachable = { a: 1, b: 2 };
      const putsBefore = puts;
      source.emit('change');
      await waitFor('the put that fails', async () => (puts > putsBefore && !failNext && inFlight === 0 ? true : undefined));
      assert.equal((await mine())?.unreachable?.b, undefined, 'the put failed');
      // No further change comes: the refresh publishes what etcd missed.
      await waitFor('the refresh to publish the missed change', async () => ((await mine())?.unreachable?.b === 2 ? true : undefined), 3000);
      assert.equal(maxInFlight, 1);
    } finally {
      registrar.stop();
    }
  });
});
