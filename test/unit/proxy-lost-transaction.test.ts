/**
 * The answers a client gets after its server connection died under its transaction (lost-transaction.ts): pure
 * logic, frames in, protocol messages out, checked message by message.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LostOutcome, LostTransaction, type LossAtServer, txEnd } from '../../src/proxy/lost-transaction.js';
import { MessageFramer } from '../../src/proxy/protocol/framer.js';
import type { ClientStatement } from '../../src/proxy/pool/statement-shape.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';

/** Decodes backend messages into [type char, SQLSTATE | tag | status | '']. */
function decode(bytes: Buffer): Array<[string, string]> {
  const f = new MessageFramer();
  f.push(bytes);
  const out: Array<[string, string]> = [];
  while (f.next()) {
    const t = String.fromCharCode(f.type);
    if (f.type === m.BackendType.ErrorResponse) out.push([t, m.decodeErrorFields(f.buffer, f.bodyStart, f.end).code]);
    else if (f.type === m.BackendType.CommandComplete) out.push([t, m.decodeCommandComplete(f.buffer, f.bodyStart, f.end)]);
    else if (f.type === m.BackendType.ReadyForQuery) out.push([t, String.fromCharCode(f.buffer[f.bodyStart])]);
    else out.push([t, '']);
  }
  return out;
}

/** Feeds client messages built by `build` to `lost`; returns the answers and the last outcome. */
function feed(lost: LostTransaction, statements: Map<string, ClientStatement>, build: (w: MessageWriter) => void): { replies: Array<[string, string]>; outcomes: LostOutcome[] } {
  const cw = new MessageWriter(256);
  build(cw);
  const f = new MessageFramer();
  f.push(cw.flush());
  const w = new MessageWriter(256);
  const outcomes: LostOutcome[] = [];
  while (f.next()) outcomes.push(lost.handle(f.type, f.buffer, f.start, f.bodyStart, f.end, w, statements));
  return { replies: decode(w.flush()), outcomes };
}

function loss(partial: Partial<LossAtServer>): { lost: LostTransaction | null; replies: Array<[string, string]> } {
  const w = new MessageWriter(256);
  const lost = LostTransaction.afterLoss({ outstanding: 0, inTransaction: false, midBatch: false, reason: 'server closed the connection unexpectedly', ...partial }, w);
  return { lost, replies: decode(w.flush()) };
}

describe('txEnd', () => {
  it('recognises ROLLBACK/ABORT and COMMIT/END in their spellings, nothing else', () => {
    for (const sql of ['ROLLBACK', 'rollback;', '  Abort Work ', 'ROLLBACK TRANSACTION AND NO CHAIN']) assert.equal(txEnd(sql), 'rollback', sql);
    for (const sql of ['COMMIT', 'end', 'commit work;', 'END TRANSACTION']) assert.equal(txEnd(sql), 'commit', sql);
    for (const sql of ['ROLLBACK TO SAVEPOINT a', 'COMMIT AND CHAIN', 'ROLLBACK PREPARED \'x\'', 'SELECT 1', 'COMMIT; SELECT 1']) assert.equal(txEnd(sql), null, sql);
  });
});

