/**
 * `pgbackrest info --output=json` parsed into typed backups and the recoverable window. Pure; the JSON shape is
 * pgBackRest 2.45's (one element per stanza; see test/fixtures/pgbackrest-info-2.45.json, recorded from a real run).
 */
import { PgwardenError } from '../errors.js';

export type BackupType = 'full' | 'diff' | 'incr';

export interface BackupEntry {
  label: string;
  type: BackupType;
  /** The full (and, for an incremental, diff or incr) backups it depends on; null for a full backup. */
  prior: string | null;
  startTime: Date;
  stopTime: Date;
  /** The database's size at backup time (bytes). */
  size: number;
  /** What this backup stored in the repository (bytes, after compression, without the files it shares with `prior`). */
  repoSize: number;
  /** The repository bytes a restore of this backup reads: its own and those it references in prior backups. */
  repoSizeTotal: number;
  /** pgBackRest found page checksum errors while copying (its `error` flag); the backup exists but needs a look. */
  checksumErrors: boolean;
  /** First and last WAL segment needed to make the backup consistent. */
  walStart: string;
  walStop: string;
  /** Start and stop LSN of the backup (null when pgBackRest did not record them). */
  lsnStart: string | null;
  lsnStop: string | null;
  /** The timeline the backup was taken on (from its first WAL segment's name). */
  timeline: number;
  /** pgBackRest's database (system) id in the repository's history this backup belongs to. */
  databaseId: number;
}

/**
 * The points a restore can reach with what the repository holds for the current database.
 *
 * - `from`: the oldest backup's *stop*, not its start. A restore replays at least up to the end of the backup
 *   (the point where the copied files become consistent); PostgreSQL refuses a target before it ("recovery stop
 *   point is before consistent recovery point"). So the first reachable time is that backup's stop time and the
 *   first reachable LSN its stop LSN.
 * - `to`: the newest archived WAL segment. pgBackRest's info knows segments, not times, so the end is a segment
 *   and an LSN bound (the end of that segment): any target at or before the last commit in it is reachable, when
 *   the archive has no gap between the oldest backup and that segment (`pgbackrest check`/`verify` say so;
 *   info does not). Its time is only known by reading the WAL, which is a restore's job.
 *
 * null when there is no backup: without a base backup there is nothing to replay WAL onto.
 */
export interface RecoverableWindow {
  from: { time: Date; lsn: string | null; label: string; timeline: number };
  to: { walSegment: string; timeline: number; lsnBefore: string };
}

export interface StanzaInfo {
  name: string;
  /** pgBackRest's status: 0 ok; otherwise `message` says what (e.g. "missing stanza path", "no valid backups"). */
  status: { code: number; message: string };
  /** Each repository's status (pgBackRest 2.45 has one repository per stanza here: repo1). */
  repositoryStatus: Array<{ key: number; code: number; message: string }>;
  /** Whether a backup of this stanza runs right now (its lock is held). */
  backupRunning: boolean;
  cipher: string;
  /** The current database of the stanza (the last of its history). */
  database: { id: number; systemId: string; version: string } | null;
  /** Oldest first. */
  backups: BackupEntry[];
  /** The archived WAL of the current database: oldest and newest segment. */
  archive: { min: string; max: string } | null;
  window: RecoverableWindow | null;
}

const SEGMENT = /^[0-9A-F]{24}$/;
const DEFAULT_WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

/** The timeline of a WAL segment name (its first 8 hex digits). */
export function timelineOfSegment(segment: string): number {
  if (!SEGMENT.test(segment)) throw malformed(`${JSON.stringify(segment)} is not a WAL segment name`);
  return parseInt(segment.slice(0, 8), 16);
}

/** The LSN just past the end of a WAL segment, for segments of `segmentBytes` (initdb's default 16 MiB). */
export function segmentEndLsn(segment: string, segmentBytes = DEFAULT_WAL_SEGMENT_BYTES): string {
  timelineOfSegment(segment);
  const log = BigInt(`0x${segment.slice(8, 16)}`);
  const seg = BigInt(`0x${segment.slice(16, 24)}`);
  const end = (log << 32n) + (seg + 1n) * BigInt(segmentBytes);
  return `${(end >> 32n).toString(16).toUpperCase()}/${(end & 0xffffffffn).toString(16).toUpperCase()}`;
}

function malformed(problem: string): PgwardenError {
  return new PgwardenError('BACKUP_FAILED', `pgbackrest info --output=json gave unexpected output: ${problem}`);
}

type Json = Record<string, unknown>;

function object(v: unknown, where: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(`${where} is not an object`);
  return v as Json;
}
function array(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw malformed(`${where} is not an array`);
  return v;
}
function string(v: unknown, where: string): string {
  if (typeof v !== 'string') throw malformed(`${where} is not a string`);
  return v;
}
function number(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw malformed(`${where} is not a number`);
  return v;
}

