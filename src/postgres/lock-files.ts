/**
 * Stale lock files of a PostgreSQL that died without removing them (kill -9, a crash, a reboot).
 *
 * PostgreSQL treats postmaster.pid and the socket lock `.s.PGSQL.<port>.lock` as held while kill(pid, 0) succeeds.
 * That is also true of a zombie (a killed postmaster whose parent does not reap it, e.g. a container's PID 1) and of
 * an unrelated process that reuses the PID after a reboot: then pg_ctl start and pg_rewind's single-user crash
 * recovery fail with `lock file "postmaster.pid" already exists` until someone removes the file. Backends orphaned by
 * a killed postmaster keep its shared memory attached ("pre-existing shared memory block is still in use").
 *
 * A lock is removed here only with proof that its PID is not a live PostgreSQL of the data directory: the process
 * is gone, a zombie, not a postgres program, or works in another directory (PostgreSQL chdirs to its data directory
 * and its children inherit that). When the proof cannot be had (/proc unreadable), the lock stays.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgwardenError } from '../errors.js';

export interface ProcessInfo {
  pid: number;
  /** gone: no such process; zombie: exited, not reaped; running: anything else (sleeping, stopped...). */
  state: 'gone' | 'zombie' | 'running';
  /** /proc/<pid>/comm, null when unreadable. */
  comm: string | null;
  /** The resolved working directory, null when unreadable (another user's process when not root). */
  cwd: string | null;
  /** The first element of the command line; a PostgreSQL child rewrites it to "postgres: <cluster>: <role>". */
  title: string | null;
}

/** What /proc says about `pid`. */
export function readProcess(pid: number): ProcessInfo {
  const info: ProcessInfo = { pid, state: 'gone', comm: null, cwd: null, title: null };
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') return info;
    // No /proc (or no access to it): alive as far as we can tell, with nothing known about it.
    return { ...info, state: 'running' };
  }
  // "pid (comm) S ...": the command name may contain spaces and parentheses, so the state follows the last ')'.
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  info.state = state === 'Z' || state === 'X' ? 'zombie' : 'running';
  try {
    info.comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    // Unknown.
  }
  try {
    info.cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    // Another user's process when we are not root, or it exited meanwhile.
  }
  try {
    const first = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    info.title = first === '' ? null : first;
  } catch {
    // Unknown.
  }
  return info;
}

/**
 * The PID in `dataDir`/postmaster.pid when it is a live PostgreSQL of that data directory, else null. Whoever signals
 * the postmaster (the agent, the deadman, `pgwarden down`) asks this: a zombie serves nothing, and a PID reused by
 * another program — or by another cluster's postmaster on the same host — must never be stopped in its place.
 */
export function livePostmasterPid(dataDir: string): number | null {
  const lock = readLockFile(`${dataDir}/postmaster.pid`);
  if (lock === null || lock.pid <= 0) return null;
  return mayServeDataDir(readProcess(lock.pid), resolvedDir(dataDir)) ? lock.pid : null;
}

function isPostgresProgram(comm: string | null): boolean {
  return comm === null || comm.startsWith('postgres') || comm.startsWith('postmaster');
}

/**
 * The process may be a live PostgreSQL of `dataDir` (resolved path): alive, not a zombie, a postgres program, working
 * in that directory. Anything unreadable counts against the proof of staleness, so it answers true.
 */
export function mayServeDataDir(p: ProcessInfo, dataDir: string): boolean {
  if (p.state !== 'running') return false;
  if (!isPostgresProgram(p.comm)) return false;
  return p.cwd === null || p.cwd === dataDir;
}

/** A PostgreSQL child process (backend or auxiliary) has its title rewritten; a postmaster or single-user server does not. */
function isChildTitle(title: string | null): boolean {
  return title !== null && title.startsWith('postgres: ');
}

export interface DataDirProcesses {
  /** A postmaster (or single-user server) working in the data directory: it must never be touched. */
  server: ProcessInfo | null;
  /** Children of a postmaster that is gone. */
  orphans: ProcessInfo[];
}

/**
 * Sorts the live postgres processes working in `dataDir` (resolved): a process whose title is not a child's is a
 * server; without a server, every child left is an orphan of a dead postmaster.
 */
export function classifyDataDirProcesses(processes: readonly ProcessInfo[], dataDir: string): DataDirProcesses {
  const mine = processes.filter((p) => p.state === 'running' && isPostgresProgram(p.comm) && p.cwd === dataDir);
  const server = mine.find((p) => !isChildTitle(p.title)) ?? null;
  return { server, orphans: server === null ? mine : [] };
}

/** Every process /proc lists whose command name is a postgres program (the others cannot hold PostgreSQL's files). */
function postgresProcesses(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    if (!comm.startsWith('postgres') && !comm.startsWith('postmaster')) continue;
    out.push(readProcess(Number(entry)));
  }
  return out;
}

/** The resolved path of `dir` (PostgreSQL's cwd is resolved), or `dir` itself when it cannot be resolved. */
export function resolvedDir(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return dir;
  }
}

