/**
 * Plain TCP connections of the proxy in steady state, read and written by the C module in wire.c (built into
 * dist/native/wire.node by `npm run build`; see there for why it exists). When the module is missing or turned
 * off (`native_io: false`, which callers check), connections stay Node sockets and everything works the same, more slowly.
 *
 * A NativeWire is made from a connected net.Socket once its handshake is done (adopt()): the module watches a
 * duplicate of its descriptor and the Node socket is destroyed without a word on the wire. Reads reach `onData`
 * as ranges of one shared arena, valid only during that call: whoever keeps bytes past it copies them
 * (MessageFramer.own), and a Node socket is never handed such a view to queue (writeSpan()).
 *
 * A range of the arena written to a NativeWire is not sent at once: it goes into the module's outbox, sent in
 * order when the call returns (see wire.c). So writableLength, the module's count of unsent bytes, does not yet
 * include the bytes of the current call: back pressure acts from the next read on, at most one read (64 KiB)
 * per source late, and a source is paused only while its peer has bytes queued, whose DRAIN then resumes it.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Wire } from './wire.js';

interface Binding {
  init(arena: Buffer, events: Int32Array, onEvents: (count: number) => void, outbox: Int32Array, pending: Int32Array): void;
  adopt(fd: number): number;
  write(slot: number, data: Buffer, start: number, end: number): number;
  pause(slot: number): void;
  resume(slot: number): void;
  end(slot: number): void;
  close(slot: number): void;
  duplicate(fd: number): number;
}

const EV_DATA = 1;
const EV_EOF = 2;
const EV_ERROR = 3;
const EV_DRAIN = 4;
const ARENA_SIZE = 1024 * 1024;
const MAX_EVENTS = 4096;
/** Arena ranges written in one call before the outbox is sent early (sendOutbox()). */
const OUTBOX_ENTRIES = 4096;
/** Connections the module takes at once; more stay Node sockets (adopt() returns null). */
const MAX_SLOTS = 256 * 1024;

/** Where `npm run build` puts the module, from dist/src/proxy/wire/. */
export const NATIVE_WIRE_PATH = fileURLToPath(new URL('../../../native/wire.node', import.meta.url));

let binding: Binding | null = null;
let loadError: string | null = null;
const arena = Buffer.allocUnsafe(ARENA_SIZE);
const events = new Int32Array(MAX_EVENTS * 4);
/** [count, then slot, offset, length per entry]: arena ranges to send when the current call returns. */
const outbox = new Int32Array(1 + OUTBOX_ENTRIES * 3);
/** Bytes each slot's wire holds unsent, kept by the module. */
const pending = new Int32Array(MAX_SLOTS);
/** The wire of each slot the module gave out. */
const bySlot: Array<NativeWire | undefined> = [];

function load(): Binding | null {
  if (binding !== null || loadError !== null) return binding;
  try {
    const b = createRequire(import.meta.url)(NATIVE_WIRE_PATH) as Binding;
    b.init(arena, events, onEvents, outbox, pending);
    binding = b;
  } catch (e) {
    loadError = (e as Error).message.split('\n')[0]!;
  }
  return binding;
}

/** Whether the module is there to adopt connections, and if not why (for the proxy's start-up warning). */
export function nativeIoStatus(): { active: true } | { active: false; why: string } {
  if (load() === null) return { active: false, why: `the native module ${NATIVE_WIRE_PATH} did not load: ${loadError}` };
  return { active: true };
}

/**
 * A new descriptor for a connected socket's connection, for another thread to open as its own socket (the
 * caller then destroys `socket`); null without the module or for a socket that already has bytes in flight.
 */
export function duplicateSocket(socket: Socket): number | null {
  const b = load();
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (b === null || typeof fd !== 'number' || fd < 0 || socket.readableLength > 0 || socket.writableLength > 0) return null;
  const own = b.duplicate(fd);
  return own < 0 ? null : own;
}

/** Every read of one loop turn, in one call from the module. */
function onEvents(count: number): void {
  for (let i = 0; i < count; i++) {
    const e = i * 4;
    const kind = events[e]!;
    if (kind === 0) continue; // its wire was closed after the read
    const wire = bySlot[events[e + 1]!];
    if (wire === undefined) continue;
    if (kind === EV_DATA) {
      const offset = events[e + 2]!;
      const length = events[e + 3]!;
      wire.bytesRead += length;
      if (!wire.ending) wire.onData(arena, offset, offset + length);
    } else if (kind === EV_DRAIN) {
      wire.drained();
    } else if (kind === EV_EOF) {
      wire.peerEnded();
    } else if (kind === EV_ERROR) {
      wire.destroy();
    }
  }
}

const noop = (): void => undefined;

export class NativeWire implements Wire {
  /** Bytes read: buf[start, end), valid only during the call. */
  onData: (buf: Buffer, start: number, end: number) => void = noop;
  onDrain: () => void = noop;
  onClose: () => void = noop;
  bytesRead = 0;
  bytesWritten = 0;
  destroyed = false;
  /** end() was called: nothing more is written, reads are dropped until the peer's EOF. */
  ending = false;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  private corked = 0;
  private readonly corkedWrites: Buffer[] = [];
  /** The peer sent its EOF: close once the queue is sent. */
  private peerGone = false;
  private paused = false;

