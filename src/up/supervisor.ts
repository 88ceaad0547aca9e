/**
 * Keeps the processes of a local cluster running, as systemd would on a host: each component (etcd, an agent,
 * the proxy) whose process is gone is started again, with RestartBackoff's delays, and every exit and restart is
 * logged. A process is watched by its recorded PID (polled), so it does not matter whether this process started
 * it: `pgwarden up --detach` starts the cluster and leaves, its `pgwarden supervise` daemon watches what is left.
 *
 * A deliberate stop (Ctrl-C, `pgwarden down`) calls stop() first, and nothing is restarted after that.
 */
import { describeError } from '../errors.js';
import { DEFAULT_BACKOFF, RestartBackoff, type BackoffOptions } from './backoff.js';

export interface SupervisedComponent {
  /** "etcd", "agent pg1", "the proxy". */
  name: string;
  /** Where the component writes its own log (named in crash-loop lines). */
  logFile: string;
  /** The running process's PID, or null when it is gone. */
  pid(): number | null;
  /** Starts it and resolves once it serves (throws when it exits during its start). */
  start(): Promise<void>;
}

export interface SupervisorOptions {
  pollMs?: number;
  backoff?: BackoffOptions;
  /** From this many restarts in a row each restart line says it is a crash loop. */
  crashLoopStreak?: number;
}

const DEFAULT_POLL_MS = 50;
const DEFAULT_CRASH_LOOP_STREAK = 5;

interface Watched {
  component: SupervisedComponent;
  backoff: RestartBackoff;
  /** The PID seen running, and since when (ms, this process's clock; null when found running). */
  pid: number | null;
  startedAt: number | null;
  /** A restart (its delay or its start) is under way. */
  busy: boolean;
}

export class Supervisor {
  private readonly watched: Watched[];
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  private readonly restarts = new Set<Promise<void>>();
  private readonly wakeups = new Set<() => void>();
  private readonly pollMs: number;
  private readonly crashLoopStreak: number;

  constructor(
    components: SupervisedComponent[],
    private readonly log: (line: string) => void,
    options: SupervisorOptions = {},
  ) {
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.crashLoopStreak = options.crashLoopStreak ?? DEFAULT_CRASH_LOOP_STREAK;
    this.watched = components.map((component) => ({
      component,
      backoff: new RestartBackoff(options.backoff ?? DEFAULT_BACKOFF),
      pid: null,
      startedAt: null,
      busy: false,
    }));
  }

  start(): void {
    if (this.timer !== null || this.stopping) return;
    for (const w of this.watched) w.pid = w.component.pid();
    this.timer = setInterval(() => this.poll(), this.pollMs);
    this.poll();
  }

  /** Nothing is restarted from now on; resolves once a restart under way has finished (or failed). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const wake of this.wakeups) wake();
    await Promise.allSettled([...this.restarts]);
  }

  private poll(): void {
    if (this.stopping) return;
    for (const w of this.watched) {
      if (w.busy) continue;
      const pid = w.component.pid();
      if (pid !== null) {
        if (pid !== w.pid) {
          // Started by someone else (`pgwarden up` again): watched from now on.
          w.pid = pid;
          w.startedAt = Date.now();
        }
        continue;
      }
      const restart = this.restart(w);
      this.restarts.add(restart);
      void restart.finally(() => this.restarts.delete(restart));
    }
  }

  private async restart(w: Watched): Promise<void> {
    w.busy = true;
    try {
      const name = w.component.name;
      const now = Date.now();
      const { delayMs, streak } = w.backoff.onExit(now, w.startedAt);
      const ran = w.startedAt === null ? '' : `, after running ${((now - w.startedAt) / 1000).toFixed(1)} s`;
      const was = w.pid === null ? 'is not running' : `(PID ${w.pid}) exited${ran}`;
      const when = delayMs === 0 ? 'now' : `in ${formatDelay(delayMs)}`;
      const loop = streak >= this.crashLoopStreak ? `; crash loop: restart ${streak} in a row, see ${w.component.logFile}` : '';
      this.log(`supervisor: ${name} ${was}: restarting it ${when}${loop}`);
      w.pid = null;
      if (delayMs > 0) await this.delay(delayMs);
      if (this.stopping) return;
      const startedAt = Date.now();
      w.startedAt = startedAt;
      try {
        await w.component.start();
      } catch (e) {
        // Counted like an exit: the next attempt waits longer.
        this.log(`supervisor: ${name} did not start again: ${describeError(e)}`);
        return;
      }
      w.pid = w.component.pid();
      this.log(`supervisor: ${name} is running again (PID ${w.pid ?? '?'}, started in ${((Date.now() - startedAt) / 1000).toFixed(1)} s)`);
    } finally {
      w.busy = false;
    }
  }

  /** Sleeps `ms`, or less when stop() is called meanwhile. */
  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakeups.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeups.add(done);
    });
  }
}

function formatDelay(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
