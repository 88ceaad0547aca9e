/**
 * Cheap PostgreSQL clients by the thousand, for bench:proxy's idle-client memory figure and the proxy's
 * 10,000-client test: raw TCP, a StartupMessage, SCRAM with keys derived once (PBKDF2 costs milliseconds per
 * login; with the role's SCRAM verifier in the userlist every login has the same salt, so the first client's keys
 * serve all), then nothing but the socket. A `pg.Client` per connection would cost the test process far more
 * memory and CPU than the proxy under test.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { promisify } from 'node:util';
import type { ScramKeys } from '../../src/protocol/scram.js';
import { ScramClientSession } from '../../src/proxy/auth/scram.js';

const run = promisify(execFile);

export function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`, 'utf8');
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(196608, 4);
  body.copy(out, 8);
  return out;
}

function frontendMessage(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function saslInitialResponse(data: Buffer): Buffer {
  const mechanism = Buffer.from('SCRAM-SHA-256\0', 'latin1');
  const length = Buffer.alloc(4);
  length.writeInt32BE(data.length, 0);
  return frontendMessage('p', Buffer.concat([mechanism, length, data]));
}

/** An ErrorResponse's fields as "S C M" text (severity, SQLSTATE, message). */
function errorText(body: Buffer): string {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    fields.set(String.fromCharCode(body[at]!), body.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return `${fields.get('S') ?? ''} ${fields.get('C') ?? ''} ${fields.get('M') ?? ''}`.trim();
}

/** The server answered an ErrorResponse: `text` is "SEVERITY SQLSTATE message". */
export class ServerError extends Error {
  constructor(readonly text: string) {
    super(`server error: ${text}`);
  }
}

export interface IdleClientOptions {
  host?: string;
  port: number;
  user: string;
  password: string;
  database?: string;
}

/** SCRAM keys per password and salt: derived once, reused by every later login with the same verifier. */
const cachedKeys = new Map<string, ScramKeys>();

/** Reads backend messages from `socket` and hands each to `onMessage` until it returns true (done). */
function readMessages(socket: Socket, onMessage: (type: string, body: Buffer) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let pending: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('the server closed the connection'));
    };
    const onData = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      try {
        while (pending.length >= 5) {
          const length = pending.readInt32BE(1);
          if (pending.length < 1 + length) break;
          const type = String.fromCharCode(pending[0]!);
          const body = pending.subarray(5, 1 + length);
          pending = pending.subarray(1 + length);
          if (onMessage(type, body)) {
            cleanup();
            resolve();
            return;
          }
        }
      } catch (e) {
        cleanup();
        reject(e as Error);
      }
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}

/** One authenticated idle client: resolves with its socket once ReadyForQuery arrives (rejects on an error). */
export async function idleClient(options: IdleClientOptions): Promise<Socket> {
  const socket = connect({ host: options.host ?? '127.0.0.1', port: options.port });
  socket.setNoDelay(true);
  const keyName = options.password;
  const known = cachedKeys.get(keyName);
  const scram = new ScramClientSession(known ? { keys: known, password: options.password } : { password: options.password });
  socket.once('connect', () => socket.write(startupMessage(options.user, options.database ?? 'postgres')));
  try {
    await readMessages(socket, (type, body) => {
      if (type === 'R') {
        const code = body.readInt32BE(0);
        if (code === 10) socket.write(saslInitialResponse(scram.initialResponse()));
        else if (code === 11) {
          socket.write(frontendMessage('p', scram.handleContinue(body.subarray(4))));
          if (scram.keys !== null) cachedKeys.set(keyName, scram.keys);
        } else if (code === 12) scram.handleFinal(body.subarray(4));
        else if (code !== 0) throw new Error(`unsupported authentication request ${code}`);
      } else if (type === 'E') {
        throw new ServerError(errorText(body));
      }
      return type === 'Z';
    });
  } catch (e) {
    socket.destroy();
    throw e;
  }
  socket.on('error', () => undefined);
  return socket;
}

/**
 * Opens `count` idle clients, `concurrency` logins at a time (the first alone, so that it derives the SCRAM keys
 * the others reuse). On the first failure the ones opened are closed and the error is thrown.
 */
export async function openIdleClients(options: IdleClientOptions, count: number, concurrency = 200): Promise<Socket[]> {
  const sockets: Socket[] = [];
  if (count === 0) return sockets;
  try {
    sockets.push(await idleClient(options));
    let next = 1;
    const worker = async (): Promise<void> => {
      while (next < count) {
        next++;
        sockets.push(await idleClient(options));
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } catch (e) {
    for (const s of sockets) s.destroy();
    throw e;
  }
  return sockets;
}

/** Runs `sql` on a logged-in idle client with the simple query protocol: the first column of each row, as text. */
export async function simpleQuery(socket: Socket, sql: string): Promise<(string | null)[]> {
  const rows: (string | null)[] = [];
  let error: string | null = null;
  const done = readMessages(socket, (type, body) => {
    if (type === 'D') {
      const length = body.readInt32BE(2);
      rows.push(length < 0 ? null : body.toString('utf8', 6, 6 + length));
    } else if (type === 'E') error = errorText(body);
    return type === 'Z';
  });
  socket.write(frontendMessage('Q', Buffer.from(`${sql}\0`, 'utf8')));
  await done;
  if (error !== null) throw new ServerError(error);
  return rows;
}

/** This process's open-file limit (soft, hard), Infinity for unlimited. */
export async function fileLimit(pid: number | 'self' = 'self'): Promise<{ soft: number; hard: number }> {
  const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits);
  const value = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
  return { soft: value(match?.[1]), hard: value(match?.[2]) };
}

/**
 * Makes sure this process may open `needed` files (child processes started later inherit the limit): raises the
 * soft limit, and as root the hard one, with prlimit. Returns the limit now in force; the caller decides what too
 * low means (say so, rather than failing with EMFILE somewhere).
 */
export async function ensureFileLimit(needed: number): Promise<{ soft: number; hard: number; raised: boolean; error?: string }> {
  const before = await fileLimit();
  if (before.soft >= needed) return { ...before, raised: false };
  // Never lower the hard limit; raising it needs root (CAP_SYS_RESOURCE), then it is capped by fs.nr_open.
  const hard = Math.max(before.hard, needed);
  try {
    await run('prlimit', ['--pid', String(process.pid), `--nofile=${needed}:${hard === Infinity ? 'unlimited' : hard}`]);
  } catch (e) {
    return { ...(await fileLimit()), raised: false, error: (e as Error).message.split('\n')[0] };
  }
  return { ...(await fileLimit()), raised: true };
}
