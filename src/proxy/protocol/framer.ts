/**
 * Splits a PostgreSQL protocol 3.0 byte stream into whole messages ("frames") without decoding them.
 *
 * Written by hand on purpose: this runs for every message through the proxy, and a general parser library would
 * cost an object, a closure or a copy per message. The rules this file keeps:
 * - A frame inside one pushed chunk is handed out as a view (buffer, offsets) into that chunk: no copy and no
 *   allocation. The framer's own fields are the view (cursor style), so `next()` allocates nothing.
 * - A frame split across chunks is copied exactly once, into a buffer of its exact size, when its last byte
 *   arrives. Until then the framer keeps references to the chunks (no copy), so the memory it holds is what the
 *   peer actually sent, never the length it merely announced.
 * - Every length is checked against a limit before anything is kept for it; a bad length, a refused message type
 *   or a bad startup packet makes `next()` throw a PgProtocolError (SQLSTATE 08P01) and poisons the framer: the
 *   caller sends that error to the one client and closes it.
 *
 * Ownership: `push()` takes the chunk; the caller must not modify it while the framer may still read it
 * (`bufferedBytes > 0`) or while it keeps frame views. Net sockets hand out a fresh Buffer per 'data' event;
 * a caller that reads into a reused buffer (net's `onread`, as ServerConn does) must take a new buffer whenever
 * bytes of the last read are still referenced. In exchange, every frame view stays valid for as long as the
 * caller keeps it: buffers the framer assembles are never reused.
 */
import { PgProtocolError, SQLSTATE } from './errors.js';

/** PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1): the largest Query, Parse, Bind, CopyData it reads. */
export const MAX_MESSAGE_LENGTH = 0x3fffffff;
/** PostgreSQL's PQ_SMALL_MESSAGE_LIMIT: the limit for Sync, Execute, Describe, Close and the like. */
export const MAX_SMALL_MESSAGE_LENGTH = 10_000;
/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_LENGTH = 10_000;

/** A message's place in memory: `buffer[start, end)` is the whole message (type byte, length, body). */
export interface Frame {
  /** The type byte; 0 for startup-phase frames, which have none. */
  type: number;
  buffer: Buffer;
  /** Offset of the frame's first byte (the type byte, or the length of a startup-phase frame). */
  start: number;
  /** Offset of the body: just past the int32 length. For startup-phase frames the body begins with the code. */
  bodyStart: number;
  /** Offset just past the frame's last byte. */
  end: number;
}

/** Which message lengths a framer accepts once past the startup phase. Lengths count the int32 length field itself. */
export interface FramerLimits {
  /** Largest accepted value of the length field for types without an entry in `typeLimits`. */
  maxLength: number;
  /** Per type byte (a one-character string such as 'Q'), the largest accepted length field. */
  typeLimits?: Readonly<Record<string, number>>;
  /** Types missing from `typeLimits` are refused ("invalid frontend message type") instead of capped at maxLength. */
  rejectOtherTypes?: boolean;
}

export interface FramerOptions extends Partial<FramerLimits> {
  /** Begin in the startup phase (a client's first messages have no type byte). Default false. */
  startup?: boolean;
  /** Largest startup-phase frame; default MAX_STARTUP_LENGTH. */
  maxStartupLength?: number;
}

/**
 * What PostgreSQL 15 itself accepts from a client after authentication (postgres.c, SocketBackend): the
 * messages that carry data may be large, the others are small, anything else is a protocol violation.
 */
export function frontendLimits(maxLength: number = MAX_MESSAGE_LENGTH): FramerLimits {
  const small = Math.min(MAX_SMALL_MESSAGE_LENGTH, maxLength);
  return {
    maxLength,
    rejectOtherTypes: true,
    typeLimits: {
      Q: maxLength, // Query
      F: maxLength, // FunctionCall
      B: maxLength, // Bind
      P: maxLength, // Parse
      d: maxLength, // CopyData
      X: small, // Terminate
      C: small, // Close
      D: small, // Describe
      E: small, // Execute
      H: small, // Flush
      S: small, // Sync
      c: small, // CopyDone
      f: small, // CopyFail
    },
  };
}

/** A client that has sent its StartupMessage may only answer authentication requests (or hang up). */
export function frontendAuthLimits(maxLength: number = MAX_STARTUP_LENGTH): FramerLimits {
  return { maxLength, rejectOtherTypes: true, typeLimits: { p: maxLength, X: Math.min(MAX_SMALL_MESSAGE_LENGTH, maxLength) } };
}

