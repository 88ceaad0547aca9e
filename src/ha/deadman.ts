import { execFile, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEADLINE_LATE_MS, stopPostgresAfterDeadline } from '../postgres/emergency-stop.js';
import { commandLine, isAlive, readPidFile } from '../processes.js';
import type { Deadman } from './world.js';

/**
 * The lease deadman: pgwarden's user-space counterpart of Patroni's /dev/watchdog.
 *
 * The agent's own watchdog stops PostgreSQL when the leader lease can no longer be trusted — but only while
 * the agent process lives. If the agent is killed (OOM killer, kill -9, a crash) its PostgreSQL would keep
 * accepting writes after the lease expired and a replica was promoted. So while it holds the leader key the
 * agent also *arms* a small separate process with the same deadline, re-armed on every refresh; if the
 * deadline passes without a re-arm, that process stops PostgreSQL.
 *
 * The deadline is a CLOCK_MONOTONIC instant (process.hrtime), which on Linux is the same clock in every
 * process, so agent and deadman agree on it without wall-clock jumps mattering.
 */
export const DEADLINE_FILE = 'pgwarden.deadline';
export const DEADMAN_PID_FILE = 'pgwarden.deadman.pid';
export const DEADMAN_POLL_MS = 100;
/** The deadman exits once it has been disarmed this long (the agent starts it again when it next arms). */
const IDLE_EXIT_MS = 3000;

/** performance.now() and process.hrtime() are both monotonic; this maps one onto the other. */
const HRTIME_OFFSET_NS = process.hrtime.bigint() - BigInt(Math.round(performance.now() * 1e6));

export function monoMsToHrtimeNs(monoMs: number): bigint {
  return HRTIME_OFFSET_NS + BigInt(Math.round(monoMs * 1e6));
}

interface DeadlineFile {
  deadlineNs: string;
}

/**
 * Where the deadline lives and how the deadman process is started: a file in the run directory and a detached
 * `pgwarden deadman` process in production (FileDeadlineStore); a simulated host in test/sim.
 */
export interface DeadlineStore {
  /** Writes the deadline (monotonic ms on performance.now()'s clock); throws when it could not. */
  write(deadlineMonoMs: number): void;
  /** Removes the deadline (nothing to do when there is none). */
  remove(): void;
  /** A deadline is in force (possibly written by an earlier agent process). */
  present(): boolean;
  /** Starts the deadman process unless it runs. */
  ensureRunning(): void;
}

/** The agent's side: arm with a deadline, disarm when it no longer holds the key. */
export class LeaseDeadman implements Deadman {
  private armedMs: number | null = null;
  private readonly store: DeadlineStore;

  constructor(
    runDir: string,
    dataDir: string,
    private readonly onError: (e: unknown) => void,
    onWarning: (message: string) => void = () => undefined,
    store?: DeadlineStore,
  ) {
    this.store = store ?? new FileDeadlineStore(runDir, dataDir, onWarning);
  }

  /** Sets the deadline (monotonic ms, performance.now()'s clock) and makes sure the deadman runs. */
  arm(deadlineMonoMs: number): void {
    // Re-armed with the same deadline on every action and refresh: skip the write when nothing changed.
    if (this.armedMs === deadlineMonoMs) return;
    try {
      this.store.write(deadlineMonoMs);
      this.armedMs = deadlineMonoMs;
      this.store.ensureRunning();
    } catch (e) {
      this.onError(e);
    }
  }

  /** This process armed the deadline now in force (a deadline left by an earlier agent process does not count). */
  get armedHere(): boolean {
    return this.armedMs !== null;
  }

  disarm(): void {
    if (this.armedMs === null && !this.store.present()) return;
    this.armedMs = null;
    this.store.remove();
  }
}

/** The production store: `pgwarden.deadline` in the run directory, read by a detached `pgwarden deadman`. */
export class FileDeadlineStore implements DeadlineStore {
  constructor(
    private readonly runDir: string,
    private readonly dataDir: string,
    private readonly onWarning: (message: string) => void,
  ) {}

