/**
 * A client whose server connection died under it in transaction mode (the primary failed or changed) stays
 * connected. What it is owed is answered here, without a server, the way PostgreSQL answers a client whose
 * transaction failed: one ErrorResponse, then the failed-transaction state ('E': every statement gets 25P02)
 * until ROLLBACK or COMMIT, which end it cleanly (ReadyForQuery 'I'); extended-protocol messages after an error
 * are skipped until Sync. Then the client's next transaction goes to a server again (the new primary).
 *
 * SQLSTATEs, chosen so that drivers and pools do the right thing:
 * - When PostgreSQL said why it ended the connection (a FATAL ErrorResponse: 57P01 for pg_terminate_backend or a
 *   fast shutdown, 25P03 for idle_in_transaction_session_timeout, 57P02, 40001/40P01 for a recovery conflict on a
 *   replica, ...), the client gets that SQLSTATE and message, as it would from PostgreSQL directly, as an ERROR
 *   (not FATAL: its connection to the proxy goes on); only the proxy's note is added (detail, hint). Its own
 *   meaning is the one that holds: an operator or a timeout ended the session, not a failure of the cluster.
 *   PostgreSQL's hint (e.g. "reconnect to the database") is replaced by the proxy's, since no reconnect is needed.
 * - A transaction lost while the client was idle inside it (nothing in flight), without such an error (the
 *   server crashed, the network broke, the primary changed), was certainly rolled back: its COMMIT never reached
 *   a server, and PostgreSQL aborts a transaction whose connection goes away. That is 40001
 *   (serialization_failure): "rolled back, retry it", which ORMs and retry loops already handle, and which
 *   connection pools (HikariCP and the like evict on class 08) do not take for a dead connection — the client's
 *   connection to the proxy is in fact fine.
 * - A statement in flight when the server died without such an error (possibly a COMMIT) has an unknown
 *   outcome: it may have committed just before the crash. That is 08006 (connection_failure) with a message
 *   that claims nothing about a rollback; PostgreSQL's own 08007 (transaction_resolution_unknown) would fit a
 *   COMMIT exactly, but the proxy does not read statements in flight, so it cannot tell a COMMIT from an INSERT.
 */
import { SQLSTATE } from './protocol/errors.js';
import * as m from './protocol/messages.js';
import type { ErrorFields } from './protocol/messages.js';
import type { MessageWriter } from './protocol/writer.js';
import type { ClientStatement } from './pool/statement-shape.js';

/** What handle() did with a frame. */
export const enum LostOutcome {
  /** Answered (or skipped); the client is still owed the end of its lost transaction. */
  Consumed = 0,
  /** Answered, and the client is back in step: its next frames go to a server. */
  Done = 1,
  /** Not touched: the client is back in step and this frame goes to a server as it is. */
  Pass = 2,
}

type TxEnd = 'rollback' | 'commit';

/**
 * - pending: the transaction is lost and the client does not know yet (its next message gets the error);
 * - failed: the client was told; it is in a failed transaction until ROLLBACK/COMMIT;
 * - ended: ROLLBACK/COMMIT was executed inside an extended batch, whose Sync gets ReadyForQuery 'I';
 * - idle: no transaction is open, only the rest of a broken extended batch is owed an answer at its Sync.
 */
type Phase = 'pending' | 'failed' | 'ended' | 'idle';

export interface LossAtServer {
  /** ReadyForQuery messages the client still waits for (Query/Sync sent to the dead server). */
  outstanding: number;
  /** The server's last ReadyForQuery said 'T' or 'E'. */
  inTransaction: boolean;
  /** Extended-protocol messages were sent to the dead server since the last Sync. */
  midBatch: boolean;
  /** Why the server connection ended. */
  reason: string;
  /** The FATAL ErrorResponse PostgreSQL sent before ending the connection, if it sent one. */
  error?: ErrorFields | null;
}

export class LostTransaction {
  private phase: Phase;
  /** Extended-protocol messages are discarded until Sync (an error was or will be reported for the batch). */
  private skipping: boolean;
  /** The error owed at the Sync that ends the skipped batch, when none was sent for it yet. */
  private syncError: ErrorFields | null;
  private readonly rolledBack: ErrorFields;
  /** Kinds of the unnamed statement and of the portals bound since the loss (all are transaction ends). */
  private unnamed: TxEnd | null = null;
  private readonly portals = new Map<string, TxEnd>();

