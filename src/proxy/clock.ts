/**
 * The proxy's clocks on the hot path (a few readings per transaction).
 *
 * `performance` comes from node:perf_hooks because the global of that name is a lazy getter, a call on every use;
 * and wall-clock times (server_lifetime, idle times) are the monotonic reading plus the process's time origin, which
 * costs less than Date.now() and does not jump with the system clock.
 */
import { performance } from 'node:perf_hooks';

const origin = performance.timeOrigin;

/** Milliseconds on the monotonic clock (performance.now()). */
export function now(): number {
  return performance.now();
}

/** Milliseconds since the epoch, as Date.now() gives them at the start of the process. */
export function wallNow(): number {
  return origin + performance.now();
}

/**
 * Time as a pool sees it: the wall-clock reading and its timers. Injected (ServerPoolOptions.clock) so that pool
 * timing, the reserve pool and idle timeouts are unit-tested with a fake clock; `realClock` is the default.
 */
export interface Clock {
  /** Milliseconds since the epoch (wallNow()). */
  wallNow(): number;
  /** Calls `fn` every `ms` without keeping the process alive; the returned function stops it. */
  every(ms: number, fn: () => void): () => void;
  /** Calls `fn` once after `ms`; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const realClock: Clock = {
  wallNow,
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};
