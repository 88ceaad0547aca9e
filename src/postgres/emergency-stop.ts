import { readdirSync, readFileSync } from 'node:fs';
import { isStopped } from '../processes.js';
import { livePostmasterPid } from './lock-files.js';

/**
 * A lease deadline found passed by more than this means whoever watches it (the agent's watchdog, the deadman) was
 * not running when it came (a frozen host or VM, a starved process): by now another member may hold the key, and
 * PostgreSQL woke up with it.
 */
export const DEADLINE_LATE_MS = 250;

/**
 * Stops the PostgreSQL of `dataDir`. On time (the lease cannot have expired yet) a fast shutdown is enough: SIGINT
 * to the postmaster. Late, every backend may be about to acknowledge a commit while another member already holds
 * the key — found by the chaos suite: a primary frozen past its lease acknowledged a write 5 ms after it woke,
 * before a fast shutdown had reached its backends. So then the postmaster is stopped (it can fork no more) and every
 * process of the server is killed at once; the WAL makes this as safe as a crash. Returns what it did, or null when
 * no PostgreSQL ran.
 */
export function stopPostgresAfterDeadline(dataDir: string, late: boolean): string | null {
  const pid = livePostmasterPid(dataDir);
  if (pid === null) return null;
  // A stopped postmaster (its host frozen while whoever stops it, outside the freeze, kept time) would act on a fast
  // shutdown only once thawed, in a race with backends answering what queued up meanwhile: killed now instead,
  // SIGKILL needs no cooperation from a stopped process, it never runs again.
  const frozen = isStopped(pid);
  try {
    if (!late && !frozen) {
      process.kill(pid, 'SIGINT');
      return `stopped PostgreSQL (fast shutdown of pid ${pid})`;
    }
    process.kill(pid, 'SIGSTOP');
    const children = childrenOf(pid);
    for (const child of children) {
      try {
        process.kill(child, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    process.kill(pid, 'SIGKILL');
    const why = frozen ? 'PostgreSQL was stopped (SIGSTOP or a frozen host) at the deadline' : 'the deadline was missed (this host was not running)';
    return `${why}: killed PostgreSQL (pid ${pid}) and its ${children.length} processes at once`;
  } catch {
    return null;
  }
}

/** Direct children of `pid`: from /proc/<pid>/task/<pid>/children, else by scanning /proc. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter((s) => s.trim() !== '').map(Number);
  } catch {
    const out: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
      } catch {
        // Ended while we looked.
      }
    }
    return out;
  }
}

