/**
 * A bare protocol client for tests against a proxy that trusts it: it logs in, sends what a test builds message by
 * message (extended-protocol batches split anywhere), and hands back what came, each message turned into whatever
 * the test compares (`describe`).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { MessageFramer } from '../../src/proxy/protocol/framer.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';

export class RawClient<T> {
  private readonly framer = new MessageFramer();
  private readonly w = new MessageWriter(256);
  private readonly received: Array<{ type: number; body: Buffer }> = [];
  private notify: (() => void) | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly describe: (type: number, body: Buffer) => T,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk);
      while (this.framer.next()) {
        const f = this.framer;
        this.received.push({ type: f.type, body: Buffer.from(f.buffer.subarray(f.bodyStart, f.end)) });
      }
      this.notify?.();
    });
  }

  /** Connects to 127.0.0.1:`port` as `user` (no password asked: trust) and waits for the first ReadyForQuery. */
  static async open<T>(port: number, login: { user: string; database: string }, describe: (type: number, body: Buffer) => T): Promise<RawClient<T>> {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    const raw = new RawClient(socket, describe);
    socket.write(m.writeStartupMessage(raw.w, login).flush());
    await raw.untilReady();
    return raw;
  }

  send(build: (w: MessageWriter) => void): void {
    build(this.w);
    this.socket.write(this.w.flush());
  }

  /** Sends, then returns the answers up to ReadyForQuery. */
  async run(build: (w: MessageWriter) => void): Promise<T[]> {
    this.send(build);
    return this.untilReady();
  }

  /** Messages up to and including the next ReadyForQuery (taken). */
  untilReady(timeoutMs = 10_000): Promise<T[]> {
    return this.until(m.BackendType.ReadyForQuery, timeoutMs);
  }

  /** Waits until a message of `type` arrived; returns the messages up to and including it (taken). */
  async until(type: number, timeoutMs = 10_000): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.received.findIndex((r) => r.type === type);
      if (i >= 0) return this.received.splice(0, i + 1).map((r) => this.describe(r.type, r.body));
      if (Date.now() > deadline) {
        throw new Error(`no ${String.fromCharCode(type)} within ${timeoutMs} ms; got ${this.received.map((r) => String.fromCharCode(r.type)).join('')}`);
      }
      await new Promise<void>((resolve) => {
        this.notify = resolve;
        setTimeout(resolve, 100);
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * What the proxy answers a startup packet of `user` with at 127.0.0.1:`port`: the first authentication request's
 * kind ('md5-password', 'sasl', 'ok', …) or 'error <SQLSTATE>'.
 */
export async function firstAuthRequest(port: number, user: string): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  socket.write(m.writeStartupMessage(new MessageWriter(), { user, database: 'postgres' }).flush());
  const framer = new MessageFramer();
  try {
    for await (const chunk of socket) {
      framer.push(chunk as Buffer);
      if (framer.next()) {
        if (framer.type === m.BackendType.ErrorResponse) return `error ${m.decodeErrorFields(framer.buffer, framer.bodyStart, framer.end).code}`;
        assert.equal(framer.type, m.BackendType.Authentication);
        return m.decodeAuthentication(framer.buffer, framer.bodyStart, framer.end).kind;
      }
    }
    throw new Error('the proxy closed the connection before asking for a password');
  } finally {
    socket.destroy();
  }
}
