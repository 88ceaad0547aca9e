/**
 * How the members rejoined after each chaos round: pg_rewind runs (and how many failed) and re-clones, from the
 * agents' own counters on their /metrics. A rejoin by re-clone copies the whole database; after the suite's
 * faults the data directories are intact, so pg_rewind must always be enough and a re-clone fails the run.
 * Pure: the harness scrapes, this reads and subtracts.
 */

/** One agent's counters at one moment, and which process they belong to. */
export interface RejoinCounters {
  /** The agent process's start time (s since the epoch): a new value means a new process whose counters began at 0. */
  processStart: number;
  rewinds: number;
  rewindFailures: number;
  reclones: number;
}

export interface RejoinCounts {
  rewinds: number;
  rewindFailures: number;
  reclones: number;
}

export const NO_REJOINS: RejoinCounts = { rewinds: 0, rewindFailures: 0, reclones: 0 };

/**
 * Reads the counters from an agent's Prometheus text: `pgwarden_ha_actions_total{action="rewind"|"reinitialize"}`
 * (counted when an action starts), `pgwarden_ha_action_failures_total{action="rewind"}` and the process start time.
 * Null when the text lacks the start time (not an agent's /metrics).
 */
export function parseRejoinCounters(text: string): RejoinCounters | null {
  let processStart: number | null = null;
  const counters: RejoinCounters = { processStart: 0, rewinds: 0, rewindFailures: 0, reclones: 0 };
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = '', raw] = m;
    const value = Number(raw);
    if (!Number.isFinite(value)) continue;
    const action = /(?:^|[{,])action="([^"]*)"/.exec(labels)?.[1];
    if (name === 'pgwarden_agent_process_start_time_seconds') processStart = value;
    else if (name === 'pgwarden_ha_actions_total' && action === 'rewind') counters.rewinds = value;
    else if (name === 'pgwarden_ha_actions_total' && action === 'reinitialize') counters.reclones = value;
    else if (name === 'pgwarden_ha_action_failures_total' && action === 'rewind') counters.rewindFailures = value;
  }
  return processStart === null ? null : { ...counters, processStart };
}

/**
 * What happened between two scrapes of one agent. A restarted agent (another process start, or counters that went
 * down) counts from zero: its predecessor was killed by the fault, so whatever it did after `before` is not known,
 * and the new process's counters are all of this round's. An agent not scraped before (it was down) likewise.
 */
export function rejoinsBetween(before: RejoinCounters | null, after: RejoinCounters | null): RejoinCounts {
  if (after === null) return NO_REJOINS;
  const restarted =
    before === null ||
    before.processStart !== after.processStart ||
    after.rewinds < before.rewinds ||
    after.rewindFailures < before.rewindFailures ||
    after.reclones < before.reclones;
  const base = restarted ? NO_REJOINS : before;
  return {
    rewinds: after.rewinds - base.rewinds,
    rewindFailures: after.rewindFailures - base.rewindFailures,
    reclones: after.reclones - base.reclones,
  };
}

/** The sum over every agent of what happened between two snapshots (agent name → counters). */
export function roundRejoins(before: ReadonlyMap<string, RejoinCounters | null>, after: ReadonlyMap<string, RejoinCounters | null>): RejoinCounts {
  const total = { ...NO_REJOINS };
  for (const [member, counters] of after) {
    const d = rejoinsBetween(before.get(member) ?? null, counters);
    total.rewinds += d.rewinds;
    total.rewindFailures += d.rewindFailures;
    total.reclones += d.reclones;
  }
  return total;
}
