/**
 * The world of one production agent (src/ha/agent.ts) inside the simulation: the interfaces of src/ha/world.ts
 * implemented over the simulated host — its clocks, its modelled PostgreSQL, the other agents' REST APIs, its
 * lease deadman — plus an etcd client (etcd.ts) and a logger that feeds the trace. The agent, its executor and
 * the deadman's arming logic are the real ones; only their surroundings are simulated.
 */
import pino from 'pino';
import { Agent } from '../../src/ha/agent.js';
import { LeaseDeadman } from '../../src/ha/deadman.js';
import type { AgentClock, PeerProber, PostgresControl, SyncStandbyPosition, Timer } from '../../src/ha/world.js';
import type { PeerProbe } from '../../src/ha/types.js';
import { parsePeerStatus } from '../../src/api/peer-probe.js';
import { agentConfigSchema, resolveSecrets } from '../../src/config/schema.js';
import { PgwardenError } from '../../src/errors.js';
import { RewindFailedError, type PeerAddress } from '../../src/postgres/server.js';
import type { PgObservation } from '../../src/postgres/observation.js';
import type { ClusterView, Tags } from '../../src/cluster/types.js';
import type { DynamicConfig } from '../../src/cluster/dynamic-config.js';
import type { SimDcsClient } from './etcd.js';
import type { SimDeadman } from './deadman.js';
import type { SimProcess } from './kernel.js';
import { PgError, type SimPostgres } from './postgres.js';
import type { Rng } from './prng.js';

/** What the simulated surroundings of an agent need from the world. */
export interface AgentHost {
  pgOf(name: string): SimPostgres | undefined;
  /** Whether two hosts can exchange packets (REST probes, replication, pg_rewind/pg_basebackup). */
  canTalk(a: string, b: string): boolean;
  /** The running agent of `name` (for REST probes), or null. */
  agentOf(name: string): Agent | null;
  replicationRows(server: SimPostgres): PgObservation['replication'];
  /** Until when this member's disk stalls (slow-disk fault): PostgreSQL operations wait for it. */
  stalledUntil(name: string): number;
  /** Called right before pg_promote (invariant 2), with the view the promoting agent decided on. */
  promoting(name: string, view: ClusterView | null): void;
  syncReleaseCheck(server: SimPostgres): void;
  shipOnShutdown(server: SimPostgres): void;
  newSystemId(): string;
  trace(member: string, line: string): void;
  readonly tracing: boolean;
}

/** The host's clocks: shared by every agent incarnation on the host and by its deadman. */
export interface HostClock {
  /** Monotonic clock rate relative to etcd's clock (1 ± drift). */
  rate: number;
  monoOffset: number;
  wallOffset: number;
}

/** AgentClock on a simulated host: its drift and offsets, timers of this process only. */
export class SimAgentClock implements AgentClock {
  constructor(
    private readonly proc: SimProcess,
    private readonly host: HostClock,
  ) {}

  mono(): number {
    return this.proc.kernel.now * this.host.rate + this.host.monoOffset;
  }

  wall(): number {
    return this.proc.kernel.now + this.host.wallOffset;
  }

  /** Simulated ms for a duration measured on this host's clock. */
  private simMs(ms: number): number {
    return Math.max(0, ms) / this.host.rate;
  }

  after(ms: number, fn: () => void): Timer {
    let cancelled = false;
    this.proc.at(this.proc.kernel.now + this.simMs(ms), () => {
      if (!cancelled) fn();
    });
    return { cancel: () => (cancelled = true) };
  }

  every(ms: number, fn: () => void): Timer {
    let cancelled = false;
    const tick = (): void => {
      if (cancelled) return;
      fn();
      this.proc.at(this.proc.kernel.now + this.simMs(ms), tick);
    };
    this.proc.at(this.proc.kernel.now + this.simMs(ms), tick);
    return { cancel: () => (cancelled = true) };
  }

  sleep(ms: number): Promise<void> {
    return this.proc.sleep(this.simMs(ms));
  }
}

/** pg_rewind / pg_basebackup could not reach the source (the executor retries these instead of re-cloning). */
const CONNECTION_FAILURE = /connection to server .* failed|could not connect|Connection refused|the database system is (starting up|shutting down)/i;

/** PostgresServer's operations on the modelled server, each taking simulated time (and waiting for a stalled disk). */
export class SimPostgresControl implements PostgresControl {
  constructor(
    private readonly proc: SimProcess,
    private readonly host: AgentHost,
    private readonly server: SimPostgres,
    private readonly rng: Rng,
    private readonly agent: () => Agent | null,
  ) {}

  private get me(): string {
    return this.server.name;
  }

