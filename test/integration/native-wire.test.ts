/**
 * The native socket I/O (src/proxy/wire) on real loopback TCP connections: what goes in comes out byte for byte
 * under back pressure, end() delivers everything before the FIN, closes by either side reach onClose once, and
 * many connections at once keep their own bytes (slots reused, reads batched). Echoes run both ways a forwarder
 * writes: ranges of the read arena (the outbox, sent after the call) and buffers of its own (sent at once).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { NativeWire, nativeIoStatus } from '../../src/proxy/wire/native-wire.js';

const HIGH_WATER_MARK = 256 * 1024;

/** A server whose accepted sockets become NativeWires that `serve` sets up. */
async function wireServer(serve: (wire: NativeWire) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    socket.setNoDelay(true);
    const wire = NativeWire.adopt(socket);
    assert.ok(wire !== null, 'the accepted socket is adopted');
    serve(wire);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

type WriteWay = 'arena ranges' | 'own buffers';
const WRITE_WAYS: WriteWay[] = ['arena ranges', 'own buffers'];

/** An echo with back pressure: stop reading while more than HIGH_WATER_MARK waits to be sent. */
function echo(wire: NativeWire, closed?: () => void, way: WriteWay = 'own buffers'): void {
  wire.onData = (buf, start, end) => {
    if (way === 'arena ranges') wire.writeRange(buf, start, end);
    else wire.write(Buffer.from(buf.subarray(start, end)));
    if (wire.writableLength > HIGH_WATER_MARK) wire.pause();
  };
  wire.onDrain = () => wire.resume();
  wire.onClose = () => closed?.();
}

function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

function collect(socket: Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= bytes) resolve(Buffer.concat(chunks));
    });
    socket.once('close', () => reject(new Error(`closed after ${got} of ${bytes} bytes`)));
  });
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs` (a guard against a hang). */
async function until(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lets every callback already due run (a second onClose would come on the tick after the first). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('NativeWire', () => {
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });

  it('is built and loads (npm run build compiles it)', () => {
    assert.deepEqual(nativeIoStatus(), { active: true });
  });

  for (const way of WRITE_WAYS) it(`echoes 16 MiB byte for byte while the reader is slow (queue, pause, drain, resume), writing ${way}`, async () => {
    let closes = 0;
    let serverWire = null as NativeWire | null;
    const { server, port } = await wireServer((wire) => {
      serverWire = wire;
      echo(wire, () => closes++, way);
    });
    servers.push(server);
    const client = await connectTo(port);
    const data = randomBytes(16 * 1024 * 1024);
    const back = collect(client, data.length);
    client.pause(); // the echo's queue fills up and it must stop reading
    for (let o = 0; o < data.length; o += 100_000) client.write(data.subarray(o, Math.min(o + 100_000, data.length)));
    await until('the echo to pause reading', () => serverWire !== null && serverWire.isPaused());
    assert.ok(serverWire!.writableLength > 0, 'bytes are queued while the client does not read');
    client.resume();
    const got = await back;
    assert.equal(got.length, data.length);
    assert.ok(got.equals(data), 'the same bytes came back');
    assert.equal(serverWire!.bytesRead, data.length);
    assert.equal(serverWire!.bytesWritten, data.length);
    client.destroy();
    await until('onClose', () => closes > 0);
    await settle();
    assert.equal(closes, 1, 'the client closing reaches onClose once');
    assert.equal(serverWire!.destroyed, true);
  });

  it('end() sends everything queued, then the FIN; the peer closing then ends the wire', async () => {
    let closed = false;
    const big = randomBytes(4 * 1024 * 1024);
    const { server, port } = await wireServer((wire) => {
      wire.onClose = () => (closed = true);
      wire.write(big);
      wire.end(Buffer.from('bye'));
      assert.equal(wire.writable, false);
      assert.equal(wire.write(Buffer.from('late')), false, 'nothing is written after end()');
    });
    servers.push(server);
    const client = await connectTo(port);
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve) => client.once('end', resolve));
    const got = Buffer.concat(chunks);
    assert.equal(got.length, big.length + 3);
    assert.ok(got.subarray(0, big.length).equals(big));
    assert.equal(got.subarray(big.length).toString(), 'bye');
    assert.equal(closed, false, 'the wire waits for the peer');
    client.end();
    await until('the wire to close', () => closed);
  });

  it("the peer's EOF: what is still queued is sent, then the wire closes (as a Node socket without allowHalfOpen)", async () => {
    let closed = 0;
    let queuedAtStart = 0;
    let serverWire = null as NativeWire | null;
    const data = randomBytes(8 * 1024 * 1024);
    const { server, port } = await wireServer((wire) => {
      serverWire = wire;
      wire.onClose = () => closed++;
      wire.write(data);
      queuedAtStart = wire.writableLength;
    });
    servers.push(server);
    const client = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
      s.once('error', reject);
    });
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve) => client.once('end', resolve));
    client.pause();
    client.end(); // the FIN reaches the wire while most of `data` waits in its queue
    // The wire has the EOF once it stops being writable (it ends itself); it must not close yet.
    await until('the wire to see the EOF', () => serverWire !== null && !serverWire.writable);
    assert.ok(queuedAtStart > 0, 'the kernel did not take 8 MiB at once');
    assert.ok(serverWire!.writableLength > 0, 'bytes still queued');
    await settle();
    assert.equal(closed, 0, 'the wire waits until its queue is sent');
    client.resume();
    await ended;
    const got = Buffer.concat(chunks);
    assert.equal(got.length, data.length);
    assert.ok(got.equals(data));
    await until('the wire to close', () => closed > 0);
    await settle();
    assert.equal(closed, 1);
    client.destroy();
  });

  it('destroy() closes the connection and drops what was queued; a write to a reset peer ends the wire', async () => {
    let wireRef = null as NativeWire | null;
    let closes = 0;
    const { server, port } = await wireServer((wire) => {
      wireRef = wire;
      wire.onClose = () => closes++;
    });
    servers.push(server);
    const client = await connectTo(port);
    const gone = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await until('the wire', () => wireRef !== null);
    wireRef!.destroy();
    wireRef!.destroy();
    await gone;
    await settle();
    assert.equal(closes, 1);

    // The peer resets: the next writes fail and end the wire, once.
    let second = null as NativeWire | null;
    let secondCloses = 0;
    const other = await wireServer((wire) => {
      second = wire;
      wire.onClose = () => secondCloses++;
    });
    servers.push(other.server);
    const c2 = await connectTo(other.port);
    await until('the second wire', () => second !== null);
    c2.resetAndDestroy();
    for (let i = 0; i < 100 && secondCloses === 0; i++) {
      second!.write(Buffer.from('x'));
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(secondCloses, 1);
    assert.equal(second!.destroyed, true);
  });

  it('keeps the order of arena ranges and own buffers written in one call, and sends them before a destroy() in it', async () => {
    // Each read comes back as "<" + the bytes + ">", then a read of "!" ends the connection after its answer.
    const { server, port } = await wireServer((wire) => {
      wire.onData = (buf, start, end) => {
        for (let i = start; i < end; i++) {
          wire.write(Buffer.from('<'));
          wire.writeRange(buf, i, i + 1);
          wire.writeRange(buf, i, i + 1); // touches the previous range: the module sends both as one
          wire.write(Buffer.from('>'));
        }
        if (buf[end - 1] === 0x21) wire.destroy();
      };
    });
    servers.push(server);
    const client = await connectTo(port);
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.write('ab');
    // Answered before the next write, so that 'c!' is a read of its own.
    await until("the answer to 'ab'", () => Buffer.concat(chunks).toString() === '<aa><bb>');
    client.write('c!');
    await closed;
    assert.equal(Buffer.concat(chunks).toString(), '<aa><bb><cc><!!>');
  });

  it("a reset peer found while sending another wire's arena ranges ends that wire once, after the call", async () => {
    // A forwarder: what the source reads goes to the sink as arena ranges, as the proxy forwards.
    const wires: NativeWire[] = [];
    let sinkCloses = 0;
    let sourceCloses = 0;
    const { server, port } = await wireServer((wire) => {
      wires.push(wire);
      if (wires.length === 1) {
        wire.onData = (buf, start, end) => {
          const sink = wires[1];
          if (sink !== undefined && !sink.destroyed) for (let k = 0; k < 8; k++) sink.writeRange(buf, start, end);
        };
        wire.onClose = () => sourceCloses++;
      } else {
        // Not reading (as a client paused by back pressure): only a failed send can tell it of the reset.
        wire.pause();
        wire.onClose = () => sinkCloses++;
      }
    });
    servers.push(server);
    const source = await connectTo(port);
    await until('the source wire', () => wires.length >= 1);
    const sink = await connectTo(port);
    await until('the sink wire', () => wires.length >= 2);
    try {
      sink.resetAndDestroy();
      // Sends until one fails on the reset (the first ones may still reach the kernel before the RST does).
      for (let i = 0; i < 200 && sinkCloses === 0; i++) {
        source.write(randomBytes(16 * 1024));
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(sinkCloses, 1, 'the failed send ended the sink');
      assert.equal(wires[1]!.destroyed, true);
      // More reads through the source after that: each would reach the ended sink if it were still wired.
      const readBefore = wires[0]!.bytesRead;
      source.write(randomBytes(16 * 1024));
      await until('the source to read on', () => wires[0]!.bytesRead >= readBefore + 16 * 1024);
      await settle();
      assert.equal(sinkCloses, 1, 'once');
      assert.equal(sourceCloses, 0, 'the source goes on');
      assert.equal(wires[0]!.destroyed, false);
    } finally {
      // A failure must not leave the server waiting for these connections.
      for (const wire of wires) wire.destroy();
      source.destroy();
    }
  });

  for (const way of WRITE_WAYS) it(`keeps 300 connections apart, each with its own bytes, while connections come and go, writing ${way}`, async () => {
    let open = 0;
    const { server, port } = await wireServer((wire) => {
      open++;
      echo(wire, () => open--, way);
    });
    servers.push(server);
    const rounds = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const client = await connectTo(port);
        const messages = Array.from({ length: 20 }, (_, k) => Buffer.from(`client ${i} message ${k};`.repeat(1 + (k % 7))));
        const total = messages.reduce((n, m) => n + m.length, 0);
        const back = collect(client, total);
        for (const m of messages) client.write(m);
        const got = await back;
        client.destroy();
        return got.equals(Buffer.concat(messages));
      }),
    );
    assert.equal(rounds.filter((ok) => ok).length, 300);
    await until('every wire to close', () => open === 0, 10_000);
  });

  it('runs in worker threads, each with its own instance; a thread ending with wires open closes them and disturbs no other', async () => {
    const workerUrl = new URL('../helpers/wire-echo-worker.js', import.meta.url);
    const workers = [new Worker(workerUrl), new Worker(workerUrl)];
    try {
      const ports = await Promise.all(
        workers.map(
          (w) =>
            new Promise<number>((resolve, reject) => {
              w.on('message', (m: { port?: number }) => {
                if (m.port !== undefined) resolve(m.port);
              });
              w.once('error', reject);
            }),
        ),
      );
      const { server, port: mainPort } = await wireServer((wire) => echo(wire, undefined, 'arena ranges'));
      servers.push(server);
      const echoed = async (port: number, bytes: number): Promise<boolean> => {
        const client = await connectTo(port);
        const data = randomBytes(bytes);
        const back = collect(client, data.length);
        client.write(data);
        const got = await back;
        client.destroy();
        return got.subarray(0, data.length).equals(data) && got.length === data.length;
      };
      // All three at once: each thread's arena, outbox and slots are its own.
      assert.deepEqual(await Promise.all([echoed(ports[0]!, 4 << 20), echoed(ports[1]!, 4 << 20), echoed(mainPort, 4 << 20)]), [true, true, true]);

      // Worker 0 ends while one of its wires is open: the wire is closed (the client sees the close), the thread's
      // event loop can close, and the other worker and the main thread go on echoing.
      const held = await connectTo(ports[0]!);
      const heldClosed = new Promise<string>((resolve) => {
        held.on('error', () => undefined);
        held.once('close', () => resolve('closed'));
      });
      assert.equal(await echoedOn(held, Buffer.from('still there?')), 'still there?');
      const exitCode = await workers[0]!.terminate();
      assert.equal(exitCode, 1, 'terminate() ends the thread');
      assert.equal(await Promise.race([heldClosed, new Promise<string>((r) => setTimeout(() => r('still open after 5 s'), 5000))]), 'closed');
      assert.deepEqual(await Promise.all([echoed(ports[1]!, 1 << 20), echoed(mainPort, 1 << 20)]), [true, true]);
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  });
});

/** Writes `data` on a connected socket and resolves with what comes back (the same length). */
function echoedOn(socket: Socket, data: Buffer): Promise<string> {
  const back = collect(socket, data.length);
  socket.write(data);
  return back.then((b) => b.toString());
}
