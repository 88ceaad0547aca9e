/**
 * MessageFramer: realistic client and server streams (built with the encoders) split at every byte offset, fed a
 * byte at a time and in seeded random chunks must give back exactly the messages that were written; bad lengths,
 * refused types and fuzzed garbage must end in a PgProtocolError (never another kind of throw) with bounded memory.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PgProtocolError } from '../../src/proxy/protocol/errors.js';
import {
  MAX_MESSAGE_LENGTH,
  MessageFramer,
  type FramerOptions,
  frontendAuthLimits,
  frontendLimits,
} from '../../src/proxy/protocol/framer.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';

/** mulberry32: small, seeded, good enough to pick split points and garbage. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Recorded {
  /** Each message's bytes, in order. */
  messages: Buffer[];
  /** Whether each was a startup-phase message. */
  untyped: boolean[];
  stream: Buffer;
}

/** Records messages one by one (flushing after each), so the test knows every frame's exact bytes. */
function record(build: (add: (write: (w: MessageWriter) => unknown, untyped?: boolean) => void) => void): Recorded {
  const w = new MessageWriter(256);
  const messages: Buffer[] = [];
  const untyped: boolean[] = [];
  build((write, isUntyped = false) => {
    write(w);
    messages.push(w.flush());
    untyped.push(isUntyped);
  });
  return { messages, untyped, stream: Buffer.concat(messages) };
}

/** A client's side of a session: SSL refused, startup, SCRAM, simple queries, an extended-protocol pipeline, COPY. */
const clientStream = record((add) => {
  add((w) => m.writeSSLRequest(w), true);
  add((w) => m.writeStartupMessage(w, { user: 'alice', database: 'shop', application_name: 'bench', client_encoding: 'UTF8' }), true);
  add((w) => m.writeSASLInitialResponse(w, 'SCRAM-SHA-256', Buffer.from('n,,n=,r=rOprNGfwEbeRWgbNEkqO')));
  add((w) => m.writeSASLResponse(w, Buffer.from('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=')));
  add((w) => m.writeQuery(w, 'SET search_path = shop, public'));
  for (let i = 0; i < 3; i++) {
    add((w) => m.writeParse(w, `s${i}`, 'SELECT * FROM orders WHERE id = $1 AND state = $2', [20, 25]));
    add((w) => m.writeBind(w, '', `s${i}`, [String(1000 + i), i === 1 ? null : 'open']));
    add((w) => m.writeDescribe(w, 'P', ''));
    add((w) => m.writeExecute(w, '', 0));
    add((w) => m.writeSync(w));
  }
  add((w) => m.writeClose(w, 'S', 's0'));
  add((w) => m.writeFlush(w));
  add((w) => m.writeQuery(w, 'COPY items FROM STDIN'));
  add((w) => m.writeCopyData(w, Buffer.alloc(3000, 'x')));
  add((w) => m.writeCopyDone(w));
  add((w) => m.writeQuery(w, ''));
  add((w) => m.writeTerminate(w));
});

