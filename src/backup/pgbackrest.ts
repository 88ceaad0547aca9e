/**
 * Drives the `pgbackrest` program for one cluster's stanza: writes its configuration file, creates the stanza,
 * checks the archive, takes and expires backups, reads the repository's contents, and gives PostgreSQL its
 * archive_command and restore_command. Every command runs as the PostgreSQL OS user (pgBackRest reads the data
 * directory and must own what it writes to the repository and spool) with `--config=<file>`.
 */
import { accessSync, constants } from 'node:fs';
import { chmod, chown, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PgwardenError, isPgwardenError } from '../errors.js';
import { renderPgpass } from '../postgres/conf.js';
import { runAsIdentity, runProgram, withSecretFile, writeFileAs, type OsUser } from '../postgres/run.js';
import { backupWorkPaths, renderPgBackRestConf, type BackupRepositorySettings, type BackupSecrets } from './pgbackrest-conf.js';
import { parseInfoJson, type BackupType, type StanzaInfo } from './pgbackrest-info.js';
import { BackupProgressReader, classifyFailure, classifyMessage, type BackupProgress } from './pgbackrest-output.js';

export const PGBACKREST_BIN = '/usr/bin/pgbackrest';

export interface PgBackRestOptions {
  settings: BackupRepositorySettings;
  /** Secret values (cipher pass, S3 keys), read from their files by the caller; they go into `configFile` only. */
  secrets: BackupSecrets;
  /** Where pgbackrest.conf is written (mode 0600, owned by the PostgreSQL OS user). */
  configFile: string;
  /** The OS user PostgreSQL runs as; pgBackRest runs as it when pgwarden is root. Default 'postgres'. */
  runAs?: string;
  /** The password of `settings.postgres.user`, handed to pgBackRest's libpq through a temporary password file. */
  postgresPassword: string;
  /** Default /usr/bin/pgbackrest. */
  binary?: string;
  /** Limit of a backup; default 24 h. */
  backupTimeoutMs?: number;
  /** Limit of every other command (check waits for a WAL segment to be archived); default 10 min. */
  commandTimeoutMs?: number;
}

export interface BackupRequest {
  type: BackupType;
  /** Told what the backup is doing as pgBackRest reports it. */
  onProgress?: (progress: BackupProgress) => void;
}

export interface BackupResult {
  /** The label of the new backup (null if pgBackRest did not print it). */
  label: string | null;
  /** The size pgBackRest reported ("22.2MB"), and how many files it holds. */
  size: string | null;
  files: number | null;
}

