/** What the main thread and the worker threads of a proxy with workers tell each other (group.ts, worker.ts). */
import type { ProxyConfig } from '../../config/proxy.js';
import type { InternRequest } from './shared-counters.js';

export type ToWorker =
  /** A client connection accepted on the rw or ro listener: the worker opens `fd` as its own socket. */
  | { type: 'accept'; fd: number; role: 'rw' | 'ro' }
  /** A cancel request another worker received for a client it does not have. */
  | { type: 'cancel'; pid: number; secretKey: number }
  /** Pool `name` starves in another worker: close one idle connection of it, if any. */
  | { type: 'shed'; name: string }
  /** Room in pool `name` was given back by another worker: waiting clients may get a connection now. */
  | { type: 'wake'; name: string }
  /** RELOAD/SIGHUP: the config to run with (restart-only settings already kept at their running values). */
  | { type: 'config'; config: ProxyConfig }
  /** A scrape of /metrics: the worker's registry as getMetricsAsJSON(), answered under the same id. */
  | { type: 'metrics'; id: number }
  | { type: 'stop'; graceMs: number };

export type ToMain =
  | { type: 'ready' }
  | InternRequest
  | { type: 'cancel'; pid: number; secretKey: number }
  | { type: 'shed'; name: string }
  | { type: 'wake'; name: string }
  | { type: 'metrics'; id: number; metrics: object[] }
  | { type: 'stopped' };
