/**
 * pgbackrest.conf rendered from typed settings: the repository (a posix path or an S3-compatible bucket),
 * retention, compression, encryption, the PostgreSQL server to back up, and where pgBackRest keeps its logs, locks
 * and asynchronous-archiving spool. Pure: secrets (the cipher pass, S3 keys) are read from their files by the
 * caller and passed in; the rendered text holds them, so whoever writes it must make it mode 0600 and never log it.
 */
import { PgwardenError } from '../errors.js';

/** Compression types pgBackRest 2.45 supports (`pgbackrest help backup compress-type`; Debian's build has lz4 and zst). */
export const COMPRESS_TYPES = ['none', 'bz2', 'gz', 'lz4', 'zst'] as const;
export type CompressType = (typeof COMPRESS_TYPES)[number];

export interface PosixRepository {
  type: 'posix';
  /** Absolute directory holding the repository; the PostgreSQL OS user must be able to write it. */
  path: string;
}

export interface S3Repository {
  type: 's3';
  /** Host name (and optional :port) of the S3 endpoint, without a scheme: pgBackRest always speaks HTTPS. */
  endpoint: string;
  bucket: string;
  region: string;
  /** Directory of the repository inside the bucket; default "/". */
  path?: string;
  /** Files holding the access key and the secret key (read by the caller into BackupSecrets). */
  keyFile: string;
  secretFile: string;
  /** "path": https://endpoint/bucket/...; "host": https://bucket.endpoint/... (virtual-hosted, AWS's default). */
  uriStyle: 'path' | 'host';
  /** Verify the endpoint's certificate; false only for test servers. */
  verifyTls: boolean;
  /** CA bundle to verify the endpoint with (a private CA); the system's store when absent. */
  caFile?: string;
}

export type BackupRepository = PosixRepository | S3Repository;

/**
 * How many backups to keep. Full backups are kept by count or for a window of days (pgBackRest then keeps the WAL
 * needed to restore to any point of that window); differential backups optionally by count. Archived WAL older
 * than the oldest kept backup is expired with it.
 */
export interface BackupRetention {
  full: { count: number } | { days: number };
  diffCount?: number;
}

export interface BackupRepositorySettings {
  /** pgBackRest's name for this cluster's backups and archive in the repository. */
  stanza: string;
  repository: BackupRepository;
  retention: BackupRetention;
  compressType: CompressType;
  /** Encrypt the repository (aes-256-cbc); the pass itself is in BackupSecrets.cipherPass. */
  encrypted: boolean;
  /** Parallel processes for backup, restore and asynchronous archiving. */
  processMax: number;
  /**
   * Start a backup with an immediate checkpoint instead of waiting for the next scheduled one (up to
   * checkpoint_timeout later): what an operator asking for a backup expects.
   */
  startFast: boolean;
  /** The PostgreSQL server to back up (pgBackRest connects over its Unix socket as `user`). */
  postgres: { dataDir: string; port: number; socketDir: string; user: string };
  /**
   * A directory owned by pgwarden and the PostgreSQL OS user: pgBackRest's logs go to `<dir>/log`, its lock files
   * to `<dir>/lock` (per cluster, so that two clusters on one host never share locks) and the asynchronous
   * archiving spool to `<dir>/spool`.
   */
  workDir: string;
}

/** Secret values, read from their files by the caller. */
export interface BackupSecrets {
  cipherPass?: string;
  s3Key?: string;
  s3KeySecret?: string;
}

/** The directories pgBackRest uses under `workDir`. */
export function backupWorkPaths(workDir: string): { log: string; lock: string; spool: string } {
  return { log: `${workDir}/log`, lock: `${workDir}/lock`, spool: `${workDir}/spool` };
}

const STANZA_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function invalid(field: string, problem: string): PgwardenError {
  return new PgwardenError('CONFIG_INVALID', `backup ${field}: ${problem}`);
}

/** A value pgbackrest.conf can hold: one line (a newline would start another option), no leading/trailing blanks. */
function value(field: string, text: string, secret = false): string {
  if (text === '' || /[\r\n\0]/.test(text) || text.trim() !== text) {
    // A secret's value is never repeated in a message.
    throw invalid(field, `${secret ? 'the value' : JSON.stringify(text)} must be one non-empty line without leading or trailing blanks`);
  }
  return text;
}

function absolute(field: string, p: string): string {
  if (!p.startsWith('/')) throw invalid(field, `${JSON.stringify(p)} must be an absolute path`);
  return value(field, p);
}

