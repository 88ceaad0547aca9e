/**
 * Transaction mode: why a client keeps its server connection past its transactions. Session state that would
 * otherwise leak to the next client (advisory locks, LISTEN, a session SET/RESET, SQL PREPARE, a WITH HOLD cursor,
 * a temp table) pins the client to its connection; releasing the state (advisory locks counted back to 0 or
 * pg_advisory_unlock_all, UNLISTEN *, RESET ALL, DISCARD ALL) unpins it. A SET is pinned rather than remembered and
 * replayed: replaying needs the value as the server parsed it (lists, units, DEFAULT, FROM CURRENT), while pinning
 * is always right.
 *
 * What the client's SQL text does (noteSql, on the hot path: bit operations on counters only) is combined at each
 * ReadyForQuery with the CommandComplete tags the server connection saw (settle).
 */
import type { ServerConn } from './pool/server-conn.js';
import { ADVISORY_UNLOCK_ALL, SessionTag, SqlEffect, advisoryEffect, leadingEffects } from './protocol/session-state.js';

/** sqlEffects bit (beside SqlEffect's): the advisory-lock count changed. */
const ADVISORY_CHANGED = 1 << 16;

/** Why a client is pinned to its server connection. */
const enum Pin {
  Advisory = 1,
  Listen = 2,
  Set = 4,
  Prepare = 8,
  HoldCursor = 16,
  TempTable = 32,
}

const PIN_NAMES: readonly [Pin, string][] = [
  [Pin.Advisory, 'advisory lock'],
  [Pin.Listen, 'LISTEN'],
  [Pin.Set, 'SET'],
  [Pin.Prepare, 'PREPARE'],
  [Pin.HoldCursor, 'WITH HOLD cursor'],
  [Pin.TempTable, 'temporary table'],
];

export class SessionPins {
  /** Pin bits; 0: not pinned. */
  private pins = 0;
  /** SqlEffect bits (and ADVISORY_CHANGED) of the SQL sent since the last ReadyForQuery. */
  private sqlEffects = 0;
  /** Session-level advisory locks the client took and did not release, as counted from its SQL text. */
  private advisoryLocks = 0;

  /** True while session state keeps the client on its server connection. */
  get pinned(): boolean {
    return this.pins !== 0;
  }

  /** SQL with an effect on session state was sent since the last settle(). */
  get effectsPending(): boolean {
    return this.sqlEffects !== 0;
  }

  /** What the SQL text buf[start, end) of a Query or Parse does to session state. */
  noteSql(buf: Buffer, start: number, end: number): void {
    this.sqlEffects |= leadingEffects(buf, start, end);
    const advisory = advisoryEffect(buf, start, end);
    if (advisory !== 0) {
      this.advisoryLocks = advisory === ADVISORY_UNLOCK_ALL ? 0 : Math.max(0, this.advisoryLocks + advisory);
      this.sqlEffects |= ADVISORY_CHANGED;
    }
  }

  /**
   * At a ReadyForQuery on `conn`: the SQL noted and the tags `conn` saw set and clear pins (a DISCARD ALL or RESET
   * ALL also tells `conn` what it lost). Returns true when the client went from unpinned to pinned or back.
   */
  settle(conn: ServerConn): boolean {
    const tags = conn.takeSessionTags();
    const effects = this.sqlEffects;
    this.sqlEffects = 0;
    let pins = this.pins;
    if ((effects & SqlEffect.DiscardAll) !== 0) {
      pins = 0;
      this.advisoryLocks = 0;
      conn.sessionDiscarded();
    }
    if ((effects & SqlEffect.ResetAll) !== 0) {
      pins &= ~Pin.Set;
      // The connection now has the server's defaults: the client's own settings are applied again on attach.
      conn.forgetSettings();
    }
    if ((effects & SqlEffect.UnlistenAll) !== 0) pins &= ~Pin.Listen;
    if ((tags & SessionTag.Set) !== 0) {
      // A SET that is transaction-scoped or of a followed parameter (see ProxyClient.onParameterStatus) leaves nothing
      // to pin for, unless another SET of the same batch does.
      const harmless = (effects & (SqlEffect.ExemptSet | SqlEffect.FollowedSet)) !== 0 && (effects & SqlEffect.PinningSet) === 0;
      if (!harmless) pins |= Pin.Set;
    }
    if ((tags & SessionTag.Listen) !== 0) pins |= Pin.Listen;
    if ((tags & SessionTag.Prepare) !== 0) pins |= Pin.Prepare;
    if ((tags & SessionTag.DeclareCursor) !== 0 && (effects & SqlEffect.HoldCursor) !== 0) pins |= Pin.HoldCursor;
    if ((effects & SqlEffect.TempTable) !== 0) pins |= Pin.TempTable;
    pins = this.advisoryLocks > 0 ? pins | Pin.Advisory : pins & ~Pin.Advisory;
    const flipped = (pins === 0) !== (this.pins === 0);
    this.pins = pins;
    return flipped;
  }

  /** The client leaves its server connection: whatever pinned it went with it. Returns whether it was pinned. */
  clear(): boolean {
    const was = this.pins !== 0;
    this.pins = 0;
    this.advisoryLocks = 0;
    this.sqlEffects = 0;
    return was;
  }

  /** Why the client is pinned, for the log ("advisory lock, SET"). */
  reasons(): string {
    return PIN_NAMES.filter(([bit]) => (this.pins & bit) !== 0)
      .map(([, name]) => name)
      .join(', ');
  }
}
