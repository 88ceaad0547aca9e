/**
 * SCRAM-SHA-256 both sides against the RFC 7677 test vector, against a verifier PostgreSQL 15 itself stored, and
 * against each other (including pass-through with recovered keys); every way the exchange can go wrong must end
 * in a PgProtocolError with PostgreSQL's SQLSTATE. Also md5 auth, checked against node-postgres's own md5 code.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { md5PasswordResponse, md5Secret, isMd5Secret, md5Salt, verifyMd5Response } from '../../src/proxy/auth/md5.js';
import { ScramClientSession, ScramServerSession } from '../../src/proxy/auth/scram.js';
import {
  SCRAM_SHA_256,
  deriveScramKeys,
  deriveScramKeysAsync,
  formatScramSecret,
  parseScramSecret,
  saslPrep,
  scramSecretFromPassword,
  scramSha256Verifier,
} from '../../src/protocol/scram.js';
import { PgProtocolError } from '../../src/proxy/protocol/errors.js';

const RFC = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  iterations: 4096,
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

/** The verifier PostgreSQL 15 stored for password 'pencil' (same sample as test/unit/postgres-scram.test.ts). */
const PG15_PENCIL =
  'SCRAM-SHA-256$4096:bddOy42TkCnf+jEODSazzA==$WH056J5JW/5Q83YXZMWld/HeNei/ycL57OGgXdCtJFA=:M6BNvaSo/eJPXjxVV8FmXXTXgqfpLkqiX7gc02p4HYY=';

const rfcSecret = () => scramSecretFromPassword(RFC.password, Buffer.from(RFC.salt, 'base64'), RFC.iterations);

