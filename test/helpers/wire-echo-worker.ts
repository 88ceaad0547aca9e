/**
 * A worker thread for the native-wire tests: an echo server whose accepted sockets become NativeWires of this
 * thread's own instance of the module (forwarding arena ranges, so its outbox and arena are used). It posts
 * `{ port }` once listening and `{ open }` whenever the count of its open wires changes.
 */
import { createServer } from 'node:net';
import { parentPort } from 'node:worker_threads';
import { NativeWire } from '../../src/proxy/wire/native-wire.js';

let open = 0;
const server = createServer({ pauseOnConnect: true }, (socket) => {
  const wire = NativeWire.adopt(socket);
  if (wire === null) throw new Error('the accepted socket was not adopted in the worker thread');
  open++;
  parentPort!.postMessage({ open });
  wire.onData = (buf, start, end) => {
    wire.writeRange(buf, start, end);
    if (wire.writableLength > 256 * 1024) wire.pause();
  };
  wire.onDrain = () => wire.resume();
  wire.onClose = () => {
    open--;
    parentPort!.postMessage({ open });
  };
});
server.listen(0, '127.0.0.1', () => parentPort!.postMessage({ port: (server.address() as { port: number }).port }));
