/**
 * The simulated clock and scheduler. Time is a number of milliseconds that only moves when the next event is
 * taken from the queue; events at the same time run in the order they were scheduled, so a run is
 * deterministic. Concurrent activities (an agent's loop, its lease keeper, a PostgreSQL shutdown) are
 * generators that yield how long they sleep; effects happen synchronously between two yields.
 */

/** What a process yields: a sleep in ms, or an interruptible wait (the agent's loop_wait, cut short by a watch). */
export type Yield = number | { wait: number };
export type Proc<T = void> = Generator<Yield, T, void>;

interface Entry {
  t: number;
  seq: number;
  fn: () => void;
}

export class Kernel {
  now = 0;
  private heap: Entry[] = [];
  private seq = 0;

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

  /** Runs events until the queue is empty, time would pass `until`, or `stop()` says so (checked after each event). */
  run(until: number, stop?: () => boolean): void {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (top.t > until) break;
      this.pop();
      this.now = top.t;
      top.fn();
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

/**
 * A running generator. `kill()` abandons it where it stands (a crashed process runs no cleanup). A task may be
 * held back while `blockedUntil()` is in the future (a stalled disk or a stopped process).
 */
export class Task {
  private dead = false;
  private token = 0;
  /** Set while the task sits in an interruptible wait: the time it would wake by itself. */
  private waitingUntil: number | null = null;

  constructor(
    private readonly kernel: Kernel,
    private readonly gen: Proc,
    private readonly onError: (e: unknown) => void,
    private readonly blockedUntil: () => number = () => 0,
  ) {}

  start(delay = 0): this {
    this.schedule(this.kernel.now + delay);
    return this;
  }

  get alive(): boolean {
    return !this.dead;
  }

  kill(): void {
    this.dead = true;
    this.token++;
  }

  /** Ends an interruptible wait now (a watch event or an explicit wake-up). */
  wake(): void {
    if (this.dead || this.waitingUntil === null) return;
    this.waitingUntil = null;
    this.schedule(this.kernel.now);
  }

  private schedule(t: number): void {
    const token = ++this.token;
    this.kernel.at(t, () => {
      if (this.dead || token !== this.token) return;
      const blocked = this.blockedUntil();
      if (blocked > this.kernel.now) {
        this.schedule(blocked);
        return;
      }
      this.step();
    });
  }

  private step(): void {
    this.waitingUntil = null;
    let r: IteratorResult<Yield, void>;
    try {
      r = this.gen.next();
    } catch (e) {
      this.dead = true;
      this.onError(e);
      return;
    }
    if (r.done) {
      this.dead = true;
      return;
    }
    const y = r.value;
    if (typeof y === 'number') {
      this.schedule(this.kernel.now + Math.max(0, y));
    } else {
      this.waitingUntil = this.kernel.now + Math.max(0, y.wait);
      this.schedule(this.waitingUntil);
    }
  }
}