interface LockFile {
  pid: number;
  /** Line 2: the data directory of the server that wrote it. */
  dataDir: string | null;
}

function readLockFile(file: string): LockFile | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  // A file PostgreSQL had not finished writing, or garbage: PostgreSQL itself would refuse to start on it.
  if (!Number.isInteger(pid) || pid === 0) return { pid: 0, dataDir: null };
  return { pid: Math.abs(pid), dataDir: lines[1]?.trim() || null };
}

/** How long a process that looks like a server of the data directory may take to show it is not one. */
const SERVER_SETTLE_MS = 2000;

export interface StaleLockOptions {
  dataDir: string;
  /** `<socket directory>/.s.PGSQL.<port>.lock`. */
  socketLock: string;
  /** How long orphaned backends may take to exit after SIGKILL; default 5000 ms. */
  orphanWaitMs?: number;
}

/**
 * Makes a stopped server's data directory startable: ends the orphaned children of a dead postmaster and removes the
 * lock files whose PID is proven not to be a live PostgreSQL of the directory. Returns one line per thing done (empty
 * when nothing was stale). Throws when a PostgreSQL still runs in the data directory: that one is never touched.
 */
export async function clearStaleLocks(options: StaleLockOptions): Promise<string[]> {
  const done: string[] = [];
  const dataDir = resolvedDir(options.dataDir);
  const pidFile = `${options.dataDir}/postmaster.pid`;
  const pidLock = readLockFile(pidFile);
  if (pidLock !== null && pidLock.pid > 0 && mayServeDataDir(readProcess(pidLock.pid), dataDir)) {
    throw new PgwardenError(
      'PG_COMMAND_FAILED',
      `PostgreSQL (pid ${pidLock.pid}) is still running in ${options.dataDir}: stop it first (pg_ctl stop -D ${options.dataDir}).`,
    );
  }
  let found = classifyDataDirProcesses(postgresProcesses(), dataDir);
  // A child the postmaster forked just before it died still bears the postmaster's title until it renames itself, and
  // it exits (or renames itself) within moments: only a server that stays is one.
  const settleUntil = Date.now() + SERVER_SETTLE_MS;
  while (found.server !== null && Date.now() < settleUntil) {
    await sleep(50);
    found = classifyDataDirProcesses(postgresProcesses(), dataDir);
  }
  if (found.server !== null) {
    throw new PgwardenError(
      'PG_COMMAND_FAILED',
      `A PostgreSQL server (pid ${found.server.pid}) is still running in ${options.dataDir} although postmaster.pid does not name it: ` +
        `stop it first (kill -INT ${found.server.pid}) and check who rewrote postmaster.pid.`,
    );
  }
  if (found.orphans.length > 0) {
    // They belong to a dead postmaster (PostgreSQL itself would SIGQUIT them); while they live they keep its shared
    // memory attached and a new postmaster refuses to start.
    for (const orphan of found.orphans) {
      try {
        process.kill(orphan.pid, 'SIGKILL');
      } catch {
        // Exited meanwhile.
      }
    }
    const pids = found.orphans.map((o) => o.pid);
    const deadline = Date.now() + (options.orphanWaitMs ?? 5000);
    let left = pids;
    for (;;) {
      left = left.filter((pid) => mayServeDataDir(readProcess(pid), dataDir));
      if (left.length === 0 || Date.now() >= deadline) break;
      await sleep(20);
    }
    if (left.length > 0) {
      throw new PgwardenError(
        'PG_COMMAND_FAILED',
        `Processes ${left.join(', ')} of a dead PostgreSQL in ${options.dataDir} did not exit after SIGKILL (stuck in the kernel?): ` +
          'PostgreSQL cannot start until they are gone; check them with ps.',
      );
    }
    done.push(`ended ${pids.length} orphaned process(es) of a dead postmaster (${pids.join(', ')})`);
  }
  if (pidLock !== null) {
    await rm(pidFile, { force: true });
    done.push(`removed the stale postmaster.pid (pid ${pidLock.pid} ${describeStale(pidLock.pid, dataDir)})`);
  }
  const socketLock = readLockFile(options.socketLock);
  if (socketLock !== null) {
    const owner = socketLock.pid > 0 ? readProcess(socketLock.pid) : null;
    // Another live server's socket lock (same socket directory and port): PostgreSQL's own error says so; leave it.
    const ownersDir = socketLock.dataDir ? resolvedDir(socketLock.dataDir) : dataDir;
    if (owner === null || (!mayServeDataDir(owner, ownersDir) && !mayServeDataDir(owner, dataDir))) {
      await rm(options.socketLock, { force: true });
      done.push(`removed the stale socket lock ${options.socketLock} (pid ${socketLock.pid} ${describeStale(socketLock.pid, dataDir)})`);
    }
  }
  return done;
}

function describeStale(pid: number, dataDir: string): string {
  const p = readProcess(pid);
  if (p.state === 'gone') return 'is gone';
  if (p.state === 'zombie') return 'is a zombie';
  if (!isPostgresProgram(p.comm)) return `is now ${p.comm}`;
  return p.cwd !== dataDir ? `works in ${p.cwd}` : 'is not a server';
}
