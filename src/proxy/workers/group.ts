/**
 * The main thread of a proxy with `workers: N` (N > 1). One event loop is one core: a single-threaded pooler
 * (PgBouncer, or this proxy with one worker) is where every statement of every client waits its turn, and on a
 * loaded machine it is preempted with all of them queued behind it. Here N threads serve clients, each with its
 * own event loop, native I/O, server connections and pools (worker.ts), and this thread only accepts: each
 * connection goes, as a duplicated descriptor, to the worker with the fewest clients. It also relays what the
 * workers tell each other (cancel requests, room in pools), hands out the slots of the shared counts that keep
 * pool limits and max_client_conn for the whole proxy, and fans out RELOAD (SIGHUP) and stop.
 */
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { type ProxyConfig, loadProxyConfig } from '../../config/proxy.js';
import { PgwardenError } from '../../errors.js';
import { logReload } from '../admin/console.js';
import { type ReloadPlan, planReload } from '../admin/reload.js';
import { SQLSTATE } from '../protocol/errors.js';
import * as m from '../protocol/messages.js';
import { ProxyMetricsServer, workerMetrics } from '../metrics.js';
import { listen } from '../server.js';
import { closeConnection } from '../closing.js';
import { loadClientTls } from '../tls.js';
import type { ViewTopology } from '../etcd-topology.js';
import type { Endpoint } from '../topology.js';
import { duplicateSocket, nativeIoStatus } from '../wire/native-wire.js';
import { closeUnix, listenUnix } from '../unix-listener.js';
import type { AdminAnswer, ToMain, ToWorker } from './messages.js';
import { PoolSlots, sharedCounterBuffer } from './shared-counters.js';
import type { WorkerData } from './worker.js';

export interface WorkerGroupOptions {
  config: ProxyConfig;
  /** The file RELOAD re-reads; absent when started without one (RELOAD then answers an error). */
  configPath?: string;
  /** Static mode: the fixed primary and replicas. */
  primary?: Endpoint;
  replicas?: Endpoint[];
  /** etcd mode: the topology the main thread follows; every change goes to the workers at once. */
  topology?: ViewTopology;
  logger: Logger;
  logLevel: string;
  /** SHUTDOWN on an admin console: what stops the proxy (default: stop()). */
  onShutdown?: () => void;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

export class WorkerGroup {
  private config: ProxyConfig;
  private readonly workers: Worker[] = [];
  private readonly listener: Server;
  private readonly roListener: Server | null;
  private readonly buffer = sharedCounterBuffer();
  private readonly slots = new PoolSlots(this.buffer);
  /**
   * unix_socket_dir's listener and its socket file once listening: its connections are handed to workers like
   * TCP ones (a Unix socket's descriptor duplicates and is adopted by native I/O the same way), marked local.
   */
  private readonly unixListener: Server | null;
  private unixPath: string | null = null;
  /** Connections accepted before every worker was ready (and whether on the Unix socket). */
  private readonly early: Array<[Socket, 'rw' | 'ro', boolean]> = [];
  private ready = false;
  private stopping = false;
  /** metrics_listen: /metrics as the sum of the workers' registries. */
  private metricsServer: ProxyMetricsServer | null = null;
  /** Questions put to workers (a scrape, a console's request): id → the answers so far and who waits for them all. */
  private readonly questions = new Map<number, { answers: unknown[]; expected: number; done: (answers: unknown[]) => void }>();
  private nextQuestion = 0;
  /** etcd mode: the number of the switchover drain pending now (0: none), and the id it was given for. */
  private drainNumber = 0;
  private drainId: string | null = null;
  private readonly onTopology = (): void => this.postTopology(true);
  private readonly onTopologyLoaded = (): void => this.postTopology(false);
  private readonly log: Logger;