  /** Disk-bound work waits until a stalled disk answers again. */
  private async disk(ms: number): Promise<void> {
    const k = this.proc.kernel;
    await this.proc.sleep(Math.max(k.now + ms, this.host.stalledUntil(this.me)) - k.now);
  }

  /** A server operation, started at once unless the disk stalls (the process may die while it runs: it goes on). */
  private async op(start: (done: (err?: Error) => void) => void): Promise<void> {
    if (this.host.stalledUntil(this.me) > this.proc.kernel.now) await this.disk(0);
    await this.proc.op(start);
  }

  async observe(): Promise<PgObservation> {
    // A query when the server answers, pg_controldata when it does not.
    await this.disk(this.rng.int(1, 8));
    return this.server.observe(this.server.accepting ? this.host.replicationRows(this.server) : []);
  }

  postmasterPid(): number | null {
    return this.server.running ? 1 : null;
  }

  async setParameters(): Promise<void> {
    // Parameters are not modelled.
  }

  async reload(): Promise<void> {
    if (!this.server.running) throw new PgwardenError('PG_NOT_RUNNING', 'cannot reload: PostgreSQL is not running');
    await this.disk(2);
  }

  async bootstrap(): Promise<string> {
    const systemId = this.host.newSystemId();
    await this.op((done) => this.server.bootstrap(systemId, done));
    return systemId;
  }

  clone(from: PeerAddress): Promise<void> {
    return this.op((done) => this.server.clone(this.host.pgOf(from.name) ?? null, () => this.host.canTalk(this.me, from.name), done));
  }

  reclone(from: PeerAddress): Promise<void> {
    // The old data stays until the new copy is complete.
    return this.op((done) => this.server.reclone(this.host.pgOf(from.name) ?? null, () => this.host.canTalk(this.me, from.name), done));
  }

  start(role: 'primary' | 'replica', follow: PeerAddress | null): Promise<void> {
    return this.op((done) => this.server.start(role, follow?.name ?? null, done));
  }

  stop(mode: 'fast' | 'immediate'): Promise<void> {
    return this.op((done) => this.server.stop(mode, done, (s) => this.host.shipOnShutdown(s)));
  }

  async restart(): Promise<void> {
    const replica = this.server.standbySignal;
    const following = this.server.following;
    await this.stop('fast');
    await this.op((done) => this.server.start(replica ? 'replica' : 'primary', replica ? following : null, done));
  }

  promote(options: { timelinesTaken?: number } = {}): Promise<void> {
    return this.op((done) => {
      this.host.promoting(this.me, this.agent()?.view() ?? null);
      this.server.promote(done, options.timelinesTaken ?? 0);
    });
  }

  checkpoint(): Promise<void> {
    return this.op((done) => this.server.checkpoint(done));
  }

  async follow(leader: PeerAddress | null): Promise<void> {
    await this.disk(5);
    this.server.follow(leader?.name ?? null);
  }

  async rewind(from: PeerAddress): Promise<void> {
    try {
      await this.op((done) => this.server.rewind(this.host.pgOf(from.name) ?? null, () => this.host.canTalk(this.me, from.name), done));
    } catch (e) {
      // PostgresServer.rewind throws RewindFailedError once pg_rewind itself ran.
      const message = e instanceof Error ? e.message : String(e);
      if (e instanceof PgError && !/running server|no cluster/.test(message)) {
        throw new RewindFailedError('PG_COMMAND_FAILED', CONNECTION_FAILURE.test(message) ? message : `pg_rewind failed (exit 1): ${message}`);
      }
      throw e;
    }
  }

  async wipe(): Promise<void> {
    if (this.server.running) await this.op((done) => this.server.stop('immediate', done));
    if (!this.server.running) this.server.wipe();
  }

  async setSynchronousStandbys(names: string[]): Promise<void> {
    // The configuration file is written whether or not PostgreSQL runs; a running server reloads it.
    await this.disk(2);
    this.server.setSynchronousStandbys(names);
    this.host.syncReleaseCheck(this.server);
  }

  async synchronousStandbys(): Promise<SyncStandbyPosition[]> {
    await this.disk(this.rng.int(1, 5));
    if (!this.server.accepting) throw new PgwardenError('PG_NOT_RUNNING', 'PostgreSQL stopped answering');
    return this.host
      .replicationRows(this.server)
      .filter((row) => row.syncState === 'sync' || row.syncState === 'quorum')
      .map((row) => ({ name: row.name, lsn: this.server.position }));
  }

  async manageSlots(create: string[], drop: string[]): Promise<void> {
    if (!this.server.accepting) throw new PgwardenError('PG_NOT_RUNNING', 'cannot manage slots: PostgreSQL is not answering');
    await this.disk(2);
    this.server.manageSlots(create, drop);
  }

