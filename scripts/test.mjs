#!/usr/bin/env node
// Runs the whole suite in order of cost: unit and simulation tests first, then integration tests against real
// etcd and PostgreSQL processes (one file at a time: each starts its own servers on free ports).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function findTests(dir) {
  let out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries.sort()) {
    const p = path.join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(findTests(p));
    else if (e.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const only = process.argv.slice(2);
const groups = ['unit', 'sim', 'integration', 'chaos'];
const files = groups.flatMap((g) => findTests(path.join('dist', 'test', g)));
const selected = only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files;
if (selected.length === 0) {
  console.error('no test files found under dist/test: run `npm run build` first');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', '--test-reporter=spec', ...selected],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
