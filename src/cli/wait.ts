/**
 * Waiting for the agents to carry out what the CLI asked for, printing what changes on the way.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dcs } from '../dcs/dcs.js';
import { PgwardenError, describeError } from '../errors.js';
import type { ClusterView } from '../cluster/types.js';
import type { Io } from './io.js';

const POLL_MS = 200;

/** Prints each distinct line once, in order. */
function printer(io: Io): (line: string) => void {
  let last = '';
  return (line) => {
    if (line === last) return;
    last = line;
    io.err(line);
  };
}

async function poll(dcs: Dcs, onError: (e: unknown) => void): Promise<ClusterView | null> {
  try {
    return await dcs.load();
  } catch (e) {
    onError(e);
    return null;
  }
}

export interface SwitchoverWait {
  kind: 'switchover' | 'failover';
  oldLeader: string | null;
  candidate: string | null;
  timeoutMs: number;
}

/**
 * Waits until a member other than the old leader (the candidate, when one was named) holds the leader key and
 * runs as primary. Prints the leader key's changes and the members' reasons as they come. Throws when the
 * agents drop the request, someone else takes over, or the time runs out.
 */
export async function waitForNewPrimary(dcs: Dcs, io: Io, wait: SwitchoverWait): Promise<ClusterView> {
  const deadline = Date.now() + wait.timeoutMs;
  const say = printer(io);
  const reasons = new Map<string, string>();
  let leaderSeen: string | null | undefined;
  let last: ClusterView | null = null;
  for (;;) {
    const view = await poll(dcs, (e) => say(`etcd: ${describeError(e)} (retrying)`));
    if (view !== null) {
      last = view;
      const leader = view.leader?.name ?? null;
      if (leaderSeen !== undefined && leader !== leaderSeen) say(`leader key: ${leaderSeen ?? 'free'} → ${leader ?? 'free'}`);
      leaderSeen = leader;
      for (const m of Object.values(view.members).sort((a, b) => a.name.localeCompare(b.name))) {
        const line = `${m.name}: ${m.role}, ${m.state}: ${m.reason}`;
        if (reasons.get(m.name) !== line && (m.name === wait.oldLeader || m.name === wait.candidate || m.name === leader)) {
          reasons.set(m.name, line);
          say(line);
        }
      }
      if (leader !== null && leader !== wait.oldLeader) {
        if (wait.candidate !== null && leader !== wait.candidate) {
          throw new PgwardenError(
            'SWITCHOVER_REJECTED',
            `${leader} took the leader key instead of ${wait.candidate}: the cluster has a primary again; run \`pgwarden list\` and switch over again if needed`,
          );
        }
        const status = view.members[leader];
        if (status && status.role === 'primary' && status.state === 'running') return view;
      }
      if (view.failover === null && leader !== null && leader === wait.oldLeader) {
        const why = view.members[leader]?.reason ?? 'no reason published';
        throw new PgwardenError(
          'SWITCHOVER_REJECTED',
          `the ${wait.kind} request was dropped by the agents and ${leader} is still the primary (its last reason: ${why}); check \`pgwarden list\` and try again`,
        );
      }
    }
    if (Date.now() >= deadline) break;
    await sleep(POLL_MS);
  }
  const states = last
    ? Object.values(last.members)
        .map((m) => `${m.name} ${m.role}/${m.state} (${m.reason})`)
        .join('; ')
    : 'etcd did not answer';
  throw new PgwardenError(
    'TIMEOUT',
    `the ${wait.kind} did not finish within ${Math.round(wait.timeoutMs / 1000)} s: ${states}. ` +
      'The request stays in etcd until an agent carries it out or drops it; `pgwarden list` shows where it stands',
  );
}

/** Waits until every member publishes paused = `paused`. */
export async function waitForPause(dcs: Dcs, io: Io, paused: boolean, timeoutMs: number): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs;
  const say = printer(io);
  const done = new Set<string>();
  let last: ClusterView | null = null;
  for (;;) {
    const view = await poll(dcs, (e) => say(`etcd: ${describeError(e)} (retrying)`));
    if (view !== null) {
      last = view;
      const members = Object.values(view.members).sort((a, b) => a.name.localeCompare(b.name));
      for (const m of members) {
        if (m.paused === paused && !done.has(m.name)) {
          done.add(m.name);
          say(`${m.name} ${paused ? 'paused' : 'resumed'}`);
        }
      }
      if (members.every((m) => m.paused === paused)) return view;
    }
    if (Date.now() >= deadline) break;
    await sleep(POLL_MS);
  }
  const pending = last ? Object.values(last.members).filter((m) => m.paused !== paused).map((m) => m.name) : [];
  throw new PgwardenError(
    'TIMEOUT',
    `not every member ${paused ? 'paused' : 'resumed'} within ${Math.round(timeoutMs / 1000)} s` +
      (pending.length > 0 ? ` (still ${paused ? 'active' : 'paused'}: ${pending.join(', ')}); are their agents running?` : ''),
  );
}
