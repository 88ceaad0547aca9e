/**
 * What the chaos harness needs from a "lab": hosts that run programs, an address per service, and partitions
 * between hosts that can be cut and healed. Two labs implement it: NetLab (one network namespace per host,
 * nftables drops packets; the real thing) and RelayLab (every host on loopback, a fault-injecting TCP relay in
 * front of each service; the fallback where namespaces cannot be made).
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';

export type LabMode = 'netns' | 'relay';

export type Availability = { ok: true } | { ok: false; why: string };

export interface HostPort {
  host: string;
  port: number;
}

/** Where a host's service binds, and the address every other host (and the harness) uses to reach it. */
export interface ServiceAddress {
  listen: HostPort;
  advertise: HostPort;
}

export interface LabSpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdio?: StdioOptions;
  /** Run the program as this OS user instead of root (PostgreSQL refuses root). */
  runAs?: string;
  /** Own session, so a terminal's Ctrl-C reaches only the harness (default true). */
  detached?: boolean;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CutOptions {
  /** Drop packets from `from` to `to` only; the other way keeps flowing. Default: both ways. */
  oneWay?: boolean;
}

export interface Lab {
  readonly mode: LabMode;
  /** The hosts passed to create(). */
  hosts(): string[];
  create(hosts: string[]): Promise<void>;
  /** A network (CIDR) holding every host address, for pg_hba.conf; null when every host is on loopback. */
  networkCidr(): string | null;
  /** Gives `host` a service normally on `port`; in relay mode this starts the relay in front of it. */
  expose(host: string, service: string, port: number): Promise<ServiceAddress>;
  /** Starts `argv` on `host`; the caller owns the child and ends it by its PID. */
  spawn(host: string, argv: string[], options?: LabSpawnOptions): ChildProcess;
  /** Runs `argv` on `host` to its end. */
  exec(host: string, argv: string[], options?: LabSpawnOptions & { timeoutMs?: number }): Promise<ExecResult>;
  /**
   * Also counts the process `pid()` names (and its descendants) as running on `host`: a daemon that left the
   * tree of the process spawn() started (PostgreSQL's postmaster, started by pg_ctl). Relay mode needs it to
   * know where a connection comes from; netns mode does not (the namespace says it).
   */
  trackProcess(host: string, pid: () => number | null): void;
  cut(from: string[], to: string[], options?: CutOptions): Promise<void>;
  /** Heals the cuts between `from` and `to` (both ways unless oneWay); no arguments: every cut. */
  heal(from?: string[], to?: string[], options?: CutOptions): Promise<void>;
  healAll(): Promise<void>;
  /** The directed cuts now in force. */
  cuts(): Array<{ from: string; to: string }>;
  /** Ends the lab's own machinery (namespaces, bridge, relays). Programs spawned in it must be ended first. */
  destroy(): Promise<void>;
}

/**
 * The set of directed host pairs whose packets are dropped. Pure bookkeeping shared by both labs: a lab asks it
 * which hosts' rules changed and what each host must now drop.
 */
export class CutSet {
  private readonly pairs = new Set<string>();

  constructor(private readonly known: () => string[]) {}

  private key(from: string, to: string): string {
    return `${from}\u0000${to}`;
  }

  private check(hosts: string[], what: string): void {
    const known = new Set(this.known());
    for (const h of hosts) {
      if (!known.has(h)) throw new Error(`${what}: unknown host "${h}"; the lab's hosts are ${[...known].join(', ')}`);
    }
  }

  /** Adds the cuts; returns the hosts whose rules changed. */
  add(from: string[], to: string[], options: CutOptions = {}): Set<string> {
    this.check(from, 'cut');
    this.check(to, 'cut');
    const changed = new Set<string>();
    const put = (a: string, b: string): void => {
      if (a === b) return;
      const k = this.key(a, b);
      if (this.pairs.has(k)) return;
      this.pairs.add(k);
      changed.add(a).add(b);
    };
    for (const a of from) {
      for (const b of to) {
        put(a, b);
        if (!options.oneWay) put(b, a);
      }
    }
    return changed;
  }

  /** Removes cuts (all when `from`/`to` are left out); returns the hosts whose rules changed. */
  remove(from?: string[], to?: string[], options: CutOptions = {}): Set<string> {
    if (from) this.check(from, 'heal');
    if (to) this.check(to, 'heal');
    const changed = new Set<string>();
    const inFrom = (h: string) => from === undefined || from.includes(h);
    const inTo = (h: string) => to === undefined || to.includes(h);
    for (const { from: a, to: b } of this.list()) {
      const forward = inFrom(a) && inTo(b);
      const backward = !options.oneWay && inFrom(b) && inTo(a);
      if (!forward && !backward) continue;
      this.pairs.delete(this.key(a, b));
      changed.add(a).add(b);
    }
    return changed;
  }

  isCut(from: string, to: string): boolean {
    return this.pairs.has(this.key(from, to));
  }

  /** Hosts `host` may not send to. */
  blockedTo(host: string): string[] {
    return this.list().filter((p) => p.from === host).map((p) => p.to);
  }

  /** Hosts `host` may not receive from. */
  blockedFrom(host: string): string[] {
    return this.list().filter((p) => p.to === host).map((p) => p.from);
  }

  list(): Array<{ from: string; to: string }> {
    return [...this.pairs].map((k) => {
      const [from, to] = k.split('\u0000');
      return { from: from!, to: to! };
    });
  }
}

const HOST_NAME = /^[a-z][a-z0-9]{0,15}$/;

export function checkHostNames(hosts: string[]): void {
  if (new Set(hosts).size !== hosts.length) throw new Error(`host names must be unique, got ${hosts.join(', ')}`);
  for (const h of hosts) {
    if (!HOST_NAME.test(h) || h === 'switch') {
      throw new Error(`host name "${h}" is invalid: use 1-16 lower-case letters and digits, starting with a letter (not "switch")`);
    }
  }
}

let signalsHooked = false;

/**
 * Makes SIGINT, SIGTERM and SIGHUP end the process through process.exit(), so that the labs' and clusters'
 * 'exit' hooks run (they kill what was started and delete the namespaces): a harness stopped by Ctrl-C or a
 * time-out then leaves nothing behind. Installed once per process.
 */
export function exitOnSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.once(sig, () => {
      console.error(`chaos harness: ${sig}, ending every process and namespace it started`);
      process.exit(code);
    });
  }
}
