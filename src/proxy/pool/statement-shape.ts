/**
 * Result shapes of clients' named prepared statements (transaction mode).
 *
 * A client prepares a statement once, on one server connection, and learns its shape there (ParameterDescription,
 * RowDescription). The proxy prepares it again on every other server connection the client later uses it on. If
 * the table behind it was dropped and created again with other columns or types meanwhile, that second Parse
 * yields another shape, and a client decoding rows with the one it learnt reads wrong values. PostgreSQL itself
 * never lets a prepared statement change its result type: it answers ERROR 0A000 "cached plan must not change
 * result type" on each use until the client prepares it again, and drivers (postgres.js, pgx, pgjdbc) catch exactly
 * that error to prepare again. So the proxy records each statement's shape when the client prepares it and compares
 * the shape of every re-prepare with it (see ProxyClient.prepareOn and ServerConn's RecordDescribe/CheckDescribe).
 */
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import * as m from '../protocol/messages.js';

/** A statement's shape as PostgreSQL described it: both parts as latin1 strings, compared with ===. */
export interface StatementShape {
  /** The whole ParameterDescription message (type 't'), sent again as it is before the error of a Describe. */
  readonly params: string;
  /** The RowDescription body without table OIDs and column numbers (see resultShapeKey), or NO_DATA. */
  readonly result: string;
}

/** A client's named prepared statement: its Parse message, and its shape once PostgreSQL described it. */
export interface ClientStatement {
  readonly parse: Buffer;
  shape: StatementShape | null;
}

/** The result key of a statement that returns no rows (NoData). */
export const NO_DATA = 'n';

/** How a re-prepare's shape compared with the client's (ServerConnPeer.onShapeChecked). */
export const enum ShapeCheck {
  Same = 0,
  Changed = 1,
  /** An error earlier in the batch made PostgreSQL skip the re-prepare: nothing was compared. */
  Abandoned = 2,
}

/**
 * The key of a RowDescription body buffer[bodyStart, end): per column its name, type OID, type length, type
 * modifier and format, in order. The table OID and column number are zeroed: they change when a table is dropped
 * and created again with the same columns, which changes nothing for the client (nor for PostgreSQL's check).
 */
export function resultShapeKey(buffer: Buffer, bodyStart: number, end: number): string {
  const body = Buffer.from(buffer.subarray(bodyStart, end));
  if (body.length < 2) throw invalid();
  const count = body.readInt16BE(0);
  let at = 2;
  for (let i = 0; i < count; i++) {
    const nul = body.indexOf(0, at);
    // Name, NUL, table OID (4), column number (2), type OID (4), type length (2), type modifier (4), format (2).
    if (nul < 0 || nul + 19 > body.length) throw invalid();
    body.fill(0, nul + 1, nul + 7);
    at = nul + 19;
  }
  if (at !== body.length) throw invalid();
  return body.toString('latin1');
}

function invalid(): PgProtocolError {
  return new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'invalid RowDescription message');
}

/**
 * PostgreSQL's own error for a prepared statement whose result type changed, field for field (plancache.c,
 * RevalidateCachedQuery; the line is PostgreSQL 15's). postgres.js prepares again only when `routine` is
 * RevalidateCachedQuery, so the fields matter, not just the SQLSTATE.
 */
export const CACHED_PLAN_CHANGED: Buffer = m.errorResponse({
  severity: 'ERROR',
  code: '0A000',
  message: 'cached plan must not change result type',
  file: 'plancache.c',
  line: '722',
  routine: 'RevalidateCachedQuery',
});
