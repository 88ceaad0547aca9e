import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scramSha256Verifier } from '../../src/protocol/scram.js';

/**
 * Verifiers PostgreSQL 15 itself stored (pg_authid.rolpassword) for CREATE ROLE ... PASSWORD '<plain>', including
 * each way its SASLprep can succeed or fall back to the raw password.
 */
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
  // Nothing left after mapping: the raw password.
  {
    password: '\u00AD\u200C',
    stored:
      'SCRAM-SHA-256$4096:6vMp55efsIfqWSAjO/P18A==$IUo/QNleDfcfaftXOXKLLyUZKi1YvBKrZEQKjVYAEAo=:MK4HR0yesiRodohOErAjMzzekA6DAVk46Ge42HmEN1Q=',
  },
  // A control character is prohibited output: the raw password.
  {
    password: '\u00E4\u0007\uFB01',
    stored:
      'SCRAM-SHA-256$4096:C7lyDbWD/5Su6cFek4G5Dg==$xGKk6Ktyxg/jQS+Jz0V4Z9jNeveBKEUOmG8mOyOUMok=:xitLmV0a0/6oLak5UskOus5OhbZ1xxN6XTlz6Run0VM=',
  },
  // A private-use character is prohibited too, even after a mapped space.
  {
    password: '\u00A0\uE000\uFB01',
    stored:
      'SCRAM-SHA-256$4096:Wsaws1zEJfsjAeu74FOkRQ==$PHtPUGxZtNoh1B5VGI2zG0pK+0riQX9BVtMA0icjphI=:kEWdj67ZpmFYT4qOE/+p5UkcHGObJbM20xH/kR+noug=',
  },
  // Hebrew ending in a left-to-right ligature breaks the bidi rule: the raw password.
  {
    password: '\u05D0\u05D1 \u05D2\uFB01',
    stored:
      'SCRAM-SHA-256$4096:wUihN9ZAbQgFztxJDnYfGg==$YnCe/+My/C5UBK89Ng1WMXzFssR9v+s95D+T8hmu4B4=:TbCpuDbjwYUGqg2EJEYv2g4sfBb/oNWW7DgmP+bJbYk=',
  },
  // Right-to-left only, first and last characters R: SASLprep succeeds (space mapped, soft hyphen dropped, NFKC).
  {
    password: '\u05D0\u00A0\uFB2A\u00AD\u05D1',
    stored:
      'SCRAM-SHA-256$4096:4rZfSj0hCei1J2U9CttzNQ==$9mLL4ttY1xzYTAOVnsNRJJwJ0QaCkXoHcoS5V9mtZpc=:jj7OPt2yqF+OsAlqpXozq33TRp7AZXkt4481C0+jF+c=',
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