  emergencyStop(late: boolean): string | null {
    if (!this.server.running) return null;
    if (late) {
      // stopPostgresAfterDeadline(late): every process killed at once, nothing more answered or shipped.
      this.server.crash('killed: the lease deadline had passed long ago');
      return 'killed every PostgreSQL process';
    }
    this.server.stop('fast', () => undefined, (s) => this.host.shipOnShutdown(s));
    return 'sent SIGINT (fast shutdown) to the postmaster';
  }

  async close(): Promise<void> {
    // No connections are modelled.
  }
}

/** GET /patroni on every other member, in parallel; the answer is read by the production parser. */
export function simPeerProber(proc: SimProcess, host: AgentHost, rng: Rng): PeerProber {
  return async (view: ClusterView, me: string, timeoutMs: number) => {
    const targets: Array<{ name: string; delay: number }> = [];
    let longest = 0;
    for (const name of Object.keys(view.members)) {
      if (name === me) continue;
      const linked = host.canTalk(me, name);
      // A live host with no agent refuses the connection at once; a dead or cut-off host times out.
      const delay = linked ? (host.agentOf(name) ? rng.int(1, 10) : rng.int(1, 3)) : timeoutMs;
      targets.push({ name, delay });
      longest = Math.max(longest, delay);
    }
    const out: Record<string, PeerProbe> = {};
    if (targets.length === 0) return out;
    await proc.sleep(longest);
    for (const { name } of targets) {
      const agent = host.agentOf(name);
      const status = agent?.status() ?? null;
      if (!agent || !host.canTalk(me, name)) out[name] = { reachable: false, walPosition: null, healthy: false, role: null, tags: null };
      else out[name] = parsePeerStatus(status === null ? { state: 'starting' } : { member: status });
    }
    return out;
  };
}

/** The agent's settings file for member `name` of the simulated cluster (validated by the real schema). */
function agentConfigFor(name: string, tags: Tags, bootstrap: DynamicConfig) {
  const secret = { password: 'sim' };
  const parsed = agentConfigSchema.parse({
    cluster: 'sim',
    name,
    api: { connect_url: `http://${name}:8008`, username: 'sim', password: 'sim' },
    postgresql: { data_dir: `/sim/${name}`, connect_address: `${name}:5432`, superuser: secret, replication: secret, rewind: secret },
    tags,
    bootstrap: { dcs: bootstrap },
  });
  return resolveSecrets(parsed, { source: 'the simulated agent file', baseDir: '/sim' });
}

/** A logger whose lines go to the trace (when tracing); warnings and errors of the agent end up there too. */
function traceLogger(host: AgentHost, name: string) {
  if (!host.tracing) return pino({ level: 'silent' });
  return pino(
    { level: 'info', base: null, timestamp: false },
    {
      write(line: string): void {
        const o = JSON.parse(line) as { msg?: string; rule?: string; actions?: string[]; err?: { message?: string } | string };
        const rule = o.rule ? `${o.rule}: ` : '';
        const actions = o.actions && o.actions.length > 0 ? ` -> [${o.actions.join(', ')}]` : '';
        const err = o.err ? `: ${typeof o.err === 'string' ? o.err : (o.err.message ?? JSON.stringify(o.err))}` : '';
        host.trace(name, `${rule}${o.msg ?? ''}${actions}${err}`);
      },
    },
  );
}

export interface SimAgentParts {
  proc: SimProcess;
  dcs: SimDcsClient;
  server: SimPostgres;
  clock: HostClock;
  /** The host's deadman process; null models an agent without one. */
  deadman: SimDeadman | null;
  tags: Tags;
  bootstrap: DynamicConfig;
  rng: Rng;
}

/** The production Agent, wired to its simulated world. */
export function createSimAgent(host: AgentHost, parts: SimAgentParts): Agent {
  const name = parts.server.name;
  const log = traceLogger(host, name);
  let agent: Agent | null = null;
  const pg = new SimPostgresControl(parts.proc, host, parts.server, parts.rng.fork(1), () => agent);
  const noDeadman = { write: () => undefined, remove: () => undefined, present: () => false, ensureRunning: () => undefined };
  const deadman = new LeaseDeadman(
    '',
    '',
    (e) => {
      throw e;
    },
    () => undefined,
    parts.deadman ?? noDeadman,
  );
  agent = new Agent({
    config: agentConfigFor(name, parts.tags, parts.bootstrap),
    dcs: parts.dcs,
    pg,
    log,
    peers: simPeerProber(parts.proc, host, parts.rng.fork(2)),
    deadman,
    clock: new SimAgentClock(parts.proc, parts.clock),
    processMetrics: false,
  });
  return agent;
}
