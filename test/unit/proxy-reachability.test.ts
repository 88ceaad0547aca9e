/**
 * MemberReachability against real loopback sockets: a listening net.Server (reachable) and a port nothing
 * listens on (connects refused).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemberReachability, type ProbedMember } from '../../src/proxy/reachability.js';

const HOST = '127.0.0.1';
const INTERVAL_MS = 50;

interface Listener {
  server: Server;
  port: number;
  connections: number;
  bytesReceived: number;
}

const servers: Server[] = [];

async function listen(port = 0): Promise<Listener> {
  const listener: Listener = { server: createServer(), port: 0, connections: 0, bytesReceived: 0 };
  listener.server.on('connection', (socket) => {
    listener.connections += 1;
    socket.on('data', (chunk: Buffer) => (listener.bytesReceived += chunk.length));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    listener.server.once('error', reject);
    listener.server.listen(port, HOST, () => resolve());
  });
  servers.push(listener.server);
  const address = listener.server.address();
  assert.ok(address !== null && typeof address === 'object');
  listener.port = address.port;
  return listener;
}

async function close(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port that refuses connections: bound once to get it from the kernel, then released. */
async function refusedPort(): Promise<number> {
  const l = await listen();
  await close(l.server);
  return l.port;
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

after(async () => {
  await Promise.all(servers.filter((s) => s.listening).map(close));
});

describe('MemberReachability', () => {
  it('marks a refused member unreachable after two failures, dated at the first, and reachable again after one success', async () => {
    const up = await listen();
    const downPort = await refusedPort();
    let members: ProbedMember[] = [
      { name: 'a', host: HOST, port: up.port },
      { name: 'b', host: HOST, port: downPort },
    ];
    const reach = new MemberReachability(() => members, { intervalMs: INTERVAL_MS, timeoutMs: 200 });
    const changes: Array<{ at: number; unreachable: Record<string, number> }> = [];
    reach.on('change', () => changes.push({ at: Date.now(), unreachable: reach.unreachable() }));
    const startedAt = Date.now();
    reach.start();
    try {
      // The first probe of b (refused at once on loopback) has failed; the second is at least INTERVAL_MS away.
      await sleep(INTERVAL_MS / 2);
      assert.deepEqual(reach.unreachable(), {}, 'one failure is not enough');

      const first = await waitFor('b unreachable', () => changes[0]);
      assert.deepEqual(Object.keys(first.unreachable), ['b']);
      const since = first.unreachable.b;
      assert.ok(since >= startedAt && since <= startedAt + 150, `since ${since - startedAt} ms after start: the first failure came with start()`);
      // The second probe starts one interval after start() (a timer never fires early; 2 ms for rounding).
      assert.ok(first.at - startedAt >= INTERVAL_MS - 2, `marked ${first.at - startedAt} ms after start: it took a second probe`);

      // Further failures keep the since-time and announce nothing.
      await sleep(INTERVAL_MS * 3);
      assert.deepEqual(reach.unreachable(), { b: since });
      assert.equal(changes.length, 1);
      const returned = reach.unreachable();
      returned.x = 1;
      assert.deepEqual(reach.unreachable(), { b: since }, 'unreachable() returns a fresh object');

      // The listening member was probed all along, never sent a byte, never marked.
      assert.ok(up.connections >= 4, `${up.connections} probes of a`);
      assert.equal(up.bytesReceived, 0, 'a probe sends nothing');
      assert.ok(changes.every((c) => !('a' in c.unreachable)));

      // b's PostgreSQL comes back on the same port: one successful probe is enough.
      const back = await listen(downPort);
      const recovered = await waitFor('b reachable again', () => changes[1]);
      assert.deepEqual(recovered.unreachable, {});
      assert.deepEqual(reach.unreachable(), {});
      assert.ok(back.connections >= 1);

      // A member that fails and then leaves the list is forgotten (a change), and starts over if it returns.
      const gonePort = await refusedPort();
      members = [...members, { name: 'c', host: HOST, port: gonePort }];
      const cDown = await waitFor('c unreachable', () => changes[2]);
      assert.deepEqual(Object.keys(cDown.unreachable), ['c']);
      members = members.filter((m) => m.name !== 'c');
      const forgotten = await waitFor('c forgotten', () => changes[3]);
      assert.deepEqual(forgotten.unreachable, {});
      const removedAt = Date.now();
      members = [...members, { name: 'c', host: HOST, port: gonePort }];
      const cAgain = await waitFor('c unreachable again', () => changes[4]);
      assert.ok(cAgain.unreachable.c >= removedAt, 'the since-time of a returning member is new');
    } finally {
      reach.stop();
    }
    const changesAtStop = changes.length;
    await sleep(INTERVAL_MS * 3);
    assert.equal(changes.length, changesAtStop, 'nothing is probed after stop()');
  });

  it('a member that moves to another address starts over', async () => {
    const up = await listen();
    const downPort = await refusedPort();
    let members: ProbedMember[] = [{ name: 'a', host: HOST, port: downPort }];
    const reach = new MemberReachability(() => members, { intervalMs: INTERVAL_MS, timeoutMs: 200 });
    let changes = 0;
    reach.on('change', () => changes++);
    reach.start();
    try {
      await waitFor('a unreachable', () => (changes === 1 ? true : undefined));
      members = [{ name: 'a', host: HOST, port: up.port }];
      await waitFor('a at its new address', () => (changes === 2 ? true : undefined));
      assert.deepEqual(reach.unreachable(), {});
    } finally {
      reach.stop();
    }
  });

  it('counts the configured number of failures', async () => {
    const downPort = await refusedPort();
    const reach = new MemberReachability(() => [{ name: 'a', host: HOST, port: downPort }], {
      intervalMs: INTERVAL_MS,
      timeoutMs: 200,
      failuresBeforeUnreachable: 4,
    });
    let markedAt = 0;
    reach.on('change', () => (markedAt = Date.now()));
    const startedAt = Date.now();
    reach.start();
    try {
      await waitFor('a unreachable', () => reach.unreachable().a);
      assert.ok(markedAt - startedAt >= INTERVAL_MS * 3 - 2, `marked ${markedAt - startedAt} ms after start: it took the 4th probe`);
    } finally {
      reach.stop();
    }
  });

  it('a connect that hangs times out as a failure, dated when observed, with one probe in flight at a time', async () => {
    // A listener that never accepts, its backlog filled by one connection: further SYNs are dropped, as behind a
    // partition. Node accepts by itself, so the listener is a python process.
    const blackhole = spawn('/usr/bin/python3', [
      '-c',
      "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)",
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    let filler: Socket | null = null;
    try {
      const [line] = (await once(blackhole.stdout!, 'data')) as [Buffer];
      const port = Number(line.toString().trim());
      filler = connect({ host: HOST, port });
      filler.on('error', () => undefined);
      await once(filler, 'connect');
      const timeoutMs = 150;
      const reach = new MemberReachability(() => [{ name: 'a', host: HOST, port }], { intervalMs: INTERVAL_MS, timeoutMs });
      let markedAt = 0;
      reach.on('change', () => (markedAt = Date.now()));
      const startedAt = Date.now();
      reach.start();
      try {
        const since = await waitFor('a unreachable', () => reach.unreachable().a);
        assert.ok(since - startedAt >= timeoutMs - 2, `first failure dated ${since - startedAt} ms after start: when its timeout ran out`);
        // Probes every INTERVAL_MS in parallel would fail the second time at 150 + 50 ms; one at a time, at 300 ms.
        assert.ok(markedAt - startedAt >= 2 * timeoutMs - 2, `marked ${markedAt - startedAt} ms after start`);
        assert.ok(markedAt - startedAt < 2 * timeoutMs + 150, `marked ${markedAt - startedAt} ms after start: a skipped tick is made up at once`);
      } finally {
        reach.stop();
      }
    } finally {
      filler?.destroy();
      blackhole.kill('SIGKILL');
      if (blackhole.exitCode === null && blackhole.signalCode === null) await once(blackhole, 'exit');
    }
  });

  it('stop() destroys the probes in flight and leaves no handle behind', async () => {
    const up = await listen();
    const reach = new MemberReachability(() => [{ name: 'a', host: HOST, port: up.port }], { intervalMs: INTERVAL_MS, timeoutMs: 200 });
    reach.start();
    // start() has just opened the first connect; stop() must end it and the interval timer.
    reach.stop();
    await Promise.all(servers.filter((s) => s.listening).map(close));
    await sleep(20);
    const left = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap' || r === 'Timeout');
    assert.deepEqual(left, []);
    assert.deepEqual(reach.unreachable(), {});
  });
});
