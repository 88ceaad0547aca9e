/**
 * What the proxy's worker threads count together, in one SharedArrayBuffer: client connections open (for
 * max_client_conn) and, per pool, server connections open or opening and whether the pool starves in some
 * worker. Limits such as default_pool_size then hold for the whole proxy, as they do for one PgBouncer, not per
 * thread. Counts change with Atomics; nothing here waits except intern(), once per pool name.
 *
 * Pool names map to slots through the main thread (PoolSlots), which alone hands them out: a worker asks once per
 * name and blocks until the answer is written (microseconds: the main thread does nothing else of note).
 */
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import type { ConnectionBudget } from '../pool/server-pool.js';

/** Pools (database, user, port kind) the proxy can count; more get an error at login. */
export const MAX_POOL_SLOTS = 4096;
export const MAX_WORKERS = 64;

const CLIENTS = 0;
/** Per worker: the client connections it was given and has not closed (the main thread balances on it). */
const WORKER_CLIENTS = 16;
/** Per worker: [the switchover drain it holds for (a generation number), its rw transactions in flight then]. */
const WORKER_DRAIN = WORKER_CLIENTS + MAX_WORKERS;
/** Per slot: [connections, workers lacking room, workers lacking room below their share]. */
const SLOT_BASE = WORKER_DRAIN + MAX_WORKERS * 2;
const SLOT_INTS = 3;
const LACKING = 1;
const STARVING = 2;
/**
 * A worker whose clients keep waiting asks the others for room at most this often per pool: under load, clients
 * start and stop waiting many times a millisecond, and only connections idle for 100 ms are closed for it anyway.
 */
const ASK_EVERY_MS = 50;
const ANSWERS = SLOT_BASE + MAX_POOL_SLOTS * SLOT_INTS;
const NO_ANSWER = -1;
const NO_ROOM = -2;
const INTERN_TIMEOUT_MS = 5000;

export function sharedCounterBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer((ANSWERS + MAX_WORKERS) * 4);
}

/** A worker's question to the main thread: the slot of `name`, written to the worker's answer cell. */
export interface InternRequest {
  type: 'intern';
  name: string;
}

/** The main thread's side: the one place slots are handed out. */
export class PoolSlots {
  private readonly slots = new Map<string, number>();
  private readonly ints: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.ints = new Int32Array(buffer);
  }

  /** Answers worker `worker`'s InternRequest. */
  answer(worker: number, name: string): void {
    let slot = this.slots.get(name);
    if (slot === undefined && this.slots.size < MAX_POOL_SLOTS) {
      slot = this.slots.size;
      this.slots.set(name, slot);
    }
    Atomics.store(this.ints, ANSWERS + worker, slot ?? NO_ROOM);
    Atomics.notify(this.ints, ANSWERS + worker);
  }

  /** Server connections of the pool `name` over every worker (0 for a name no worker asked about). */
  connections(name: string): number {
    const slot = this.slots.get(name);
    return slot === undefined ? 0 : Atomics.load(this.ints, SLOT_BASE + slot * SLOT_INTS);
  }

  get clients(): number {
    return Atomics.load(this.ints, CLIENTS);
  }

  /** The worker with the fewest clients among the first `workers`, now counted as having one more. */
  assignClient(workers: number): number {
    let best = 0;
    for (let w = 1; w < workers; w++) {
      if (Atomics.load(this.ints, WORKER_CLIENTS + w) < Atomics.load(this.ints, WORKER_CLIENTS + best)) best = w;
    }
    Atomics.add(this.ints, WORKER_CLIENTS + best, 1);
    return best;
  }

  clientsOf(worker: number): number {
    return Atomics.load(this.ints, WORKER_CLIENTS + worker);
  }

  /**
   * rw transactions in flight over the first `workers`, for the drain numbered `generation`: unknown (Infinity)
   * until every worker has reported that it holds new transactions for this drain.
   */
  drainInFlight(workers: number, generation: number): number {
    let n = 0;
    for (let w = 0; w < workers; w++) {
      const at = WORKER_DRAIN + w * 2;
      // The generation first: a worker writes its count for a drain before the drain's number, so once the number
      // is seen the count read after it is that drain's or a later one, never the count of an earlier drain.
      if (Atomics.load(this.ints, at) !== generation) return Infinity;
      n += Atomics.load(this.ints, at + 1);
    }
    return n;
  }
}