  private constructor(
    private readonly b: Binding,
    private readonly slot: number,
    from: Socket,
  ) {
    this.remoteAddress = from.remoteAddress;
    this.remotePort = from.remotePort;
    this.localAddress = from.localAddress;
    this.localPort = from.localPort;
    this.bytesRead = from.bytesRead;
    this.bytesWritten = from.bytesWritten;
  }

  /**
   * Takes over a connected plain TCP socket whose handshake is done, or returns null (the module missing, a TLS
   * socket, bytes still queued in it either way). On success the socket is destroyed (its listeners are
   * the caller's to remove first) and the connection lives on in the returned wire.
   */
  static adopt(socket: Socket): NativeWire | null {
    const b = load();
    if (b === null) return null;
    const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0 || socket.writableLength > 0 || socket.readableLength > 0 || socket.destroyed) return null;
    if ((socket as { encrypted?: boolean }).encrypted === true) return null;
    const slot = b.adopt(fd);
    if (slot < 0) return null;
    const wire = new NativeWire(b, slot, socket);
    bySlot[slot] = wire;
    socket.destroy();
    return wire;
  }

  get writable(): boolean {
    return !this.destroyed && !this.ending;
  }

  /** Bytes written and not yet taken by the kernel (not counting the current call's arena ranges, see above). */
  get writableLength(): number {
    return this.destroyed ? 0 : pending[this.slot]!;
  }

  write(data: Buffer): boolean {
    return this.writeRange(data, 0, data.length);
  }

  /** write(data.subarray(start, end)) without making the view. */
  writeRange(data: Buffer, start: number, end: number): boolean {
    if (this.destroyed || this.ending) return false;
    this.bytesWritten += end - start;
    if (this.corked > 0) {
      // Corked writes are sent before the caller returns to the event loop (uncork in the same call): views are safe.
      this.corkedWrites.push(start === 0 && end === data.length ? data : data.subarray(start, end));
      return true;
    }
    if (data === arena) {
      // No call into C: an outbox entry (see the top of this file).
      let n = outbox[0]!;
      if (n === OUTBOX_ENTRIES) {
        this.sendOutbox();
        n = 0;
      }
      const e = 1 + n * 3;
      outbox[e] = this.slot;
      outbox[e + 1] = start;
      outbox[e + 2] = end - start;
      outbox[0] = n + 1;
      return true;
    }
    return this.send(data, start, end);
  }

  /** Makes the module send the outbox now, before the call returns: a write of nothing does that first. */
  private sendOutbox(): void {
    this.b.write(this.slot, arena, 0, 0);
  }

  private send(data: Buffer, start: number, end: number): boolean {
    const queued = this.b.write(this.slot, data, start, end);
    if (queued < 0) {
      this.destroy();
      return false;
    }
    return queued === 0;
  }

  cork(): void {
    this.corked++;
  }

  uncork(): void {
    if (this.corked === 0 || --this.corked > 0) return;
    const writes = this.corkedWrites;
    if (writes.length === 0 || this.destroyed) {
      writes.length = 0;
      return;
    }
    const data = writes.length === 1 ? writes[0]! : Buffer.concat(writes);
    writes.length = 0;
    this.send(data, 0, data.length);
  }

  pause(): this {
    if (!this.paused && !this.destroyed) {
      this.paused = true;
      this.b.pause(this.slot);
    }
    return this;
  }

  resume(): this {
    if (this.paused && !this.destroyed) {
      this.paused = false;
      this.b.resume(this.slot);
    }
    return this;
  }

  isPaused(): boolean {
    return this.paused;
  }

  end(data?: Buffer): this {
    if (this.destroyed || this.ending) return this;
    if (data !== undefined) this.write(data);
    if (this.corked > 0) {
      this.corked = 1;
      this.uncork();
    }
    if (this.destroyed) return this;
    this.ending = true;
    this.b.end(this.slot);
    // The peer's EOF closes the wire: keep reading (and dropping) until it comes.
    this.resume();
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.corkedWrites.length = 0;
    bySlot[this.slot] = undefined;
    this.b.close(this.slot);
    // As a Node socket does: 'close' comes after the caller's current work.
    process.nextTick(this.onClose);
    return this;
  }

  /** The module sent everything that was queued. */
  drained(): void {
    if (this.writableLength > 0) return;
    if (this.peerGone) this.destroy();
    else this.onDrain();
  }

  /**
   * The peer's EOF. As a Node socket without allowHalfOpen: what is queued is still sent, then the connection
   * closes; nothing more is written.
   */
  peerEnded(): void {
    this.peerGone = true;
    // Ranges written in this call are sent first, so that what the kernel does not take is seen as queued.
    if (outbox[0] !== 0 && !this.destroyed) this.sendOutbox();
    if (this.writableLength === 0) this.destroy();
    else if (!this.ending) this.end();
  }
}

/**
 * The bytes to give a Wire for buf[start, end) read from `source`: a Node socket may queue what it is given past
 * the current call, so it gets a copy of anything read by a NativeWire (the arena is reused).
 */
export function writeSpan(out: Wire, buf: Buffer, start: number, end: number, sourceIsNative: boolean): void {
  if (out instanceof NativeWire) out.writeRange(buf, start, end);
  else if (sourceIsNative) out.write(Buffer.from(buf.subarray(start, end)));
  else out.write(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
}
