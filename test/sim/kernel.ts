/**
 * The simulated clock and scheduler. Time is a number of milliseconds that only moves when the next event is
 * taken from the queue; events at the same time run in the order they were scheduled.
 *
 * The agents are the production code (src/ha/agent.ts), written with async/await: their timers and I/O are
 * promises that simulated events settle. After an event that settled one, the run loop lets every continuation
 * run (a macrotask boundary drains Node's microtask queue) before it takes the next event, so an agent's code
 * runs "at" the simulated instant its I/O finished, and the order of everything stays a function of the seed:
 * nothing in a run reads the real clock or waits for real I/O.
 */

interface Entry {
  t: number;
  seq: number;
  fn: () => void;
}

export class Kernel {
  now = 0;
  private heap: Entry[] = [];
  private seq = 0;
  private pendingContinuations = false;

  at(t: number, fn: () => void): void {
    const e: Entry = { t: Math.max(t, this.now), seq: this.seq++, fn };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, e)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  after(ms: number, fn: () => void): void {
    this.at(this.now + ms, fn);
  }

  /** Says that the current event settled a promise: its continuations run before the next event. */
  settled(): void {
    this.pendingContinuations = true;
  }

  /** Runs events until the queue is empty, time would pass `until`, or `stop()` says so (checked after each event). */
  async run(until: number, stop?: () => boolean): Promise<void> {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (top.t > until) break;
      this.pop();
      this.now = top.t;
      top.fn();
      if (this.pendingContinuations) {
        this.pendingContinuations = false;
        await drainMicrotasks();
      }
      if (stop?.()) return;
    }
    this.now = Math.max(this.now, until);
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && less(h[r]!, h[l]!) ? r : l;
      if (less(last, h[c]!)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
  }
}

function less(a: Entry, b: Entry): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}

/** Node runs every queued microtask (and those they queue) before the next macrotask. */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * One simulated OS process (an agent incarnation): its timers fire and its pending I/O completes only while it
 * lives. kill() is kill -9: nothing it awaited ever settles, no clean-up runs.
 */
export class SimProcess {
  private dead = false;

  constructor(readonly kernel: Kernel) {}

  get alive(): boolean {
    return !this.dead;
  }

  kill(): void {
    this.dead = true;
  }

  /** Runs `fn` at simulated time `t` unless the process has died by then. */
  at(t: number, fn: () => void): void {
    this.kernel.at(t, () => {
      if (this.dead) return;
      fn();
      this.kernel.settled();
    });
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.at(this.kernel.now + Math.max(0, ms), resolve));
  }

  /** A callback-style operation of the simulated world as a promise of this process. */
  op(start: (done: (err?: Error) => void) => void): Promise<void> {
    return new Promise((resolve, reject) =>
      start((err) => {
        if (this.dead) return;
        this.kernel.settled();
        if (err) reject(err);
        else resolve();
      }),
    );
  }

  /** Calls into the process's code from outside (a signal, a watch event): its continuations run next. */
  enter(fn: () => void): void {
    if (this.dead) return;
    fn();
    this.kernel.settled();
  }
}
