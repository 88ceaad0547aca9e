/**
 * What pgBackRest prints, read: its progress lines during a backup and its error messages, sorted into pgwarden's
 * error codes. Pure. pgBackRest writes `P00   INFO: ...` / `P01 DETAIL: ...` lines to the console and one
 * `ERROR: [NNN]: message` line (plus continuation lines and HINTs) when a command fails.
 */
import { PgwardenError } from '../errors.js';

export type BackupProgress =
  /** The backup began: PostgreSQL's backup start WAL segment and LSN. */
  | { kind: 'started'; walSegment: string; lsn: string }
  /** A file was copied (or matched the prior backup): how far the copy is, by bytes, per pgBackRest. */
  | { kind: 'copying'; percent: number }
  /** The copy ended; PostgreSQL's backup stop WAL segment and LSN. */
  | { kind: 'stopped'; walSegment: string; lsn: string }
  /** The backup is in the repository: its label, and the size and file count pgBackRest reports. */
  | { kind: 'done'; label: string | null; size: string | null; files: number | null };

const STARTED = /backup start archive = ([0-9A-F]{24}), lsn = ([0-9A-F]+\/[0-9A-F]+)/;
const STOPPED = /backup stop archive = ([0-9A-F]{24}), lsn = ([0-9A-F]+\/[0-9A-F]+)/;
// `P01 DETAIL: backup file /data/base/1/1259 (104KB, 1.23%) checksum ...` (also "match file from prior backup").
const COPYING = /DETAIL: .*file .*\([0-9.]+\s*[KMGTP]?i?B, ([0-9.]+)%\)/;
const LABEL = /new backup label = (\S+)/;
const SIZE = /(?:full|diff|incr) backup size = ([0-9.]+\s*[KMGTP]?i?B), file total = (\d+)/;

/**
 * Turns console lines into progress events. The label and the size come on separate lines (the label first), so
 * the reader keeps the label until the size line completes the 'done' event.
 */
export class BackupProgressReader {
  private label: string | null = null;

  line(text: string): BackupProgress | null {
    let m = STARTED.exec(text);
    if (m) return { kind: 'started', walSegment: m[1], lsn: m[2] };
    m = STOPPED.exec(text);
    if (m) return { kind: 'stopped', walSegment: m[1], lsn: m[2] };
    m = COPYING.exec(text);
    if (m) return { kind: 'copying', percent: Math.min(100, Number(m[1])) };
    m = LABEL.exec(text);
    if (m) {
      this.label = m[1];
      return null;
    }
    m = SIZE.exec(text);
    if (m) return { kind: 'done', label: this.label, size: m[1], files: Number(m[2]) };
    return null;
  }
}

/** pgBackRest's error: its numeric code and its message with continuation and HINT lines, on one line. */
export interface PgBackRestErrorText {
  code: number | null;
  message: string;
}

/**
 * The first `ERROR: [NNN]: ...` of the output with the lines that continue it (indented, or HINT lines), up to
 * the next log line. Without one, the last lines of the output (what the command printed before dying).
 */
export function pgBackRestError(output: string): PgBackRestErrorText {
  const lines = output.split('\n');
  const start = lines.findIndex((l) => /ERROR: \[\d+\]:/.test(l));
  if (start === -1) {
    const tail = lines.map((l) => l.trim()).filter((l) => l !== '').slice(-4).join(' | ');
    return { code: null, message: tail === '' ? '(no output)' : tail };
  }
  const first = /ERROR: \[(\d+)\]: (.*)$/.exec(lines[start])!;
  const parts = [first[2].trim()];
  for (const l of lines.slice(start + 1)) {
    // The next log line (`P00   INFO: ...`, `2026-... P00 ...`) ends the message.
    if (/^(\S+ \S+ )?P\d\d\s+[A-Z]+:/.test(l)) break;
    if (l.trim() !== '') parts.push(l.trim());
  }
  return { code: Number(first[1]), message: readable(parts.join(' ')) };
}

