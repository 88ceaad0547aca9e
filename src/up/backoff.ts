/**
 * When to restart a process that exited, as systemd's Restart= with a growing RestartSec: the first restart at
 * once (a killed proxy is back before clients notice much), then 100 ms doubling up to 30 s while it keeps
 * exiting, and at once again after it has run stably for a while. Pure: the caller passes the clock.
 */
export interface BackoffOptions {
  /** The delay before the second restart in a row; doubled for each further one. */
  initialMs: number;
  maxMs: number;
  /** A process that ran this long before it exited was stable: its next restart is immediate again. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 30_000, stableMs: 10_000 };

export class RestartBackoff {
  /** Restarts in a row without a stable run between them. */
  private streak = 0;

  constructor(private readonly options: BackoffOptions = DEFAULT_BACKOFF) {}

  /**
   * Called when the process exited unexpectedly at `now`, having been started at `startedAt` (null: unknown, e.g.
   * found running). Returns the delay before the restart and how many restarts in a row this one is (1 = first).
   */
  onExit(now: number, startedAt: number | null): { delayMs: number; streak: number } {
    if (startedAt === null || now - startedAt >= this.options.stableMs) this.streak = 0;
    this.streak += 1;
    const delayMs = this.streak === 1 ? 0 : Math.min(this.options.maxMs, this.options.initialMs * 2 ** (this.streak - 2));
    return { delayMs, streak: this.streak };
  }
}
