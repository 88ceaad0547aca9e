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