/**
 * A message fit to show: a file decrypted with the wrong cipher pass is garbage, and pgBackRest quotes the line it
 * could not parse ("key/value found outside of section at line 1: <binary>"); that quote is dropped.
 */
export function readable(message: string): string {
  return message
    .replace(/(found outside of section at line \d+): .*?(?=( FormatError:| HINT:|\n|$))/g, '$1 (undecodable bytes)')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f\ufffd]/g, '')
    .replace(/\s*\n\s*/g, ' ');
}

// Error codes of pgBackRest 2.45 (its build/error.yaml) that name a failure class by themselves.
const ARCHIVE_MISMATCH = 44;
const HOST_CONNECT = 49;
const LOCK_ACQUIRE = 50;
const BACKUP_MISMATCH = 51;
const DB_MISMATCH = 58;
const DB_CONNECT = 56;
const CRYPTO = 95;

/**
 * The PgwardenError for a failed pgBackRest command: stanza of another cluster, missing stanza, wrong cipher
 * pass, repository unreachable, a backup already running, else BACKUP_FAILED; pgBackRest's message is attached
 * in every case. `command` names what ran ("backup", "stanza-create").
 */
export function classifyFailure(command: string, output: string, exit: string, repository: string): PgwardenError {
  return classifyMessage(command, pgBackRestError(output), exit, repository);
}

/** classifyFailure for a message already taken apart (info reports failures in its JSON, not as an error line). */
export function classifyMessage(command: string, error: PgBackRestErrorText, exit: string, repository: string): PgwardenError {
  const code = error.code;
  const message = readable(error.message);
  const theirs = `pgBackRest said: ${code === null ? '' : `[${code}] `}${message}`;
  if (code === ARCHIVE_MISMATCH || code === BACKUP_MISMATCH || code === DB_MISMATCH || /do not match (the database|stanza)|system-id \d+ do not match/i.test(message)) {
    return new PgwardenError(
      'BACKUP_STANZA_MISMATCH',
      `pgbackrest ${command} refused: the stanza in ${repository} belongs to another cluster (another PostgreSQL system identifier or version). ` +
        `Give this cluster its own stanza or repository; never reuse one across clusters. ${theirs}`,
    );
  }
  // A wrong pass does not fail decryption in 2.45: the garbage fails to parse as an info file (FormatError), with
  // a misleading hint to run stanza-create. A missing pass on an encrypted repository reads garbage the same way.
  if (code === CRYPTO || /CryptoError|cipher header invalid|is or was the repo encrypted|FormatError: key\/value found outside of section/i.test(message)) {
    return new PgwardenError(
      'BACKUP_CIPHER_MISMATCH',
      `pgbackrest ${command} could not decrypt ${repository}: the cipher pass is wrong, or the repository's encryption differs from the configuration. ${theirs}`,
    );
  }
  if (/has a stanza-create been performed|missing stanza (path|data)|stanza .* does not exist/i.test(message)) {
    return new PgwardenError('BACKUP_STANZA_MISSING', `pgbackrest ${command}: ${repository} holds no such stanza yet; create it (stanza-create) first. ${theirs}`);
  }
  if (code === LOCK_ACQUIRE || /unable to acquire lock/i.test(message)) {
    return new PgwardenError('BACKUP_IN_PROGRESS', `pgbackrest ${command} refused: another backup or expire of this stanza is running; wait for it to finish. ${theirs}`);
  }
  if (code === DB_CONNECT) {
    return new PgwardenError('BACKUP_FAILED', `pgbackrest ${command} could not connect to the PostgreSQL server it backs up. ${theirs}`);
  }
  if (code === HOST_CONNECT || /unable to (open|list|create path|get info for path)|not a directory|permission denied|PathMissingError|no such file or directory|HostConnectError|TLS|certificate/i.test(message)) {
    return new PgwardenError('BACKUP_REPOSITORY_UNREACHABLE', `pgbackrest ${command} could not reach ${repository}: check the path or endpoint, credentials and permissions. ${theirs}`);
  }
  return new PgwardenError('BACKUP_FAILED', `pgbackrest ${command} failed (${exit}). ${theirs}`);
}
