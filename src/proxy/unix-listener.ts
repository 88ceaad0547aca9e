/**
 * unix_socket_dir: the proxy's Unix-domain socket, <dir>/.s.PGSQL.<port> as PostgreSQL and PgBouncer name it, so
 * that `psql -h <dir> -p <port>` and libpq's defaults find it. Made by the thread that accepts (the ProxyServer
 * without workers, the WorkerGroup's main thread with them); its clients are `local` connections for
 * auth_hba_file. A socket file left by a proxy that died is removed at start only when nobody answers on it; the
 * file is removed again at stop.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, stat, unlink } from 'node:fs/promises';
import { type Server, connect } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { UnixSocketSettings } from '../config/proxy.js';
import { PgwardenError } from '../errors.js';

/** PostgreSQL's socket file name for `port`. */
export function unixSocketPath(dir: string, port: number): string {
  return join(dir, `.s.PGSQL.${port}`);
}

/**
 * Makes `server` listen on the socket for `port` with unix_socket_mode and unix_socket_group; returns its path.
 * Throws CONFIG_INVALID naming the path and the fix when another process listens there, the path is not a socket,
 * or the directory cannot be used.
 */
export async function listenUnix(server: Server, settings: UnixSocketSettings, port: number, logger?: Logger): Promise<string> {
  const path = unixSocketPath(settings.dir, port);
  const gid = settings.group === null ? null : groupId(settings.group);
  await checkDirectory(settings.dir);
  await removeStaleSocket(path, logger);
  // The file is made by bind() inside listen(), synchronously: the umask gives it the mode from its first moment,
  // so no client connects through wider permissions before the chmod below.
  const umask = process.umask(~settings.mode & 0o777);
  try {
    server.listen(path);
  } finally {
    process.umask(umask);
  }
  try {
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([e]) => {
        throw e;
      }),
    ]);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    // libuv reports a missing directory as EACCES too; checkDirectory() has ruled that out.
    const fix = code === 'EACCES' ? "give the proxy's user write permission on the directory" : 'check unix_socket_dir';
    throw new PgwardenError('CONFIG_INVALID', `unix_socket_dir: cannot listen on ${path} (${code}): ${fix}`, { cause: e });
  }
  try {
    await chmod(path, settings.mode);
    if (gid !== null) await chown(path, -1, gid);
  } catch (e) {
    server.close();
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new PgwardenError('CONFIG_INVALID', `unix_socket_mode/unix_socket_group: could not set them on ${path} (${code}): the proxy's user must own the file and be a member of unix_socket_group`, { cause: e });
  }
  return path;
}

/**
 * Stops listening on the socket and removes its file (libuv removes it when the listening handle closes; a
 * leftover is removed here). Does not wait for the clients accepted on it: the caller ends them.
 */
export async function closeUnix(server: Server, path: string): Promise<void> {
  server.close();
  try {
    if ((await lstat(path)).isSocket()) await unlink(path);
  } catch {
    // gone already
  }
}

/** unix_socket_dir must exist and be a directory (neither PostgreSQL nor PgBouncer creates it). */
async function checkDirectory(dir: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(dir)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new PgwardenError(
      'CONFIG_INVALID',
      `unix_socket_dir ${dir} cannot be used (${code}): ${code === 'ENOENT' ? 'create the directory or set unix_socket_dir to an existing one' : "check the path and the proxy's permissions"}`,
      { cause: e },
    );
  }
  if (!isDirectory) throw new PgwardenError('CONFIG_INVALID', `unix_socket_dir ${dir} is not a directory: set unix_socket_dir to a directory`);
}

/**
 * A socket file at `path` from an earlier run is removed when a connection to it is refused (nobody listens);
 * a live one, or a file that is not a socket, stops the start.
 */
async function removeStaleSocket(path: string, logger?: Logger): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new PgwardenError('CONFIG_INVALID', `unix_socket_dir: cannot look at ${path} (${(e as NodeJS.ErrnoException).code}): check the directory's permissions`, { cause: e });
  }
  if (!isSocket) {
    throw new PgwardenError('CONFIG_INVALID', `unix_socket_dir: ${path} exists and is not a socket: remove it or choose another unix_socket_dir`);
  }
  const probe = connect({ path });
  // Not events.once: it also rejects on 'error', which here is an answer.
  const answer = await new Promise<string>((resolve) => {
    probe.once('connect', () => resolve('live'));
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  probe.destroy();
  if (answer === 'live') {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `unix_socket_dir: another process listens on ${path} (a proxy or PostgreSQL with the same port): stop it, or choose another unix_socket_dir or listen port`,
    );
  }
  if (answer !== 'ECONNREFUSED') {
    throw new PgwardenError('CONFIG_INVALID', `unix_socket_dir: cannot tell whether ${path} is in use (${answer}): check it and remove it if no process uses it`);
  }
  await unlink(path);
  logger?.info({ path }, 'removed a stale Unix socket file nobody listened on');
}

/** unix_socket_group as a gid: a number as is, a name from /etc/group. */
function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = readFileSync('/etc/group', 'utf8');
  } catch {
    // no /etc/group: the name cannot be found
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new PgwardenError('CONFIG_INVALID', `unix_socket_group "${group}" is not a group in /etc/group: use an existing group name or a numeric gid`);
}
