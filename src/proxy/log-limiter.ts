/**
 * Rate limits for log lines a client can cause (failed logins, protocol violations): a flood of bad logins must
 * not fill the disk. At most `perSecond` lines of one kind are written in each one-second window; the rest are
 * counted, and once the window is over one summary line says how many were suppressed.
 *
 * RateLimiter is the pure decision (times passed in); RateLimitedLog adds the timer that writes the summary when
 * the flood stops (no later line would carry it otherwise), through a clock interface so tests drive time.
 */

/** What RateLimitedLog needs of time: milliseconds now, and a one-shot timer. */
export interface LimiterClock {
  now(): number;
  /** Calls `fn` after `ms`; the returned function cancels it. Must not keep the process alive. */
  setTimer(ms: number, fn: () => void): () => void;
}

export const systemClock: LimiterClock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export const WINDOW_MS = 1000;

/** Fixed one-second windows: the first `perSecond` lines of a window pass, the others are counted. */
export class RateLimiter {
  private windowStart = -Infinity;
  private written = 0;
  private suppressed = 0;

  constructor(readonly perSecond: number) {
    if (!Number.isInteger(perSecond) || perSecond < 1) throw new RangeError(`perSecond must be a whole number ≥ 1, got ${perSecond}`);
  }

  /**
   * One line wants out at `now`: `write` says whether it may be written; `suppressedBefore` is the count of lines
   * an earlier window suppressed that no summary reported yet (the caller writes that summary first).
   */
  take(now: number): { write: boolean; suppressedBefore: number } {
    let suppressedBefore = 0;
    if (now - this.windowStart >= WINDOW_MS) {
      suppressedBefore = this.suppressed;
      this.windowStart = now;
      this.written = 0;
      this.suppressed = 0;
    }
    if (this.written < this.perSecond) {
      this.written++;
      return { write: true, suppressedBefore };
    }
    this.suppressed++;
    return { write: false, suppressedBefore };
  }

  /** The suppressed count to report at `now` if the window that suppressed them is over (then 0 until more). */
  flush(now: number): number {
    if (this.suppressed === 0 || now - this.windowStart < WINDOW_MS) return 0;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }

  /** Lines suppressed and not yet reported. */
  get pending(): number {
    return this.suppressed;
  }

  /** When the current window ends (for the summary timer). */
  get windowEnd(): number {
    return this.windowStart + WINDOW_MS;
  }
}

/**
 * One kind of rate-limited line: `line()` writes through `write` unless the limit is reached; suppressed lines
 * are reported by `summary(count)` when their window is over, at the next line or by a timer, whichever is first.
 */
export class RateLimitedLog {
  private readonly limiter: RateLimiter;
  private cancelTimer: (() => void) | null = null;

  constructor(
    perSecond: number,
    private readonly summary: (suppressed: number) => void,
    private readonly clock: LimiterClock = systemClock,
  ) {
    this.limiter = new RateLimiter(perSecond);
  }

  /** Writes the line (calls `write`) if the limit allows; returns whether it did. */
  line(write: () => void): boolean {
    const now = this.clock.now();
    const { write: allowed, suppressedBefore } = this.limiter.take(now);
    if (suppressedBefore > 0) this.summary(suppressedBefore);
    if (allowed) {
      write();
      return true;
    }
    this.schedule(now);
    return false;
  }

  /** A timer for the end of the window whose suppressed lines are not reported yet. */
  private schedule(now: number): void {
    if (this.cancelTimer !== null || this.limiter.pending === 0) return;
    this.cancelTimer = this.clock.setTimer(Math.max(0, this.limiter.windowEnd - now), () => {
      this.cancelTimer = null;
      const at = this.clock.now();
      const n = this.limiter.flush(at);
      if (n > 0) this.summary(n);
      // A later window may have suppressed lines meanwhile (a late timer): its own summary is due at its end.
      this.schedule(at);
    });
  }

  /** Reports what is still suppressed (shutdown) and stops the timer. */
  close(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
    const n = this.limiter.flush(Infinity);
    if (n > 0) this.summary(n);
  }
}