/** A value for postgresql.conf's archive_command/restore_command, run by /bin/sh: quoted unless plainly safe. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export class PgBackRest {
  private readonly binary: string;
  private readonly owner: OsUser | null;

  constructor(private readonly options: PgBackRestOptions) {
    this.binary = options.binary ?? PGBACKREST_BIN;
    this.owner = runAsIdentity(options.runAs ?? 'postgres');
  }

  get stanza(): string {
    return this.options.settings.stanza;
  }

  /** The repository as messages name it. */
  private get repositoryName(): string {
    const repo = this.options.settings.repository;
    return repo.type === 'posix' ? `the repository ${repo.path}` : `the repository s3://${repo.bucket}${repo.path ?? '/'} at ${repo.endpoint}`;
  }

  /**
   * Writes pgbackrest.conf (0600: it may hold the cipher pass and S3 keys) and makes the log, lock and spool
   * directories, all owned by the PostgreSQL OS user. Call before any command and after the settings change.
   */
  async writeConfig(): Promise<void> {
    const conf = renderPgBackRestConf(this.options.settings, this.options.secrets);
    const work = this.options.settings.workDir;
    for (const dir of [work, ...Object.values(backupWorkPaths(work))]) {
      await mkdir(dir, { recursive: true });
      await chmod(dir, 0o700);
      if (this.owner) await chown(dir, this.owner.uid, this.owner.gid);
    }
    await mkdir(path.dirname(this.options.configFile), { recursive: true });
    await writeFileAs(this.options.configFile, conf, this.owner, 0o600);
  }

  /** postgresql.conf's archive_command: pushes each finished WAL segment (and .history file) to the repository. */
  archiveCommand(): string {
    return [this.binary, `--config=${this.options.configFile}`, `--stanza=${this.stanza}`, 'archive-push', '%p'].map((w) => (w === '%p' ? w : shellWord(w))).join(' ');
  }

  /** postgresql.conf's restore_command: fetches a WAL segment or history file from the repository. */
  restoreCommand(): string {
    return [this.binary, `--config=${this.options.configFile}`, `--stanza=${this.stanza}`, 'archive-get', '%f', '"%p"'].map((w) => (w.includes('%') ? w : shellWord(w))).join(' ');
  }

  /** Creates the stanza in the repository for this cluster; refused when it exists for another cluster. */
  async stanzaCreate(): Promise<void> {
    await this.run('stanza-create', [], { timeoutMs: this.commandTimeout, postgres: true });
  }

  /** Checks that the configuration is valid and that WAL archiving works (it archives one segment and waits for it). */
  async check(): Promise<void> {
    await this.run('check', [], { timeoutMs: this.commandTimeout, postgres: true });
  }

  /** Takes a backup; a diff or incr without a prior full backup becomes a full one (pgBackRest's rule, it warns). */
  async backup(request: BackupRequest): Promise<BackupResult> {
    const reader = new BackupProgressReader();
    let done: BackupResult = { label: null, size: null, files: null };
    await this.run('backup', [`--type=${request.type}`], {
      timeoutMs: this.options.backupTimeoutMs ?? 24 * 3600_000,
      postgres: true,
      // detail: one line per copied file with the share of the backup done so far.
      consoleLevel: 'detail',
      onLine: (line) => {
        const event = reader.line(line);
        if (event === null) return;
        if (event.kind === 'done') done = { label: event.label, size: event.size, files: event.files };
        request.onProgress?.(event);
      },
    });
    return done;
  }

  /** The stanza's backups, archive and recoverable window (`pgbackrest info --output=json`). */
  async info(): Promise<StanzaInfo> {
    // The JSON is one line on stdout, taken whole as it streams (runProgram keeps only the end of long output).
    // Warnings stay in pgBackRest's log file: on stderr they could land in the middle of it.
    let json: string | undefined;
    const output = await this.run('info', ['--output=json'], {
      timeoutMs: this.commandTimeout,
      postgres: false,
      consoleLevel: 'error',
      stderrLevel: 'off',
      onLine: (line) => {
        if (line.startsWith('[')) json = line;
      },
    });
    if (json === undefined) throw new PgwardenError('BACKUP_FAILED', `pgbackrest info printed no JSON: ${output.trim().slice(0, 500) || '(no output)'}`);
    const info = parseInfoJson(json, this.stanza);
    // info does not fail on a repository it cannot read: it reports it in the stanza's status.
    if (info.status.code !== 0 && info.status.code !== 2 /* no valid backups */) {
      // The repository's own status says more than the stanza's ("other") when it could not be read.
      const message = info.repositoryStatus.find((r) => r.code !== 0 && r.code !== 2)?.message ?? info.status.message;
      throw classifyMessage('info', { code: null, message }, `status ${info.status.code}`, this.repositoryName);
    }
    return info;
  }

  /** Removes backups and archived WAL beyond the retention of the settings. */
  async expire(): Promise<void> {
    await this.run('expire', [], { timeoutMs: this.commandTimeout, postgres: false });
  }

  private get commandTimeout(): number {
    return this.options.commandTimeoutMs ?? 600_000;
  }

  /**
   * Runs one pgBackRest command and returns its output; a failure becomes the PgwardenError of its class with
   * pgBackRest's message. `postgres`: the command connects to PostgreSQL (libpq gets a password file).
   */
  private async run(
    command: string,
    extra: string[],
    how: {
      timeoutMs: number;
      postgres: boolean;
      consoleLevel?: 'off' | 'error' | 'info' | 'detail';
      stderrLevel?: 'off' | 'warn';
      onLine?: (line: string) => void;
    },
  ): Promise<string> {
    try {
      accessSync(this.binary, constants.X_OK);
    } catch {
      throw new PgwardenError('DEPENDENCY_MISSING', `pgBackRest (${this.binary}) is not installed: install it with \`apt-get install -y pgbackrest\` (Debian 12), then try again`);
    }
    const args = [
      `--config=${this.options.configFile}`,
      `--stanza=${this.stanza}`,
      `--log-level-console=${how.consoleLevel ?? 'info'}`,
      // Errors and warnings on stderr too, whatever the console level.
      `--log-level-stderr=${how.stderrLevel ?? 'warn'}`,
      ...extra,
      command,
    ];
    let pending = '';
    const onOutput = how.onLine
      ? (chunk: string): void => {
          pending += chunk;
          const lines = pending.split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) how.onLine!(line);
        }
      : undefined;
    const exec = async (env: Record<string, string>): Promise<string> => {
      // Every exit code is taken here so that the whole output can be read for pgBackRest's message.
      const result = await runProgram(this.binary, args, {
        timeoutMs: how.timeoutMs,
        runAs: this.owner,
        env,
        hint: 'See pgBackRest\'s log in ' + backupWorkPaths(this.options.settings.workDir).log,
        allowExitCodes: Array.from({ length: 255 }, (_, i) => i + 1),
        onOutput,
      });
      if (pending !== '') how.onLine?.(pending);
      if (result.exitCode !== 0) throw classifyFailure(command, result.output, `exit ${result.exitCode}`, this.repositoryName);
      return result.output;
    };
    try {
      if (!how.postgres) return await exec({});
      const pgpass = renderPgpass([{ user: this.options.settings.postgres.user, password: this.options.postgresPassword }]);
      return await withSecretFile(pgpass, this.owner, (file) => exec({ PGPASSFILE: file }));
    } catch (e) {
      if (isPgwardenError(e) && e.code === 'PG_COMMAND_FAILED') {
        // Killed by a signal, or could not be started: no pgBackRest message to classify.
        throw new PgwardenError('BACKUP_FAILED', `pgbackrest ${command}: ${e.message}`, { cause: e });
      }
      throw e;
    }
  }
}
