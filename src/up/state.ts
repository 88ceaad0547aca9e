/**
 * What a local cluster keeps in its directory (`pgwarden up --dir`):
 *   cluster.json   cluster name, ports chosen once, node names, the dynamic settings it was created with
 *   secrets.json   random passwords (mode 0600)
 *   pids.json      PIDs of etcd, of each agent, of the proxy and of the supervisor while they run
 *   supervisor.log what the supervisor restarted, and why
 *   proxy/         proxy.yml, userlist.txt (mode 0600), proxy.log
 *   etcd/          etcd's data and log
 *   <member>/      agent.yml, agent.log, data/ (PostgreSQL, owned by the postgres user), data.run/
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PgwardenError } from '../errors.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

export const STATE_VERSION = 1;

export interface NodeState {
  name: string;
  pgPort: number;
  apiPort: number;
}

export interface ClusterState {
  version: number;
  cluster: string;
  etcd: { clientPort: number; peerPort: number };
  nodes: NodeState[];
  /** bootstrap.dcs of every agent file. */
  dynamic: Partial<DynamicConfig>;
  /** PostgreSQL parameters of every agent file. */
  parameters: Record<string, string | number | boolean>;
  createdAt: string;
  /** The proxy's listeners, chosen at its first start (metricsPort: added later, so absent in older clusters). */
  proxy?: { rwPort: number; roPort: number; metricsPort?: number };
}

export interface Secrets {
  superuser: { username: string; password: string };
  replication: { username: string; password: string };
  rewind: { username: string; password: string };
  api: { username: string; password: string };
}

/**
 * The process that restarts what exits (src/up/supervisor.ts): the foreground `pgwarden up` itself, or with
 * --detach a `pgwarden supervise` daemon. The start time tells a reused PID apart.
 */
export interface SupervisorRecord {
  pid: number;
  startTime: number;
  mode: 'foreground' | 'daemon';
}

export interface Pids {
  etcd: number | null;
  agents: Record<string, number>;
  proxy?: number | null;
  supervisor?: SupervisorRecord | null;
}

export const FILES = {
  cluster: 'cluster.json',
  secrets: 'secrets.json',
  pids: 'pids.json',
} as const;

export function newSecrets(): Secrets {
  const secret = (): string => randomBytes(18).toString('base64url');
  return {
    superuser: { username: 'postgres', password: secret() },
    replication: { username: 'replicator', password: secret() },
    rewind: { username: 'rewinder', password: secret() },
    api: { username: 'pgwarden', password: secret() },
  };
}

function readJson(file: string): unknown | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PgwardenError('UP_FAILED', `${file} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check its permissions`, {
      cause: e,
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PgwardenError(
      'UP_FAILED',
      `${file} is damaged (not JSON): restore it, or remove the directory ${path.dirname(file)} to create a new local cluster`,
      { cause: e },
    );
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536;

/** cluster.json of `dir`, or null when the directory holds no local cluster. */
export function readClusterState(dir: string): ClusterState | null {
  const file = path.join(dir, FILES.cluster);
  const raw = readJson(file);
  if (raw === undefined) return null;
  const damaged = (what: string): PgwardenError =>
    new PgwardenError('UP_FAILED', `${file} is damaged (${what}): restore it, or remove ${dir} to create a new local cluster`);
  if (!isRecord(raw) || typeof raw.cluster !== 'string' || !isRecord(raw.etcd) || !Array.isArray(raw.nodes)) {
    throw damaged('missing cluster, etcd or nodes');
  }
  if (raw.version !== STATE_VERSION) throw damaged(`version ${String(raw.version)}, expected ${STATE_VERSION}`);
  if (!isPort(raw.etcd.clientPort) || !isPort(raw.etcd.peerPort)) throw damaged('bad etcd ports');
  const nodes: NodeState[] = [];
  for (const node of raw.nodes) {
    if (!isRecord(node) || typeof node.name !== 'string' || !isPort(node.pgPort) || !isPort(node.apiPort)) {
      throw damaged('a node without name, pgPort or apiPort');
    }
    nodes.push({ name: node.name, pgPort: node.pgPort, apiPort: node.apiPort });
  }
  return {
    version: STATE_VERSION,
    cluster: raw.cluster,
    etcd: { clientPort: raw.etcd.clientPort, peerPort: raw.etcd.peerPort },
    nodes,
    dynamic: isRecord(raw.dynamic) ? (raw.dynamic as Partial<DynamicConfig>) : {},
    parameters: isRecord(raw.parameters) ? (raw.parameters as ClusterState['parameters']) : {},
    createdAt: typeof raw.createdAt === 'string' ? raw.createdAt : '',
    ...(isRecord(raw.proxy) && isPort(raw.proxy.rwPort) && isPort(raw.proxy.roPort)
      ? { proxy: { rwPort: raw.proxy.rwPort, roPort: raw.proxy.roPort, ...(isPort(raw.proxy.metricsPort) ? { metricsPort: raw.proxy.metricsPort } : {}) } }
      : {}),
  };
}

export function readSecrets(dir: string): Secrets | null {
  const file = path.join(dir, FILES.secrets);
  const raw = readJson(file);
  if (raw === undefined) return null;
  const roles = ['superuser', 'replication', 'rewind', 'api'] as const;
  if (!isRecord(raw) || roles.some((r) => !isRecord(raw[r]) || typeof (raw[r] as Record<string, unknown>).password !== 'string')) {
    throw new PgwardenError('UP_FAILED', `${file} is damaged: restore it, or remove ${dir} to create a new local cluster`);
  }
  return raw as unknown as Secrets;
}

export function readPids(dir: string): Pids {
  const raw = readJson(path.join(dir, FILES.pids));
  if (!isRecord(raw)) return { etcd: null, agents: {} };
  const agents: Record<string, number> = {};
  if (isRecord(raw.agents)) {
    for (const [name, pid] of Object.entries(raw.agents)) if (Number.isInteger(pid)) agents[name] = pid as number;
  }
  const s = raw.supervisor;
  const supervisor =
    isRecord(s) && Number.isInteger(s.pid) && Number.isFinite(s.startTime) && (s.mode === 'foreground' || s.mode === 'daemon')
      ? { pid: s.pid as number, startTime: s.startTime as number, mode: s.mode as SupervisorRecord['mode'] }
      : null;
  return {
    etcd: Number.isInteger(raw.etcd) ? (raw.etcd as number) : null,
    agents,
    proxy: Number.isInteger(raw.proxy) ? (raw.proxy as number) : null,
    supervisor,
  };
}

/** Writes atomically (temporary file + rename) so a reader never sees half a file. */
export async function writeJson(file: string, value: unknown, mode = 0o644): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`, { mode });
  await chmod(temporary, mode);
  await rename(temporary, file);
}