function expectError(run: () => unknown, sqlstate: string, message?: string | RegExp, detail?: RegExp): PgProtocolError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof PgProtocolError, `expected PgProtocolError, got ${e instanceof Error ? e.stack : String(e)}`);
    assert.equal(e.sqlstate, sqlstate, `${e.message} ${e.detail ?? ''}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    if (detail) assert.match(e.detail ?? '', detail);
    return e;
  }
  assert.fail('expected a PgProtocolError');
}

/** A full exchange between our two sides; returns both. */
function exchange(serverSecret: ConstructorParameters<typeof ScramServerSession>[0]['secret'], client: ScramClientSession, user = 'alice') {
  const server = new ScramServerSession({ user, secret: serverSecret });
  const serverFirst = server.handleInitialResponse(SCRAM_SHA_256, client.initialResponse());
  const clientFinal = client.handleContinue(serverFirst);
  const serverFinal = server.handleResponse(clientFinal);
  client.handleFinal(serverFinal);
  return { server, client };
}

describe('SCRAM-SHA-256 and the RFC 7677 test vector', () => {
  it('the client produces the RFC messages and accepts the RFC server signature', () => {
    const client = new ScramClientSession({ user: RFC.user, password: RFC.password, nonce: () => RFC.clientNonce });
    assert.equal(client.initialResponse().toString(), RFC.clientFirst);
    assert.equal(client.handleContinue(Buffer.from(RFC.serverFirst)).toString(), RFC.clientFinal);
    client.handleFinal(Buffer.from(RFC.serverFinal));
    assert.equal(client.succeeded, true);
  });

  it('the server fed the RFC client messages produces the RFC server messages', () => {
    const server = new ScramServerSession({ user: RFC.user, secret: rfcSecret(), nonce: () => RFC.serverNonce });
    assert.equal(server.handleInitialResponse(SCRAM_SHA_256, Buffer.from(RFC.clientFirst)).toString(), RFC.serverFirst);
    assert.equal(server.handleResponse(Buffer.from(RFC.clientFinal)).toString(), RFC.serverFinal);
    assert.equal(server.succeeded, true);
  });

  it('the server accepts the same password given plain and as a text verifier', () => {
    const secret = formatScramSecret(rfcSecret());
    assert.equal(secret, scramSha256Verifier(RFC.password, Buffer.from(RFC.salt, 'base64'), RFC.iterations));
    for (const stored of [secret, RFC.password]) {
      const server = new ScramServerSession({ user: 'user', secret: stored });
      const client = new ScramClientSession({ password: RFC.password });
      client.handleFinal(server.handleResponse(client.handleContinue(server.handleInitialResponse(SCRAM_SHA_256, client.initialResponse()))));
      assert.ok(server.succeeded && client.succeeded);
    }
  });

  it("a verifier PostgreSQL 15 stored works on the server side", () => {
    const { server, client } = exchange(PG15_PENCIL, new ScramClientSession({ password: 'pencil' }));
    assert.ok(server.succeeded && client.succeeded);
    assert.deepEqual(parseScramSecret(PG15_PENCIL)?.iterations, 4096);
  });
});

describe('SCRAM round trips and refusals', () => {
  const secret = scramSecretFromPassword('correct horse');

  it('succeeds with random nonces; the server learns the client key for pass-through', () => {
    const { server, client } = exchange(secret, new ScramClientSession({ password: 'correct horse' }));
    assert.ok(server.succeeded && client.succeeded);
    const keys = server.passThroughKeys();
    assert.ok(keys !== null);
    assert.deepEqual(keys, client.keys, 'the recovered client key is the one the client derived');
    // Pass-through: keys only, no password, against another session with the same stored secret.
    const again = exchange(formatScramSecret(secret), new ScramClientSession({ keys }));
    assert.ok(again.server.succeeded && again.client.succeeded);
  });

  it('a wrong password fails with 28P01 and PostgreSQL’s words', () => {
    expectError(() => exchange(secret, new ScramClientSession({ password: 'wrong horse' }), 'alice'), '28P01', 'password authentication failed for user "alice"');
  });

  it('a tampered proof fails with 28P01', () => {
    const server = new ScramServerSession({ user: 'alice', secret });
    const client = new ScramClientSession({ password: 'correct horse' });
    const final = client.handleContinue(server.handleInitialResponse(SCRAM_SHA_256, client.initialResponse())).toString();
    const proof = Buffer.from(final.slice(final.indexOf(',p=') + 3), 'base64');
    proof[5] ^= 1;
    const tampered = `${final.slice(0, final.indexOf(',p=') + 3)}${proof.toString('base64')}`;
    expectError(() => server.handleResponse(Buffer.from(tampered)), '28P01', 'password authentication failed for user "alice"');
    assert.equal(server.succeeded, false);
    assert.equal(server.passThroughKeys(), null);
    expectError(() => server.handleResponse(Buffer.from(final)), '08P01', 'invalid SCRAM exchange state');
  });

  it('a replayed client-final from another exchange fails on the nonce (08P01 as in PostgreSQL)', () => {
    const first = new ScramServerSession({ user: 'alice', secret });
    const client = new ScramClientSession({ password: 'correct horse', nonce: () => 'fixedclientnonce' });
    const clientFirst = client.initialResponse();
    const recorded = client.handleContinue(first.handleInitialResponse(SCRAM_SHA_256, clientFirst));
    first.handleResponse(recorded);
    // An eavesdropper replays both client messages to a new session: the server's nonce half differs.
    const second = new ScramServerSession({ user: 'alice', secret });
    second.handleInitialResponse(SCRAM_SHA_256, clientFirst);
    expectError(() => second.handleResponse(recorded), '08P01', 'invalid SCRAM response', /Nonce does not match/);
  });

  it('a client-final whose nonce was changed fails, even with an otherwise valid shape', () => {
    const server = new ScramServerSession({ user: 'alice', secret });
    const client = new ScramClientSession({ password: 'correct horse' });
    const final = client.handleContinue(server.handleInitialResponse(SCRAM_SHA_256, client.initialResponse())).toString();
    expectError(() => server.handleResponse(Buffer.from(final.replace(',r=', ',r=X'))), '08P01', 'invalid SCRAM response');
  });

  it('unknown users and unusable secrets run a mock exchange with a stable salt and fail alike', () => {
    const seed = Buffer.from('mock seed');
    const salts = ['ghost', 'ghost', 'phantom'].map((user) => {
      const server = new ScramServerSession({ user, secret: null, mockSeed: seed });
      const first = server.handleInitialResponse(SCRAM_SHA_256, new ScramClientSession({ password: 'x' }).initialResponse()).toString();
      return /,s=([^,]+),/.exec(first)?.[1];
    });
    assert.equal(salts[0], salts[1], 'same user, same salt');
    assert.notEqual(salts[0], salts[2]);
    for (const stored of [null, md5Secret('x', 'ghost'), 'SCRAM-SHA-256$4096:broken']) {
      const server = new ScramServerSession({ user: 'ghost', secret: stored });
      assert.ok(server.doomedReason !== null);
      const client = new ScramClientSession({ password: 'x' });
      const final = client.handleContinue(server.handleInitialResponse(SCRAM_SHA_256, client.initialResponse()));
      expectError(() => server.handleResponse(final), '28P01', 'password authentication failed for user "ghost"');
    }
  });

  it("the 'y' channel-binding flag is accepted, 'p' and authzid are refused", () => {
    const yServer = new ScramServerSession({ user: 'u', secret: rfcSecret(), nonce: () => 'servernonce' });
    const yFirst = yServer.handleInitialResponse(SCRAM_SHA_256, Buffer.from('y,,n=*,r=clientnonce')).toString();
    assert.equal(yFirst, `r=clientnonceservernonce,s=${RFC.salt},i=4096`);
    // A client-final for 'y,,' (c=eSws) computed here from RFC 5802's formulas, independently of ScramClientSession.
    const keys = deriveScramKeys(RFC.password, Buffer.from(RFC.salt, 'base64'), 4096);
    const withoutProof = 'c=eSws,r=clientnonceservernonce';
    const authMessage = `n=*,r=clientnonce,${yFirst},${withoutProof}`;
    const signature = createHmac('sha256', createHash('sha256').update(keys.clientKey).digest()).update(authMessage).digest();
    const proof = Buffer.from(keys.clientKey.map((b, i) => b ^ signature[i]));
    const serverFinal = yServer.handleResponse(Buffer.from(`${withoutProof},p=${proof.toString('base64')}`));
    assert.equal(serverFinal.toString(), `v=${createHmac('sha256', keys.serverKey).update(authMessage).digest('base64')}`);

    // A client-final saying 'n' (c=biws) after a client-first saying 'y' is refused.
    const mixed = new ScramServerSession({ user: 'u', secret: rfcSecret() });
    const client = new ScramClientSession({ keys, nonce: () => 'clientnonce' });
    client.initialResponse();
    const nFinal = client.handleContinue(mixed.handleInitialResponse(SCRAM_SHA_256, Buffer.from('y,,n=*,r=clientnonce')));
    expectError(() => mixed.handleResponse(nFinal), '08P01', 'SCRAM channel binding check failed');

    expectError(
      () => new ScramServerSession({ user: 'u', secret: rfcSecret() }).handleInitialResponse(SCRAM_SHA_256, Buffer.from('p=tls-server-end-point,,n=,r=abc')),
      '08P01',
      'malformed SCRAM message',
      /includes channel binding data/,
    );
    expectError(
      () => new ScramServerSession({ user: 'u', secret: rfcSecret() }).handleInitialResponse(SCRAM_SHA_256, Buffer.from('n,a=admin,n=,r=abc')),
      '0A000',
      'client uses authorization identity, but it is not supported',
    );
    expectError(
      () => new ScramServerSession({ user: 'u', secret: rfcSecret() }).handleInitialResponse('SCRAM-SHA-256-PLUS', Buffer.from('n,,n=,r=abc')),
      '08P01',
      'client selected an invalid SASL authentication mechanism',
    );
    expectError(
      () => new ScramServerSession({ user: 'u', secret: rfcSecret() }).handleInitialResponse(SCRAM_SHA_256, Buffer.from('n,,m=ext,n=,r=abc')),
      '0A000',
      'client requires an unsupported SCRAM extension',
    );
  });

  it('garbage client messages (fixed and seeded random) end in a PgProtocolError, never another throw', () => {
    const fixed = ['', 'x', 'n', 'n,', 'n,,', 'n,,n=', 'n,,n=,', 'n,,n=,r=', 'n,,r=abc', 'n,,n=,r=a,b', 'n,,n=,r=ab\u0001c', 'q,,n=,r=abc', 'nn,n=,r=abc'];
    for (const text of fixed) {
      expectError(() => new ScramServerSession({ user: 'u', secret }).handleInitialResponse(SCRAM_SHA_256, Buffer.from(text, 'latin1')), '08P01');
    }
    const finals = ['', 'c=biws', 'c=biws,r=', 'c=biws,r=x,p=', 'c=biws,r=x,p=!!!!', 'c=eSws,r=x,p=AAAA', 'r=x,c=biws,p=AAAA', 'c=biws,r=x,p=' + 'A'.repeat(44) + ',z=1'];
    for (const text of finals) {
      const server = new ScramServerSession({ user: 'u', secret });
      server.handleInitialResponse(SCRAM_SHA_256, Buffer.from('n,,n=,r=abc'));
      expectError(() => server.handleResponse(Buffer.from(text, 'latin1')), '08P01');
    }
    let state = 12345;
    const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) % 256;
    for (let i = 0; i < 2000; i++) {
      const bytes = Buffer.alloc(next() % 120);
      for (let j = 0; j < bytes.length; j++) bytes[j] = next();
      if (i % 3 === 0) bytes.write('n,,n=,r=', 0, 'latin1');
      const server = new ScramServerSession({ user: 'u', secret });
      try {
        server.handleInitialResponse(SCRAM_SHA_256, bytes);
        const final = Buffer.alloc(next() % 150);
        for (let j = 0; j < final.length; j++) final[j] = next();
        if (i % 2 === 0) final.write('c=biws,r=', 0, 'latin1');
        server.handleResponse(final);
        assert.fail('random bytes passed SCRAM');
      } catch (e) {
        assert.ok(e instanceof PgProtocolError, `${e instanceof Error ? e.stack : String(e)}`);
      }
    }
  });

  it('the client refuses bad server messages', () => {
    const start = () => {
      const client = new ScramClientSession({ password: 'pw', nonce: () => 'cnonce' });
      client.initialResponse();
      return client;
    };
    expectError(() => start().handleContinue(Buffer.from('r=othernonce,s=c2FsdA==,i=4096')), '08P01', 'invalid SCRAM response');
    expectError(() => start().handleContinue(Buffer.from('r=cnonce,s=c2FsdA==,i=4096')), '08P01', 'invalid SCRAM response');
    expectError(() => start().handleContinue(Buffer.from('r=cnonceS,s=%%%,i=4096')), '08P01', 'malformed SCRAM message');
    expectError(() => start().handleContinue(Buffer.from('r=cnonceS,s=c2FsdA==,i=0')), '08P01', 'malformed SCRAM message');
    expectError(() => start().handleContinue(Buffer.from('r=cnonceS,s=c2FsdA==,i=99999999999')), '08P01', 'malformed SCRAM message');
    expectError(() => start().handleContinue(Buffer.from('m=x,r=cnonceS,s=c2FsdA==,i=1')), '08P01', 'malformed SCRAM message');
    expectError(() => start().handleContinue(Buffer.from('garbage')), '08P01');

    const server = new ScramServerSession({ user: 'u', secret: scramSecretFromPassword('pw') });
    const client = new ScramClientSession({ password: 'pw' });
    const final = client.handleContinue(server.handleInitialResponse(SCRAM_SHA_256, client.initialResponse()));
    const good = server.handleResponse(final).toString();
    const bad = Buffer.from(good.slice(2), 'base64');
    bad[0] ^= 0x80;
    expectError(() => client.handleFinal(Buffer.from(`v=${bad.toString('base64')}`)), '28P01', 'incorrect server signature');

    const refused = start();
    refused.handleContinue(Buffer.from('r=cnonceS,s=c2FsdA==,i=1'));
    expectError(() => refused.handleFinal(Buffer.from('e=invalid-proof')), '28P01', 'the server refused the SCRAM proof', /invalid-proof/);
    expectError(() => refused.handleFinal(Buffer.from('v=x')), '08P01', 'invalid SCRAM exchange state');

    // Keys for another salt cannot answer, and say so.
    const keys = deriveScramKeys('pw', Buffer.from('other salt'), 4096);
    const withKeys = new ScramClientSession({ keys, nonce: () => 'cnonce' });
    withKeys.initialResponse();
    expectError(() => withKeys.handleContinue(Buffer.from('r=cnonceS,s=c2FsdA==,i=4096')), '28P01', 'SCRAM keys do not match the server');
    assert.throws(() => new ScramClientSession({}), RangeError);
    assert.throws(() => new ScramClientSession({ password: 'x', nonce: () => 'a,b' }).initialResponse(), RangeError);
  });

  it('user names are escaped (saslname) and non-ASCII names and passwords work', () => {
    const client = new ScramClientSession({ user: 'a,b=ü', password: 'pässwörd\u00A0ﬁ', nonce: () => 'n0nce' });
    const first = client.initialResponse();
    assert.equal(first.toString('utf8'), 'n,,n=a=2Cb=3Dü,r=n0nce');
    const server = new ScramServerSession({ user: 'a,b=ü', secret: scramSecretFromPassword('pässwörd fi') });
    client.handleFinal(server.handleResponse(client.handleContinue(server.handleInitialResponse(SCRAM_SHA_256, first))));
    assert.ok(server.succeeded && client.succeeded, 'SASLprep maps NBSP to space and the ligature to "fi"');
    assert.equal(saslPrep('a\u00ADb\u200Bc'), 'ab c');
  });

  it('parseScramSecret refuses malformed secrets; async derivation equals sync', async () => {
    for (const bad of ['', 'md5abc', 'SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA', 'SCRAM-SHA-256$0:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '=', 'SCRAM-SHA-256$x:c2FsdA==$a:b']) {
      assert.equal(parseScramSecret(bad), null, bad);
    }
    const salt = Buffer.from('saltsalt');
    assert.deepEqual(await deriveScramKeysAsync('pw', salt, 4096), deriveScramKeys('pw', salt, 4096));
  });
});

describe('md5 password authentication', () => {
  const require = createRequire(import.meta.url);
  const pgCrypto = require('pg/lib/crypto/utils.js') as { postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string> };

  it('matches node-postgres’s md5 response for the same salt, from the password or the stored form', async () => {
    const salt = Buffer.from([0x11, 0x22, 0x33, 0x44]);
    const expected = await pgCrypto.postgresMd5PasswordHash('alice', 's3cret', salt);
    assert.equal(md5PasswordResponse('s3cret', 'alice', salt), expected);
    assert.equal(md5PasswordResponse(md5Secret('s3cret', 'alice'), 'alice', salt), expected);
    assert.ok(isMd5Secret(md5Secret('s3cret', 'alice')));
    assert.equal(md5Secret('s3cret', 'alice').length, 35);
  });

  it('the server side accepts the right response and refuses others with 28P01', () => {
    const salt = md5Salt();
    assert.equal(salt.length, 4);
    const stored = md5Secret('s3cret', 'alice');
    verifyMd5Response({ user: 'alice', secret: stored, salt, response: md5PasswordResponse('s3cret', 'alice', salt) });
    verifyMd5Response({ user: 'alice', secret: 's3cret', salt, response: md5PasswordResponse('s3cret', 'alice', salt) });
    const refusals: Array<{ secret: string | null; response: string }> = [
      { secret: stored, response: md5PasswordResponse('wrong', 'alice', salt) },
      { secret: stored, response: md5PasswordResponse('s3cret', 'alice', Buffer.from([0, 0, 0, 0])) },
      { secret: stored, response: 'md5' },
      { secret: stored, response: '' },
      { secret: null, response: md5PasswordResponse('s3cret', 'alice', salt) },
      { secret: scramSha256Verifier('s3cret'), response: md5PasswordResponse('s3cret', 'alice', salt) },
    ];
    for (const { secret, response } of refusals) {
      expectError(() => verifyMd5Response({ user: 'alice', secret, salt, response }), '28P01', 'password authentication failed for user "alice"');
    }
  });
});
