import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scramSha256Verifier } from '../../src/protocol/scram.js';

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
  // A soft hyphen: SASLprep removes it, NFKC alone keeps it.
  {
    password: 'soft\u00ADhyphen ä',
    stored:
      'SCRAM-SHA-256$4096:7V1hNrpDzg/eIfGM/TQs7A==$Gua07n4QW0ks9IlXVJECwDMkKcyTMVlHQyvAeruluzI=:LWJBqi9BuPFBba9m6rxZ9UlppvpC9nRpNHb8rmCfXNE=',
  },
  // Arabic next to a Latin letter breaks SASLprep's bidi rule: PostgreSQL then uses the raw password, soft hyphen and all.
  {
    password: '\u0627\u0644\u0639\u0631\u0628\u064A\u0629 x\u00AD',
    stored:
      'SCRAM-SHA-256$4096:IT5211B6fafhIvf5Yo3v+g==$/vJ5oIt8nphlydbsdKvlaasx4eVd11djP9CY739mGH0=:ba13HwVpOW5CmqKuBxcFMAz4siGXfkqOu2AHgqiGFeU=',
  },
  // An emoji is unassigned in Unicode 3.2, so SASLprep fails and PostgreSQL uses the raw password (no NFKC either).
  {
    password: '\u2163 \uFB01\u00AD\u{1F600}',
    stored:
      'SCRAM-SHA-256$4096:GK9Uha9YGgKVUGZqbWuFIw==$LlI2UgO0WcdMwUo+VYsJ708C4A+OSWJ1gF4eHgJ52hA=:sRbXwJkPbxwKLsvG7bNSTd5O+q7iZOzx5FVLIqorRG8=',
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