  private constructor(phase: Phase, skipping: boolean, syncError: ErrorFields | null, reason: string, error: ErrorFields | null) {
    this.phase = phase;
    this.skipping = skipping;
    this.syncError = syncError;
    const hint = 'Retry the transaction; the connection to the proxy is still usable.';
    this.rolledBack =
      error === null
        ? {
            severity: 'ERROR',
            code: '40001',
            message: 'the transaction was rolled back: its server connection was lost (the primary failed or changed)',
            detail: `${reason}. Nothing of the transaction was committed.`,
            hint,
          }
        : fromServer(error, 'PostgreSQL ended the server connection of this transaction, which was rolled back: nothing of it was committed.', hint);
  }

  /**
   * The server connection of a client in transaction mode is gone: writes the answers owed for what was in
   * flight to `w` and returns what the client is owed from now on, or null when it is already back in step.
   */
  static afterLoss(loss: LossAtServer, w: MessageWriter): LostTransaction | null {
    const error = loss.error ?? null;
    const hint = loss.inTransaction ? 'The transaction is lost: roll it back, then retry it.' : 'Check whether the statement took effect before retrying it.';
    const inFlight: ErrorFields =
      error === null
        ? { severity: 'ERROR', code: SQLSTATE.CONNECTION_FAILURE, message: `${loss.reason}; the outcome of the statement in flight is unknown`, hint }
        : fromServer(error, 'PostgreSQL ended the server connection running this statement.', `${hint} The connection to the proxy is still usable.`);
    // After an error inside a transaction the client is told 'E', so that statements it had queued behind the
    // lost ones cannot run outside their transaction on the new primary.
    for (let i = 0; i < loss.outstanding; i++) {
      m.writeErrorResponse(w, inFlight);
      m.writeReadyForQuery(w, loss.inTransaction ? 'E' : 'I');
    }
    let phase: Phase;
    if (loss.outstanding > 0) phase = loss.inTransaction ? 'failed' : 'idle';
    else phase = loss.inTransaction ? 'pending' : 'idle';
    if (!loss.midBatch && phase === 'idle') return null;
    const lost = new LostTransaction(phase, loss.midBatch, null, loss.reason, error);
    if (loss.midBatch) {
      // The batch's first messages went to the dead server: the rest is skipped and its Sync gets one error.
      if (phase === 'pending') {
        lost.syncError = lost.rolledBack;
        lost.phase = 'failed';
      } else {
        lost.syncError = phase === 'failed' ? abortedError() : inFlight;
      }
    }
    return lost;
  }

  /** The client is inside a (lost) transaction block, for idle_transaction_timeout. */
  get inTransaction(): boolean {
    return this.phase === 'pending' || this.phase === 'failed';
  }

  /**
   * One client frame (`buffer[start, end)`, body at `bodyStart`; not Terminate): answers go to `w`. Named
   * statements the client prepares meanwhile are recorded in `statements` (the client's own map), as forwarding
   * would, so they are prepared on the next server that needs them.
   */
  handle(type: number, buffer: Buffer, start: number, bodyStart: number, end: number, w: MessageWriter, statements: Map<string, ClientStatement>): LostOutcome {
    const T = m.FrontendType;
    if (type === T.Sync) return this.sync(w);
    if (this.skipping) return LostOutcome.Consumed;
    if (this.phase === 'ended' || this.phase === 'idle') return LostOutcome.Pass;
    switch (type) {
      case T.Query: {
        const kind = txEnd(m.decodeQuery(buffer, bodyStart, end));
        if (this.phase === 'pending') {
          if (kind === 'rollback') {
            m.writeCommandComplete(w, 'ROLLBACK');
            m.writeReadyForQuery(w, 'I');
            return LostOutcome.Done;
          }
          m.writeErrorResponse(w, this.rolledBack);
          // A COMMIT that fails ends the transaction, as in PostgreSQL (deferred constraint at COMMIT).
          if (kind === 'commit') {
            m.writeReadyForQuery(w, 'I');
            return LostOutcome.Done;
          }
          this.phase = 'failed';
          m.writeReadyForQuery(w, 'E');
          return LostOutcome.Consumed;
        }
        // failed: PostgreSQL answers COMMIT of an aborted transaction with the tag ROLLBACK.
        if (kind !== null) {
          m.writeCommandComplete(w, 'ROLLBACK');
          m.writeReadyForQuery(w, 'I');
          return LostOutcome.Done;
        }
        m.writeErrorResponse(w, abortedError());
        m.writeReadyForQuery(w, 'E');
        return LostOutcome.Consumed;
      }
      case T.Parse: {
        const parse = m.decodeParse(buffer, bodyStart, end);
        const kind = txEnd(parse.query);
        if (kind === null) return this.batchError(w);
        // A named one has no shape: no server described it (a transaction end returns no rows anyway).
        if (parse.name === '') this.unnamed = kind;
        else statements.set(parse.name, { parse: Buffer.from(buffer.subarray(start, end)), shape: null });
        m.writeParseComplete(w);
        return LostOutcome.Consumed;
      }
      case T.Bind: {
        const bind = m.decodeBind(buffer, bodyStart, end);
        const kind = this.statementKind(bind.statement, statements);
        if (kind === null) return this.batchError(w);
        this.portals.set(bind.portal, kind);
        m.writeBindComplete(w);
        return LostOutcome.Consumed;
      }
      case T.Describe: {
        const target = m.decodeDescribe(buffer, bodyStart, end);
        const kind = target.kind === 'S' ? this.statementKind(target.name, statements) : (this.portals.get(target.name) ?? null);
        if (kind === null) return this.batchError(w);
        if (target.kind === 'S') w.begin(m.BackendType.ParameterDescription).int16(0).end();
        m.writeNoData(w);
        return LostOutcome.Consumed;
      }
      case T.Execute: {
        const kind = this.portals.get(m.decodeExecute(buffer, bodyStart, end).portal) ?? null;
        if (kind === null) return this.batchError(w);
        if (kind === 'commit' && this.phase === 'pending') {
          m.writeErrorResponse(w, this.rolledBack);
          this.skipping = true;
        } else {
          m.writeCommandComplete(w, 'ROLLBACK');
        }
        this.phase = 'ended';
        return LostOutcome.Consumed;
      }
      case T.Close: {
        const target = m.decodeClose(buffer, bodyStart, end);
        if (target.kind === 'S' && target.name !== '') statements.delete(target.name);
        if (target.kind === 'P') this.portals.delete(target.name);
        m.writeCloseComplete(w);
        return LostOutcome.Consumed;
      }
      case T.FunctionCall:
        m.writeErrorResponse(w, this.takeError());
        m.writeReadyForQuery(w, 'E');
        return LostOutcome.Consumed;
      default:
        // Flush (everything is written at once anyway); COPY messages outside COPY, which PostgreSQL ignores too.
        return LostOutcome.Consumed;
    }
  }

