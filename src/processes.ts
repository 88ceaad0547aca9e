/**
 * The processes of a local cluster are found again by the PIDs recorded in the cluster directory. A PID is only
 * trusted while /proc says it is still the process we started (its command line names the cluster directory),
 * so a stale PID reused by another program after a reboot is never signalled.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The process exists and has not exited (a zombie waiting for its parent to reap it counts as exited). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; the state follows the last ')' (comm may contain one).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * When `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22), or null when it is gone. With the PID
 * it names one process for good: a PID reused later has another start time.
 */
export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[22 - 3]);
    return Number.isFinite(start) ? start : null;
  } catch {
    return null;
  }
}

/** The PID on the first line of a PID file, or null when the file is missing or holds no PID. */
export function readPidFile(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The process is stopped (state T, or t under a tracer): it cannot act on any signal but SIGKILL until continued. */
export function isStopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state === 'T' || state === 't';
  } catch {
    return false;
  }
}

/** The NUL-separated command line of `pid`, or null when the process is gone (or a zombie). */
export function commandLine(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw === '') return null;
    return raw.split('\0').filter((part) => part !== '');
  } catch {
    return null;
  }
}

/** `pid` is alive and its command line contains `marker` (a path only our process has on its command line). */
export function isOurProcess(pid: number | null | undefined, marker: string): pid is number {
  if (pid === null || pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  const args = commandLine(pid);
  return args !== null && args.some((arg) => arg.includes(marker)) && isAlive(pid);
}

/** Sends `signal`; false when the process was already gone. */
export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `gone()` is true, polling; false when `timeoutMs` passed first. */
export async function waitUntil(gone: () => boolean, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/**
 * Ends a process: `first` (SIGTERM by default), then SIGKILL if it is still there after `graceMs`. Resolves once
 * it is gone. `stillOurs` decides whether the PID still names our process.
 */
export async function terminate(
  pid: number,
  stillOurs: () => boolean,
  options: { first?: NodeJS.Signals; graceMs: number },
): Promise<void> {
  if (!stillOurs()) return;
  signal(pid, options.first ?? 'SIGTERM');
  // A stopped process acts on SIGTERM only once it runs again.
  signal(pid, 'SIGCONT');
  if (await waitUntil(() => !stillOurs(), options.graceMs)) return;
  signal(pid, 'SIGKILL');
  await waitUntil(() => !stillOurs(), 5000);
}
