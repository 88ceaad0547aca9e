/**
 * Protocol codecs: encode → decode round trips for every codec, exact wire bytes for fixed messages, and a
 * cross-check against an independent implementation (node-postgres's pg-protocol, installed with `pg`): what it
 * serializes our decoders read, and what our builders write its parser reads. Malformed bodies must fail with
 * PostgreSQL's SQLSTATEs; MessageWriter must never write over bytes it handed out.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { PgwardenError } from '../../src/errors.js';
import { PgProtocolError } from '../../src/proxy/protocol/errors.js';
import { MessageFramer } from '../../src/proxy/protocol/framer.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { BodyReader } from '../../src/proxy/protocol/reader.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';

interface Frame {
  type: number;
  buffer: Buffer;
  bodyStart: number;
  end: number;
}

/** Frames every message in `bytes` (the framer is tested on its own; here it is just the way in). */
function frames(bytes: Buffer, startup = false): Frame[] {
  const framer = new MessageFramer({ startup });
  framer.push(bytes);
  const out: Frame[] = [];
  while (framer.next()) out.push(framer.snapshot());
  assert.equal(framer.bufferedBytes, 0, 'no bytes left over');
  return out;
}

function one(bytes: Buffer, startup = false): Frame {
  const all = frames(bytes, startup);
  assert.equal(all.length, 1);
  return all[0];
}

function build(write: (w: MessageWriter) => unknown): Buffer {
  const w = new MessageWriter(64);
  write(w);
  return w.flush();
}

/** Decodes a body with `decode` and expects a PgProtocolError with `sqlstate` (and message). */
function rejects(run: () => unknown, sqlstate: string, message?: string | RegExp): void {
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof PgProtocolError, `expected PgProtocolError, got ${String(e)}`);
    assert.equal(e.sqlstate, sqlstate);
    if (typeof message === 'string') assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    return true;
  });
}

/** pg-protocol's parser over our bytes: what a real client library understands from them. */
function pgParse(bytes: Buffer): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  new Parser().parse(bytes, (msg) => out.push(msg as unknown as Record<string, unknown>));
  return out;
}

describe('exact wire bytes of fixed messages', () => {
  const cases: Array<[string, (w: MessageWriter) => unknown, string]> = [
    ['AuthenticationOk', m.writeAuthenticationOk, '520000000800000000'],
    ['AuthenticationCleartextPassword', m.writeAuthenticationCleartextPassword, '520000000800000003'],
    ['AuthenticationMD5Password', (w) => m.writeAuthenticationMD5Password(w, Buffer.from([1, 2, 3, 4])), '520000000c0000000501020304'],
    ['ReadyForQuery I', (w) => m.writeReadyForQuery(w, 'I'), '5a0000000549'],
    ['ParseComplete', m.writeParseComplete, '3100000004'],
    ['BindComplete', m.writeBindComplete, '3200000004'],
    ['CloseComplete', m.writeCloseComplete, '3300000004'],
    ['NoData', m.writeNoData, '6e00000004'],
    ['EmptyQueryResponse', m.writeEmptyQueryResponse, '4900000004'],
    ['Sync', m.writeSync, '5300000004'],
    ['Flush', m.writeFlush, '4800000004'],
    ['Terminate', m.writeTerminate, '5800000004'],
    ['CopyDone', m.writeCopyDone, '6300000004'],
    ['SSLRequest', m.writeSSLRequest, '0000000804d2162f'],
    ['GSSENCRequest', m.writeGSSENCRequest, '0000000804d21630'],
    ['CancelRequest', (w) => m.writeCancelRequest(w, 1234, 0xcafebabe), '0000001004d2162e000004d2cafebabe'],
    ['BackendKeyData', (w) => m.writeBackendKeyData(w, 1234, 0xcafebabe), '4b0000000c000004d2cafebabe'],
    ['Query', (w) => m.writeQuery(w, 'SELECT 1'), '510000000d53454c4543542031' + '00'],
  ];
  for (const [name, write, hex] of cases) {
    it(name, () => assert.equal(build(write).toString('hex'), hex));
  }
});