function parseBackup(raw: unknown, i: number): BackupEntry {
  const where = `backup[${i}]`;
  const b = object(raw, where);
  const type = string(b.type, `${where}.type`);
  if (type !== 'full' && type !== 'diff' && type !== 'incr') throw malformed(`${where}.type is ${JSON.stringify(type)}`);
  const archive = object(b.archive, `${where}.archive`);
  const timestamp = object(b.timestamp, `${where}.timestamp`);
  const info = object(b.info, `${where}.info`);
  const repository = object(info.repository, `${where}.info.repository`);
  const lsn = b.lsn === undefined || b.lsn === null ? null : object(b.lsn, `${where}.lsn`);
  const walStart = string(archive.start, `${where}.archive.start`);
  return {
    label: string(b.label, `${where}.label`),
    type,
    prior: b.prior === null || b.prior === undefined ? null : string(b.prior, `${where}.prior`),
    startTime: new Date(number(timestamp.start, `${where}.timestamp.start`) * 1000),
    stopTime: new Date(number(timestamp.stop, `${where}.timestamp.stop`) * 1000),
    size: number(info.size, `${where}.info.size`),
    repoSize: number(repository.delta, `${where}.info.repository.delta`),
    repoSizeTotal: number(repository.size, `${where}.info.repository.size`),
    checksumErrors: b.error === true,
    walStart,
    walStop: string(archive.stop, `${where}.archive.stop`),
    lsnStart: lsn ? string(lsn.start, `${where}.lsn.start`) : null,
    lsnStop: lsn ? string(lsn.stop, `${where}.lsn.stop`) : null,
    timeline: timelineOfSegment(walStart),
    databaseId: number(object(b.database, `${where}.database`).id, `${where}.database.id`),
  };
}

/** One stanza of the info output. */
export function parseStanzaInfo(raw: unknown, segmentBytes = DEFAULT_WAL_SEGMENT_BYTES): StanzaInfo {
  const s = object(raw, 'stanza');
  const status = object(s.status, 'status');
  const lock = status.lock === undefined ? null : object(status.lock, 'status.lock');
  const backupLock = lock && lock.backup !== undefined ? object(lock.backup, 'status.lock.backup') : null;
  const dbs = array(s.db ?? [], 'db').map((d, i) => {
    const o = object(d, `db[${i}]`);
    return { id: number(o.id, `db[${i}].id`), systemId: string(o['system-id'], `db[${i}].system-id`), version: string(o.version, `db[${i}].version`) };
  });
  // pgBackRest lists the stanza's database history oldest first (a stanza-upgrade adds one).
  const database = dbs.length > 0 ? dbs.reduce((a, b) => (b.id > a.id ? b : a)) : null;
  const backups = array(s.backup ?? [], 'backup')
    .map(parseBackup)
    .sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
  let archive: StanzaInfo['archive'] = null;
  for (const [i, a] of array(s.archive ?? [], 'archive').entries()) {
    const o = object(a, `archive[${i}]`);
    if (database && number(object(o.database, `archive[${i}].database`).id, `archive[${i}].database.id`) !== database.id) continue;
    if (o.min === null || o.max === null || o.min === undefined || o.max === undefined) continue;
    archive = { min: string(o.min, `archive[${i}].min`), max: string(o.max, `archive[${i}].max`) };
  }
  const current = database ? backups.filter((b) => b.databaseId === database.id) : [];
  const oldest = current[0];
  const window: RecoverableWindow | null =
    oldest && archive
      ? {
          from: { time: oldest.stopTime, lsn: oldest.lsnStop, label: oldest.label, timeline: oldest.timeline },
          to: { walSegment: archive.max, timeline: timelineOfSegment(archive.max), lsnBefore: segmentEndLsn(archive.max, segmentBytes) },
        }
      : null;
  return {
    name: string(s.name, 'name'),
    status: { code: number(status.code, 'status.code'), message: string(status.message, 'status.message') },
    repositoryStatus: array(s.repo ?? [], 'repo').map((r, i) => {
      const o = object(r, `repo[${i}]`);
      const st = object(o.status, `repo[${i}].status`);
      return { key: number(o.key, `repo[${i}].key`), code: number(st.code, `repo[${i}].status.code`), message: string(st.message, `repo[${i}].status.message`) };
    }),
    backupRunning: backupLock ? backupLock.held === true : false,
    cipher: typeof s.cipher === 'string' ? s.cipher : 'none',
    database,
    backups,
    archive,
    window,
  };
}

/** The named stanza from `pgbackrest info --output=json`'s text. */
export function parseInfoJson(text: string, stanza: string, segmentBytes = DEFAULT_WAL_SEGMENT_BYTES): StanzaInfo {
  let parsed: unknown;
  try {
    // The system identifier is a 64-bit integer, beyond a JavaScript number's exact range: read it as a string.
    // pgBackRest also copies raw bytes into messages (a file decrypted with a wrong pass); control characters
    // are not allowed in JSON strings, and the text is one line, so they become spaces.
    parsed = JSON.parse(text.replace(/"system-id":(\d+)/g, '"system-id":"$1"').replace(/[\u0000-\u001f]/g, ' '));
  } catch {
    throw malformed('not JSON');
  }
  const found = array(parsed, 'the output').find((s) => typeof s === 'object' && s !== null && (s as Json).name === stanza);
  if (found === undefined) throw malformed(`no stanza named ${JSON.stringify(stanza)}`);
  return parseStanzaInfo(found, segmentBytes);
}
