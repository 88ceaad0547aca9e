#!/usr/bin/env node
// Builds the proxy's native socket I/O (src/proxy/wire/wire.c) into dist/native/wire.node with the C compiler
// and the headers of the Node.js that runs this script. A failure is a warning, not an error: the proxy then
// keeps Node sockets (slower, same behaviour) and says so when it starts.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src/proxy/wire/wire.c');
const output = path.join(root, 'dist/native/wire.node');

const candidates = [path.resolve(path.dirname(process.execPath), '../include/node'), '/usr/include/node', '/usr/local/include/node'];
const include = candidates.find((dir) => existsSync(path.join(dir, 'node_api.h')) && existsSync(path.join(dir, 'uv.h')));

if (existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs) process.exit(0);
if (include === undefined) {
  console.warn(`warning: native I/O not built: no Node.js headers (node_api.h, uv.h) in ${candidates.join(', ')}; the proxy will use Node sockets`);
  process.exit(0);
}
mkdirSync(path.dirname(output), { recursive: true });
const cc = 'cc';
try {
  execFileSync(cc, ['-O2', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared', `-I${include}`, '-o', output, source], { stdio: 'inherit' });
} catch (e) {
  console.warn(`warning: native I/O not built (${cc} failed: ${e.message.split('\n')[0]}); the proxy will use Node sockets`);
}
