/**
 * How the proxy closes a client connection it is done with (a refusal, an error, a timeout): the last bytes (a
 * FATAL) are sent, the write side is shut (the peer sees EOF after them), and what the peer still sends is read
 * and dropped so that its EOF is seen and no unread bytes turn the close into a reset that could cost the peer
 * the FATAL. Then the descriptor is closed: at the peer's EOF, or after LINGER_MS at the latest, whether or not
 * the peer ever answers. Without that bound a peer that never closes (or a socket nobody reads, as the main thread's
 * paused ones) held its descriptor forever: each refused connection leaked one.
 */
import type { Socket } from 'node:net';
import type { Wire } from './wire/wire.js';

/** How long a closed connection waits for the peer's EOF before it is closed anyway. */
export const LINGER_MS = 2000;
const SWEEP_MS = 250;

/** Connections ended and not yet destroyed, with the time (performance.now()) they are destroyed at the latest. */
const lingering = new Map<Wire, number>();
let sweep: NodeJS.Timeout | null = null;

/**
 * Ends `wire` after sending `last` (if given) and makes sure its descriptor is closed: at the peer's EOF, or
 * after LINGER_MS. Safe to call more than once and on a destroyed wire.
 */
export function closeConnection(wire: Wire, last?: Buffer): void {
  if (wire.destroyed) return;
  if (isNodeSocket(wire)) {
    // Reads from here on are dropped: whatever listened for them is done with this connection.
    wire.removeAllListeners('data');
    wire.on('error', ignore);
  }
  if (last !== undefined && wire.writable) wire.end(last);
  else wire.end();
  // A paused socket never reads the peer's EOF (NativeWire.end resumes itself).
  wire.resume();
  if (wire.destroyed || lingering.has(wire)) return;
  lingering.set(wire, performance.now() + LINGER_MS);
  sweep ??= setInterval(destroyOverdue, SWEEP_MS).unref();
}

function destroyOverdue(): void {
  const now = performance.now();
  for (const [wire, deadline] of lingering) {
    if (wire.destroyed) lingering.delete(wire);
    else if (deadline <= now) {
      lingering.delete(wire);
      wire.destroy();
    }
  }
  if (lingering.size === 0 && sweep !== null) {
    clearInterval(sweep);
    sweep = null;
  }
}

/** Connections waiting for their peer's EOF now (for tests). */
export function lingeringConnections(): number {
  return lingering.size;
}

function isNodeSocket(wire: Wire): wire is Wire & Socket {
  return typeof (wire as Partial<Socket>).removeAllListeners === 'function';
}

function ignore(): void {}