  private sync(w: MessageWriter): LostOutcome {
    if (this.skipping) {
      this.skipping = false;
      if (this.syncError !== null) m.writeErrorResponse(w, this.syncError);
      this.syncError = null;
    } else if (this.phase === 'pending') {
      m.writeErrorResponse(w, this.takeError());
    }
    this.portals.clear();
    if (this.phase === 'failed') {
      m.writeReadyForQuery(w, 'E');
      return LostOutcome.Consumed;
    }
    m.writeReadyForQuery(w, 'I');
    return LostOutcome.Done;
  }

  /** An extended-protocol message that cannot run: one error, then the rest of the batch is skipped. */
  private batchError(w: MessageWriter): LostOutcome {
    m.writeErrorResponse(w, this.takeError());
    this.skipping = true;
    return LostOutcome.Consumed;
  }

  /** The error for a statement now: the loss itself the first time, then PostgreSQL's 25P02. */
  private takeError(): ErrorFields {
    if (this.phase === 'pending') {
      this.phase = 'failed';
      return this.rolledBack;
    }
    return abortedError();
  }

  private statementKind(name: string, statements: ReadonlyMap<string, ClientStatement>): TxEnd | null {
    if (name === '') return this.unnamed;
    const parse = statements.get(name)?.parse;
    return parse === undefined ? null : txEnd(m.decodeParse(parse, 5, parse.length).query);
  }
}

/**
 * PostgreSQL's FATAL as an ERROR for a client that stays connected: its SQLSTATE, message and detail, with the
 * proxy's `note` after the detail and the proxy's `hint` instead of PostgreSQL's (which would say to reconnect).
 */
function fromServer(error: ErrorFields, note: string, hint: string): ErrorFields {
  return {
    severity: 'ERROR',
    code: error.code,
    message: error.message,
    detail: error.detail === undefined ? note : `${error.detail} ${note}`,
    hint,
  };
}

function abortedError(): ErrorFields {
  return { severity: 'ERROR', code: '25P02', message: 'current transaction is aborted, commands ignored until end of transaction block' };
}

/** ROLLBACK/ABORT or COMMIT/END (with WORK/TRANSACTION, AND NO CHAIN); null for any other statement. */
export function txEnd(sql: string): TxEnd | null {
  const s = sql.trim().replace(/;\s*$/, '').trim().toLowerCase().replace(/\s+/g, ' ');
  const match = /^(rollback|abort|commit|end)( work| transaction)?( and no chain)?$/.exec(s);
  if (match === null) return null;
  return match[1] === 'rollback' || match[1] === 'abort' ? 'rollback' : 'commit';
}