const EMPTY = Buffer.alloc(0);
const STARTUP_HEADER = 4;
const TYPED_HEADER = 5;
/** The first four bytes of a Terminate message ('X', then the high bytes of its length 4) read as a startup length. */
const TERMINATE_AS_STARTUP_LENGTH = 0x58000000;
/** The largest value an int32 length field can hold. */
const MAX_LENGTH_FIELD = 0x7fffffff;

function int32At(b: Buffer, p: number): number {
  return (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
}

function typeName(type: number): string {
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : String(type);
}

function checkLimit(what: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min || value > MAX_LENGTH_FIELD) {
    throw new RangeError(`${what} must be an integer from ${min} to ${MAX_LENGTH_FIELD}, got ${value}`);
  }
  return value;
}

/**
 * Incremental frame splitter. Use:
 *
 *     framer.push(chunk);
 *     while (framer.next()) handle(framer.type, framer.buffer, framer.start, framer.bodyStart, framer.end);
 *
 * The public fields describe the current frame and change on the next `next()`; copy them (or call
 * `snapshot()`) to keep a frame. The caller may stop calling `next()` at any time (to apply back pressure) and
 * push more later: unread chunks queue up in order, and `bufferedBytes` tells how much is held.
 */
export class MessageFramer implements Frame {
  type = 0;
  buffer: Buffer = EMPTY;
  start = 0;
  bodyStart = 0;
  end = 0;

  private startupPhase: boolean;
  private readonly maxStartupLength: number;
  /** Largest accepted length field per type byte; -1 refuses the type. */
  private readonly limits = new Int32Array(256);

  /** The chunk being read and the read position in it. */
  private chunk: Buffer = EMPTY;
  private pos = 0;
  private chunkEnd = 0;
  /** Chunks pushed while the current one was still unread. */
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;

  /** The beginning of a frame that continues in a later chunk: views of earlier chunks, not copies. */
  private readonly parts: Buffer[] = [];
  private partsBytes = 0;
  /** Total size of the frame being gathered, -1 while its header is still incomplete. */
  private partsTotal = -1;
  private partsType = 0;
  private partsStartup = false;
  /** Scratch for a header that arrived split across chunks. */
  private readonly header = Buffer.alloc(TYPED_HEADER);

  private failure: PgProtocolError | null = null;

  constructor(options: FramerOptions = {}) {
    this.startupPhase = options.startup ?? false;
    this.maxStartupLength = checkLimit('maxStartupLength', options.maxStartupLength ?? MAX_STARTUP_LENGTH, 8);
    this.setLimits({
      maxLength: options.maxLength ?? MAX_MESSAGE_LENGTH,
      ...(options.typeLimits === undefined ? {} : { typeLimits: options.typeLimits }),
      ...(options.rejectOtherTypes === undefined ? {} : { rejectOtherTypes: options.rejectOtherTypes }),
    });
  }

  /** Changes the accepted lengths, e.g. from frontendAuthLimits() to frontendLimits() once a client is authenticated. */
  setLimits(limits: FramerLimits): void {
    const maxLength = checkLimit('maxLength', limits.maxLength, 4);
    this.limits.fill(limits.rejectOtherTypes === true ? -1 : maxLength);
    for (const [type, limit] of Object.entries(limits.typeLimits ?? {})) {
      if (type.length !== 1 || type.charCodeAt(0) > 0xff) throw new RangeError(`typeLimits keys must be one character, got "${type}"`);
      this.limits[type.charCodeAt(0)] = checkLimit(`typeLimits.${type}`, limit, 4);
    }
  }

  /** True while frames are read without a type byte (before the StartupMessage). */
  get inStartupPhase(): boolean {
    return this.startupPhase;
  }

  /**
   * The framer leaves the startup phase by itself after a protocol-3 StartupMessage and stays in it after an
   * SSLRequest or GSSENCRequest; this is for callers that know better (e.g. a fresh framer after a TLS handshake).
   */
  setStartupPhase(on: boolean): void {
    this.startupPhase = on;
  }

  /** Bytes held and not yet handed out as frames: a client's unread input, for back pressure and accounting. */
  get bufferedBytes(): number {
    return this.chunkEnd - this.pos + this.queuedBytes + this.partsBytes;
  }

  /** The error that stopped this framer, if any. */
  get error(): PgProtocolError | null {
    return this.failure;
  }

  push(chunk: Buffer): void {
    this.pushRange(chunk, 0, chunk.length);
  }