/** The server's answers, with one large DataRow (about 20 kB, bigger than any chunk it is split into below). */
const serverStream = record((add) => {
  add((w) => m.writeAuthenticationSASL(w, ['SCRAM-SHA-256']));
  add((w) => m.writeAuthenticationSASLContinue(w, Buffer.from('r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')));
  add((w) => m.writeAuthenticationSASLFinal(w, Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')));
  add((w) => m.writeAuthenticationOk(w));
  for (const [name, value] of [['server_version', '15.8'], ['client_encoding', 'UTF8'], ['TimeZone', 'UTC'], ['integer_datetimes', 'on']]) {
    add((w) => m.writeParameterStatus(w, name, value));
  }
  add((w) => m.writeBackendKeyData(w, 4242, 0xdeadbeef));
  add((w) => m.writeReadyForQuery(w, 'I'));
  add((w) => m.writeParseComplete(w));
  add((w) => m.writeBindComplete(w));
  add((w) => m.writeRowDescription(w, [{ name: 'id', typeOid: 20, typeSize: 8 }, { name: 'payload' }]));
  add((w) => m.writeDataRow(w, ['1', 'y'.repeat(20_000)]));
  add((w) => m.writeDataRow(w, ['2', null]));
  add((w) => m.writeCommandComplete(w, 'SELECT 2'));
  add((w) => m.writeNoticeResponse(w, { severity: 'NOTICE', code: '00000', message: 'relation exists, skipping' }));
  add((w) => m.writeErrorResponse(w, { severity: 'ERROR', code: '42P01', message: 'relation "nope" does not exist', position: '15' }));
  add((w) => m.writeReadyForQuery(w, 'E'));
  add((w) => m.writeCloseComplete(w));
  add((w) => m.writeNoData(w));
  add((w) => m.writeEmptyQueryResponse(w));
  add((w) => m.writeReadyForQuery(w, 'T'));
});

/** Frames as copies of their bytes, plus their coordinates' self-consistency. */
function drain(framer: MessageFramer, into: Buffer[]): void {
  while (framer.next()) {
    const { buffer, start, bodyStart, end, type } = framer;
    assert.ok(start >= 0 && start < bodyStart && bodyStart <= end && end <= buffer.length, 'frame coordinates within the buffer');
    if (bodyStart - start === 5) assert.equal(type, buffer[start]);
    else assert.equal(type, 0);
    into.push(buffer.subarray(start, end));
  }
}

function framerFor(rec: Recorded): MessageFramer {
  return new MessageFramer(rec === clientStream ? { startup: true, maxLength: MAX_MESSAGE_LENGTH } : { maxLength: MAX_MESSAGE_LENGTH });
}

function assertSameMessages(actual: Buffer[], rec: Recorded, label: string): void {
  assert.equal(actual.length, rec.messages.length, `${label}: frame count`);
  for (let i = 0; i < actual.length; i++) {
    if (!actual[i].equals(rec.messages[i])) assert.fail(`${label}: frame ${i} differs`);
  }
}

describe('MessageFramer on realistic streams', () => {
  for (const [label, rec] of [['client', clientStream], ['server', serverStream]] as const) {
    it(`${label} stream in one chunk: every frame is a view into that chunk (no copy)`, () => {
      const framer = framerFor(rec);
      const chunk = Buffer.from(rec.stream);
      framer.push(chunk);
      const frames: Buffer[] = [];
      const buffers: Buffer[] = [];
      while (framer.next()) {
        buffers.push(framer.buffer);
        frames.push(framer.buffer.subarray(framer.start, framer.end));
      }
      assertSameMessages(frames, rec, label);
      assert.ok(buffers.every((b) => b === chunk), 'all frames reference the pushed chunk');
      assert.equal(framer.bufferedBytes, 0);
    });

    it(`${label} stream split in two at every byte offset gives the same frames`, () => {
      const stream = rec.stream;
      for (let cut = 0; cut <= stream.length; cut++) {
        const framer = framerFor(rec);
        const frames: Buffer[] = [];
        framer.push(stream.subarray(0, cut));
        drain(framer, frames);
        framer.push(stream.subarray(cut));
        drain(framer, frames);
        if (frames.length !== rec.messages.length) assert.fail(`cut at ${cut}: ${frames.length} frames instead of ${rec.messages.length}`);
        for (let i = 0; i < frames.length; i++) {
          if (!frames[i].equals(rec.messages[i])) assert.fail(`cut at ${cut}: frame ${i} differs`);
        }
        assert.equal(framer.bufferedBytes, 0);
      }
    });

    it(`${label} stream fed one byte at a time gives the same frames; split frames are copied once, at exact size`, () => {
      const framer = framerFor(rec);
      const frames: Buffer[] = [];
      const sizes: boolean[] = [];
      for (let i = 0; i < rec.stream.length; i++) {
        framer.push(rec.stream.subarray(i, i + 1));
        while (framer.next()) {
          frames.push(framer.buffer.subarray(framer.start, framer.end));
          sizes.push(framer.start === 0 && framer.end === framer.buffer.length);
        }
      }
      assertSameMessages(frames, rec, label);
      assert.ok(sizes.every(Boolean), 'each assembled frame owns a buffer of exactly its size');
    });

    it(`${label} stream in seeded random chunks, pushed ahead of reading, gives the same frames`, () => {
      for (let seed = 1; seed <= 200; seed++) {
        const random = rng(seed);
        const framer = framerFor(rec);
        const frames: Buffer[] = [];
        let at = 0;
        while (at < rec.stream.length) {
          const size = 1 + Math.floor(random() * (random() < 0.5 ? 16 : 6000));
          framer.push(rec.stream.subarray(at, at + size));
          at += size;
          // Sometimes push several chunks before reading (the queue path), sometimes read at once.
          if (random() < 0.6) drain(framer, frames);
        }
        drain(framer, frames);
        assertSameMessages(frames, rec, `${label} seed ${seed}`);
      }
    });
  }

  it('leaves the startup phase after a protocol-3 StartupMessage, not after SSLRequest or GSSENCRequest', () => {
    const framer = new MessageFramer({ startup: true });
    const w = new MessageWriter();
    m.writeSSLRequest(w);
    m.writeGSSENCRequest(w);
    m.writeStartupMessage(w, { user: 'u' });
    m.writeSync(w);
    framer.push(w.flush());
    const phases: boolean[] = [];
    const types: number[] = [];
    while (framer.next()) {
      types.push(framer.type);
      phases.push(framer.inStartupPhase);
    }
    assert.deepEqual(types, [0, 0, 0, m.FrontendType.Sync]);
    assert.deepEqual(phases, [true, true, false, false]);
  });

  it('hands out the unframed answer to SSLRequest with takeByte(), then frames what follows', () => {
    const framer = new MessageFramer();
    const w = new MessageWriter();
    m.writeAuthenticationOk(w);
    framer.push(Buffer.concat([m.SSL_REFUSED, w.flush()]));
    assert.equal(framer.takeByte(), 'N'.charCodeAt(0));
    assert.equal(framer.next(), true);
    assert.equal(framer.type, m.BackendType.Authentication);
    assert.equal(framer.takeByte(), -1);
  });

  it('frames stay valid after later pushes (buffers are never reused)', () => {
    const framer = new MessageFramer();
    const kept: Buffer[] = [];
    for (let i = 0; i < serverStream.stream.length; i += 7) {
      framer.push(serverStream.stream.subarray(i, i + 7));
      while (framer.next()) kept.push(framer.snapshot().buffer.subarray(framer.start, framer.end));
    }
    assertSameMessages(kept, serverStream, 'kept');
  });

  // The native wire hands out every read in one arena that is overwritten after the call: own() must leave the
  // framer with nothing pointing into it, including a frame the caller holds on to (a client waiting for a server).
  for (const [label, rec] of [['client', clientStream], ['server', serverStream]] as const) {
    it(`${label} stream read into a reused arena (pushRange): own() keeps unread bytes, split frames and a held frame intact`, () => {
      for (let seed = 1; seed <= 40; seed++) {
        const random = rng(seed);
        const framer = framerFor(rec);
        const arena = Buffer.alloc(4096);
        const frames: Buffer[] = [];
        let held = false;
        for (let at = 0; at < rec.stream.length; ) {
          const n = Math.min(1 + Math.floor(random() * 300), rec.stream.length - at);
          // Anywhere in the arena, as reads of other connections come before it (pushRange, no view made).
          const offset = Math.floor(random() * (arena.length - n));
          rec.stream.copy(arena, offset, at, at + n);
          at += n;
          framer.pushRange(arena, offset, offset + n);
          for (;;) {
            if (!held && !framer.next()) break;
            held = false;
            // Sometimes keep the frame current, as a client waiting for a server connection does.
            if (random() < 0.3) {
              held = true;
              break;
            }
            frames.push(Buffer.from(framer.buffer.subarray(framer.start, framer.end)));
          }
          framer.own(held);
          arena.fill(0xee);
        }
        if (held) frames.push(Buffer.from(framer.buffer.subarray(framer.start, framer.end)));
        drain(framer, frames);
        assertSameMessages(frames, rec, `${label}, seed ${seed}`);
        assert.equal(framer.bufferedBytes, 0);
      }
    });
  }
});

function expectProtocolError(run: () => void, message: RegExp | string): PgProtocolError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof PgProtocolError, `expected a PgProtocolError, got ${String(e)}`);
    assert.equal(e.sqlstate, '08P01');
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return e;
  }
  assert.fail('expected a PgProtocolError');
}

