/**
 * The lease deadman of src/ha/deadman.ts as a simulated process on one host. The agent arms it with the leader
 * lease's safety deadline (a CLOCK_MONOTONIC instant, so the host's clock, not the agent's) and disarms it when
 * it no longer holds the key. The process polls every 100 ms and SIGINTs the postmaster (a fast shutdown) once
 * an armed deadline has passed, then disarms; it exits after 3 s disarmed and is started again by the next arm.
 *
 * It is a separate process: an agent killed with kill -9 leaves it running (that is its purpose); a host crash
 * kills it with everything else.
 */
import type { Kernel } from './kernel.js';
import type { SimPostgres } from './postgres.js';

const POLL_MS = 100;
const IDLE_EXIT_MS = 3000;

export interface DeadmanHost {
  readonly kernel: Kernel;
  /** The CLOCK_MONOTONIC of host `name`, ms. */
  hostMonoOf(name: string): number;
  /** The fast shutdown SIGINT starts (walsenders ship the rest of the WAL). */
  sigint(server: SimPostgres): boolean;
  deadmanFired(server: SimPostgres): void;
}

export class SimDeadman {
  /** The deadline file: host-monotonic ms, null when absent. */
  private deadline: number | null = null;
  /** Bumped whenever the process dies, so that its pending poll does nothing. */
  private incarnation = 0;
  private processAlive = false;
  private idleSince = 0;
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

  /** LeaseDeadman.arm(): writes the deadline file, then makes sure the process runs. */
  arm(deadlineHostMono: number): void {
    this.deadline = deadlineHostMono;
    if (!this.processAlive) this.spawn();
  }

  /** LeaseDeadman.disarm(): removes the deadline file. */
  disarm(): void {
    this.deadline = null;
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
    this.idleSince = this.host.hostMonoOf(this.pg.name);
    const k = this.host.kernel;
    const poll = (): void => {
      if (me !== this.incarnation) return;
      const now = this.host.hostMonoOf(this.pg.name);
      if (this.deadline === null) {
        if (now - this.idleSince > IDLE_EXIT_MS) {
          this.processAlive = false;
          return;
        }
      } else {
        this.idleSince = now;
        if (now >= this.deadline) {
          if (this.host.sigint(this.pg)) {
            this.fired++;
            this.host.deadmanFired(this.pg);
          }
          this.deadline = null;
        }
      }
      k.after(POLL_MS, poll);
    };
    // The first poll follows process start-up.
    k.after(POLL_MS, poll);
  }
}
