/**
 * The lease deadman of src/ha/deadman.ts as a simulated process on one host. The agent's real LeaseDeadman arms it
 * through the DeadlineStore interface (the deadline file: a CLOCK_MONOTONIC instant, so the host's clock, not the
 * agent's); the process polls every DEADMAN_POLL_MS and applies the real deadmanPoll() rule: once an armed deadline
 * has passed it stops the postmaster (SIGINT, a fast shutdown; every process killed when the deadline passed long
 * ago) and removes the deadline; it exits after a while disarmed and is started again by the next arm.
 *
 * It is a separate process: an agent killed with kill -9 leaves it running (that is its purpose); a host crash
 * kills it with everything else.
 */
import { DEADMAN_POLL_MS, type DeadlineStore, deadmanPoll, type DeadmanState } from '../../src/ha/deadman.js';
import type { Kernel } from './kernel.js';
import type { SimPostgres } from './postgres.js';

export interface DeadmanHost {
  readonly kernel: Kernel;
  /** The CLOCK_MONOTONIC of host `name`, ms. */
  hostMonoOf(name: string): number;
  /** The fast shutdown SIGINT starts (walsenders ship the rest of the WAL); with `late` every process is killed. */
  deadmanStop(server: SimPostgres, late: boolean): boolean;
}

export class SimDeadman implements DeadlineStore {
  /** The deadline file: host-monotonic ms, null when absent. */
  private deadline: number | null = null;
  /** Bumped whenever the process dies, so that its pending poll does nothing. */
  private incarnation = 0;
  private processAlive = false;
  fired = 0;

  constructor(
    private readonly host: DeadmanHost,
    private readonly pg: SimPostgres,
  ) {}

  get armed(): boolean {
    return this.deadline !== null;
  }

  get running(): boolean {
    return this.processAlive;
  }

  // ---- DeadlineStore: the file the agent writes ----

  write(deadlineMonoMs: number): void {
    this.deadline = deadlineMonoMs;
  }

  remove(): void {
    this.deadline = null;
  }

  present(): boolean {
    return this.deadline !== null;
  }

  ensureRunning(): void {
    if (!this.processAlive) this.spawn();
  }

  /** The host went down: the process dies; the deadline file on disk no longer matters (the next arm rewrites it). */
  hostCrashed(): void {
    this.incarnation++;
    this.processAlive = false;
    this.deadline = null;
  }

  private spawn(): void {
    this.processAlive = true;
    const me = ++this.incarnation;
    const state: DeadmanState = { idleSinceMs: this.host.hostMonoOf(this.pg.name) };
    const k = this.host.kernel;
    const poll = (): void => {
      if (me !== this.incarnation) return;
      const step = deadmanPoll(state, this.host.hostMonoOf(this.pg.name), this.deadline);
      if (step.kind === 'exit') {
        this.processAlive = false;
        return;
      }
      if (step.kind === 'fire') {
        if (this.host.deadmanStop(this.pg, step.late)) this.fired++;
        this.deadline = null;
      }
      k.after(DEADMAN_POLL_MS, poll);
    };
    // The first poll follows process start-up.
    k.after(DEADMAN_POLL_MS, poll);
  }
}