describe('client → server messages: our builders, our decoders, and pg-protocol as the independent encoder', () => {
  it('StartupMessage: parameters, database defaulting to user, _pq_ options apart', () => {
    const ours = one(build((w) => m.writeStartupMessage(w, { user: 'alice', database: 'shop', options: '-c x=1', application_name: 'app', replication: 'database' })), true);
    const decoded = m.decodeStartupFrame(ours.buffer, ours.bodyStart, ours.end);
    assert.equal(decoded.kind, 'startup');
    if (decoded.kind !== 'startup') return;
    assert.equal(decoded.minorVersion, 0);
    assert.equal(decoded.user, 'alice');
    assert.equal(decoded.database, 'shop');
    assert.equal(decoded.options, '-c x=1');
    assert.equal(decoded.applicationName, 'app');
    assert.equal(decoded.replication, 'database');
    assert.deepEqual([...decoded.params.keys()], ['user', 'database', 'options', 'application_name', 'replication']);

    const theirs = one(serialize.startup({ user: 'bob', client_encoding: 'UTF8' }), true);
    const fromPg = m.decodeStartupFrame(theirs.buffer, theirs.bodyStart, theirs.end);
    assert.ok(fromPg.kind === 'startup');
    assert.equal(fromPg.user, 'bob');
    assert.equal(fromPg.database, 'bob', 'no database: PostgreSQL uses the user name');
    assert.equal(fromPg.params.get('client_encoding'), 'UTF8');

    const withOptions = one(build((w) => m.writeStartupMessage(w, new Map([['user', 'u'], ['database', ''], ['_pq_.compression', 'on']]))), true);
    const decodedOptions = m.decodeStartupFrame(withOptions.buffer, withOptions.bodyStart, withOptions.end);
    assert.ok(decodedOptions.kind === 'startup');
    assert.equal(decodedOptions.database, 'u', 'an empty database also means the user name');
    assert.deepEqual(decodedOptions.protocolOptions, ['_pq_.compression']);
    assert.equal(decodedOptions.params.has('_pq_.compression'), false);
  });

  it('StartupMessage refusals: no user (28000), protocol 2 or 4 (0A000), bad layout (08P01)', () => {
    const noUser = one(build((w) => m.writeStartupMessage(w, { database: 'x' })), true);
    rejects(() => m.decodeStartupFrame(noUser.buffer, noUser.bodyStart, noUser.end), '28000', 'no PostgreSQL user name specified in startup packet');
    for (const code of [2 << 16, (4 << 16) | 1]) {
      const bytes = build((w) => w.beginUntyped().int32(code).cstring('user').cstring('u').int8(0).end());
      const f = one(bytes, true);
      rejects(() => m.decodeStartupFrame(f.buffer, f.bodyStart, f.end), '0A000', /^unsupported frontend protocol [24]\.[01]: server supports 3\.0 to 3\.0$/);
    }
    const noTerminator = build((w) => w.beginUntyped().int32(m.StartupCode.Protocol3).cstring('user').cstring('u').end());
    const f1 = one(noTerminator, true);
    rejects(() => m.decodeStartupFrame(f1.buffer, f1.bodyStart, f1.end), '08P01', 'invalid startup packet layout: expected terminator as last byte');
    const trailing = build((w) => w.beginUntyped().int32(m.StartupCode.Protocol3).cstring('user').cstring('u').int8(0).int8(7).end());
    const f2 = one(trailing, true);
    rejects(() => m.decodeStartupFrame(f2.buffer, f2.bodyStart, f2.end), '08P01', 'invalid startup packet layout: expected terminator as last byte');
    const unterminatedValue = build((w) => w.beginUntyped().int32(m.StartupCode.Protocol3).cstring('user').text('u').end());
    const f3 = one(unterminatedValue, true);
    rejects(() => m.decodeStartupFrame(f3.buffer, f3.bodyStart, f3.end), '08P01');
  });

  it('SSLRequest, GSSENCRequest and CancelRequest (ours and pg-protocol’s)', () => {
    const ssl = one(serialize.requestSsl(), true);
    assert.deepEqual(m.decodeStartupFrame(ssl.buffer, ssl.bodyStart, ssl.end), { kind: 'ssl' });
    const gss = one(build(m.writeGSSENCRequest), true);
    assert.deepEqual(m.decodeStartupFrame(gss.buffer, gss.bodyStart, gss.end), { kind: 'gssenc' });
    const cancel = one(serialize.cancel(4242, 0x7eadbeef), true);
    assert.deepEqual(m.decodeStartupFrame(cancel.buffer, cancel.bodyStart, cancel.end), { kind: 'cancel', pid: 4242, secretKey: 0x7eadbeef });
    const ours = one(build((w) => m.writeCancelRequest(w, 7, 0xfffffffe)), true);
    assert.deepEqual(m.decodeStartupFrame(ours.buffer, ours.bodyStart, ours.end), { kind: 'cancel', pid: 7, secretKey: 0xfffffffe });
    const longCancel = one(build((w) => w.beginUntyped().int32(m.StartupCode.CancelRequest).int32(1).int32(2).int32(3).end()), true);
    rejects(() => m.decodeStartupFrame(longCancel.buffer, longCancel.bodyStart, longCancel.end), '08P01', 'invalid length of startup packet');
    const longSsl = one(build((w) => w.beginUntyped().int32(m.StartupCode.SSLRequest).int32(0).end()), true);
    rejects(() => m.decodeStartupFrame(longSsl.buffer, longSsl.bodyStart, longSsl.end), '08P01', 'invalid length of startup packet');
  });

  it('PasswordMessage, SASLInitialResponse (with and without data), SASLResponse', () => {
    const pw = one(serialize.password('md5abcdef'));
    assert.equal(pw.type, m.FrontendType.Password);
    assert.equal(m.decodePasswordMessage(pw.buffer, pw.bodyStart, pw.end), 'md5abcdef');
    const ourPw = one(build((w) => m.writePasswordMessage(w, 'pässword')));
    assert.equal(m.decodePasswordMessage(ourPw.buffer, ourPw.bodyStart, ourPw.end), 'pässword');

    const init = one(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=abc'));
    const decoded = m.decodeSASLInitialResponse(init.buffer, init.bodyStart, init.end);
    assert.equal(decoded.mechanism, 'SCRAM-SHA-256');
    assert.equal(decoded.data?.toString(), 'n,,n=*,r=abc');
    const ourInit = build((w) => m.writeSASLInitialResponse(w, 'SCRAM-SHA-256', Buffer.from('n,,n=*,r=abc')));
    assert.ok(ourInit.equals(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=abc')), 'byte-identical to pg-protocol');
    const noData = one(build((w) => m.writeSASLInitialResponse(w, 'SCRAM-SHA-256', null)));
    assert.deepEqual(m.decodeSASLInitialResponse(noData.buffer, noData.bodyStart, noData.end), { mechanism: 'SCRAM-SHA-256', data: null });
    const badLength = one(build((w) => w.begin(0x70).cstring('SCRAM-SHA-256').int32(10).text('abc').end()));
    rejects(() => m.decodeSASLInitialResponse(badLength.buffer, badLength.bodyStart, badLength.end), '08P01', 'insufficient data left in message');

    const response = one(serialize.sendSCRAMClientFinalMessage('c=biws,r=abc,p=xyz'));
    assert.equal(m.decodeSASLResponse(response.buffer, response.bodyStart, response.end).toString(), 'c=biws,r=abc,p=xyz');
    const ourResponse = one(build((w) => m.writeSASLResponse(w, Buffer.from('c=biws'))));
    assert.equal(m.decodeSASLResponse(ourResponse.buffer, ourResponse.bodyStart, ourResponse.end).toString(), 'c=biws');
  });

  it('Query (ours and pg-protocol’s), with non-ASCII text', () => {
    for (const bytes of [serialize.query('SELECT \'é\' -- ☃'), build((w) => m.writeQuery(w, 'SELECT \'é\' -- ☃'))]) {
      const f = one(bytes);
      assert.equal(f.type, m.FrontendType.Query);
      assert.equal(m.decodeQuery(f.buffer, f.bodyStart, f.end), "SELECT 'é' -- ☃");
    }
    const unterminated = one(build((w) => w.begin(m.FrontendType.Query).text('SELECT 1').end()));
    rejects(() => m.decodeQuery(unterminated.buffer, unterminated.bodyStart, unterminated.end), '08P01', 'invalid string in message');
    const trailing = one(build((w) => w.begin(m.FrontendType.Query).cstring('SELECT 1').int8(1).end()));
    rejects(() => m.decodeQuery(trailing.buffer, trailing.bodyStart, trailing.end), '08P01', 'invalid message format');
  });

  it('Parse: name, query, parameter types (ours and pg-protocol’s)', () => {
    const theirs = one(serialize.parse({ name: 'stmt_1', text: 'SELECT $1::int + $2', types: [23, 0] }));
    assert.deepEqual(m.decodeParse(theirs.buffer, theirs.bodyStart, theirs.end), { name: 'stmt_1', query: 'SELECT $1::int + $2', paramTypes: [23, 0] });
    const ours = build((w) => m.writeParse(w, 'stmt_1', 'SELECT $1::int + $2', [23, 0]));
    assert.ok(ours.equals(serialize.parse({ name: 'stmt_1', text: 'SELECT $1::int + $2', types: [23, 0] })), 'byte-identical to pg-protocol');
    const unnamed = one(build((w) => m.writeParse(w, '', 'SELECT 1')));
    assert.deepEqual(m.decodeParse(unnamed.buffer, unnamed.bodyStart, unnamed.end), { name: '', query: 'SELECT 1', paramTypes: [] });
    const bigOid = one(build((w) => m.writeParse(w, 'x', 'SELECT $1', [0xfffffff0])));
    assert.deepEqual(m.decodeParse(bigOid.buffer, bigOid.bodyStart, bigOid.end).paramTypes, [0xfffffff0]);
    const shortTypes = one(build((w) => w.begin(m.FrontendType.Parse).cstring('x').cstring('SELECT $1').int16(2).int32(23).end()));
    rejects(() => m.decodeParse(shortTypes.buffer, shortTypes.bodyStart, shortTypes.end), '08P01', 'insufficient data left in message');
    const negative = one(build((w) => w.begin(m.FrontendType.Parse).cstring('x').cstring('q').int16(-1).end()));
    rejects(() => m.decodeParse(negative.buffer, negative.bodyStart, negative.end), '08P01');
  });

  it('statement names are byte-exact (latin1): non-UTF-8 names stay distinct and re-encode to the same bytes', () => {
    const a = Buffer.from([0x50, 0, 0, 0, 0, 0xff, 0xfe, 0, 0x51, 0, 0, 0]);
    const b = Buffer.from([0x50, 0, 0, 0, 0, 0xff, 0xfd, 0, 0x51, 0, 0, 0]);
    a.writeInt32BE(a.length - 1, 1);
    b.writeInt32BE(b.length - 1, 1);
    const fa = one(a);
    const fb = one(b);
    const na = m.decodeParse(fa.buffer, fa.bodyStart, fa.end).name;
    const nb = m.decodeParse(fb.buffer, fb.bodyStart, fb.end).name;
    assert.notEqual(na, nb);
    assert.ok(build((w) => m.writeParse(w, na, 'Q')).equals(a));
  });

  it('Bind: portal and statement, parameters left as a byte range (pg-protocol’s bytes)', () => {
    const theirs = serialize.bind({ portal: 'p1', statement: 's1', values: ['42', null, 'x'] });
    const f = one(theirs);
    const bind = m.decodeBind(f.buffer, f.bodyStart, f.end);
    assert.equal(bind.portal, 'p1');
    assert.equal(bind.statement, 's1');
    assert.equal(bind.paramsStart, f.bodyStart + 6);
    // The rest parses as parameter formats, values, result formats.
    const r = new BodyReader().reset(f.buffer, bind.paramsStart, f.end);
    const formats = r.int16();
    for (let i = 0; i < formats; i++) r.int16();
    assert.equal(r.int16(), 3);
    assert.equal(r.bytes(r.int32()).toString(), '42');
    assert.equal(r.int32(), -1);
    assert.equal(r.bytes(r.int32()).toString(), 'x');
    const ours = build((w) => m.writeBind(w, 'p1', 's1', ['42', null, 'x']));
    const fo = one(ours);
    assert.deepEqual(m.decodeBind(fo.buffer, fo.bodyStart, fo.end), { portal: 'p1', statement: 's1', paramsStart: fo.bodyStart + 6 });
    const noStatement = one(build((w) => w.begin(m.FrontendType.Bind).cstring('p').end()));
    rejects(() => m.decodeBind(noStatement.buffer, noStatement.bodyStart, noStatement.end), '08P01', 'invalid string in message');
  });

  it('Describe and Close of statements and portals; bad subtypes refused', () => {
    for (const type of ['S', 'P'] as const) {
      const d = one(serialize.describe({ type, name: 'n1' }));
      assert.deepEqual(m.decodeDescribe(d.buffer, d.bodyStart, d.end), { kind: type, name: 'n1' });
      const c = one(serialize.close({ type, name: 'n2' }));
      assert.deepEqual(m.decodeClose(c.buffer, c.bodyStart, c.end), { kind: type, name: 'n2' });
      assert.ok(build((w) => m.writeDescribe(w, type, 'n1')).equals(serialize.describe({ type, name: 'n1' })));
      assert.ok(build((w) => m.writeClose(w, type, 'n2')).equals(serialize.close({ type, name: 'n2' })));
    }
    const bad = one(build((w) => w.begin(m.FrontendType.Describe).int8(0x58).cstring('n').end()));
    rejects(() => m.decodeDescribe(bad.buffer, bad.bodyStart, bad.end), '08P01', 'invalid DESCRIBE message subtype 88');
    const badClose = one(build((w) => w.begin(m.FrontendType.Close).int8(0x58).cstring('n').end()));
    rejects(() => m.decodeClose(badClose.buffer, badClose.bodyStart, badClose.end), '08P01', 'invalid CLOSE message subtype 88');
  });

  it('Execute, Sync, Flush, Terminate, CopyData, CopyDone, CopyFail', () => {
    const e = one(serialize.execute({ portal: 'p', rows: 100 }));
    assert.deepEqual(m.decodeExecute(e.buffer, e.bodyStart, e.end), { portal: 'p', maxRows: 100 });
    assert.ok(build((w) => m.writeExecute(w, 'p', 100)).equals(serialize.execute({ portal: 'p', rows: 100 })));
    assert.ok(build(m.writeSync).equals(serialize.sync()));
    assert.ok(build(m.writeFlush).equals(serialize.flush()));
    assert.ok(build(m.writeTerminate).equals(serialize.end()));
    assert.ok(build(m.writeCopyDone).equals(serialize.copyDone()));
    for (const f of frames(Buffer.concat([serialize.sync(), serialize.flush(), serialize.end(), serialize.copyDone()]))) {
      m.checkEmptyBody(f.bodyStart, f.end);
    }
    const syncWithBody = one(build((w) => w.begin(m.FrontendType.Sync).int8(1).end()));
    rejects(() => m.checkEmptyBody(syncWithBody.bodyStart, syncWithBody.end), '08P01', 'invalid message format');
    const data = Buffer.from('1\tone\n2\ttwo\n');
    assert.ok(build((w) => m.writeCopyData(w, data)).equals(serialize.copyData(data)));
    const cd = one(serialize.copyData(data));
    assert.ok(cd.buffer.subarray(cd.bodyStart, cd.end).equals(data));
    const cf = one(serialize.copyFail('client gave up'));
    assert.equal(m.decodeCopyFail(cf.buffer, cf.bodyStart, cf.end), 'client gave up');
    assert.ok(build((w) => m.writeCopyFail(w, 'client gave up')).equals(serialize.copyFail('client gave up')));
  });
});

describe('server → client messages: our builders read by pg-protocol and by our decoders', () => {
  it('Authentication requests', () => {
    const bytes = build((w) => {
      m.writeAuthenticationOk(w);
      m.writeAuthenticationCleartextPassword(w);
      m.writeAuthenticationMD5Password(w, Buffer.from([9, 8, 7, 6]));
      m.writeAuthenticationSASL(w, ['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']);
      m.writeAuthenticationSASLContinue(w, Buffer.from('r=abc,s=c2FsdA==,i=4096'));
      m.writeAuthenticationSASLFinal(w, Buffer.from('v=c2ln'));
    });
    const parsed = pgParse(bytes);
    assert.deepEqual(
      parsed.map((p) => p.name),
      ['authenticationOk', 'authenticationCleartextPassword', 'authenticationMD5Password', 'authenticationSASL', 'authenticationSASLContinue', 'authenticationSASLFinal'],
    );
    assert.deepEqual(parsed[3].mechanisms, ['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']);
    assert.equal(parsed[4].data, 'r=abc,s=c2FsdA==,i=4096');
    const decoded = frames(bytes).map((f) => m.decodeAuthentication(f.buffer, f.bodyStart, f.end));
    assert.deepEqual(decoded.map((d) => d.kind), ['ok', 'cleartext-password', 'md5-password', 'sasl', 'sasl-continue', 'sasl-final']);
    assert.deepEqual(decoded.map((d) => d.code), [0, 3, 5, 10, 11, 12]);
    assert.ok(decoded[2].kind === 'md5-password' && decoded[2].salt.equals(Buffer.from([9, 8, 7, 6])));
    assert.ok(decoded[3].kind === 'sasl' && decoded[3].mechanisms.length === 2);
    assert.ok(decoded[4].kind === 'sasl-continue' && decoded[4].data.toString() === 'r=abc,s=c2FsdA==,i=4096');
    assert.ok(decoded[5].kind === 'sasl-final' && decoded[5].data.toString() === 'v=c2ln');
    const gss = one(build((w) => w.begin(m.BackendType.Authentication).int32(7).end()));
    assert.equal(m.decodeAuthentication(gss.buffer, gss.bodyStart, gss.end).kind, 'other');
    const shortMd5 = one(build((w) => w.begin(m.BackendType.Authentication).int32(5).int8(1).end()));
    rejects(() => m.decodeAuthentication(shortMd5.buffer, shortMd5.bodyStart, shortMd5.end), '08P01');
    assert.throws(() => build((w) => m.writeAuthenticationMD5Password(w, Buffer.alloc(3))), RangeError);
  });

  it('ParameterStatus, BackendKeyData, ReadyForQuery, CommandComplete', () => {
    const bytes = build((w) => {
      m.writeParameterStatus(w, 'application_name', 'pgwarden ☃');
      m.writeBackendKeyData(w, 31337, 0x80000001);
      m.writeReadyForQuery(w, 'I');
      m.writeReadyForQuery(w, 'T');
      m.writeReadyForQuery(w, 'E');
      m.writeCommandComplete(w, 'INSERT 0 5');
    });
    const parsed = pgParse(bytes);
    assert.equal(parsed[0].parameterName, 'application_name');
    assert.equal(parsed[0].parameterValue, 'pgwarden ☃');
    assert.equal(parsed[1].processID, 31337);
    assert.deepEqual(parsed.slice(2, 5).map((p) => p.status), ['I', 'T', 'E']);
    assert.equal(parsed[5].text, 'INSERT 0 5');
    const f = frames(bytes);
    assert.deepEqual(m.decodeParameterStatus(f[0].buffer, f[0].bodyStart, f[0].end), { name: 'application_name', value: 'pgwarden ☃' });
    assert.deepEqual(m.decodeBackendKeyData(f[1].buffer, f[1].bodyStart, f[1].end), { pid: 31337, secretKey: 0x80000001 });
    assert.deepEqual(f.slice(2, 5).map((x) => m.decodeReadyForQuery(x.buffer, x.bodyStart, x.end)), ['I', 'T', 'E']);
    assert.equal(m.decodeCommandComplete(f[5].buffer, f[5].bodyStart, f[5].end), 'INSERT 0 5');
    const badStatus = one(build((w) => w.begin(m.BackendType.ReadyForQuery).int8(0x58).end()));
    rejects(() => m.decodeReadyForQuery(badStatus.buffer, badStatus.bodyStart, badStatus.end), '08P01');
    const twoBytes = one(build((w) => w.begin(m.BackendType.ReadyForQuery).int8(0x49).int8(0x49).end()));
    rejects(() => m.decodeReadyForQuery(twoBytes.buffer, twoBytes.bodyStart, twoBytes.end), '08P01');
    const shortKey = one(build((w) => w.begin(m.BackendType.BackendKeyData).int32(1).end()));
    rejects(() => m.decodeBackendKeyData(shortKey.buffer, shortKey.bodyStart, shortKey.end), '08P01');
  });

  it('ErrorResponse and NoticeResponse: every field, the errorResponse() helper, NULs dropped from field values', () => {
    const all: m.ErrorFields = {
      severity: 'ERROR',
      severityNonLocalized: 'ERROR',
      code: '23505',
      message: 'duplicate key value violates unique constraint "t_pkey"',
      detail: 'Key (id)=(1) already exists.',
      hint: 'h',
      position: '8',
      internalPosition: '3',
      internalQuery: 'iq',
      where: 'w',
      schema: 'public',
      table: 't',
      column: 'id',
      dataType: 'int4',
      constraint: 't_pkey',
      file: 'nbtinsert.c',
      line: '664',
      routine: '_bt_check_unique',
    };
    const bytes = build((w) => m.writeErrorResponse(w, all));
    const f = one(bytes);
    assert.equal(f.type, m.BackendType.ErrorResponse);
    assert.deepEqual(m.decodeErrorFields(f.buffer, f.bodyStart, f.end), all);
    const parsed = pgParse(bytes)[0];
    assert.equal(parsed.name, 'error');
    for (const key of ['severity', 'code', 'message', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery', 'where', 'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine'] as const) {
      assert.equal(parsed[key], all[key], key);
    }

    const helper = m.errorResponse({ code: '28P01', message: 'password authentication failed for user "a\0b"', hint: 'check it' });
    const hf = one(helper);
    assert.deepEqual(m.decodeErrorFields(hf.buffer, hf.bodyStart, hf.end), {
      severity: 'FATAL',
      severityNonLocalized: 'FATAL',
      code: '28P01',
      message: 'password authentication failed for user "ab"',
      hint: 'check it',
    });
    const notice = one(m.noticeResponse({ code: '00000', message: 'hello' }));
    assert.equal(notice.type, m.BackendType.NoticeResponse);
    assert.equal(m.decodeErrorFields(notice.buffer, notice.bodyStart, notice.end).severity, 'NOTICE');
    assert.equal(pgParse(m.noticeResponse({ code: '00000', message: 'hello' }))[0].name, 'notice');

    // Unknown field codes are skipped; a missing terminator is malformed.
    const unknownField = one(build((w) => w.begin(0x45).int8(0x53).cstring('ERROR').int8(0x5a).cstring('zzz').int8(0x4d).cstring('m').int8(0).end()));
    assert.deepEqual(m.decodeErrorFields(unknownField.buffer, unknownField.bodyStart, unknownField.end), { severity: 'ERROR', code: '', message: 'm' });
    const noTerminator = one(build((w) => w.begin(0x45).int8(0x53).cstring('ERROR').end()));
    rejects(() => m.decodeErrorFields(noTerminator.buffer, noTerminator.bodyStart, noTerminator.end), '08P01', 'insufficient data left in message');
  });

  it('RowDescription and DataRow for the admin console', () => {
    const columns: m.ColumnDescription[] = [{ name: 'database' }, { name: 'cl_active', typeOid: m.TypeOid.int8, typeSize: 8 }, { name: 'note' }];
    const bytes = build((w) => {
      m.writeRowDescription(w, columns);
      m.writeDataRow(w, ['shop', 12, null]);
      m.writeDataRow(w, ['Ünïcode ☃', 9007199254740993n, '']);
    });
    const parsed = pgParse(bytes);
    const fields = parsed[0].fields as Array<{ name: string; dataTypeID: number; dataTypeSize: number; format: string }>;
    assert.deepEqual(fields.map((x) => [x.name, x.dataTypeID, x.dataTypeSize, x.format]), [
      ['database', 25, -1, 'text'],
      ['cl_active', 20, 8, 'text'],
      ['note', 25, -1, 'text'],
    ]);
    assert.deepEqual(parsed[1].fields, ['shop', '12', null]);
    assert.deepEqual(parsed[2].fields, ['Ünïcode ☃', '9007199254740993', '']);
    const f = frames(bytes);
    assert.deepEqual(
      m.decodeRowDescription(f[0].buffer, f[0].bodyStart, f[0].end).map((c) => [c.name, c.typeOid, c.typeSize, c.typeModifier, c.format, c.tableOid, c.columnNumber]),
      [
        ['database', 25, -1, -1, 0, 0, 0],
        ['cl_active', 20, 8, -1, 0, 0, 0],
        ['note', 25, -1, -1, 0, 0, 0],
      ],
    );
    assert.deepEqual(m.decodeDataRow(f[1].buffer, f[1].bodyStart, f[1].end), ['shop', '12', null]);
    assert.deepEqual(m.decodeDataRow(f[2].buffer, f[2].bodyStart, f[2].end), ['Ünïcode ☃', '9007199254740993', '']);
    const lying = one(build((w) => w.begin(m.BackendType.DataRow).int16(1).int32(100).text('short').end()));
    rejects(() => m.decodeDataRow(lying.buffer, lying.bodyStart, lying.end), '08P01', 'insufficient data left in message');
  });

  it('NegotiateProtocolVersion and the empty completion messages', () => {
    const bytes = build((w) => {
      m.writeNegotiateProtocolVersion(w, 0, ['_pq_.compression', '_pq_.x']);
      m.writeParseComplete(w);
      m.writeBindComplete(w);
      m.writeCloseComplete(w);
      m.writeNoData(w);
      m.writeEmptyQueryResponse(w);
    });
    const f = frames(bytes);
    assert.deepEqual(m.decodeNegotiateProtocolVersion(f[0].buffer, f[0].bodyStart, f[0].end), { newestMinor: 0, unsupportedOptions: ['_pq_.compression', '_pq_.x'] });
    assert.deepEqual(pgParse(Buffer.concat(f.slice(1).map((x) => x.buffer.subarray(x.bodyStart - 5, x.end)))).map((p) => p.name), [
      'parseComplete',
      'bindComplete',
      'closeComplete',
      'noData',
      'emptyQuery',
    ]);
    const hostileCount = one(build((w) => w.begin(m.BackendType.NegotiateProtocolVersion).int32(0).int32(0x7fffffff).end()));
    rejects(() => m.decodeNegotiateProtocolVersion(hostileCount.buffer, hostileCount.bodyStart, hostileCount.end), '08P01');
  });
});

describe('decoders on truncated bodies fail with PgProtocolError only', () => {
  it('every prefix of every valid body is either decoded or refused with 08P01/28000/0A000', () => {
    const typed: Array<[Buffer, (b: Buffer, s: number, e: number) => unknown]> = [
      [build((w) => m.writeParse(w, 's', 'SELECT $1', [23])), m.decodeParse],
      [build((w) => m.writeBind(w, 'p', 's', ['1'])), m.decodeBind],
      [build((w) => m.writeDescribe(w, 'S', 's')), m.decodeDescribe],
      [build((w) => m.writeExecute(w, 'p', 5)), m.decodeExecute],
      [build((w) => m.writeSASLInitialResponse(w, 'SCRAM-SHA-256', Buffer.from('n,,n=,r=x'))), m.decodeSASLInitialResponse],
      [build((w) => m.writeErrorResponse(w, { severity: 'ERROR', code: 'XX000', message: 'x', detail: 'd' })), m.decodeErrorFields],
      [build((w) => m.writeRowDescription(w, [{ name: 'a' }, { name: 'b' }])), m.decodeRowDescription],
      [build((w) => m.writeDataRow(w, ['a', null, 'ccc'])), m.decodeDataRow],
      [build((w) => m.writeBackendKeyData(w, 1, 2)), m.decodeBackendKeyData],
      [build((w) => m.writeParameterStatus(w, 'a', 'b')), m.decodeParameterStatus],
      [build((w) => m.writeAuthenticationSASL(w, ['SCRAM-SHA-256'])), m.decodeAuthentication],
    ];
    let refused = 0;
    for (const [bytes, decode] of typed) {
      for (let cut = 5; cut < bytes.length; cut++) {
        try {
          decode(bytes, 5, cut);
        } catch (e) {
          assert.ok(e instanceof PgProtocolError, `${String(e)}`);
          refused++;
        }
      }
    }
    const startup = build((w) => m.writeStartupMessage(w, { user: 'u', database: 'd' }));
    for (let cut = 4; cut < startup.length; cut++) {
      assert.throws(() => m.decodeStartupFrame(startup, 4, cut), PgProtocolError);
    }
    assert.ok(refused > 50);
  });
});

describe('MessageWriter', () => {
  it('never writes over bytes it handed out, across slab changes', () => {
    const w = new MessageWriter(64);
    const handed: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < 200; i++) {
      m.writeQuery(w, `SELECT ${i}, '${'z'.repeat(i % 50)}'`);
      if (i % 3 === 0) m.writeSync(w);
      if (i % 2 === 0) {
        const out = w.flush();
        handed.push([out, Buffer.from(out)]);
      }
    }
    const last = w.flush();
    handed.push([last, Buffer.from(last)]);
    for (const [view, copy] of handed) assert.ok(view.equals(copy), 'a handed-out buffer changed later');
    const total = Buffer.concat(handed.map(([v]) => v));
    assert.equal(frames(total).length, 200 + 67);
  });

  it('a message bigger than the slab, an open message carried into a new slab, int16/int32 of negative values', () => {
    const w = new MessageWriter(64);
    m.writeSync(w);
    m.writeDataRow(w, ['a'.repeat(10_000), 'b'.repeat(70_000)]);
    w.begin(0x44).int16(-1).int32(-2).int32(0xffffffff).end();
    const f = frames(w.flush());
    assert.equal(f.length, 3);
    assert.deepEqual(m.decodeDataRow(f[1].buffer, f[1].bodyStart, f[1].end), ['a'.repeat(10_000), 'b'.repeat(70_000)]);
    const r = new BodyReader().reset(f[2].buffer, f[2].bodyStart, f[2].end);
    assert.deepEqual([r.int16(), r.int32(), r.int32()], [-1, -2, -1]);
  });

  it('pendingLength, cancel() and misuse errors', () => {
    const w = new MessageWriter(64);
    m.writeSync(w);
    assert.equal(w.pendingLength, 5);
    w.begin(0x51).cstring('half');
    assert.equal(w.pendingLength, 5, 'an open message is not pending');
    assert.throws(() => w.flush(), PgwardenError);
    assert.throws(() => w.begin(0x51), PgwardenError);
    w.cancel();
    assert.equal(w.flush().toString('hex'), '5300000004');
    assert.throws(() => w.end(), PgwardenError);
    assert.throws(() => w.begin(0x51).cstring('a\0b'), (e: unknown) => e instanceof PgwardenError && e.code === 'INTERNAL');
    w.cancel();
    assert.equal(w.flush().length, 0);
    assert.throws(() => new MessageWriter(8), RangeError);
  });
});
