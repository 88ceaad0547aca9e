/**
 * One Linux network namespace per host, so that partitions are real: packets are dropped by nftables inside
 * the hosts' namespaces, TCP sees what it would see on a real network (time-outs, retransmissions), and no
 * program needs to cooperate.
 *
 * Layout of one lab (prefix pgwc<pid>n<k>, <pid> being the harness's PID):
 *   namespace <prefix>-switch   a bridge br0; the hosts' veth ends and an uplink are its ports
 *   namespace <prefix>-<host>   eth0 = 10.213.<s>.<10+i>/24, lo up, table inet pgwc (the cuts)
 *   root link <prefix>          10.213.<s>.1/24, the other end of the uplink: the harness reaches every host
 * The /24 is reserved by an atomic mkdir of /run/pgwc-netlab/<s> holding the PID, so parallel runs never share
 * one; sweepStale() removes whatever a dead run left. Nothing touches the machine's own interfaces or routes
 * besides the one link above and the connected route of its /24.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import {
  CutSet,
  checkHostNames,
  exitOnSignals,
  type Availability,
  type CutOptions,
  type ExecResult,
  type Lab,
  type LabSpawnOptions,
  type ServiceAddress,
} from './lab.js';

const execFileAsync = promisify(execFile);

const IP = '/usr/sbin/ip';
const NFT = '/usr/sbin/nft';
const SETPRIV = '/usr/bin/setpriv';
const RESERVATIONS = '/run/pgwc-netlab';
const NAME_PREFIX = 'pgwc';
const SUBNET_BASE = '10.213';
const TABLE = 'pgwc';

let labsMade = 0;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function run(argv: string[], input?: string): Promise<string> {
  if (input === undefined) {
    const { stdout } = await execFileAsync(argv[0]!, argv.slice(1), { timeout: 15_000 });
    return stdout;
  }
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), { timeout: 15_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${argv.join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
    child.stdin!.end(input);
  });
}

function runSync(argv: string[]): boolean {
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

function namespaces(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

function rootLinks(): string[] {
  try {
    return readdirSync('/sys/class/net');
  } catch {
    return [];
  }
}

export class NetLab implements Lab {
  readonly mode = 'netns' as const;
  /** pgwc<pid>n<k>: unique per process and lab, short enough for an interface name (15 characters). */
  readonly prefix: string;
  private hostList: string[] = [];
  private readonly addresses = new Map<string, string>();
  private subnet: number | null = null;
  private readonly cutSet = new CutSet(() => this.hostList);
  private created = false;
  private readonly exitHook = (): void => this.destroySync();

  constructor() {
    this.prefix = `${NAME_PREFIX}${process.pid}n${labsMade++}`;
  }

  /** Whether namespaces, veth pairs and nftables can be used here; `why` says what is missing. */
  static async available(): Promise<Availability> {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { ok: false, why: 'not running as root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)' };
    for (const [bin, args, pkg] of [
      [IP, ['-V'], 'iproute2'],
      [NFT, ['--version'], 'nftables'],
    ] as const) {
      try {
        await execFileAsync(bin, [...args]);
      } catch {
        return { ok: false, why: `${bin} is missing (apt-get install -y ${pkg})` };
      }
    }
    const probe = `${NAME_PREFIX}${process.pid}probe`;
    try {
      await run([IP, 'netns', 'add', probe]);
      await run([IP, 'netns', 'exec', probe, NFT, 'list', 'ruleset']);
    } catch (e) {
      return { ok: false, why: `network namespaces cannot be used here: ${(e as Error).message.trim()}` };
    } finally {
      runSync([IP, 'netns', 'del', probe]);
    }
    return { ok: true };
  }

  /**
   * Removes namespaces, root links and subnet reservations left by runs whose harness PID is dead. Returns what
   * it removed. Safe to run while other runs are alive: their PIDs are alive, so their things are kept.
   */
  static sweepStale(): string[] {
    const removed: string[] = [];
    const dead = (pid: string): boolean => pid !== String(process.pid) && !isAlive(Number(pid));
    for (const ns of namespaces()) {
      const m = /^pgwc(\d+)(n\d+-|probe$)/.exec(ns);
      if (m && dead(m[1]!) && runSync([IP, 'netns', 'del', ns])) removed.push(`netns ${ns}`);
    }
    for (const link of rootLinks()) {
      const m = /^pgwc(\d+)n\d+$/.exec(link);
      if (m && dead(m[1]!) && runSync([IP, 'link', 'del', link])) removed.push(`link ${link}`);
    }
    let reserved: string[] = [];
    try {
      reserved = readdirSync(RESERVATIONS);
    } catch {
      // None yet.
    }
    for (const s of reserved) {
      let owner = '';
      try {
        owner = readFileSync(`${RESERVATIONS}/${s}/pid`, 'utf8').trim();
      } catch {
        // A reservation without its PID file is being made right now, or is broken: left alone.
        continue;
      }
      if (/^\d+$/.test(owner) && dead(owner)) {
        rmSync(`${RESERVATIONS}/${s}`, { recursive: true, force: true });
        removed.push(`subnet ${SUBNET_BASE}.${s}.0/24`);
      }
    }
    return removed;
  }

  hosts(): string[] {
    return [...this.hostList];
  }

  nsName(host: string): string {
    if (!this.addresses.has(host)) throw new Error(`unknown host "${host}"; the lab's hosts are ${this.hostList.join(', ')}`);
    return `${this.prefix}-${host}`;
  }

  private get switchNs(): string {
    return `${this.prefix}-switch`;
  }

  /** The host's own address on the lab's network. */
  address(host: string): string {
    const a = this.addresses.get(host);
    if (a === undefined) throw new Error(`unknown host "${host}"; the lab's hosts are ${this.hostList.join(', ')}`);
    return a;
  }

  /** The root namespace's address on the lab's network (where the harness's connections come from). */
  harnessAddress(): string {
    return `${SUBNET_BASE}.${this.subnet}.1`;
  }

  networkCidr(): string | null {
    return this.subnet === null ? null : `${SUBNET_BASE}.${this.subnet}.0/24`;
  }

  private reserveSubnet(): number {
    mkdirSync(RESERVATIONS, { recursive: true });
    const used = new Set<number>();
    try {
      const text = execFileSync(IP, ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
      for (const m of text.matchAll(/inet 10\.213\.(\d+)\./g)) used.add(Number(m[1]));
    } catch {
      // Without the list every /24 is tried; the mkdir below still keeps runs apart.
    }
    for (let s = 1 + (process.pid % 200); s < 1 + (process.pid % 200) + 254; s++) {
      const octet = ((s - 1) % 254) + 1;
      if (used.has(octet)) continue;
      try {
        mkdirSync(`${RESERVATIONS}/${octet}`);
      } catch {
        continue;
      }
      writeFileSync(`${RESERVATIONS}/${octet}/pid`, `${process.pid}\n`);
      return octet;
    }
    throw new Error(`no free /24 in ${SUBNET_BASE}.0.0/16 for a network lab (see ${RESERVATIONS}; NetLab.sweepStale() frees those of dead runs)`);
  }

  async create(hosts: string[]): Promise<void> {
    if (this.created) throw new Error('this NetLab was already created');
    checkHostNames(hosts);
    if (hosts.length > 200) throw new Error('at most 200 hosts per lab');
    this.created = true;
    process.once('exit', this.exitHook);
    exitOnSignals();
    this.subnet = this.reserveSubnet();
    this.hostList = [...hosts];
    hosts.forEach((h, i) => this.addresses.set(h, `${SUBNET_BASE}.${this.subnet}.${10 + i}`));
    const sw = this.switchNs;
    try {
      await run([IP, 'netns', 'add', sw]);
      await run([IP, '-n', sw, 'link', 'set', 'lo', 'up']);
      // No STP: a port forwards as soon as it is up.
      await run([IP, '-n', sw, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0']);
      await run([IP, '-n', sw, 'link', 'set', 'br0', 'up']);
      // The uplink: created with its switch end already inside the switch namespace, so no name is ever taken
      // in the root namespace besides the prefix itself.
      await run([IP, 'link', 'add', this.prefix, 'type', 'veth', 'peer', 'name', 'up0', 'netns', sw]);
      await run([IP, '-n', sw, 'link', 'set', 'up0', 'master', 'br0', 'up']);
      await run([IP, 'addr', 'add', `${this.harnessAddress()}/24`, 'dev', this.prefix]);
      await run([IP, 'link', 'set', this.prefix, 'up']);
      await Promise.all(hosts.map((h, i) => this.createHost(h, i)));
    } catch (e) {
      await this.destroy();
      throw e;
    }
  }

  private async createHost(host: string, index: number): Promise<void> {
    const ns = this.nsName(host);
    const port = `v${index}`;
    await run([IP, 'netns', 'add', ns]);
    await run([IP, '-n', ns, 'link', 'set', 'lo', 'up']);
    await run([IP, 'link', 'add', port, 'netns', this.switchNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await run([IP, '-n', this.switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
    await run([IP, '-n', ns, 'addr', 'add', `${this.address(host)}/24`, 'dev', 'eth0']);
    await run([IP, '-n', ns, 'link', 'set', 'eth0', 'up']);
    await this.applyRules(host);
  }

  async expose(host: string, _service: string, port: number): Promise<ServiceAddress> {
    const address = { host: this.address(host), port };
    return { listen: address, advertise: address };
  }

  /** The argv that runs `argv` inside `host`'s namespace (as `runAs` when given). */
  wrap(host: string, argv: string[], runAs?: string): string[] {
    const user = runAs === undefined ? [] : [SETPRIV, `--reuid=${runAs}`, `--regid=${runAs}`, '--init-groups'];
    return [IP, 'netns', 'exec', this.nsName(host), ...user, ...argv];
  }

  spawn(host: string, argv: string[], options: LabSpawnOptions = {}): ChildProcess {
    // `ip netns exec` and setpriv exec the program in place: the child's PID is the program's PID.
    const full = this.wrap(host, argv, options.runAs);
    return spawn(full[0]!, full.slice(1), {
      cwd: options.cwd,
      env: options.env,
      stdio: options.stdio ?? 'ignore',
      detached: options.detached ?? true,
    });
  }

  exec(host: string, argv: string[], options: LabSpawnOptions & { timeoutMs?: number } = {}): Promise<ExecResult> {
    const full = this.wrap(host, argv, options.runAs);
    return new Promise((resolve) => {
      execFile(full[0]!, full.slice(1), { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 30_000 }, (error, stdout, stderr) => {
        const e = error as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr),
        });
      });
    });
  }

  trackProcess(): void {
    // The namespace a process runs in already says which host it is.
  }

  /** The nftables ruleset of `host` for the cuts now in force, replacing the previous one atomically. */
  rulesetFor(host: string): string {
    const to = this.cutSet.blockedTo(host).map((h) => this.address(h));
    const from = this.cutSet.blockedFrom(host).map((h) => this.address(h));
    const lines = [
      `table inet ${TABLE} {`,
      '  chain input {',
      '    type filter hook input priority -10; policy accept;',
      '  }',
      '  chain output {',
      '    type filter hook output priority -10; policy accept;',
      '  }',
      '}',
      `flush table inet ${TABLE}`,
    ];
    if (from.length > 0) lines.push(`add rule inet ${TABLE} input ip saddr { ${from.join(', ')} } drop`);
    if (to.length > 0) lines.push(`add rule inet ${TABLE} output ip daddr { ${to.join(', ')} } drop`);
    return `${lines.join('\n')}\n`;
  }

  private async applyRules(host: string): Promise<void> {
    await run([IP, 'netns', 'exec', this.nsName(host), NFT, '-f', '-'], this.rulesetFor(host));
  }

  async cut(from: string[], to: string[], options: CutOptions = {}): Promise<void> {
    const changed = this.cutSet.add(from, to, options);
    await Promise.all([...changed].map((h) => this.applyRules(h)));
  }

  async heal(from?: string[], to?: string[], options: CutOptions = {}): Promise<void> {
    const changed = this.cutSet.remove(from, to, options);
    await Promise.all([...changed].map((h) => this.applyRules(h)));
  }

  healAll(): Promise<void> {
    return this.heal();
  }

  cuts(): Array<{ from: string; to: string }> {
    return this.cutSet.list();
  }

  /** What nftables in `host`'s namespace holds now (for debugging and tests). */
  async listRules(host: string): Promise<string> {
    return run([IP, 'netns', 'exec', this.nsName(host), NFT, 'list', 'table', 'inet', TABLE]);
  }

  /** Deletes every namespace and link of this lab and frees its /24. Idempotent. */
  async destroy(): Promise<void> {
    this.destroySync();
  }

  private destroySync(): void {
    if (!this.created) return;
    // Deleting a namespace destroys the veth ends in it, and with them their peers.
    for (const ns of namespaces()) {
      if (ns.startsWith(`${this.prefix}-`)) runSync([IP, 'netns', 'del', ns]);
    }
    if (rootLinks().includes(this.prefix)) runSync([IP, 'link', 'del', this.prefix]);
    if (this.subnet !== null) rmSync(`${RESERVATIONS}/${this.subnet}`, { recursive: true, force: true });
    this.subnet = null;
    this.created = false;
    process.removeListener('exit', this.exitHook);
  }
}
