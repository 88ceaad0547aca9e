/** The result-shape key the proxy compares re-prepared statements by (src/proxy/pool/statement-shape.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPgProtocolError } from '../../src/proxy/protocol/errors.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';
import { CACHED_PLAN_CHANGED, resultShapeKey } from '../../src/proxy/pool/statement-shape.js';

/** The key of a RowDescription of `columns`, read at an offset inside a larger buffer as the framer hands it. */
function keyOf(columns: m.ColumnDescription[]): string {
  const frame = m.writeRowDescription(new MessageWriter(64), columns).flush();
  const buf = Buffer.concat([Buffer.from('junk'), frame, Buffer.from('more')]);
  return resultShapeKey(buf, 4 + 5, 4 + frame.length);
}

const X_INT: m.ColumnDescription = { name: 'x', tableOid: 16388, columnNumber: 1, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 };

describe('resultShapeKey', () => {
  it('ignores table OID and column number (they change when a table is dropped and created again)', () => {
    assert.equal(keyOf([X_INT, { ...X_INT, name: 'y', columnNumber: 2 }]), keyOf([{ ...X_INT, tableOid: 16999, columnNumber: 3 }, { ...X_INT, name: 'y', tableOid: 0, columnNumber: 0 }]));
  });

  it('tells apart every field a client decodes with: count, name, type OID, type length, type modifier, format', () => {
    const base = keyOf([X_INT]);
    const variants: m.ColumnDescription[][] = [
      [],
      [X_INT, X_INT],
      [{ ...X_INT, name: 'y' }],
      [{ ...X_INT, typeOid: 25, typeSize: -1 }],
      [{ ...X_INT, typeSize: 8 }],
      [{ ...X_INT, typeModifier: 14 }],
      [{ ...X_INT, format: 1 }],
    ];
    const keys = new Set([base, ...variants.map(keyOf)]);
    assert.equal(keys.size, variants.length + 1);
  });

  it('refuses a malformed RowDescription with a protocol error', () => {
    const frame = m.writeRowDescription(new MessageWriter(64), [X_INT]).flush();
    for (const end of [frame.length - 1, 7]) {
      assert.throws(() => resultShapeKey(frame, 5, end), (e: unknown) => isPgProtocolError(e) && e.sqlstate === '08P01');
    }
    const extra = Buffer.concat([frame, Buffer.alloc(2)]);
    assert.throws(() => resultShapeKey(extra, 5, extra.length), (e: unknown) => isPgProtocolError(e));
  });

  it('the 0A000 the client gets carries PostgreSQL\'s fields, routine included (postgres.js retries on it)', () => {
    const fields = m.decodeErrorFields(CACHED_PLAN_CHANGED, 5, CACHED_PLAN_CHANGED.length);
    assert.equal(CACHED_PLAN_CHANGED[0], m.BackendType.ErrorResponse);
    assert.deepEqual(
      { ...fields },
      {
        severity: 'ERROR',
        severityNonLocalized: 'ERROR',
        code: '0A000',
        message: 'cached plan must not change result type',
        file: 'plancache.c',
        line: '722',
        routine: 'RevalidateCachedQuery',
      },
    );
  });
});
