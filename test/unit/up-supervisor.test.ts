/**
 * The local cluster's supervisor as pure logic: RestartBackoff's delays, and Supervisor against fake components
 * (a PID that goes away, a start that fails) with a fast poll. The real processes are in up.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RestartBackoff } from '../../src/up/backoff.js';
import { Supervisor, type SupervisedComponent } from '../../src/up/supervisor.js';
import { waitUntil } from '../../src/processes.js';

describe('RestartBackoff', () => {
  it('restarts at once, then waits 100 ms doubling up to 30 s while the process keeps exiting', () => {
    const b = new RestartBackoff();
    let now = 1_000_000;
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      const { delayMs } = b.onExit(now, now - 50);
      delays.push(delayMs);
      now += delayMs + 50;
    }
    assert.deepEqual(delays, [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
  });

  it('restarts at once again after a stable run, and counts the streak', () => {
    const b = new RestartBackoff({ initialMs: 100, maxMs: 30_000, stableMs: 10_000 });
    assert.deepEqual(b.onExit(0, 0), { delayMs: 0, streak: 1 });
    assert.deepEqual(b.onExit(500, 100), { delayMs: 100, streak: 2 });
    assert.deepEqual(b.onExit(20_000, 600), { delayMs: 0, streak: 1 });
    assert.deepEqual(b.onExit(20_100, null), { delayMs: 0, streak: 1 }, 'found running: its age is unknown, taken as stable');
  });
});

/** A component whose "process" is a PID in a variable. */
function fake(name: string, options: { failStarts?: number } = {}) {
  let pid: number | null = 100;
  let next = 101;
  let failures = options.failStarts ?? 0;
  const component: SupervisedComponent & { kill(): void; starts: number } = {
    name,
    logFile: `/tmp/${name}.log`,
    starts: 0,
    pid: () => pid,
    async start() {
      component.starts += 1;
      if (failures > 0) {
        failures -= 1;
        throw new Error('exited during its start');
      }
      pid = next++;
    },
    kill() {
      pid = null;
    },
  };
  return component;
}

describe('Supervisor', () => {
  it('starts a component again when its process is gone, logging the exit and the restart', async () => {
    const proxy = fake('the proxy');
    const lines: string[] = [];
    const s = new Supervisor([proxy], (l) => lines.push(l), { pollMs: 5 });
    s.start();
    proxy.kill();
    assert.ok(await waitUntil(() => proxy.pid() !== null, 2000, 5));
    await s.stop();
    assert.equal(proxy.starts, 1);
    assert.match(lines[0]!, /^supervisor: the proxy \(PID 100\) exited: restarting it now$/);
    assert.match(lines[1]!, /^supervisor: the proxy is running again \(PID 101, started in [\d.]+ s\)$/);
  });

  it('backs off while starts fail, logs each failure and calls a long streak a crash loop', async () => {
    const etcd = fake('etcd', { failStarts: 3 });
    const lines: string[] = [];
    const s = new Supervisor([etcd], (l) => lines.push(l), { pollMs: 5, backoff: { initialMs: 10, maxMs: 40, stableMs: 10_000 }, crashLoopStreak: 3 });
    s.start();
    etcd.kill();
    assert.ok(await waitUntil(() => etcd.pid() !== null, 3000, 5));
    await s.stop();
    assert.equal(etcd.starts, 4);
    const restarts = lines.filter((l) => l.includes('restarting it'));
    assert.deepEqual(
      restarts.map((l) => /restarting it (now|in \d+ ms)/.exec(l)![1]),
      ['now', 'in 10 ms', 'in 20 ms', 'in 40 ms'],
    );
    assert.equal(lines.filter((l) => l.includes('did not start again: exited during its start')).length, 3);
    assert.match(restarts[2]!, /crash loop: restart 3 in a row, see \/tmp\/etcd\.log/);
  });

  it('restarts nothing once stopped (a deliberate stop is not a failure)', async () => {
    const agent = fake('agent pg1');
    const s = new Supervisor([agent], () => undefined, { pollMs: 5 });
    s.start();
    await s.stop();
    agent.kill();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(agent.starts, 0);
    assert.equal(agent.pid(), null);
  });
});