/** A worker's side. */
export class SharedCounters {
  private readonly ints: Int32Array;
  private readonly known = new Map<string, number>();

  constructor(
    buffer: SharedArrayBuffer,
    private readonly worker: number,
    private readonly workers: number,
    private readonly ask: (request: InternRequest) => void,
  ) {
    this.ints = new Int32Array(buffer);
  }

  clientOpened(): number {
    return Atomics.add(this.ints, CLIENTS, 1) + 1;
  }

  /** A client connection of this worker closed (or the one assigned to it could not be opened). */
  clientClosed(): void {
    Atomics.sub(this.ints, CLIENTS, 1);
    Atomics.sub(this.ints, WORKER_CLIENTS + this.worker, 1);
  }

  /** This worker holds new rw transactions for drain `generation` and has `inFlight` still running. */
  reportDrain(generation: number, inFlight: number): void {
    const at = WORKER_DRAIN + this.worker * 2;
    Atomics.store(this.ints, at + 1, inFlight);
    Atomics.store(this.ints, at, generation);
  }

  /** Client connections open over every worker. */
  get clients(): number {
    return Atomics.load(this.ints, CLIENTS);
  }

  /** The pool `name`'s share of the counts; throws 53300 when the proxy counts too many pools already. */
  budget(name: string): SlotBudget {
    return new SlotBudget(this.ints, SLOT_BASE + this.slotOf(name) * SLOT_INTS, this.workers);
  }

  private slotOf(name: string): number {
    const known = this.known.get(name);
    if (known !== undefined) return known;
    const cell = ANSWERS + this.worker;
    Atomics.store(this.ints, cell, NO_ANSWER);
    this.ask({ type: 'intern', name });
    if (Atomics.wait(this.ints, cell, NO_ANSWER, INTERN_TIMEOUT_MS) === 'timed-out') {
      throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `the proxy's main thread did not answer for pool "${name}"`);
    }
    const slot = Atomics.load(this.ints, cell);
    if (slot === NO_ROOM) throw new PgProtocolError('53300', `too many pools: the proxy counts at most ${MAX_POOL_SLOTS} (database, user) pairs`);
    this.known.set(name, slot);
    return slot;
  }
}

/** One pool's connections over all workers (a ConnectionBudget for ServerPool). */
export class SlotBudget implements ConnectionBudget {
  constructor(
    private readonly ints: Int32Array,
    private readonly at: number,
    readonly workers: number,
  ) {}

  tryTake(limit: number): boolean {
    for (;;) {
      const n = Atomics.load(this.ints, this.at);
      if (n >= limit) return false;
      if (Atomics.compareExchange(this.ints, this.at, n, n + 1) === n) return true;
    }
  }

  give(): void {
    Atomics.sub(this.ints, this.at, 1);
    this.onGiven?.();
  }

  get count(): number {
    return Atomics.load(this.ints, this.at);
  }

  /** Set by the worker: called after every unit given back (to wake the pool in workers lacking room). */
  onGiven: (() => void) | null = null;
  /** Set by the worker: asks the others to close an idle connection of this pool. */
  onAsk: (() => void) | null = null;
  private lackingHere = false;
  private starvingHere = false;
  private askedAt = -Infinity;

  lacking(belowShare: boolean): void {
    if (!this.lackingHere) {
      this.lackingHere = true;
      Atomics.add(this.ints, this.at + LACKING, 1);
    }
    if (belowShare !== this.starvingHere) {
      this.starvingHere = belowShare;
      Atomics.add(this.ints, this.at + STARVING, belowShare ? 1 : -1);
    }
    const now = performance.now();
    if (now - this.askedAt >= ASK_EVERY_MS) {
      this.askedAt = now;
      this.onAsk?.();
    }
  }

  satisfied(): void {
    if (this.lackingHere) Atomics.sub(this.ints, this.at + LACKING, 1);
    if (this.starvingHere) Atomics.sub(this.ints, this.at + STARVING, 1);
    this.lackingHere = this.starvingHere = false;
  }

  get othersLacking(): boolean {
    return Atomics.load(this.ints, this.at + LACKING) - (this.lackingHere ? 1 : 0) > 0;
  }

  get othersStarving(): boolean {
    return Atomics.load(this.ints, this.at + STARVING) - (this.starvingHere ? 1 : 0) > 0;
  }
}