  constructor(private readonly options: WorkerGroupOptions) {
    this.config = options.config;
    this.log = options.logger;
    const native = nativeIoStatus();
    if (!native.active) {
      throw new PgwardenError('CONFIG_INVALID', `workers: ${this.config.workerThreads} needs the native I/O module to hand connections to worker threads: ${native.why}; set workers: 1`);
    }
    // pauseOnConnect: not a byte is read here, so the worker gets the connection as the client opened it.
    this.listener = createServer({ pauseOnConnect: true }, (socket) => this.accept(socket, 'rw'));
    this.roListener = this.config.listen_ro === undefined ? null : createServer({ pauseOnConnect: true }, (socket) => this.accept(socket, 'ro'));
    this.unixListener = this.config.unixSocket === null ? null : createServer({ pauseOnConnect: true }, (socket) => this.accept(socket, 'rw', true));
  }

  /** The Unix-domain socket file listened on (unix_socket_dir), or null. */
  get unixSocketPath(): string | null {
    return this.unixPath;
  }

  get address(): { host: string; port: number } {
    const a = this.listener.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  get roAddress(): { host: string; port: number } | null {
    const a = this.roListener?.address() as AddressInfo | null | undefined;
    return a === null || a === undefined ? null : { host: a.address, port: a.port };
  }

  /** Listens, starts the workers, and serves once every one of them is ready. */
  async start(): Promise<void> {
    this.options.topology?.on('change', this.onTopology);
    this.options.topology?.on('loaded', this.onTopologyLoaded);
    await listen(this.listener, this.config.listen);
    if (this.roListener !== null && this.config.listen_ro !== undefined) await listen(this.roListener, this.config.listen_ro);
    if (this.unixListener !== null) {
      try {
        this.unixPath = await listenUnix(this.unixListener, this.config.unixSocket!, this.address.port, this.log);
      } catch (e) {
        this.listener.close();
        this.roListener?.close();
        throw e;
      }
    }
    for (const server of [this.listener, this.roListener, this.unixListener]) server?.on('error', (e) => this.log.error({ err: e.message }, 'proxy listener error'));
    try {
      await Promise.all(Array.from({ length: this.config.workerThreads }, (_, index) => this.startWorker(index)));
    } catch (e) {
      await this.stop(0);
      throw e;
    }
    this.ready = true;
    for (const [socket, role, local] of this.early.splice(0)) this.accept(socket, role, local);
    if (this.config.metrics_listen !== undefined) {
      this.metricsServer = new ProxyMetricsServer(workerMetrics(() => this.scrapeWorkers()));
      await this.metricsServer.start(this.config.metrics_listen);
      this.log.info({ metrics: `http://${this.config.metrics_listen.host}:${this.metricsServer.address.port}/metrics` }, 'metrics endpoint started');
    }
    this.log.info({ listen: this.address, listen_ro: this.roAddress, unix_socket: this.unixPath ?? undefined, pool_mode: this.config.pool_mode, workers: this.config.workerThreads }, 'proxy listening');
    if (this.config.auth_type === 'trust') {
      this.log.warn('auth_type is trust: every client is let in as the user it names, without a password; use it only on a trusted network');
    }
  }

  private startWorker(index: number): Promise<void> {
    const workerData: WorkerData = {
      index,
      config: this.config,
      configPath: this.options.configPath,
      primary: this.options.primary ?? null,
      replicas: this.options.replicas ?? [],
      topology: this.options.topology === undefined ? null : { snapshot: this.topologyMessage(false).snapshot, drain: this.drainNumber },
      counters: this.buffer,
      address: this.address,
      roAddress: this.roAddress,
      logLevel: this.options.logLevel,
    };
    const worker = new Worker(WORKER_URL, { workerData });
    this.workers[index] = worker;
    worker.on('message', (message: ToMain) => this.onMessage(index, message));
    worker.on('exit', (code) => {
      if (this.stopping) return;
      // Its clients are gone with it; a proxy running short of a worker would stay unbalanced: fail loudly, as a
      // single-threaded proxy does on an uncaught error.
      this.log.fatal({ worker: index, code }, 'a proxy worker thread ended unexpectedly; the proxy exits');
      process.exit(1);
    });
    return new Promise((resolve, reject) => {
      const onMessage = (message: ToMain): void => {
        if (message.type !== 'ready') return;
        worker.off('message', onMessage);
        worker.off('error', reject);
        resolve();
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
  }

  private onMessage(from: number, message: ToMain): void {
    switch (message.type) {
      case 'intern':
        this.slots.answer(from, message.name);
        break;
      case 'cancel':
      case 'shed':
      case 'wake':
        this.others(from, message);
        break;
      case 'metrics':
        this.answered(message.id, message.metrics);
        break;
      case 'admin': {
        const others = this.workers.map((_, i) => i).filter((i) => i !== from);
        void this.ask(others, (id) => ({ type: 'admin', id, request: message.request })).then((answers) =>
          this.workers[from]!.postMessage({ type: 'admin-answers', id: message.id, answers: answers as AdminAnswer[] } satisfies ToWorker),
        );
        break;
      }
      case 'admin-answer':
        this.answered(message.id, message.answer);
        break;
      case 'reload':
        this.workers[from]!.postMessage({ type: 'reload-answer', id: message.id, ...this.reloadFromConsole() } satisfies ToWorker);
        break;
      case 'shutdown':
        this.log.info('SHUTDOWN on the admin console: the proxy stops');
        (this.options.onShutdown ?? (() => void this.stop()))();
        break;
      case 'ready':
      case 'stopped':
        break;
    }
  }

  private others(from: number, message: ToWorker): void {
    for (let i = 0; i < this.workers.length; i++) if (i !== from) this.workers[i]!.postMessage(message);
  }

  private accept(socket: Socket, role: 'rw' | 'ro', local = false): void {
    if (!this.ready) {
      this.early.push([socket, role, local]);
      return;
    }
    // The flood guard of ProxyServer.accept, before any worker pays for the connection.
    if (this.slots.clients > this.config.max_client_conn + 16) {
      // The socket is paused (pauseOnConnect): closeConnection reads it, or the peer's EOF would never be seen.
      closeConnection(socket, m.errorResponse({ code: SQLSTATE.PROTOCOL_VIOLATION, message: 'no more connections allowed (max_client_conn)' }));
      return;
    }
    const fd = duplicateSocket(socket);
    socket.destroy();
    if (fd === null) {
      this.log.warn({ client: socket.remoteAddress }, 'could not hand a client connection to a worker (descriptor not duplicated); closed it');
      return;
    }
    const worker = this.slots.assignClient(this.workers.length);
    this.workers[worker]!.postMessage({ type: 'accept', fd, role, ...(local ? { local } : {}) } satisfies ToWorker);
  }

  private postTopology(changed: boolean): void {
    const message = this.topologyMessage(changed);
    for (const worker of this.workers) worker.postMessage(message);
  }

  /** The topology now, with the number of its pending drain (a new drain id gets the next number). */
  private topologyMessage(changed: boolean): Extract<ToWorker, { type: 'topology' }> {
    const topology = this.options.topology!;
    const id = topology.pendingDrain();
    if (id !== null && id !== this.drainId) this.drainNumber++;
    this.drainId = id;
    return { type: 'topology', snapshot: topology.snapshot(), drain: id === null ? 0 : this.drainNumber, changed };
  }

  /**
   * rw transactions running over every worker, for the switchover drain (ProxyRegistrar polls it): unknown
   * (Infinity) until every worker has said it holds new ones for the drain pending now.
   */
  rwTransactionsInFlight(): number {
    if (this.options.topology === undefined) return 0;
    const before = this.drainNumber;
    const message = this.topologyMessage(true);
    // A drain the registrar saw before the topology's 'change' reached this group: the workers learn it now.
    if (this.drainNumber !== before) for (const worker of this.workers) worker.postMessage(message);
    return this.drainId === null ? 0 : this.slots.drainInFlight(this.workers.length, this.drainNumber);
  }

  /** Every worker's metrics (getMetricsAsJSON()), for one scrape; fails after 5 s without all answers. */
  private scrapeWorkers(): Promise<object[][]> {
    return this.ask(
      this.workers.map((_, i) => i),
      (id) => ({ type: 'metrics', id }),
      5000,
    ) as Promise<object[][]>;
  }

  /**
   * Puts the question `message(id)` to the workers `targets` and resolves with their answers, in the order they
   * came; with `timeoutMs`, rejects when not all came in that long.
   */
  private ask(targets: number[], message: (id: number) => ToWorker, timeoutMs?: number): Promise<unknown[]> {
    if (targets.length === 0) return Promise.resolve([]);
    const id = this.nextQuestion++;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? null
          : setTimeout(() => {
              this.questions.delete(id);
              reject(new Error(`a proxy worker did not answer within ${timeoutMs / 1000} s`));
            }, timeoutMs);
      this.questions.set(id, {
        answers: [],
        expected: targets.length,
        done: (answers) => {
          if (timer !== null) clearTimeout(timer);
          resolve(answers);
        },
      });
      for (const target of targets) this.workers[target]!.postMessage(message(id));
    });
  }

  private answered(id: number, answer: unknown): void {
    const question = this.questions.get(id);
    if (question === undefined) return;
    question.answers.push(answer);
    if (question.answers.length < question.expected) return;
    this.questions.delete(id);
    question.done(question.answers);
  }

  /** Where /metrics is served (metrics_listen), or null. */
  get metricsAddress(): { host: string; port: number } | null {
    return this.metricsServer?.address ?? null;
  }

  /**
   * RELOAD for the whole proxy, SIGHUP's and the admin console's alike: this thread (which accepts) and every
   * worker run with the file's config from now on. Throws, changing nothing, when the file is missing or invalid.
   */
  reload(): ReloadPlan {
    const path = this.options.configPath;
    if (path === undefined) throw new PgwardenError('CONFIG_INVALID', 'RELOAD is not available: this proxy was started without a config file');
    const plan = planReload(this.config, loadProxyConfig(path));
    loadClientTls(plan.config.clientTls); // the workers would each fail on unreadable TLS files: fail here first
    this.config = plan.config;
    // Before any 'accept' posted after this: a worker applies the config before it sees a client accepted under it.
    for (const worker of this.workers) worker.postMessage({ type: 'config', config: plan.config } satisfies ToWorker);
    logReload(this.log, plan, path);
    return plan;
  }

  /** RELOAD on a worker's console: reload() with the console's answer (AdminConsole.reload's words on failure). */
  private reloadFromConsole(): Pick<Extract<ToWorker, { type: 'reload-answer' }>, 'result' | 'error'> {
    try {
      const plan = this.reload();
      return { result: { applied: plan.applied, needRestart: plan.needRestart } };
    } catch (e) {
      return {
        error: { code: 'F0000', message: `RELOAD failed, the running config is unchanged: ${(e as Error).message}`, hint: 'Fix the config file and run RELOAD (or send SIGHUP) again.' },
      };
    }
  }

  /** Stops accepting; every worker lets its clients finish for `graceMs`, then closes them. */
  async stop(graceMs = 2000): Promise<void> {
    this.stopping = true;
    this.options.topology?.off('change', this.onTopology);
    this.options.topology?.off('loaded', this.onTopologyLoaded);
    await this.metricsServer?.stop();
    this.listener.close();
    this.roListener?.close();
    if (this.unixListener !== null && this.unixPath !== null) await closeUnix(this.unixListener, this.unixPath);
    for (const [socket] of this.early.splice(0)) socket.destroy();
    await Promise.all(
      this.workers.map(async (worker) => {
        const stopped = new Promise<void>((resolve) => {
          worker.on('message', (message: ToMain) => {
            if (message.type === 'stopped') resolve();
          });
          worker.once('exit', () => resolve());
        });
        worker.postMessage({ type: 'stop', graceMs } satisfies ToWorker);
        await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, graceMs + 2000))]);
        await worker.terminate();
      }),
    );
  }

  /** For tests: server connections of pool `name` ("database/user") over every worker. */
  serverConnections(name: string): number {
    return this.slots.connections(name);
  }

  /** For tests and the log: client connections per worker. */
  clientsPerWorker(): number[] {
    return this.workers.map((_, i) => this.slots.clientsOf(i));
  }
}