describe('LostTransaction', () => {
  it('nothing owed when no transaction was open and nothing was in flight', () => {
    const { lost, replies } = loss({});
    assert.equal(lost, null);
    assert.deepEqual(replies, []);
  });

  it('in flight outside a transaction: 08006 and I per outstanding ReadyForQuery, then back in step', () => {
    const { lost, replies } = loss({ outstanding: 2 });
    assert.equal(lost, null);
    assert.deepEqual(replies, [['E', '08006'], ['Z', 'I'], ['E', '08006'], ['Z', 'I']]);
  });

  it('idle in a transaction: 40001 on the next statement, 25P02 after, COMMIT answers ROLLBACK', () => {
    const { lost } = loss({ inTransaction: true });
    assert.ok(lost !== null && lost.inTransaction);
    const statements = new Map<string, ClientStatement>();
    let r = feed(lost, statements, (w) => m.writeQuery(w, 'SELECT 1'));
    assert.deepEqual(r.replies, [['E', '40001'], ['Z', 'E']]);
    r = feed(lost, statements, (w) => m.writeQuery(w, 'INSERT INTO t VALUES (1)'));
    assert.deepEqual(r.replies, [['E', '25P02'], ['Z', 'E']]);
    assert.deepEqual(r.outcomes, [LostOutcome.Consumed]);
    r = feed(lost, statements, (w) => m.writeQuery(w, 'COMMIT'));
    assert.deepEqual(r.replies, [['C', 'ROLLBACK'], ['Z', 'I']]);
    assert.deepEqual(r.outcomes, [LostOutcome.Done]);
  });

  it('idle in a transaction: COMMIT first fails with 40001 and ends it; ROLLBACK first just succeeds', () => {
    let r = feed(loss({ inTransaction: true }).lost!, new Map(), (w) => m.writeQuery(w, 'commit;'));
    assert.deepEqual(r.replies, [['E', '40001'], ['Z', 'I']]);
    assert.deepEqual(r.outcomes, [LostOutcome.Done]);
    r = feed(loss({ inTransaction: true }).lost!, new Map(), (w) => m.writeQuery(w, 'ROLLBACK'));
    assert.deepEqual(r.replies, [['C', 'ROLLBACK'], ['Z', 'I']]);
    assert.deepEqual(r.outcomes, [LostOutcome.Done]);
  });

  it('extended protocol: an error skips the batch to its Sync; a prepared ROLLBACK runs without a server', () => {
    const lost = loss({ inTransaction: true }).lost!;
    const statements = new Map<string, ClientStatement>();
    let r = feed(lost, statements, (w) => {
      m.writeParse(w, '', 'SELECT $1::int');
      m.writeBind(w, '', '', ['1']);
      m.writeDescribe(w, 'P', '');
      m.writeExecute(w, '');
      m.writeSync(w);
    });
    assert.deepEqual(r.replies, [['E', '40001'], ['Z', 'E']]);
    r = feed(lost, statements, (w) => {
      m.writeParse(w, 'S_1', 'ROLLBACK');
      m.writeBind(w, '', 'S_1');
      m.writeDescribe(w, 'S', 'S_1');
      m.writeExecute(w, '');
      m.writeSync(w);
    });
    assert.deepEqual(r.replies, [['1', ''], ['2', ''], ['t', ''], ['n', ''], ['C', 'ROLLBACK'], ['Z', 'I']]);
    assert.equal(r.outcomes.at(-1), LostOutcome.Done);
    assert.ok(statements.has('S_1'), 'the named statement is remembered for the next server');
  });

  it('a batch cut by the loss is skipped up to its Sync, which gets the error', () => {
    const inTx = loss({ inTransaction: true, midBatch: true }).lost!;
    let r = feed(inTx, new Map(), (w) => {
      m.writeExecute(w, '');
      m.writeSync(w);
    });
    assert.deepEqual(r.replies, [['E', '40001'], ['Z', 'E']]);
    const noTx = loss({ midBatch: true }).lost!;
    r = feed(noTx, new Map(), (w) => {
      m.writeBind(w, '', '');
      m.writeExecute(w, '');
      m.writeSync(w);
      m.writeQuery(w, 'SELECT 2');
    });
    assert.deepEqual(r.replies, [['E', '08006'], ['Z', 'I']]);
    assert.deepEqual(r.outcomes, [LostOutcome.Consumed, LostOutcome.Consumed, LostOutcome.Done, LostOutcome.Pass]);
  });

  it("PostgreSQL's FATAL (57P01) received: its SQLSTATE, message and detail as an ERROR, with the proxy's note", () => {
    const error = { severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' };
    const fieldsOf = (bytes: Buffer): m.ErrorFields[] => {
      const f = new MessageFramer();
      f.push(bytes);
      const out: m.ErrorFields[] = [];
      while (f.next()) if (f.type === m.BackendType.ErrorResponse) out.push(m.decodeErrorFields(f.buffer, f.bodyStart, f.end));
      return out;
    };
    // In flight outside a transaction: the statement's error, then in step again.
    let w = new MessageWriter(256);
    assert.equal(LostTransaction.afterLoss({ outstanding: 1, inTransaction: false, midBatch: false, reason: 'x', error }, w), null);
    let [e] = fieldsOf(w.flush());
    assert.equal(e.severity, 'ERROR');
    assert.equal(e.code, '57P01');
    assert.equal(e.message, 'terminating connection due to administrator command');
    assert.match(e.hint ?? '', /connection to the proxy is still usable/);
    // Idle in a transaction: 57P01 (not 40001) on the next statement, PostgreSQL's detail kept before the proxy's.
    w = new MessageWriter(256);
    const lost = LostTransaction.afterLoss({ outstanding: 0, inTransaction: true, midBatch: false, reason: 'x', error: { ...error, code: '57P02', detail: 'The postmaster has commanded this server process to roll back the current transaction and exit.', hint: 'In a moment you should be able to reconnect to the database and repeat your command.' } }, w)!;
    const out = new MessageWriter(256);
    const q = m.writeQuery(new MessageWriter(64), 'SELECT 1').flush();
    lost.handle(m.FrontendType.Query, q, 0, 5, q.length, out, new Map());
    [e] = fieldsOf(out.flush());
    assert.equal(e.code, '57P02');
    assert.equal(e.severity, 'ERROR');
    assert.match(e.detail ?? '', /^The postmaster has commanded .* rolled back: nothing of it was committed\.$/);
    assert.equal(e.hint, 'Retry the transaction; the connection to the proxy is still usable.');
  });

  it('in flight inside a transaction: 08006 with E, then the failed state until ROLLBACK', () => {
    const { lost, replies } = loss({ inTransaction: true, outstanding: 1 });
    assert.deepEqual(replies, [['E', '08006'], ['Z', 'E']]);
    const r = feed(lost!, new Map(), (w) => {
      m.writeQuery(w, 'SELECT 1');
      m.writeQuery(w, 'ROLLBACK');
    });
    assert.deepEqual(r.replies, [['E', '25P02'], ['Z', 'E'], ['C', 'ROLLBACK'], ['Z', 'I']]);
  });
});
