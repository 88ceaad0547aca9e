/**
 * idle_transaction_timeout and client_idle_timeout for one client, judged by a periodic sweep (ProxyServer) rather
 * than by timers per client: idle means no byte moved on the client's or its server's socket since the previous
 * sweeps and no answer owed, so the hot path pays nothing. PgBouncer's words and SQLSTATE (FATAL 08P01), so tools
 * that recognise them keep working.
 */
import { PgProtocolError, SQLSTATE } from './protocol/errors.js';

export class IdleWatch {
  /** Bytes moved as of the last sweep (-1: none yet), and since when (ms) they are unchanged. */
  private bytes = -1;
  private since = 0;

  /**
   * One sweep at `now` (ms): `bytes` moved so far on the client's and its server's sockets; `busy`: an answer is owed
   * or the client waits (for a server connection or a shape check); `inTransaction`: inside a transaction block.
   * Timeouts in ms, 0: off. Returns the error to close the client with, or null.
   */
  check(now: number, bytes: number, busy: boolean, inTransaction: boolean, idleInTransactionMs: number, clientIdleMs: number): PgProtocolError | null {
    if (bytes !== this.bytes) {
      this.bytes = bytes;
      this.since = now;
      return null;
    }
    if (busy) return null;
    const idleFor = now - this.since;
    if (idleInTransactionMs > 0 && inTransaction && idleFor > idleInTransactionMs) {
      return new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'idle transaction timeout');
    }
    if (clientIdleMs > 0 && idleFor > clientIdleMs) return new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'client_idle_timeout');
    return null;
  }
}