function positiveInteger(field: string, n: number, max: number): string {
  if (!Number.isInteger(n) || n < 1 || n > max) throw invalid(field, `${n} must be an integer from 1 to ${max}`);
  return String(n);
}

/** Renders pgbackrest.conf. Throws CONFIG_INVALID naming the field when a setting cannot be written. */
export function renderPgBackRestConf(settings: BackupRepositorySettings, secrets: BackupSecrets): string {
  if (!STANZA_NAME.test(settings.stanza)) {
    throw invalid('stanza', `${JSON.stringify(settings.stanza)} must be letters, digits, '_', '.' or '-', starting with a letter or digit`);
  }
  if (!COMPRESS_TYPES.includes(settings.compressType)) {
    throw invalid('compression', `${JSON.stringify(settings.compressType)} is not one of ${COMPRESS_TYPES.join(', ')}`);
  }
  const paths = backupWorkPaths(absolute('work directory', settings.workDir));
  const global: Array<[string, string]> = [];
  const repo = settings.repository;
  if (repo.type === 'posix') {
    global.push(['repo1-type', 'posix'], ['repo1-path', absolute('repository path', repo.path)]);
  } else {
    if (secrets.s3Key === undefined || secrets.s3KeySecret === undefined) {
      throw invalid('repository', `an S3 repository needs its access key and secret key (read from ${repo.keyFile} and ${repo.secretFile})`);
    }
    if (/^[a-z]+:\/\//i.test(repo.endpoint)) throw invalid('repository endpoint', `${JSON.stringify(repo.endpoint)} must be a host name without a scheme (pgBackRest always uses HTTPS)`);
    global.push(
      ['repo1-type', 's3'],
      ['repo1-path', absolute('repository path', repo.path ?? '/')],
      ['repo1-s3-endpoint', value('repository endpoint', repo.endpoint)],
      ['repo1-s3-bucket', value('repository bucket', repo.bucket)],
      ['repo1-s3-region', value('repository region', repo.region)],
      ['repo1-s3-key', value('repository key', secrets.s3Key, true)],
      ['repo1-s3-key-secret', value('repository secret key', secrets.s3KeySecret, true)],
      ['repo1-s3-uri-style', repo.uriStyle],
      ['repo1-storage-verify-tls', repo.verifyTls ? 'y' : 'n'],
    );
    if (repo.caFile !== undefined) global.push(['repo1-storage-ca-file', absolute('repository CA file', repo.caFile)]);
  }
  const full = settings.retention.full;
  if ('count' in full) {
    global.push(['repo1-retention-full-type', 'count'], ['repo1-retention-full', positiveInteger('retention full count', full.count, 9999999)]);
  } else {
    global.push(['repo1-retention-full-type', 'time'], ['repo1-retention-full', positiveInteger('retention window days', full.days, 9999999)]);
  }
  if (settings.retention.diffCount !== undefined) {
    global.push(['repo1-retention-diff', positiveInteger('retention diff count', settings.retention.diffCount, 9999999)]);
  }
  if (settings.encrypted) {
    if (secrets.cipherPass === undefined) throw invalid('encryption', 'an encrypted repository needs its cipher pass');
    global.push(['repo1-cipher-type', 'aes-256-cbc'], ['repo1-cipher-pass', value('cipher pass', secrets.cipherPass, true)]);
  }
  global.push(
    ['compress-type', settings.compressType],
    ['process-max', positiveInteger('process max', settings.processMax, 999)],
    ['start-fast', settings.startFast ? 'y' : 'n'],
    // Asynchronous archiving: archive-push returns once the WAL is queued in the spool and a background process
    // sends it in batches, so a slow repository does not hold every WAL switch of the primary.
    ['archive-async', 'y'],
    ['spool-path', paths.spool],
    ['log-path', paths.log],
    ['lock-path', paths.lock],
    // The console is for pgwarden (parsed, then logged by it); the files keep pgBackRest's own detail.
    ['log-level-file', 'info'],
  );
  const pg = settings.postgres;
  const stanza: Array<[string, string]> = [
    ['pg1-path', absolute('postgres data directory', pg.dataDir)],
    ['pg1-port', positiveInteger('postgres port', pg.port, 65535)],
    ['pg1-socket-path', absolute('postgres socket directory', pg.socketDir)],
    ['pg1-user', value('postgres user', pg.user)],
  ];
  const section = (name: string, options: Array<[string, string]>): string => `[${name}]\n${options.map(([k, v]) => `${k}=${v}\n`).join('')}`;
  return `# Written by pgwarden: changes are overwritten.\n${section('global', global)}\n${section(settings.stanza, stanza)}`;
}
