import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PgwardenError } from '../../src/errors.js';
import { formatLsn, parseLsn, parseLsnOrNull } from '../../src/postgres/lsn.js';

describe('LSN parsing and formatting', () => {
  it('parses X/Y as high * 2^32 + low', () => {
    assert.equal(parseLsn('0/0'), 0);
    assert.equal(parseLsn('0/1500718'), 0x1500718);
    assert.equal(parseLsn('1/0'), 2 ** 32);
    assert.equal(parseLsn('16/B374D848'), 0x16 * 2 ** 32 + 0xb374d848);
    assert.equal(parseLsn('1fffff/ffffffff'), Number.MAX_SAFE_INTEGER, 'lower case accepted');
  });

  it('formats the way PostgreSQL prints pg_lsn (upper case, no padding)', () => {
    assert.equal(formatLsn(0), '0/0');
    assert.equal(formatLsn(0x1500718), '0/1500718');
    assert.equal(formatLsn(0x16 * 2 ** 32 + 0xb374d848), '16/B374D848');
  });

  it('round-trips', () => {
    for (const text of ['0/0', '0/3000060', 'A/1', '7FFFF/FFFFFFFF']) assert.equal(formatLsn(parseLsn(text)), text);
    for (const n of [0, 1, 2 ** 32 - 1, 2 ** 32, 123456789012345]) assert.equal(parseLsn(formatLsn(n)), n);
  });

  it('rejects malformed input with a PgwardenError', () => {
    for (const bad of ['', '0', '0/', '/0', 'x/0', '0/0/0', '123456789/0', '0/-1']) {
      assert.throws(() => parseLsn(bad), (e: unknown) => e instanceof PgwardenError, bad);
    }
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) assert.throws(() => formatLsn(bad), PgwardenError);
  });

  it('passes SQL NULL through', () => {
    assert.equal(parseLsnOrNull(null), null);
    assert.equal(parseLsnOrNull(undefined), null);
    assert.equal(parseLsnOrNull('0/10'), 16);
  });
});