function header(type: number, length: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = type;
  b.writeInt32BE(length | 0, 1);
  return b;
}

function startupHeader(length: number, code = m.StartupCode.Protocol3): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(length | 0, 0);
  b.writeInt32BE(code, 4);
  return b;
}

describe('MessageFramer refuses bad input with a PgProtocolError', () => {
  it('lengths below 4, negative or beyond int32 are "invalid message length"', () => {
    for (const length of [0, 1, 3, -1, -5, 0x80000000, 0xffffffff]) {
      const framer = new MessageFramer();
      framer.push(header(0x51, length));
      expectProtocolError(() => framer.next(), 'invalid message length');
    }
  });

  it('a length over the limit fails as soon as the 5 header bytes are in, even split across chunks', () => {
    const framer = new MessageFramer({ maxLength: 1000 });
    const h = header(0x51, 1001);
    framer.push(h.subarray(0, 2));
    assert.equal(framer.next(), false);
    framer.push(h.subarray(2));
    const e = expectProtocolError(() => framer.next(), 'invalid message length');
    assert.match(e.detail ?? '', /declares 1001 bytes; the limit is 1000/);
    // Poisoned: the same error again, pushes ignored, nothing held.
    framer.push(Buffer.alloc(100));
    assert.throws(() => framer.next(), (x) => x === e);
    assert.equal(framer.bufferedBytes, 0);
    assert.equal(framer.error, e);
  });

  it('a length exactly at the limit is accepted', () => {
    const framer = new MessageFramer({ maxLength: 1000 });
    framer.push(Buffer.concat([header(0x51, 1000), Buffer.alloc(996)]));
    assert.equal(framer.next(), true);
    assert.equal(framer.end - framer.start, 1001);
  });

  it('startup packets shorter than 8 or longer than the startup limit are refused', () => {
    for (const length of [0, 4, 7, -1, 10_001, 0x7fffffff]) {
      const framer = new MessageFramer({ startup: true });
      framer.push(startupHeader(length));
      expectProtocolError(() => framer.next(), 'invalid length of startup packet');
    }
    const framer = new MessageFramer({ startup: true, maxStartupLength: 100 });
    framer.push(startupHeader(101));
    expectProtocolError(() => framer.next(), 'invalid length of startup packet');
  });

  it('a Terminate where the startup packet belongs is a silent error (closed without an answer, as PostgreSQL does)', () => {
    for (const split of [5, 1, 3]) {
      const framer = new MessageFramer({ startup: true });
      const terminate = m.writeTerminate(new MessageWriter(64)).flush();
      framer.push(terminate.subarray(0, split));
      if (split < 5) {
        assert.equal(framer.next(), false);
        framer.push(terminate.subarray(split));
      }
      const e = expectProtocolError(() => framer.next(), 'client sent Terminate before the startup packet');
      assert.equal(e.silent, true);
    }
    // Other bad startup lengths are still answered.
    const framer = new MessageFramer({ startup: true });
    framer.push(startupHeader(0x7fffffff));
    assert.equal(expectProtocolError(() => framer.next(), 'invalid length of startup packet').silent, false);
  });

  it("frontendLimits(): PostgreSQL's per-type limits and refused types", () => {
    const framer = new MessageFramer(frontendLimits());
    framer.push(Buffer.concat([header(0x51, 100_004), Buffer.alloc(100_000)]));
    assert.equal(framer.next(), true, 'a 100 kB Query is fine');
    framer.push(header(0x53, 10_001));
    expectProtocolError(() => framer.next(), 'invalid message length'); // a 10 kB Sync is not

    const other = new MessageFramer(frontendLimits());
    other.push(header(0x7a, 4)); // 'z' is no frontend message
    expectProtocolError(() => other.next(), 'invalid frontend message type 122');
  });

  it('setLimits() switches from the authentication limits to the session limits', () => {
    const framer = new MessageFramer({ ...frontendAuthLimits() });
    framer.push(Buffer.concat([header(0x70, 8), Buffer.from('abc\0')]));
    assert.equal(framer.next(), true);
    framer.setLimits(frontendLimits());
    framer.push(Buffer.concat([header(0x51, 20_004), Buffer.alloc(20_000)]));
    assert.equal(framer.next(), true);
    const auth = new MessageFramer({ ...frontendAuthLimits() });
    auth.push(header(0x51, 20_004));
    expectProtocolError(() => auth.next(), /invalid frontend message type 81/);
  });

  it('an announced huge length holds only the bytes actually sent, never the announced size', () => {
    const before = process.memoryUsage().arrayBuffers;
    const framers: MessageFramer[] = [];
    for (let i = 0; i < 20; i++) {
      const framer = new MessageFramer();
      framer.push(header(0x64, MAX_MESSAGE_LENGTH));
      framer.push(Buffer.alloc(100));
      assert.equal(framer.next(), false);
      assert.equal(framer.bufferedBytes, 105);
      framers.push(framer);
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 50 * 1024 * 1024, `20 clients announcing 1 GiB each made the process hold ${grown} more bytes`);
    assert.equal(framers.length, 20);
  });

  it('constructor and setLimits reject nonsensical limits', () => {
    assert.throws(() => new MessageFramer({ maxLength: 3 }), RangeError);
    assert.throws(() => new MessageFramer({ maxLength: 2 ** 31 }), RangeError);
    assert.throws(() => new MessageFramer({ typeLimits: { QQ: 10 } }), RangeError);
    assert.throws(() => new MessageFramer({ maxStartupLength: 4 }), RangeError);
  });
});

