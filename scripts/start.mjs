#!/usr/bin/env node
// `npm start`: on a fresh Debian 12 machine, installs what is missing (npm dependencies, PostgreSQL 15, etcd),
// builds, and runs `pgwarden up` in the foreground. Extra arguments go to `pgwarden up`
// (e.g. `npm start -- --nodes 5 --dir /tmp/pgw`). Plain Node, no dependencies: it runs before `npm ci`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLUSTER_PACKAGES, ensurePackages } from './system-packages.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(root, 'dist', 'src', 'cli', 'main.js');

// `npm start 2>&1 | tee start.log`: the same Ctrl-C ends tee, and a write error must not end this process before
// `pgwarden up` has stopped the cluster (the exit code comes from it).
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => stream.destroy());

function say(line) {
  if (!process.stderr.destroyed) process.stderr.write(`[start] ${line}\n`);
}

function fail(line) {
  say(`error: ${line}`);
  process.exit(1);
}

function run(command, args, options = {}) {
  say(`$ ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options });
  if (result.error) fail(`${command} could not be run: ${result.error.message}`);
  if (result.status !== 0) fail(`\`${[command, ...args].join(' ')}\` failed (exit ${result.status ?? result.signal}); see its output above`);
}

// 1. npm dependencies
if (!existsSync(path.join(root, 'node_modules'))) {
  if (existsSync(path.join(root, 'package-lock.json'))) run('npm', ['ci']);
  else run('npm', ['install']);
}

// 2. PostgreSQL 15 and etcd from Debian's packages
ensurePackages(CLUSTER_PACKAGES, { what: 'npm start', say });

// 3. build
run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
// The proxy's native socket I/O; without a C compiler this warns and the proxy uses Node sockets.
run(process.execPath, [path.join(root, 'scripts', 'build-native.mjs')]);
if (!existsSync(CLI)) fail(`the build did not produce ${CLI}`);

// 4. the local cluster, in the foreground. Ctrl-C reaches both processes: this one lets `pgwarden up` stop the
// cluster in order and exits with its code.
const args = ['up', ...process.argv.slice(2)];
say(`$ node ${path.relative(root, CLI)} ${args.join(' ')}`);
const child = spawn(process.execPath, [CLI, ...args], { cwd: process.cwd(), stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    // A terminal's Ctrl-C already went to the child (same process group); a supervisor's SIGTERM did not.
    if (signal !== 'SIGINT') child.kill(signal);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
