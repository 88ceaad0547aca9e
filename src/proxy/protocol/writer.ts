/**
 * Builds protocol messages into a slab of memory and hands finished ones out as views, in the way Node's own
 * Buffer pool works. Hand-written for the hot path: no allocation per message or field, lengths patched in
 * place, strings encoded straight into the slab.
 *
 * Why a slab and not one reused buffer: `socket.write(buf)` keeps a reference to `buf` until the kernel took
 * it, so memory that was handed out must never be written again. `flush()` therefore gives away the bytes
 * written since the previous flush, and later messages go to the free space after them; a new slab is
 * allocated only when the current one is full.
 */
import { PgwardenError } from '../../errors.js';

export type TextEncoding = 'utf8' | 'latin1';

const DEFAULT_SLAB_SIZE = 16 * 1024;
/** Strings up to this many UTF-16 units reserve 3 bytes per unit instead of measuring their UTF-8 length. */
const MEASURE_ABOVE = 4096;

export class MessageWriter {
  private slab: Buffer;
  private pos = 0;
  /** Start of the bytes not yet handed out by flush(). */
  private flushed = 0;
  /** Offset of the open message's first byte and of its length field; -1 when no message is open. */
  private messageStart = -1;
  private lengthAt = -1;
  private readonly slabSize: number;

  constructor(slabSize: number = DEFAULT_SLAB_SIZE) {
    if (!Number.isInteger(slabSize) || slabSize < 64) throw new RangeError(`slabSize must be an integer of at least 64, got ${slabSize}`);
    this.slabSize = slabSize;
    this.slab = Buffer.allocUnsafe(slabSize);
  }

  /** Bytes of finished messages waiting for flush(). */
  get pendingLength(): number {
    return (this.messageStart >= 0 ? this.messageStart : this.pos) - this.flushed;
  }

  /** Opens a typed message (type byte + int32 length patched by end()). */
  begin(type: number): this {
    if (this.messageStart >= 0) throw misuse('begin() while a message is open; call end() or cancel() first');
    this.ensure(5);
    this.messageStart = this.pos;
    this.slab[this.pos] = type;
    this.lengthAt = this.pos + 1;
    this.pos += 5;
    return this;
  }

  /** Opens a startup-phase message (no type byte): StartupMessage, SSLRequest, CancelRequest. */
  beginUntyped(): this {
    if (this.messageStart >= 0) throw misuse('beginUntyped() while a message is open; call end() or cancel() first');
    this.ensure(4);
    this.messageStart = this.pos;
    this.lengthAt = this.pos;
    this.pos += 4;
    return this;
  }

  /** Closes the open message by writing its length. */
  end(): this {
    if (this.messageStart < 0) throw misuse('end() without an open message');
    const length = this.pos - this.lengthAt;
    const s = this.slab;
    const at = this.lengthAt;
    s[at] = length >>> 24;
    s[at + 1] = length >>> 16;
    s[at + 2] = length >>> 8;
    s[at + 3] = length;
    this.messageStart = -1;
    this.lengthAt = -1;
    return this;
  }

  /** Drops the open message, e.g. after a field turned out invalid. */
  cancel(): this {
    if (this.messageStart >= 0) {
      this.pos = this.messageStart;
      this.messageStart = -1;
      this.lengthAt = -1;
    }
    return this;
  }

  int8(value: number): this {
    this.ensure(1);
    this.slab[this.pos++] = value;
    return this;
  }

  int16(value: number): this {
    this.ensure(2);
    const s = this.slab;
    s[this.pos] = value >>> 8;
    s[this.pos + 1] = value;
    this.pos += 2;
    return this;
  }

  /** Writes the low 32 bits of `value` (so both int32 and uint32 inputs work). */
  int32(value: number): this {
    this.ensure(4);
    const s = this.slab;
    const p = this.pos;
    s[p] = value >>> 24;
    s[p + 1] = value >>> 16;
    s[p + 2] = value >>> 8;
    s[p + 3] = value;
    this.pos = p + 4;
    return this;
  }

  /** A NUL-terminated string. 'latin1' writes one byte per character: the lossless form for names decoded as latin1. */
  cstring(value: string, encoding: TextEncoding = 'utf8'): this {
    if (value.indexOf('\0') !== -1) throw misuse(`a C string may not contain a NUL character: ${JSON.stringify(value.slice(0, 80))}`);
    this.text(value, encoding);
    this.ensure(1);
    this.slab[this.pos++] = 0;
    return this;
  }

  /** A string without terminator (SASL data, CopyData payloads). */
  text(value: string, encoding: TextEncoding = 'utf8'): this {
    const room = encoding === 'latin1' ? value.length : value.length <= MEASURE_ABOVE ? value.length * 3 : Buffer.byteLength(value, 'utf8');
    this.ensure(room);
    this.pos += this.slab.write(value, this.pos, encoding);
    return this;
  }

  bytes(source: Uint8Array, start = 0, end: number = source.length): this {
    const length = end - start;
    this.ensure(length);
    this.slab.set(start === 0 && end === source.length ? source : source.subarray(start, end), this.pos);
    this.pos += length;
    return this;
  }

  /**
   * Hands out every message finished since the last flush as one Buffer that the caller owns (it may go to
   * socket.write and be kept); the writer never writes those bytes again.
   */
  flush(): Buffer {
    if (this.messageStart >= 0) throw misuse('flush() while a message is open; call end() first');
    const out = this.slab.subarray(this.flushed, this.pos);
    this.flushed = this.pos;
    return out;
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.slab.length) return;
    const live = this.pos - this.flushed;
    // Doubling keeps a message built from many small fields (a long DataRow) from being copied once per field.
    const size = Math.max(this.slabSize, live + bytes, live * 2);
    const next = Buffer.allocUnsafe(size);
    this.slab.copy(next, 0, this.flushed, this.pos);
    if (this.messageStart >= 0) {
      this.messageStart -= this.flushed;
      this.lengthAt -= this.flushed;
    }
    this.slab = next;
    this.pos = live;
    this.flushed = 0;
  }
}

function misuse(message: string): PgwardenError {
  return new PgwardenError('INTERNAL', `MessageWriter misuse: ${message}`);
}
