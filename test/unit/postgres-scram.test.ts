import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scramSha256Verifier } from '../../src/postgres/scram.js';

/** Verifiers PostgreSQL 15 itself stored (pg_authid.rolpassword) for CREATE ROLE ... PASSWORD '<plain>'. */
const FROM_POSTGRES = [
  {
    password: 'pencil',
    stored:
      'SCRAM-SHA-256$4096:bddOy42TkCnf+jEODSazzA==$WH056J5JW/5Q83YXZMWld/HeNei/ycL57OGgXdCtJFA=:M6BNvaSo/eJPXjxVV8FmXXTXgqfpLkqiX7gc02p4HYY=',
  },
  {
    password: 'pässwörd ﬁ',
    stored:
      'SCRAM-SHA-256$4096:YQP6HM80+tIw7X/2s51/+w==$zJOMAzhEPd6dGDedP+stXWe+DOYtEeBYUViXcV52Mlc=:SnObdXykixst7ULLnPCdHELtXjb7LGjXxxV3Kb4TbBU=',
  },
];

describe('scramSha256Verifier', () => {
  it('matches what PostgreSQL computes for the same salt', () => {
    for (const { password, stored } of FROM_POSTGRES) {
      const [, iterationsAndSalt] = stored.split('$');
      const [iterations, salt] = iterationsAndSalt.split(':');
      assert.equal(scramSha256Verifier(password, Buffer.from(salt, 'base64'), Number(iterations)), stored, password);
    }
  });

  it('uses a fresh random salt each time', () => {
    const a = scramSha256Verifier('secret');
    const b = scramSha256Verifier('secret');
    assert.match(a, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
    assert.notEqual(a, b);
  });
});
