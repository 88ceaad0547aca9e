/**
 * Helpers for integration tests against real PostgreSQL 15 servers run as the `postgres` OS user. Every server a
 * test makes through `makeTestServer` is registered, so `cleanupServers()` (call it in `after()`) and, as a last
 * resort, a process-exit hook end them by their postmaster PID.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { runAsIdentity } from '../../src/postgres/run.js';
import { type PeerAddress, PostgresServer, type PostgresServerOptions } from '../../src/postgres/server.js';
import { freePort } from './ports.js';

export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';

const servers = new Set<PostgresServer>();
const dirs = new Set<string>();

// An exit without cleanupServers() (a failed run, Ctrl-C of a bench): stop the servers and remove their directories.
process.once('exit', () => {
  for (const server of servers) {
    const pid = server.postmasterPid();
    if (pid !== null) {
      try {
        // SIGQUIT: immediate shutdown; the postmaster takes its children down with it.
        process.kill(pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
});

/** A temporary directory owned by the PostgreSQL OS user (mode 0700), removed by cleanupServers(). */
export async function makePgTempDir(prefix = 'pgwarden-pg-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const owner = runAsIdentity('postgres');
  await chmod(dir, 0o700);
  if (owner) await chown(dir, owner.uid, owner.gid);
  dirs.add(dir);
  return dir;
}

/** Random credentials for the three roles a member needs. */
export function testCredentials(): Pick<PostgresServerOptions, 'superuser' | 'replication' | 'rewind'> {
  const secret = () => randomBytes(12).toString('base64url');
  return {
    superuser: { username: 'postgres', password: secret() },
    replication: { username: 'replicator', password: secret() },
    rewind: { username: 'rewinder', password: secret() },
  };
}

/** A PostgresServer on a free loopback port with its data directory under `baseDir`, registered for cleanup. */
export async function makeTestServer(
  name: string,
  baseDir: string,
  credentials: Pick<PostgresServerOptions, 'superuser' | 'replication' | 'rewind'>,
  overrides: Partial<PostgresServerOptions> = {},
): Promise<PostgresServer> {
  const server = new PostgresServer({
    name,
    dataDir: path.join(baseDir, name, 'data'),
    binDir: PG_BIN_DIR,
    host: '127.0.0.1',
    port: await freePort(),
    ...credentials,
    startTimeoutSec: 30,
    stopTimeoutSec: 20,
    ...overrides,
    // Small memory footprint: several servers share a 2-core test machine.
    parameters: { shared_buffers: '32MB', max_connections: 30, fsync: false, ...(overrides.parameters ?? {}) },
  });
  servers.add(server);
  return server;
}

/** The address other members use to reach `server`. */
export function addressOf(server: PostgresServer): PeerAddress {
  return { name: server.name, host: server.connectHost, port: server.port };
}

/** Connection settings for a role over TCP (what an application or another member would use). */
export function tcpConfig(server: PostgresServer, user: string, password: string): pg.ClientConfig {
  return { host: server.connectHost, port: server.port, user, password, database: 'postgres', connectionTimeoutMillis: 3000 };
}

/** Runs one statement on a fresh connection (like `psql -c`) and returns the rows. */
export async function psql<T = Record<string, unknown>>(config: pg.ClientConfig, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionTimeoutMillis: 3000, ...config });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Polls `probe` until it returns a value other than undefined/null/false, or fails with the last error seen. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await sleep(100);
  }
}

/**
 * `work`'s result; rejects if it has not settled after `timeoutMs`. The limit only stops a hang (a test waiting
 * for something that never comes), it measures nothing.
 */
export async function unlessHung<T>(what: string, work: Promise<T>, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting for ${what} after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([work, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** The postmaster and its direct children (every backend and auxiliary process), from /proc. */
export async function serverProcesses(postmasterPid: number): Promise<number[]> {
  const pids = [postmasterPid];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command name: state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmasterPid) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** Stops every registered server (immediate, then SIGKILL of its postmaster PID) and removes the temp dirs. */
export async function cleanupServers(): Promise<void> {
  for (const server of servers) {
    await server.close();
    const pid = server.postmasterPid();
    if (pid !== null) {
      await server.stop('immediate').catch(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      });
    }
    servers.delete(server);
  }
  for (const dir of dirs) {
    await rm(dir, { recursive: true, force: true });
    dirs.delete(dir);
  }
}
