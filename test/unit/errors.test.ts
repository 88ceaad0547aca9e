import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CODES, PgwardenError, describeError } from '../../src/errors.js';

describe('error catalogue', () => {
  const readme = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const table = readme.slice(readme.indexOf('## Error codes'));

  it('every code is documented in the error table of docs/errors.md, and the table names no unknown code', () => {
    const documented = [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual([...documented].sort(), Object.keys(ERROR_CODES).sort());
  });

  it('errors carry their code and say it when described', () => {
    const e = new PgwardenError('DCS_UNAVAILABLE', 'etcd did not answer within 1000 ms: check it runs');
    assert.equal(e.code, 'DCS_UNAVAILABLE');
    assert.equal(describeError(e), 'DCS_UNAVAILABLE: etcd did not answer within 1000 ms: check it runs');
    assert.equal(describeError(new Error('plain')), 'plain');
  });
});
