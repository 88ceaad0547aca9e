import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PgwardenError } from '../errors.js';

/** An OS account PostgreSQL programs run as. */
export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

const userCache = new Map<string, OsUser>();

/** Looks an OS account up in /etc/passwd, falling back to `id` (NSS sources such as LDAP). */
export function lookupOsUser(name: string): OsUser {
  const cached = userCache.get(name);
  if (cached) return cached;
  let found: OsUser | null = null;
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (fields[0] === name && fields.length >= 7) {
        found = { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] };
        break;
      }
    }
  } catch {
    // No readable /etc/passwd: `id` below still knows the account.
  }
  if (!found) {
    try {
      const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
      found = { name, uid, gid, home: '/' };
    } catch {
      throw new PgwardenError(
        'DEPENDENCY_MISSING',
        `The OS user "${name}" that PostgreSQL must run as does not exist. Install PostgreSQL 15 ` +
          `(apt-get install postgresql-15 creates the "postgres" user) or set the run-as user in the configuration.`,
      );
    }
  }
  userCache.set(name, found);
  return found;
}

/**
 * The account to switch to before running a PostgreSQL program: PostgreSQL refuses to run as root, so a root
 * agent switches to `userName`; an agent that already runs as an ordinary user runs everything as itself.
 */
export function runAsIdentity(userName: string): OsUser | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  return lookupOsUser(userName);
}

export interface RunOptions {
  /** The program is killed (with its process group) after this long. */
  timeoutMs: number;
  /** Account to run as; null runs as the current process's user. */
  runAs: OsUser | null;
  /** Extra environment for the child only (PGPASSFILE, PGPASSWORD...). */
  env?: Record<string, string>;
  /** What the operator should do when the program fails; appended to the error message. */
  hint: string;
  /** Exit codes that are not failures (besides 0). */
  allowExitCodes?: number[];
  /** Told each piece of stdout and stderr as it arrives (progress of a long program). */
  onOutput?: (chunk: string) => void;
}

export interface RunResult {
  exitCode: number;
  /** stdout and stderr interleaved in arrival order (the last 64 KiB). */
  output: string;
}

const KEPT_OUTPUT_BYTES = 64 * 1024;
const LINES_IN_ERRORS = 8;
/**
 * Children get a fixed, small environment instead of ours: stray PG* variables of the agent's environment
 * must not redirect them, and LC_ALL=C keeps their messages (pg_controldata's especially) in parseable English.
 */
const BASE_CHILD_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LC_ALL: 'C',
  LANG: 'C',
};

function lastLines(text: string, count: number): string {
  const lines = text.trimEnd().split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return '(no output)';
  // The caller appends ". <what to do>": drop a final period so the message does not read "..".
  return lines.slice(-count).join(' | ').replace(/\.+$/, '');
}

/**
 * Runs one PostgreSQL program to completion and returns its output. Rejects with PG_COMMAND_FAILED on a
 * non-zero exit or a signal, TIMEOUT when it ran too long (it is killed first), DEPENDENCY_MISSING when the
 * program is not installed.
 */
export function runProgram(program: string, args: string[], options: RunOptions): Promise<RunResult> {
  const name = path.basename(program);
  const user = options.runAs;
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(program, args, {
      cwd: user ? user.home || '/' : undefined,
      env: {
        ...BASE_CHILD_ENV,
        ...(user ? { HOME: user.home, USER: user.name, LOGNAME: user.name } : {}),
        ...options.env,
      },
      uid: user?.uid,
      gid: user?.gid,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so that a timeout kills the program and anything it started together.
      detached: true,
    });
    let output = '';
    const collect = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      output += text;
      options.onOutput?.(text);
      if (output.length > KEPT_OUTPUT_BYTES * 2) output = output.slice(-KEPT_OUTPUT_BYTES);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, options.timeoutMs);
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ENOENT') {
        reject(
          new PgwardenError(
            'DEPENDENCY_MISSING',
            `${program} was not found. Install PostgreSQL 15 (apt-get install postgresql-15) or set the ` +
              `PostgreSQL bin directory in the configuration.`,
            { cause: error },
          ),
        );
      } else {
        reject(new PgwardenError('PG_COMMAND_FAILED', `${name} could not be started: ${error.message}. ${options.hint}`, { cause: error }));
      }
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      output = output.length > KEPT_OUTPUT_BYTES ? output.slice(-KEPT_OUTPUT_BYTES) : output;
      if (timedOut) {
        reject(
          new PgwardenError(
            'TIMEOUT',
            `${name} did not finish within ${Math.round(options.timeoutMs / 1000)} s and was killed: ` +
              `${lastLines(output, LINES_IN_ERRORS)}. ${options.hint}`,
          ),
        );
        return;
      }
      const exitCode = code ?? -1;
      if (exitCode === 0 || options.allowExitCodes?.includes(exitCode)) {
        resolve({ exitCode, output });
        return;
      }
      const how = signal ? `killed by ${signal}` : `exit ${exitCode}`;
      reject(new PgwardenError('PG_COMMAND_FAILED', `${name} failed (${how}): ${lastLines(output, LINES_IN_ERRORS)}. ${options.hint}`));
    });
  });
}

/**
 * Writes a file atomically (temporary file + rename) owned by `owner` with `mode`, so that PostgreSQL (which
 * reads the data directory as its own user, and pg_basebackup copies every file in it) can read what a root
 * agent wrote.
 */
export async function writeFileAs(file: string, content: string, owner: OsUser | null, mode = 0o600): Promise<void> {
  const temporary = `${file}.pgwarden-tmp`;
  await writeFile(temporary, content, { mode });
  await chmod(temporary, mode);
  if (owner) await chown(temporary, owner.uid, owner.gid);
  await rename(temporary, file);
}

/**
 * Hands a secret (a password file for libpq or initdb) to a child through a file only `owner` can read, and
 * removes it afterwards: secrets never appear on a command line, where `ps` would show them.
 */
export async function withSecretFile<T>(content: string, owner: OsUser | null, use: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-secret-'));
  try {
    await chmod(dir, 0o700);
    if (owner) await chown(dir, owner.uid, owner.gid);
    const file = path.join(dir, 'secret');
    await writeFileAs(file, content, owner, 0o600);
    return await use(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
