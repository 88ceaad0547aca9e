/**
 * A ServerPool the admin console can renew: RECONNECT (and PAUSE, KILL) mark every server connection open now
 * as "close needed" (PgBouncer's close_needed): idle ones close at once, busy ones close when their client
 * releases them instead of going back to the pool, and waiting clients get freshly opened connections. A pool
 * that RELOAD made smaller marks its surplus the same way.
 *
 * Kept apart from ServerPool so that the pool's hot path stays as it is: the only cost here is one size check
 * per release while nothing is marked.
 */
import type { ServerConn } from './server-conn.js';
import { ServerPool } from './server-pool.js';

export class ReconnectablePool extends ServerPool {
  private readonly closeNeeded = new Set<ServerConn>();

  /** Marks every connection open or opening now; returns how many were marked. */
  reconnect(): number {
    const { all, idle } = this.connectionsNow();
    for (const conn of all) if (!conn.closed) this.closeNeeded.add(conn);
    for (const conn of idle) {
      this.closeNeeded.delete(conn);
      this.discard(conn);
    }
    return all.length;
  }

  /** True while `conn` waits to be closed at its release (SHOW SERVERS close_needed). */
  isCloseNeeded(conn: ServerConn): boolean {
    return this.closeNeeded.has(conn);
  }

  /** Marked connections still open (WAIT_CLOSE waits for 0). */
  get closeNeededCount(): number {
    for (const conn of this.closeNeeded) if (conn.closed) this.closeNeeded.delete(conn);
    return this.closeNeeded.size;
  }

  override release(conn: ServerConn): void {
    if (this.closeNeeded.size > 0 && this.closeNeeded.delete(conn)) {
      this.discard(conn);
      return;
    }
    super.release(conn);
  }

  /** RELOAD: as ServerPool's; a smaller size closes the surplus, idle connections first, busy ones when released. */
  override updateOptions(changes: Parameters<ServerPool['updateOptions']>[0]): void {
    super.updateOptions(changes);
    let surplus = this.connectionCount - this.size;
    if (surplus <= 0) return;
    const { all, idle } = this.connectionsNow();
    const idleSet = new Set(idle);
    for (const conn of idle) {
      if (surplus <= 0) return;
      this.discard(conn);
      surplus--;
    }
    for (const conn of all) {
      if (surplus <= 0) return;
      if (conn.closed || idleSet.has(conn) || this.closeNeeded.has(conn)) continue;
      this.closeNeeded.add(conn);
      surplus--;
    }
  }

  override discard(conn: ServerConn): void {
    if (this.closeNeeded.size > 0) this.closeNeeded.delete(conn);
    super.discard(conn);
  }
}
