#!/usr/bin/env node
// The first step of `npm test`, before the build: installs what the suite needs on a fresh Debian 12 machine — the
// npm dependencies (`npm ci`) and the Debian packages of scripts/system-packages.mjs (as root; otherwise it prints
// the exact apt-get command and stops before anything runs). Plain Node, no dependencies: it runs before `npm ci`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_PACKAGES, ensurePackages } from './system-packages.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function say(line) {
  process.stderr.write(`[test] ${line}\n`);
}

ensurePackages(TEST_PACKAGES, { what: 'npm test', say });

if (!existsSync(path.join(root, 'node_modules'))) {
  say('$ npm ci --no-audit --no-fund');
  const result = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    say(`error: \`npm ci\` failed (exit ${result.status ?? result.signal}); see its output above`);
    process.exit(1);
  }
}
