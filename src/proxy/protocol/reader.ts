/**
 * Bounds-checked reading of one message body, with PostgreSQL's own error words (pqformat.c) when a body is
 * shorter than its fields claim. One instance is reset per message, so decoding allocates only the values it
 * returns.
 */
import { protocolViolation } from './errors.js';
import type { TextEncoding } from './writer.js';

const EMPTY = Buffer.alloc(0);

export class BodyReader {
  buffer: Buffer = EMPTY;
  pos = 0;
  end = 0;

  /** Reads `buffer[start, end)`; for a frame that is (frame.buffer, frame.bodyStart, frame.end). */
  reset(buffer: Buffer, start: number, end: number): this {
    if (start < 0 || end > buffer.length || start > end) {
      throw new RangeError(`body range [${start}, ${end}) lies outside a buffer of ${buffer.length} bytes`);
    }
    this.buffer = buffer;
    this.pos = start;
    this.end = end;
    return this;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  uint8(): number {
    if (this.pos >= this.end) throw insufficient();
    return this.buffer[this.pos++];
  }

  int16(): number {
    const p = this.pos;
    if (p + 2 > this.end) throw insufficient();
    this.pos = p + 2;
    const b = this.buffer;
    return ((b[p] << 24) | (b[p + 1] << 16)) >> 16;
  }

  int32(): number {
    const p = this.pos;
    if (p + 4 > this.end) throw insufficient();
    this.pos = p + 4;
    const b = this.buffer;
    return (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
  }

  uint32(): number {
    return this.int32() >>> 0;
  }

  /** A NUL-terminated string; names are best read as 'latin1' (byte-exact, so distinct names stay distinct). */
  cstring(encoding: TextEncoding = 'utf8'): string {
    const nul = this.buffer.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw protocolViolation('invalid string in message');
    const value = this.buffer.toString(encoding, this.pos, nul);
    this.pos = nul + 1;
    return value;
  }

  /** The next `length` bytes as a view (no copy). */
  bytes(length: number): Buffer {
    if (length < 0 || this.pos + length > this.end) throw insufficient();
    const view = this.buffer.subarray(this.pos, this.pos + length);
    this.pos += length;
    return view;
  }

  /** Everything left, as a view. */
  rest(): Buffer {
    const view = this.buffer.subarray(this.pos, this.end);
    this.pos = this.end;
    return view;
  }

  /** Fails unless the whole body was read (PostgreSQL's pq_getmsgend). */
  done(): void {
    if (this.pos !== this.end) throw protocolViolation('invalid message format');
  }
}

function insufficient() {
  return protocolViolation('insufficient data left in message');
}
