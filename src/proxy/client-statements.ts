/**
 * A client's named prepared statements. They live on the server connection the client prepared them on; in
 * transaction mode the proxy prepares them again on each other connection the client uses them on (prepareOn).
 * PostgreSQL never lets a prepared statement change its result type, so neither does the proxy: a statement's shape
 * is recorded when the client prepares it, and when it is prepared again its shape is compared first, the client's
 * Bind/Describe waiting the one round trip in the framer as it waits for a server connection. A different shape (the
 * table was dropped and created with other columns) gets PostgreSQL's ERROR 0A000 "cached plan must not change
 * result type" on each use until the client prepares the statement again (checkResolved, statement-shape.ts).
 */
import { Expect, type ServerConn } from './pool/server-conn.js';
import { type ClientStatement, ShapeCheck } from './pool/statement-shape.js';
import * as m from './protocol/messages.js';
import { writeSpan } from './wire/native-wire.js';

/** The client frame being looked at: its type and where it is, buffer[start, end) with its body from bodyStart. */
export interface CurrentFrame {
  readonly type: number;
  readonly buffer: Buffer;
  readonly start: number;
  readonly bodyStart: number;
  readonly end: number;
}

export class ClientStatements {
  /** Named prepared statements of the client: name → its Parse message (a private copy) and result shape. */
  readonly byName = new Map<string, ClientStatement>();
  /** The statement whose shape is being compared (its Bind or Describe waits), and its name; null: none. */
  private checked: ClientStatement | null = null;
  private checkedName = '';

  /**
   * A statement was prepared again on the server connection and its shape is being compared with the client's:
   * the current frame (a Bind or Describe of it) waits, like the frames behind it.
   */
  get checking(): boolean {
    return this.checked !== null;
  }

  /** The client closed statement `name` (Close 'S'), on `server` too. */
  closed(name: string, server: ServerConn): void {
    this.byName.delete(name);
    server.forgetPrepared(name);
  }

  /** True when the statement named at buffer[nameAt] (a Bind's or Describe's) must first be prepared on `server`. */
  needsPrepare(server: ServerConn, buffer: Buffer, nameAt: number, end: number): boolean {
    const nul = buffer.indexOf(0, nameAt);
    const name = buffer.toString('latin1', nameAt, nul < 0 ? end : nul);
    const mine = this.byName.get(name);
    if (mine === undefined) return false; // unknown to us: let the server answer as it would
    const theirs = server.preparedStatement(name);
    if (theirs === mine) return false;
    if (theirs === undefined || !theirs.parse.equals(mine.parse)) return true;
    // Another client's statement (or an earlier one of this client) of the same name and text: it serves this
    // client only with the shape this client learnt. Not known here: prepared again, and checked.
    const known = mine.shape;
    if (known === null) return false;
    const there = theirs.shape;
    return there === null || there.params !== known.params || there.result !== known.result;
  }

  /**
   * A named Parse from the client, or a Bind/Describe of a statement `server` lacks (`frame`): writes what the
   * server must have first (Close of a stale statement, the client's Parse), whose answers are swallowed, then the
   * client's message itself (the server socket is corked by the caller).
   *
   * Result shapes (`transactionMode`, see statement-shape.ts): a Describe('S') follows the client's Parse, and its
   * answers become the statement's shape. A statement with a shape that is prepared again is described again and
   * the client's message waits for the comparison: then true is returned, the message is not written, and
   * checkResolved goes on. One round trip, only when a statement is first used on another server connection.
   * A statement without a shape (its Parse was answered by the proxy while its server connection was lost, or
   * this is session mode, where connections do not change under a statement) is prepared again unchecked, and its
   * shape is recorded from there on (transaction mode). `sourceIsNative`: the frame is a view of the native arena.
   */
  prepareOn(server: ServerConn, frame: CurrentFrame, transactionMode: boolean, sourceIsNative: boolean): boolean {
    const { buffer, bodyStart } = frame;
    const out = server.socket;
    const w = server.messageWriter;
    if (frame.type === m.FrontendType.Parse) {
      const name = buffer.toString('latin1', bodyStart, buffer.indexOf(0, bodyStart));
      const copy = Buffer.from(buffer.subarray(frame.start, frame.end));
      const statement: ClientStatement = { parse: copy, shape: null };
      this.byName.set(name, statement);
      if (server.preparedStatement(name) !== undefined) {
        out.write(m.writeClose(w, 'S', name).flush());
        server.pushExpect(Expect.InjectedClose);
      }
      server.rememberPrepared(name, statement);
      server.pushParse(Expect.NamedClientParse, name);
      out.write(copy);
      if (transactionMode) {
        // If the Parse fails, PostgreSQL skips this Describe: its entry goes at the next ReadyForQuery.
        out.write(m.writeDescribe(w, 'S', name).flush());
        server.pushDescribe(Expect.RecordDescribe, statement);
      }
      return false;
    }
    const nameAt = frame.type === m.FrontendType.Bind ? buffer.indexOf(0, bodyStart) + 1 : bodyStart + 1;
    const name = buffer.toString('latin1', nameAt, buffer.indexOf(0, nameAt));
    const mine = this.byName.get(name)!;
    if (server.preparedStatement(name) !== undefined) {
      out.write(m.writeClose(w, 'S', name).flush());
      server.pushExpect(Expect.InjectedClose);
    }
    out.write(mine.parse);
    server.pushParse(Expect.InjectedParse, name);
    server.rememberPrepared(name, mine);
    if (mine.shape !== null) {
      // Flush: PostgreSQL sends the answers now, not at the client's Sync (which waits behind this check).
      m.writeDescribe(w, 'S', name);
      out.write(m.writeFlush(w).flush());
      server.pushDescribe(Expect.CheckDescribe, mine);
      this.checked = mine;
      this.checkedName = name;
      return true;
    }
    if (transactionMode) {
      out.write(m.writeDescribe(w, 'S', name).flush());
      server.pushDescribe(Expect.RecordDescribe, mine);
    }
    writeSpan(out, buffer, frame.start, frame.end, sourceIsNative);
    return false;
  }

  /**
   * The shape check of the current frame's statement (a Bind or Describe('S') of it, of type `frameType`) is
   * resolved on `conn`. Same shape, or no comparison because PostgreSQL skips the batch after an error (Abandoned):
   * false, the frame goes on as it is. Another shape: true, the frame is answered instead by PostgreSQL's own answer
   * for that, ERROR 0A000 "cached plan must not change result type". The statement is closed on the server and a
   * Bind of it sent instead of the frame: PostgreSQL fails it (26000, replaced by the 0A000, see Expect.PoisonBind)
   * and skips the rest of the batch up to Sync, leaving the transaction failed where there is one, exactly as for a
   * changed result type. The client's record keeps the shape it learnt, so each use fails again until it prepares
   * the statement again.
   */
  checkResolved(conn: ServerConn, result: ShapeCheck, frameType: number): boolean {
    const statement = this.checked!;
    this.checked = null;
    if (result !== ShapeCheck.Changed) return false;
    const name = this.checkedName;
    const w = conn.messageWriter;
    m.writeClose(w, 'S', name);
    m.writeBind(w, '', name);
    conn.socket.write(w.flush());
    conn.pushExpect(Expect.InjectedClose);
    const describe = frameType === m.FrontendType.Describe;
    conn.pushPoisonBind(describe && statement.shape !== null ? Buffer.from(statement.shape.params, 'latin1') : null);
    conn.forgetPrepared(name);
    return true;
  }

  /** The server connection was lost: a shape check cannot be answered any more. */
  abandonCheck(): void {
    this.checked = null;
  }
}
