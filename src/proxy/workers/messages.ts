/** What the main thread and the worker threads of a proxy with workers tell each other (group.ts, worker.ts). */
import type { ProxyConfig } from '../../config/proxy.js';
import type { ShowSubject } from '../admin/commands.js';
import type { ShowRow } from '../admin/merge.js';
import type { TopologySnapshot } from '../etcd-topology.js';
import type { InternRequest } from './shared-counters.js';

/** What an admin console session asks of the other workers' consoles. */
export type AdminRequest = { kind: 'show'; subject: ShowSubject } | { kind: 'control'; verb: string; database: string | null };

/** One worker's answer: SHOW's rows, or the error its console answered. */
export interface AdminAnswer {
  rows?: ShowRow[];
  error?: { code: string; message: string; hint?: string };
}

export type ToWorker =
  /**
   * A client connection accepted on the rw or ro listener: the worker opens `fd` as its own socket. `local`: it
   * came in on the Unix-domain socket (unix_socket_dir).
   */
  | { type: 'accept'; fd: number; role: 'rw' | 'ro'; local?: boolean }
  /** A cancel request another worker received for a client it does not have. */
  | { type: 'cancel'; pid: number; secretKey: number }
  /** Pool `name` (or a database under max_db_connections) starves in another worker: close one idle connection of it, if any. */
  | { type: 'shed'; name: string }
  /** Room in pool (or database) `name` was given back by another worker: waiting clients may get a connection now. */
  | { type: 'wake'; name: string }
  /**
   * etcd mode: the main thread's topology changed (`changed`), or was only loaded again: a worker's copy must know
   * the view is fresh, or it would count it stale after the lease TTL and stop routing. `drain` numbers the switchover drain pending in it (0: none);
   * a worker holding for it reports its rw transactions in flight under that number (SharedCounters.reportDrain).
   */
  | { type: 'topology'; snapshot: TopologySnapshot; drain: number; changed: boolean }
  /** RELOAD/SIGHUP: the config to run with (restart-only settings already kept at their running values). */
  | { type: 'config'; config: ProxyConfig }
  /** Another worker's console session asks this worker's console (answered under the same id). */
  | { type: 'admin'; id: number; request: AdminRequest }
  /** The answers of every other worker to this worker's admin request `id`. */
  | { type: 'admin-answers'; id: number; answers: AdminAnswer[] }
  /** A scrape of /metrics: the worker's registry as getMetricsAsJSON(), answered under the same id. */
  | { type: 'metrics'; id: number }
  /** The main thread's answer to this worker's 'reload' `id`: what applied, or the error (nothing changed). */
  | { type: 'reload-answer'; id: number; result?: { applied: string[]; needRestart: string[] }; error?: { code: string; message: string; hint?: string } }
  | { type: 'stop'; graceMs: number };

export type ToMain =
  | { type: 'ready' }
  | InternRequest
  | { type: 'cancel'; pid: number; secretKey: number }
  | { type: 'shed'; name: string }
  | { type: 'wake'; name: string }
  | { type: 'metrics'; id: number; metrics: object[] }
  /** This worker's console session asks every other worker's console; `id` is the asking worker's own. */
  | { type: 'admin'; id: number; request: AdminRequest }
  /** This worker's answer to an 'admin' request relayed to it under `id`. */
  | { type: 'admin-answer'; id: number; answer: AdminAnswer }
  /** RELOAD on this worker's console: the main thread reloads as for SIGHUP and answers 'reload-answer' `id`. */
  | { type: 'reload'; id: number }
  /** SHUTDOWN on a console: the whole proxy stops. */
  | { type: 'shutdown' }
  | { type: 'stopped' };
