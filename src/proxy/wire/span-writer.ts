/**
 * The write step of forwarding, in both directions (client → server in ProxyClient.forward, server → client in
 * ServerConn.handleData): consecutive frames of one read are written as one slice of the read chunk (a span), and
 * the target is corked only from its second write on within one read, so the usual answer (one span) is one plain
 * write (docs/decisions/0011-proxy-read-buffer-and-cork.md).
 *
 * Hot path: each connection owns one SpanWriter for its whole life and reuses it for every read; its state is
 * fields of small integers and references, so forwarding allocates nothing here (writeSpan copies only a native
 * arena view handed to a Node socket, as before). A connection's reads are handled one at a time and a write never
 * calls back into the writer's owner synchronously, so one writer per connection is never used re-entrantly.
 */
import { writeSpan } from './native-wire.js';
import type { Wire } from './wire.js';

export class SpanWriter {
  /** Where the spans go during this read; null: nowhere (nothing is written). */
  private out: Wire | null = null;
  /** The chunks are views of the native arena (see writeSpan). */
  private sourceIsNative = false;
  /** Writes to `out` during this read: the second one corks it. */
  private writes = 0;
  /** The pending span: buffer[start, end), or buffer null. */
  private buffer: Buffer | null = null;
  private start = 0;
  private end = 0;

  /** Starts a read's forwarding to `out` (null: nowhere). */
  begin(out: Wire | null, sourceIsNative: boolean): void {
    this.out = out;
    this.sourceIsNative = sourceIsNative;
    this.writes = 0;
    this.buffer = null;
  }

  /** The target of this read, or null (none, or finished). */
  get target(): Wire | null {
    return this.out;
  }

  /** Adds the frame buf[start, end): it extends the pending span when it follows it, else the pending span is written first. */
  add(buf: Buffer, start: number, end: number): void {
    if (this.buffer === buf && this.end === start) {
      this.end = end;
      return;
    }
    if (this.buffer !== null) this.writePending();
    this.buffer = buf;
    this.start = start;
    this.end = end;
  }

  /** Writes the pending span now (something else is written next, or a callback may write to the target). */
  flush(): void {
    if (this.buffer !== null) {
      this.writePending();
      this.buffer = null;
    }
  }

  /** Writes bytes the proxy made, after the pending span. */
  writeOwn(data: Buffer): void {
    this.flush();
    if (++this.writes === 2) this.out!.cork();
    this.out!.write(data);
  }

  /** Several writes follow that bypass this writer (injected messages): cork now if not yet. */
  corkNow(): void {
    if (this.writes < 2) {
      this.out!.cork();
      this.writes = 2;
    }
  }

  /**
   * Ends this read's forwarding: writes the pending span and uncorks. Returns the target (null if none) for the
   * caller's back-pressure check; the writer is then idle until the next begin().
   */
  finish(): Wire | null {
    const out = this.out;
    if (out === null) return null;
    this.flush();
    if (this.writes >= 2) out.uncork();
    this.out = null;
    this.writes = 0;
    return out;
  }

  private writePending(): void {
    const out = this.out!;
    if (++this.writes === 2) out.cork();
    writeSpan(out, this.buffer!, this.start, this.end, this.sourceIsNative);
  }
}