describe('MessageFramer fuzzing (seeded)', () => {
  /** Runs a framer over `input` in random chunks; returns frames seen and the error if one ended it. */
  function run(input: Buffer, options: FramerOptions, random: () => number): { frames: number; error: PgProtocolError | null; framedBytes: number } {
    const framer = new MessageFramer(options);
    let frames = 0;
    let framedBytes = 0;
    let at = 0;
    try {
      while (at < input.length) {
        const size = 1 + Math.floor(random() * 64);
        framer.push(input.subarray(at, at + size));
        at += size;
        assert.ok(framer.bufferedBytes <= at - framedBytes, 'never holds more than it was given');
        while (framer.next()) {
          frames++;
          const length = framer.end - framer.start;
          framedBytes += length;
          assert.ok(framer.end <= framer.buffer.length);
          // The length field agrees with the frame handed out.
          const declared = framer.buffer.readInt32BE(framer.bodyStart - 4);
          assert.equal(declared, framer.end - framer.bodyStart + 4);
        }
      }
      assert.equal(framedBytes + framer.bufferedBytes, input.length, 'every byte is either framed or still held');
      return { frames, error: null, framedBytes };
    } catch (e) {
      if (!(e instanceof PgProtocolError)) throw e;
      assert.equal(e.sqlstate, '08P01');
      assert.equal(framer.bufferedBytes, 0, 'a failed framer holds nothing');
      return { frames, error: e, framedBytes };
    }
  }

  it('random garbage ends in frames or a PgProtocolError, never another throw', () => {
    let errors = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const random = rng(seed);
      const input = Buffer.alloc(1 + Math.floor(random() * 400));
      for (let i = 0; i < input.length; i++) input[i] = Math.floor(random() * 256);
      const options: FramerOptions =
        seed % 3 === 0 ? { startup: true } : seed % 3 === 1 ? { maxLength: 1 + Math.floor(random() * 5000) + 4 } : frontendLimits(100_000);
      if (run(input, options, random).error !== null) errors++;
    }
    assert.ok(errors > 1000, `most garbage should be refused (${errors} of 3000 were)`);
  });

  it('valid streams with a few bytes mutated end in frames or a PgProtocolError', () => {
    let errors = 0;
    let cleanRuns = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const random = rng(seed * 7919);
      const rec = seed % 2 === 0 ? clientStream : serverStream;
      const input = Buffer.from(rec.stream);
      const flips = 1 + Math.floor(random() * 4);
      for (let i = 0; i < flips; i++) input[Math.floor(random() * input.length)] = Math.floor(random() * 256);
      const result = run(input, rec === clientStream ? { startup: true, maxLength: 100_000 } : { maxLength: 100_000 }, random);
      if (result.error !== null) errors++;
      else cleanRuns++;
    }
    assert.ok(errors > 0 && cleanRuns > 0, `both outcomes occur (errors ${errors}, clean ${cleanRuns})`);
  });

  it('oversized, negative and boundary lengths in valid-looking headers', () => {
    const random = rng(99);
    const lengths = [-2147483648, -1, 0, 3, 4, 5, 99_999, 100_000, 100_001, 0x3fffffff, 0x40000000, 0x7fffffff];
    for (let i = 0; i < 500; i++) {
      const length = lengths[Math.floor(random() * lengths.length)];
      const valid = length >= 4 && length <= 100_000;
      // A valid frame gets at most its own body, so that nothing after it is read as another header.
      const body = Buffer.alloc(Math.floor(random() * (valid ? Math.min(length - 4 + 1, 300) : 300)));
      const input = Buffer.concat([header(0x51, length), body]);
      const { error, frames } = run(input, { maxLength: 100_000 }, random);
      if (!valid) {
        assert.ok(error !== null, `length ${length} must be refused`);
        assert.equal(error.message, 'invalid message length');
      } else {
        assert.equal(error, null);
        assert.equal(frames, length - 4 === body.length ? 1 : 0);
      }
    }
  });
});
