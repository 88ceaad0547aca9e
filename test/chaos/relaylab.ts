/**
 * The loopback fallback of NetLab, for machines where network namespaces cannot be made: every host's programs
 * run on 127.0.0.1, each service listens on a private port, and everyone reaches it through a fault-injecting TCP
 * relay in the harness (the advertised address). A relay learns which host a connection comes from by finding
 * the process that owns the client's end of the socket (/proc/net/tcp → socket inode → /proc/<pid>/fd) and
 * walking up its parents to a process the lab started (or one registered with trackProcess); connections from
 * anything else (the harness, the workload) are never cut.
 *
 * A cut A→B then drops the bytes A sends on connections between A and B and leaves new connections between them
 * hanging (as a lost SYN or SYN-ACK would); heal closes the connections that lost bytes, so both ends reconnect
 * with a clean stream. This is faithful for TCP between the cluster's processes; it cannot cut a Unix socket or
 * loopback traffic that bypasses the relays (a process's own PostgreSQL socket, which a partition would not cut
 * either).
 *
 * TcpRelay (test/helpers/relay.ts) drops both directions for every client alike; this relay needs the source and
 * each direction on its own, so it is a separate class with the same shape.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { freePort } from '../helpers/ports.js';
import {
  CutSet,
  checkHostNames,
  type CutOptions,
  type ExecResult,
  type Lab,
  type LabSpawnOptions,
  type ServiceAddress,
} from './lab.js';

const SETPRIV = '/usr/bin/setpriv';
const LOOPBACK = '127.0.0.1';

/** Which host a connection comes from: null for the harness and anything else the lab did not start. */
type SourceOf = (socket: net.Socket) => Promise<string | null>;

interface Conn {
  client: net.Socket;
  upstream: net.Socket | null;
  source: string | null;
  /** Bytes were dropped (or the connection was held): closed at the next heal. */
  damaged: boolean;
}

/** A relay in front of one service of `host`; drops per direction according to the lab's cuts. */
export class FaultRelay {
  private server: net.Server | null = null;
  private readonly conns = new Set<Conn>();
  port = 0;

  constructor(
    readonly host: string,
    private readonly target: { host: string; port: number },
    private readonly isCut: (from: string, to: string) => boolean,
    private readonly sourceOf: SourceOf,
  ) {}

