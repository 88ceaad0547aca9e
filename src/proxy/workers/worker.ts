/**
 * One worker thread of a proxy with `workers: N` (N > 1): a ProxyServer without a listener of its own, serving
 * the client connections the main thread (group.ts) hands it, with its own event loop, native I/O instance,
 * server connections and pools. Pool limits are counted with the other workers (shared-counters.ts): a pool
 * short of room while another worker holds idle connections asks, through the main thread, for them to close.
 */
import { Socket } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import type { ProxyConfig } from '../../config/proxy.js';
import { describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { type ConsolePeers, type ReloadResult, attachAdminConsole } from '../admin/console.js';
import type { ShowRow } from '../admin/merge.js';
import { PgProtocolError } from '../protocol/errors.js';
import { createProxyMetricsRegistry } from '../metrics.js';
import { ProxyServer } from '../server.js';
import { type TopologySnapshot, TopologyMirror } from '../etcd-topology.js';
import { StaticTopology, type Endpoint } from '../topology.js';
import { type InternRequest, SharedCounters } from './shared-counters.js';
import type { AdminAnswer, AdminRequest, ToMain, ToWorker } from './messages.js';

export interface WorkerData {
  index: number;
  config: ProxyConfig;
  /** The file RELOAD on the console re-reads; absent when started without one. */
  configPath?: string;
  /** Static mode: the fixed primary and replicas. */
  primary: Endpoint | null;
  replicas: Endpoint[];
  /** etcd mode: the main thread's topology when the worker started (then 'topology' messages). */
  topology: { snapshot: TopologySnapshot; drain: number } | null;
  counters: SharedArrayBuffer;
  address: { host: string; port: number };
  roAddress: { host: string; port: number } | null;
  logLevel: string;
}

const data = workerData as WorkerData;
const port = parentPort!;
const send = (message: ToMain): void => port.postMessage(message);
const log = createLogger(data.logLevel, { component: 'proxy', worker: data.index });
const counters = new SharedCounters(data.counters, data.index, data.config.workerThreads, (request: InternRequest) => send(request));

const mirror = data.topology === null ? null : new TopologyMirror(data.topology.snapshot);
const topology = mirror ?? new StaticTopology(data.primary, data.replicas);
const proxy = new ProxyServer({
  config: data.config,
  topology,
  logger: log,
  worker: {
    counters,
    address: data.address,
    roAddress: data.roAddress,
    budget(name) {
      const budget = counters.budget(name);
      budget.onGiven = () => {
        if (budget.othersLacking) send({ type: 'wake', name });
      };
      budget.onAsk = () => send({ type: 'shed', name });
      return budget;
    },
    cancelElsewhere: (pid, secretKey) => send({ type: 'cancel', pid, secretKey }),
  },
});

/**
 * A switchover drain (etcd mode): while the topology holds new rw transactions, this worker reports every 5 ms how
 * many of its own are still running; the main thread acknowledges the drain once every worker reports 0 for it.
 */
const DRAIN_REPORT_MS = 5;
let drainNumber = 0;
let drainTimer: NodeJS.Timeout | null = null;
function followDrain(): void {
  if (mirror === null) return;
  if (drainNumber !== 0 && mirror.holdsWrites()) {
    // Reported after the pools took the snapshot (apply() emits 'change' synchronously): new transactions are held.
    counters.reportDrain(drainNumber, proxy.rwTransactionsInFlight());
    drainTimer ??= setInterval(followDrain, DRAIN_REPORT_MS);
  } else if (drainTimer !== null) {
    clearInterval(drainTimer);
    drainTimer = null;
  }
}

/** Admin requests of this worker's console sessions waiting for the other workers' answers. */
const asked = new Map<number, (answers: AdminAnswer[]) => void>();
let nextAsk = 0;

function askOthers(request: AdminRequest): Promise<AdminAnswer[]> {
  const id = nextAsk++;
  return new Promise((resolve) => {
    asked.set(id, resolve);
    send({ type: 'admin', id, request });
  });
}

/** RELOADs of this worker's console sessions waiting for the main thread. */
const reloads = new Map<number, { resolve: (result: ReloadResult) => void; reject: (e: PgProtocolError) => void }>();
let nextReload = 0;

function firstError(answers: AdminAnswer[]): PgProtocolError | null {
  const failed = answers.find((a) => a.error !== undefined)?.error;
  return failed === undefined ? null : new PgProtocolError(failed.code, failed.message, { severity: 'ERROR', ...(failed.hint === undefined ? {} : { hint: failed.hint }) });
}

const peers: ConsolePeers = {
  async show(subject) {
    const answers = await askOthers({ kind: 'show', subject });
    const error = firstError(answers);
    if (error !== null) throw error;
    return answers.map((a) => a.rows ?? []);
  },
  async control(verb, database) {
    const error = firstError(await askOthers({ kind: 'control', verb, database }));
    if (error !== null) throw error;
  },
  // The main thread reloads for every thread (SIGHUP's path); its 'config' reaches this worker before the answer.
  reload() {
    const id = nextReload++;
    return new Promise((resolve, reject) => {
      reloads.set(id, { resolve, reject });
      send({ type: 'reload', id });
    });
  },
};

// The console of this worker: a session on it sees and commands every worker (peers); SHUTDOWN stops the proxy.
const adminConsole = attachAdminConsole(proxy, { config: data.config, topology, configPath: data.configPath, logger: log, peers, onShutdown: () => send({ type: 'shutdown' }) });
/** With metrics_listen, this worker's share of /metrics (the main thread serves the sum). */
const metrics = data.config.metrics_listen === undefined ? null : createProxyMetricsRegistry({ console: adminConsole, topology, proxy });

/** Another worker's console session asks this one: the answer covers this worker only. */
async function answerAdmin(request: AdminRequest): Promise<AdminAnswer> {
  try {
    if (request.kind === 'show') return { rows: adminConsole.show(request.subject) as ShowRow[] };
    await adminConsole.control(request.verb, request.database);
    return {};
  } catch (e) {
    const error = e instanceof PgProtocolError ? e : new PgProtocolError('XX000', describeError(e));
    return { error: { code: error.sqlstate, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }) } };
  }
}

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'accept': {
      let socket: Socket;
      try {
        socket = new Socket({ fd: message.fd, readable: true, writable: true });
      } catch (e) {
        log.warn({ err: describeError(e) }, 'could not take over a client connection from the main thread');
        counters.clientOpened();
        counters.clientClosed();
        return;
      }
      proxy.acceptSocket(socket, message.role, message.local === true);
      break;
    }
    case 'cancel':
      proxy.cancelHere(message.pid, message.secretKey);
      break;
    case 'shed':
      proxy.shedIdle(message.name);
      break;
    case 'wake':
      proxy.wake(message.name);
      break;
    case 'topology':
      mirror?.apply(message.snapshot, message.changed);
      drainNumber = message.drain;
      followDrain();
      break;
    case 'admin':
      void answerAdmin(message.request).then((answer) => send({ type: 'admin-answer', id: message.id, answer }));
      break;
    case 'admin-answers':
      asked.get(message.id)?.(message.answers);
      asked.delete(message.id);
      break;
    case 'reload-answer': {
      const waiting = reloads.get(message.id);
      reloads.delete(message.id);
      const failed = message.error;
      if (failed !== undefined) waiting?.reject(new PgProtocolError(failed.code, failed.message, { severity: 'ERROR', ...(failed.hint === undefined ? {} : { hint: failed.hint }) }));
      else waiting?.resolve(message.result ?? { applied: [], needRestart: [] });
      break;
    }
    case 'metrics':
      (metrics === null ? Promise.resolve([]) : metrics.getMetricsAsJSON()).then(
        (json) => send({ type: 'metrics', id: message.id, metrics: json }),
        (e: unknown) => {
          log.warn({ err: describeError(e) }, 'metrics of this worker failed');
          send({ type: 'metrics', id: message.id, metrics: [] });
        },
      );
      break;
    case 'config':
      try {
        proxy.applyConfig(message.config);
        adminConsole.configApplied(message.config);
      } catch (e) {
        log.error({ err: describeError(e) }, 'reload failed in this worker; it keeps its previous config');
      }
      break;
    case 'stop':
      if (drainTimer !== null) clearInterval(drainTimer);
      adminConsole.close();
      proxy.stop(message.graceMs).then(
        () => send({ type: 'stopped' }),
        (e: unknown) => {
          log.error({ err: describeError(e) }, 'worker stop failed');
          send({ type: 'stopped' });
        },
      );
      break;
  }
});

proxy.start().then(
  () => {
    drainNumber = data.topology?.drain ?? 0;
    followDrain();
    send({ type: 'ready' });
  },
  (e: unknown) => {
    throw e;
  },
);
