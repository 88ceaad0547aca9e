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
import { AdminConsole } from '../admin/console.js';
import { createProxyMetricsRegistry } from '../metrics.js';
import { ProxyServer } from '../server.js';
import { StaticTopology, type Endpoint } from '../topology.js';
import { type InternRequest, SharedCounters, type SlotBudget } from './shared-counters.js';
import type { ToMain, ToWorker } from './messages.js';

export interface WorkerData {
  index: number;
  config: ProxyConfig;
  primary: Endpoint;
  replicas: Endpoint[];
  counters: SharedArrayBuffer;
  address: { host: string; port: number };
  roAddress: { host: string; port: number } | null;
  logLevel: string;
}

const data = workerData as WorkerData;
const port = parentPort!;
const send = (message: ToMain): void => port.postMessage(message);
const log = createLogger(data.logLevel, { component: 'proxy', worker: data.index });
const counters = new SharedCounters(data.counters, data.index, data.config.workers, (request: InternRequest) => send(request));
const budgets = new Map<string, SlotBudget>();

const topology = new StaticTopology(data.primary, data.replicas);
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
      budgets.set(name, budget);
      return budget;
    },
    cancelElsewhere: (pid, secretKey) => send({ type: 'cancel', pid, secretKey }),
  },
});

/*
 * With metrics_listen, this worker's share of /metrics (the main thread serves the sum). The console it reads from
 * is not attached to the proxy server: no client can log in to it (see the refusal in ProxyServer.poolFor).
 */
const metrics =
  data.config.metrics_listen === undefined ? null : createProxyMetricsRegistry({ console: new AdminConsole(proxy, { config: data.config, topology, logger: log }), topology, proxy });

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
      proxy.acceptSocket(socket, message.role);
      break;
    }
    case 'cancel':
      proxy.cancelHere(message.pid, message.secretKey);
      break;
    case 'shed':
      proxy.serverPools().get(message.name)?.shedIdle();
      break;
    case 'wake':
      proxy.serverPools().get(message.name)?.wake();
      break;
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
      } catch (e) {
        log.error({ err: describeError(e) }, 'reload failed in this worker; it keeps its previous config');
      }
      break;
    case 'stop':
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
  () => send({ type: 'ready' }),
  (e: unknown) => {
    throw e;
  },
);