  write(deadlineMonoMs: number): void {
    const file = path.join(this.runDir, DEADLINE_FILE);
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ deadlineNs: monoMsToHrtimeNs(deadlineMonoMs).toString() } satisfies DeadlineFile));
    renameSync(tmp, file);
  }

  remove(): void {
    try {
      unlinkSync(path.join(this.runDir, DEADLINE_FILE));
    } catch {
      // Already gone.
    }
  }

  present(): boolean {
    return existsSync(path.join(this.runDir, DEADLINE_FILE));
  }

  private priorityRefused = false;

  private raisePriority(pid: number): void {
    execFile('chrt', ['-f', '-p', DEADMAN_RT_PRIORITY, String(pid)], { timeout: 5000 }, (e, _stdout, stderr) => {
      if (e === null || this.priorityRefused) return;
      this.priorityRefused = true;
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'chrt (util-linux) is not installed' : String(stderr).trim() || e.message;
      this.onWarning(`the lease deadman runs at normal priority, not real-time (chrt -f): ${why}`);
    });
  }

  ensureRunning(): void {
    if (deadmanPidOf(this.runDir) !== null) return;
    const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
    const log = openSync(path.join(this.runDir, 'deadman.log'), 'a');
    try {
      const child = spawn(process.execPath, [main, 'deadman', '--run-dir', this.runDir, '--data-dir', this.dataDir], {
        detached: true,
        stdio: ['ignore', log, log],
      });
      child.unref();
      if (child.pid) {
        writeFileSync(path.join(this.runDir, DEADMAN_PID_FILE), String(child.pid));
        this.raisePriority(child.pid);
      }
    } finally {
      closeSync(log);
    }
  }
}

/**
 * Real-time priority (SCHED_FIFO) for the deadman, so that when a frozen host (a paused VM) runs again it is
 * scheduled before the backends that wake up with queries already in their sockets, and kills them before they
 * answer (the chaos suite measured such answers within a millisecond of the thaw). It sleeps nearly all the time,
 * so the priority costs nothing. Needs CAP_SYS_NICE (or an rtprio limit); without it the deadman runs as usual.
 */
const DEADMAN_RT_PRIORITY = '10';

/**
 * The deadman process (`pgwarden deadman`): every 100 ms, if an armed deadline has passed, stops PostgreSQL
 * (see stopPostgresAfterDeadline) and disarms.
 */
export async function runDeadman(runDir: string, dataDir: string): Promise<void> {
  const deadlineFile = path.join(runDir, DEADLINE_FILE);
  const pidFile = path.join(runDir, DEADMAN_PID_FILE);
  const nowMs = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;
  const state: DeadmanState = { idleSinceMs: nowMs() };
  for (;;) {
    // A newer deadman took over (the agent found this one dead-looking): leave.
    const owner = readPidFile(pidFile);
    if (owner !== null && owner !== process.pid) return;
    const deadline = readDeadline(deadlineFile);
    const step = deadmanPoll(state, nowMs(), deadline === null ? null : Number(deadline / 1000n) / 1000);
    if (step.kind === 'exit') {
      try {
        if (readPidFile(pidFile) === process.pid) unlinkSync(pidFile);
      } catch {
        // Nothing to clean.
      }
      return;
    }
    if (step.kind === 'fire') {
      const how = stopPostgresAfterDeadline(dataDir, step.late);
      if (how !== null) process.stderr.write(`${new Date().toISOString()} leader lease deadline passed without a refresh from the agent: ${how}\n`);
      try {
        unlinkSync(deadlineFile);
      } catch {
        // Already gone.
      }
    }
    await new Promise((r) => setTimeout(r, DEADMAN_POLL_MS));
  }
}

/** What the deadman process remembers between polls. */
export interface DeadmanState {
  /** Monotonic ms since which no deadline has been armed. */
  idleSinceMs: number;
}

/**
 * One poll of the deadman process (every DEADMAN_POLL_MS), on monotonic ms: `fire` when an armed deadline has
 * passed (stop PostgreSQL — every process at once when `late` — and remove the deadline), `exit` after
 * IDLE_EXIT_MS disarmed, `wait` otherwise. The simulator runs this same rule.
 */
export function deadmanPoll(state: DeadmanState, nowMs: number, deadlineMs: number | null): { kind: 'wait' | 'exit' } | { kind: 'fire'; late: boolean } {
  if (deadlineMs === null) return nowMs - state.idleSinceMs > IDLE_EXIT_MS ? { kind: 'exit' } : { kind: 'wait' };
  state.idleSinceMs = nowMs;
  if (nowMs < deadlineMs) return { kind: 'wait' };
  return { kind: 'fire', late: nowMs - deadlineMs > DEADLINE_LATE_MS };
}

function readDeadline(file: string): bigint | null {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as DeadlineFile;
    return BigInt(parsed.deadlineNs);
  } catch {
    return null;
  }
}

/**
 * The pid file outlives the process (kill -9, a reboot): after a reboot its pid may belong to any process, and
 * taking that one for the deadman would leave the primary without one. So the command line must say it.
 */
function isDeadmanOf(pid: number, runDir: string): boolean {
  if (!isAlive(pid)) return false;
  const args = commandLine(pid);
  return args !== null && args.includes('deadman') && args.includes(runDir);
}

/** The PID of the deadman running for `runDir`, or null. */
export function deadmanPidOf(runDir: string): number | null {
  const pid = readPidFile(path.join(runDir, DEADMAN_PID_FILE));
  return pid !== null && isDeadmanOf(pid, runDir) ? pid : null;
}
