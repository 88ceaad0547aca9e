import path from 'node:path';
import type { ControlState } from './observation.js';
import type { Lsn } from '../cluster/types.js';
import { parseLsn } from './lsn.js';
import { type OsUser, runProgram } from './run.js';

const CONTROL_STATES: readonly ControlState[] = [
  'starting up',
  'shut down',
  'shut down in recovery',
  'shutting down',
  'in crash recovery',
  'in archive recovery',
  'in production',
];

/** The parts of `pg_controldata` output the HA loop needs; `fields` keeps every line for diagnostics. */
export interface ControlData {
  state: ControlState | null;
  /** "Latest checkpoint's TimeLineID". */
  timeline: number | null;
  /** "Database system identifier", kept as text: it does not fit a JS number. */
  systemId: string | null;
  /** "Data page checksum version": 0 means checksums are off. */
  checksumVersion: number | null;
  /** "Latest checkpoint location". */
  checkpointLsn: Lsn | null;
  /** "wal_log_hints setting" === on. */
  walLogHints: boolean | null;
  fields: Record<string, string>;
}

function parseIntOrNull(text: string | undefined): number | null {
  if (text === undefined || !/^\d+$/.test(text)) return null;
  return Number(text);
}

/** Parses `pg_controldata` output produced under LC_ALL=C (English labels). */
export function parseControlData(output: string): ControlData {
  const fields: Record<string, string> = {};
  for (const line of output.split('\n')) {
    // Labels never contain ':', values may ("pg_control last modified: ... 16:27:30"); some labels are followed
    // by no space at all ("Latest checkpoint's oldestCommitTsXid:0").
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  const state = fields['Database cluster state'];
  const checkpoint = fields['Latest checkpoint location'];
  const hints = fields['wal_log_hints setting'];
  return {
    state: CONTROL_STATES.includes(state as ControlState) ? (state as ControlState) : null,
    timeline: parseIntOrNull(fields["Latest checkpoint's TimeLineID"]),
    systemId: /^\d+$/.test(fields['Database system identifier'] ?? '') ? fields['Database system identifier'] : null,
    checksumVersion: parseIntOrNull(fields['Data page checksum version']),
    checkpointLsn: checkpoint && /^[0-9A-Fa-f]+\/[0-9A-Fa-f]+$/.test(checkpoint) ? parseLsn(checkpoint) : null,
    walLogHints: hints === undefined ? null : hints === 'on',
    fields,
  };
}

/** Runs pg_controldata on a data directory (it reads pg_control only, so it is safe while the server runs). */
export async function readControlData(binDir: string, dataDir: string, runAs: OsUser | null, timeoutMs = 5000): Promise<ControlData> {
  const { output } = await runProgram(path.join(binDir, 'pg_controldata'), ['-D', dataDir], {
    timeoutMs,
    runAs,
    hint: `Check that ${dataDir} is a PostgreSQL 15 data directory readable by the PostgreSQL OS user.`,
  });
  return parseControlData(output);
}
