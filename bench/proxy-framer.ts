/**
 * `npm run build && node dist/bench/proxy-framer.js [--seconds 2]`: how fast MessageFramer splits a stream of
 * small messages, and how much it allocates doing it. The stream is what a pooler sees from a server under
 * pgbench's extended protocol (BindComplete, DataRow, CommandComplete, ReadyForQuery, ~70 bytes per transaction),
 * pushed as 64 KiB chunks (frames never span: views only) and as 1460-byte chunks (a TCP segment: some frames
 * span and are assembled). The loop reads each frame's type and the ReadyForQuery status, as the pooler does.
 *
 * Allocation is measured with V8's garbage collector: the heap growth over the run plus the number of young
 * generation collections (scavenges); a loop that allocates nothing per frame runs millions of frames without one.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { TransactionStatusByte } from '../src/proxy/protocol/constants.js';
import { MessageFramer } from '../src/proxy/protocol/framer.js';
import * as m from '../src/proxy/protocol/messages.js';
import { MessageWriter } from '../src/proxy/protocol/writer.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' } } });
const seconds = Math.max(0.2, Number(values.seconds));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** One pgbench-like transaction's answer from the server. */
function transaction(w: MessageWriter, i: number): void {
  m.writeBindComplete(w);
  m.writeDataRow(w, [String(i % 100_000)]);
  m.writeCommandComplete(w, 'SELECT 1');
  m.writeReadyForQuery(w, 'I');
}

function makeStream(bytes: number): { stream: Buffer; frames: number } {
  const w = new MessageWriter();
  let frames = 0;
  for (let i = 0; w.pendingLength < bytes; i++) {
    transaction(w, i);
    frames += 4;
  }
  return { stream: w.flush(), frames };
}

function chunksOf(stream: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
  return chunks;
}

interface Result {
  frames: number;
  seconds: number;
  scavenges: number;
  heapGrowth: number;
  idle: number;
}

/** Runs the loop for the time budget; GC entries arrive asynchronously, so the count is read after a pause. */
async function run(chunks: Buffer[]): Promise<Result> {
  let scavenges = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // detail.kind 1 = minor GC (scavenge) in Node's gc performance entries.
      if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
    }
  });
  const framer = new MessageFramer({ maxLength: 1 << 20 });
  // Warm up (JIT), then measure.
  for (let i = 0; i < 20; i++) for (const c of chunks) {
    framer.push(c);
    while (framer.next());
  }
  gc();
  observer.observe({ entryTypes: ['gc'] });
  const heapBefore = process.memoryUsage().heapUsed;
  const started = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let frames = 0;
  let idle = 0;
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let pass = 0; pass < 10; pass++) {
      for (const chunk of chunks) {
        framer.push(chunk);
        while (framer.next()) {
          frames++;
          if (framer.type === m.BackendType.ReadyForQuery && framer.buffer[framer.bodyStart] === TransactionStatusByte.Idle) idle++;
        }
      }
    }
    elapsed = process.hrtime.bigint() - started;
  }
  const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
  await new Promise((resolve) => setTimeout(resolve, 100));
  observer.disconnect();
  return { frames, seconds: Number(elapsed) / 1e9, scavenges, heapGrowth, idle };
}

function report(label: string, r: Result): void {
  const perSecond = r.frames / r.seconds;
  process.stdout.write(
    `${label.padEnd(34)} ${(perSecond / 1e6).toFixed(1).padStart(6)} M frames/s  ${(1e9 / perSecond).toFixed(1).padStart(6)} ns/frame  ` +
      `scavenges ${String(r.scavenges).padStart(4)}  heap growth ${(r.heapGrowth / 1024).toFixed(0).padStart(6)} KiB  ` +
      `(${r.frames} frames, ${r.idle} idle ReadyForQuery)\n`,
  );
}

const { stream, frames } = makeStream(1 << 20);
process.stdout.write(`stream: ${frames} small messages, ${stream.length} bytes (${(stream.length / frames).toFixed(1)} bytes/message)\n`);
report('64 KiB chunks (views only)', await run(chunksOf(stream, 64 * 1024)));
const segments = await run(chunksOf(stream, 1460));
report('1460-byte chunks (some assembled)', segments);
const spanning = Math.ceil(stream.length / 1460);
process.stdout.write(`  (with 1460-byte chunks about ${spanning} of every ${frames} frames span two chunks and are copied once)\n`);
