/**
 * How a client that logs in to the admin console's database is handed to the console. An interface of its own so
 * that the client and the proxy server need not import the console (which reports on both).
 */
import type { Socket } from 'node:net';

export interface ConsoleDoor {
  /** True for the console's database names (pgwarden, pgbouncer). */
  serves(database: string): boolean;
  /** What `user` may do on the console; null: not allowed in. */
  role(user: string): 'admin' | 'stats' | null;
  /** Takes over an authenticated connection: the console session owns the socket from here. */
  openSession(socket: Socket, user: string, saslFinal: Buffer | null, pid: number, secretKey: number): void;
}