  async start(port = 0): Promise<number> {
    this.server = net.createServer((client) => void this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, LOOPBACK, () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private blocked(conn: Conn, toTarget: boolean): boolean {
    if (conn.source === null || conn.source === this.host) return false;
    return toTarget ? this.isCut(conn.source, this.host) : this.isCut(this.host, conn.source);
  }

  private async accept(client: net.Socket): Promise<void> {
    client.pause();
    client.setNoDelay(true);
    const conn: Conn = { client, upstream: null, source: null, damaged: false };
    this.conns.add(conn);
    const close = (): void => {
      this.conns.delete(conn);
      client.destroy();
      conn.upstream?.destroy();
    };
    client.on('error', close).on('close', close);
    try {
      conn.source = await this.sourceOf(client);
    } catch {
      conn.source = null;
    }
    if (client.destroyed) return;
    if (this.blocked(conn, true) || this.blocked(conn, false)) {
      // The handshake would not complete across a cut: the client waits; heal() closes it.
      conn.damaged = true;
      client.on('data', () => undefined);
      client.resume();
      return;
    }
    this.connectUpstream(conn, close);
  }

  private connectUpstream(conn: Conn, close: () => void): void {
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.setNoDelay(true);
    conn.upstream = upstream;
    upstream.on('error', close).on('close', close);
    conn.client.on('data', (chunk) => {
      if (this.blocked(conn, true)) conn.damaged = true;
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (this.blocked(conn, false)) conn.damaged = true;
      else conn.client.write(chunk);
    });
    conn.client.resume();
  }

  /** Closes the connections that lost bytes or were held, once nothing cuts them any more. */
  healed(): void {
    for (const conn of [...this.conns]) {
      if (!conn.damaged || this.blocked(conn, true) || this.blocked(conn, false)) continue;
      this.conns.delete(conn);
      conn.client.destroy();
      conn.upstream?.destroy();
    }
  }

  async stop(): Promise<void> {
    for (const conn of this.conns) {
      conn.client.destroy();
      conn.upstream?.destroy();
    }
    this.conns.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = null;
  }
}

/** /proc/net/tcp's "0100007F:1F90" for 127.0.0.1:8080. */
function procAddress(ip: string, port: number): string {
  const hexIp = ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0').toUpperCase())
    .reverse()
    .join('');
  return `${hexIp}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
}

/** The inode of the socket whose local end is `local` and remote end `remote`, or null. */
function socketInode(local: { ip: string; port: number }, remote: { ip: string; port: number }): string | null {
  const want = `${procAddress(local.ip, local.port)} ${procAddress(remote.ip, remote.port)}`;
  let text = '';
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length > 9 && `${fields[1]} ${fields[2]}` === want) return fields[9]!;
  }
  return null;
}

function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(rest[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  return parents;
}

function ownsSocket(pid: number, inode: string): boolean {
  const target = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return true;
    } catch {
      // Closed meanwhile.
    }
  }
  return false;
}

export class RelayLab implements Lab {
  readonly mode = 'relay' as const;
  private hostList: string[] = [];
  private readonly cutSet = new CutSet(() => this.hostList);
  private readonly relays: FaultRelay[] = [];
  /** Per host: functions naming processes of that host (the ones spawn() started, trackProcess()'s). */
  private readonly roots = new Map<string, Array<() => number | null>>();

  hosts(): string[] {
    return [...this.hostList];
  }

  async create(hosts: string[]): Promise<void> {
    checkHostNames(hosts);
    this.hostList = [...hosts];
    for (const h of hosts) this.roots.set(h, []);
  }

  networkCidr(): string | null {
    return null;
  }

  async expose(host: string, service: string, _port: number): Promise<ServiceAddress> {
    if (!this.roots.has(host)) throw new Error(`unknown host "${host}"; the lab's hosts are ${this.hostList.join(', ')}`);
    const listen = { host: LOOPBACK, port: await freePort() };
    const relay = new FaultRelay(host, listen, (a, b) => this.cutSet.isCut(a, b), (s) => this.sourceOf(s));
    await relay.start();
    this.relays.push(relay);
    void service;
    return { listen, advertise: { host: LOOPBACK, port: relay.port } };
  }

  /** The host whose process owns the client end of `socket`, or null (the harness, or unknown). */
  async sourceOf(socket: net.Socket): Promise<string | null> {
    const clientPort = socket.remotePort;
    const relayPort = socket.localPort;
    if (clientPort === undefined || relayPort === undefined) return null;
    const inode = socketInode({ ip: LOOPBACK, port: clientPort }, { ip: LOOPBACK, port: relayPort });
    if (inode === null || inode === '0') return null;
    const parents = parentPids();
    const rootHost = new Map<number, string>();
    for (const [host, fns] of this.roots) {
      for (const fn of fns) {
        const pid = fn();
        if (pid !== null) rootHost.set(pid, host);
      }
    }
    const hostOf = (pid: number): string | null => {
      for (let p = pid, hops = 0; p > 1 && hops < 64; p = parents.get(p) ?? 0, hops++) {
        const h = rootHost.get(p);
        if (h !== undefined) return h;
      }
      return null;
    };
    for (const pid of parents.keys()) {
      if (pid === process.pid) continue;
      const host = hostOf(pid);
      if (host !== null && ownsSocket(pid, inode)) return host;
    }
    return null;
  }

  private wrap(argv: string[], runAs?: string): string[] {
    return runAs === undefined ? argv : [SETPRIV, `--reuid=${runAs}`, `--regid=${runAs}`, '--init-groups', ...argv];
  }

  spawn(host: string, argv: string[], options: LabSpawnOptions = {}): ChildProcess {
    if (!this.roots.has(host)) throw new Error(`unknown host "${host}"; the lab's hosts are ${this.hostList.join(', ')}`);
    const full = this.wrap(argv, options.runAs);
    const child = spawn(full[0]!, full.slice(1), {
      cwd: options.cwd,
      env: options.env,
      stdio: options.stdio ?? 'ignore',
      detached: options.detached ?? true,
    });
    const pid = child.pid;
    if (pid !== undefined) {
      const alive = (): number | null => (child.exitCode === null && child.signalCode === null ? pid : null);
      this.roots.get(host)!.push(alive);
    }
    return child;
  }

  exec(host: string, argv: string[], options: LabSpawnOptions & { timeoutMs?: number } = {}): Promise<ExecResult> {
    if (!this.roots.has(host)) throw new Error(`unknown host "${host}"; the lab's hosts are ${this.hostList.join(', ')}`);
    const full = this.wrap(argv, options.runAs);
    return new Promise((resolve) => {
      const child = execFile(full[0]!, full.slice(1), { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 30_000 }, (error, stdout, stderr) => {
        const e = error as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout: String(stdout), stderr: String(stderr) });
      });
      const pid = child.pid;
      if (pid !== undefined) this.roots.get(host)!.push(() => (child.exitCode === null ? pid : null));
    });
  }

  trackProcess(host: string, pid: () => number | null): void {
    const fns = this.roots.get(host);
    if (!fns) throw new Error(`unknown host "${host}"; the lab's hosts are ${this.hostList.join(', ')}`);
    fns.push(pid);
  }

  async cut(from: string[], to: string[], options: CutOptions = {}): Promise<void> {
    this.cutSet.add(from, to, options);
  }

  async heal(from?: string[], to?: string[], options: CutOptions = {}): Promise<void> {
    this.cutSet.remove(from, to, options);
    for (const r of this.relays) r.healed();
  }

  healAll(): Promise<void> {
    return this.heal();
  }

  cuts(): Array<{ from: string; to: string }> {
    return this.cutSet.list();
  }

  async destroy(): Promise<void> {
    await Promise.all(this.relays.map((r) => r.stop()));
    this.relays.length = 0;
  }
}