  /** push(buf.subarray(start, end)) without making the view: the native wire's reads are ranges of its arena. */
  pushRange(buf: Buffer, start: number, end: number): void {
    if (this.failure !== null || end <= start) return;
    if (this.pos === this.chunkEnd && this.queue.length === 0) {
      this.chunk = buf;
      this.pos = start;
      this.chunkEnd = end;
    } else {
      // Behind unread bytes: queued as a view (the whole chunk when it is all of it).
      this.queue.push(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
      this.queuedBytes += end - start;
    }
  }

  /**
   * Consumes one raw byte outside any frame: PostgreSQL answers SSLRequest and GSSENCRequest with a single
   * unframed 'S'/'G' or 'N'. Returns -1 if no byte is buffered yet.
   */
  takeByte(): number {
    if (this.partsBytes > 0) throw new RangeError('takeByte() called in the middle of a frame');
    if (this.pos === this.chunkEnd && !this.advanceChunk()) return -1;
    return this.chunk[this.pos++];
  }

  /**
   * Moves to the next complete frame and returns true, or returns false when more bytes are needed.
   * Throws PgProtocolError (08P01) on a malformed length or a refused type, then again on every later call.
   */
  next(): boolean {
    if (this.failure !== null) throw this.failure;
    for (;;) {
      const available = this.chunkEnd - this.pos;
      if (available === 0) {
        if (!this.advanceChunk()) return false;
        continue;
      }
      if (this.partsBytes > 0) {
        if (this.continueSplitFrame()) return true;
        continue;
      }
      const buf = this.chunk;
      const p = this.pos;
      if (this.startupPhase) {
        if (available < STARTUP_HEADER) {
          this.beginSplitFrame(available);
          continue;
        }
        const total = this.checkStartupLength(int32At(buf, p));
        if (total > available) {
          this.beginSplitFrame(available);
          this.partsTotal = total;
          this.partsType = 0;
          this.partsStartup = true;
          continue;
        }
        this.pos = p + total;
        this.emitStartup(buf, p, total);
        return true;
      }
      if (available < TYPED_HEADER) {
        this.beginSplitFrame(available);
        continue;
      }
      const type = buf[p];
      const total = 1 + this.checkLength(type, int32At(buf, p + 1));
      if (total > available) {
        this.beginSplitFrame(available);
        this.partsTotal = total;
        this.partsType = type;
        this.partsStartup = false;
        continue;
      }
      this.pos = p + total;
      this.type = type;
      this.buffer = buf;
      this.start = p;
      this.bodyStart = p + TYPED_HEADER;
      this.end = p + total;
      return true;
    }
  }

  /**
   * Copies every byte the framer still refers to out of the pushed chunks, so that their memory may be reused
   * (the native wire's read arena): unread bytes, queued chunks, the parts of a split frame and, with
   * `keepCurrentFrame`, the frame last returned by next(), which stays current at the same coordinates shifted
   * into the copy.
   */
  own(keepCurrentFrame: boolean): void {
    for (let i = 0; i < this.parts.length; i++) this.parts[i] = Buffer.from(this.parts[i]!);
    for (let i = 0; i < this.queue.length; i++) this.queue[i] = Buffer.from(this.queue[i]!);
    const chunk = this.chunk;
    if (keepCurrentFrame && this.buffer === chunk && chunk !== EMPTY) {
      const from = this.start;
      const copy = Buffer.from(chunk.subarray(from, this.chunkEnd));
      this.buffer = copy;
      this.start = 0;
      this.bodyStart -= from;
      this.end -= from;
      this.chunk = copy;
      this.pos -= from;
      this.chunkEnd -= from;
      return;
    }
    if (this.buffer === chunk) this.buffer = EMPTY;
    if (this.pos < this.chunkEnd) {
      this.chunk = Buffer.from(chunk.subarray(this.pos, this.chunkEnd));
      this.chunkEnd -= this.pos;
      this.pos = 0;
    } else {
      this.chunk = EMPTY;
      this.pos = 0;
      this.chunkEnd = 0;
    }
  }

  /** A copy of the current frame's coordinates (the bytes are not copied). */
  snapshot(): Frame {
    return { type: this.type, buffer: this.buffer, start: this.start, bodyStart: this.bodyStart, end: this.end };
  }

  private advanceChunk(): boolean {
    const next = this.queue.shift();
    if (next === undefined) return false;
    this.queuedBytes -= next.length;
    this.chunk = next;
    this.pos = 0;
    this.chunkEnd = next.length;
    return true;
  }

  /** Keeps the rest of the current chunk as the beginning of a frame that continues in later chunks. */
  private beginSplitFrame(available: number): void {
    this.parts.push(this.pos === 0 && available === this.chunk.length ? this.chunk : this.chunk.subarray(this.pos, this.chunkEnd));
    this.partsBytes = available;
    this.partsTotal = -1;
    this.pos = this.chunkEnd;
  }

  /** Feeds the current chunk to a split frame; true once the frame is complete and emitted. */
  private continueSplitFrame(): boolean {
    const available = this.chunkEnd - this.pos;
    if (this.partsTotal < 0) {
      const startup = this.startupPhase;
      const headerLength = startup ? STARTUP_HEADER : TYPED_HEADER;
      const missingHeader = headerLength - this.partsBytes;
      if (available < missingHeader) {
        this.keepPart(available);
        return false;
      }
      const h = this.header;
      let o = 0;
      for (const part of this.parts) {
        part.copy(h, o);
        o += part.length;
      }
      this.chunk.copy(h, o, this.pos, this.pos + missingHeader);
      if (startup) {
        this.partsType = 0;
        this.partsTotal = this.checkStartupLength(int32At(h, 0));
      } else {
        this.partsType = h[0];
        this.partsTotal = 1 + this.checkLength(h[0], int32At(h, 1));
      }
      this.partsStartup = startup;
    }
    const missing = this.partsTotal - this.partsBytes;
    if (available < missing) {
      this.keepPart(available);
      return false;
    }
    // The one copy: every byte of a split frame lands once in a buffer of the frame's exact size.
    const whole = Buffer.allocUnsafe(this.partsTotal);
    let o = 0;
    for (const part of this.parts) {
      part.copy(whole, o);
      o += part.length;
    }
    this.chunk.copy(whole, o, this.pos, this.pos + missing);
    this.pos += missing;
    this.parts.length = 0;
    this.partsBytes = 0;
    this.partsTotal = -1;
    if (this.partsStartup) {
      this.emitStartup(whole, 0, whole.length);
    } else {
      this.type = this.partsType;
      this.buffer = whole;
      this.start = 0;
      this.bodyStart = TYPED_HEADER;
      this.end = whole.length;
    }
    return true;
  }

  private keepPart(available: number): void {
    this.parts.push(this.pos === 0 && available === this.chunk.length ? this.chunk : this.chunk.subarray(this.pos, this.chunkEnd));
    this.partsBytes += available;
    this.pos = this.chunkEnd;
  }

  private emitStartup(buf: Buffer, start: number, total: number): void {
    this.type = 0;
    this.buffer = buf;
    this.start = start;
    this.bodyStart = start + STARTUP_HEADER;
    this.end = start + total;
    // Protocol 3.x StartupMessage: typed messages follow. SSLRequest, GSSENCRequest: another startup packet follows.
    if (int32At(buf, start + STARTUP_HEADER) >>> 16 === 3) this.startupPhase = false;
  }

  /** Returns the frame size for a startup-phase length field, or fails. */
  private checkStartupLength(length: number): number {
    if (length === TERMINATE_AS_STARTUP_LENGTH) {
      // A Terminate ('X', length 4) where the startup packet belongs: node-postgres sends it when end() follows
      // connect() at once. PostgreSQL reads it as an invalid length, a COMMERROR: it closes without a word, and
      // an ErrorResponse here would reach a client that has already hung up (node-postgres then throws).
      throw this.fail('client sent Terminate before the startup packet', 'The client hung up before logging in.', true);
    }
    // 8: the length and the code; PostgreSQL refuses shorter packets and those over MAX_STARTUP_PACKET_LENGTH.
    if (length < 8 || length > this.maxStartupLength) {
      throw this.fail(
        'invalid length of startup packet',
        `The startup packet declares ${length} bytes; valid lengths are 8 to ${this.maxStartupLength}.`,
      );
    }
    return length;
  }

  /** Returns the value of a typed frame's length field, or fails. */
  private checkLength(type: number, length: number): number {
    const limit = this.limits[type];
    if (limit < 0) throw this.fail(`invalid frontend message type ${type}`, `Message type ${typeName(type)} is not accepted here.`);
    if (length < 4) {
      throw this.fail('invalid message length', `Message type ${typeName(type)} declares length ${length}; the smallest valid length is 4.`);
    }
    if (length > limit) {
      throw this.fail('invalid message length', `Message type ${typeName(type)} declares ${length} bytes; the limit is ${limit}.`);
    }
    return length;
  }

  private fail(message: string, detail: string, silent = false): PgProtocolError {
    this.failure = new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, message, { detail, silent });
    // Drop everything held: the connection is going away and must not keep memory alive meanwhile.
    this.chunk = EMPTY;
    this.pos = 0;
    this.chunkEnd = 0;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.parts.length = 0;
    this.partsBytes = 0;
    return this.failure;
  }
}
