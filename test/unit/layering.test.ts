/**
 * The layering of src/, read from the source imports (type-only and dynamic ones included) with the TypeScript
 * compiler's own pre-processor. From the bottom up:
 *
 *   cluster (the model), proxy/protocol + proxy/wire (the wire protocol), errors.ts, log.ts, processes.ts: depend
 *   on nothing
 *   dcs, postgres: on those
 *   backup (drives pgBackRest): on those and postgres
 *   config: on those and dcs/postgres/backup
 *   ha: on those and config
 *   api, proxy: on everything below
 *   up, cli: on top (cli may use up)
 *
 * plus: no import cycles between files. Violations that are known and not fixed yet are listed in KNOWN below,
 * each with why; the test fails when one of them is gone too, so the list can only shrink.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../../', import.meta.url));

type Layer = 'cluster' | 'protocol' | 'bottom' | 'dcs' | 'postgres' | 'backup' | 'config' | 'ha' | 'api' | 'proxy' | 'up' | 'cli';

const BASE: Layer[] = ['cluster', 'protocol', 'bottom'];
const ALLOWED: Record<Layer, Layer[]> = {
  cluster: [],
  protocol: ['bottom'],
  bottom: [],
  dcs: [...BASE],
  postgres: [...BASE],
  backup: [...BASE, 'postgres'],
  config: [...BASE, 'dcs', 'postgres', 'backup'],
  ha: [...BASE, 'dcs', 'postgres', 'backup', 'config'],
  api: [...BASE, 'dcs', 'postgres', 'backup', 'config', 'ha'],
  proxy: [...BASE, 'dcs', 'postgres', 'config', 'ha'],
  up: [...BASE, 'dcs', 'postgres', 'backup', 'config', 'ha', 'api', 'proxy'],
  cli: [...BASE, 'dcs', 'postgres', 'backup', 'config', 'ha', 'api', 'proxy', 'up'],
};

/**
 * Known violations as "from -> to" (paths under src/). Each is a piece that sits in the wrong folder; moving it
 * removes the line here.
 */
const KNOWN = new Set<string>([]);

/** Cycles between files, each written as its members sorted and joined with ' | '. */
const KNOWN_CYCLES = new Set<string>([]);

function layerOf(file: string): Layer {
  if (file.startsWith('proxy/protocol/') || file.startsWith('proxy/wire/')) return 'protocol';
  if (file === 'errors.ts' || file === 'log.ts' || file === 'processes.ts') return 'bottom';
  const top = file.split('/')[0] as Layer;
  assert.ok(top in ALLOWED, `src/${file} is in no layer: add its folder to test/unit/layering.test.ts`);
  return top;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Import graph of src/: file (relative to src/) -> the src files it imports. */
function importGraph(): Map<string, string[]> {
  const src = join(root, 'src');
  const graph = new Map<string, string[]>();
  for (const path of sourceFiles(src)) {
    const info = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
    const targets = info.importedFiles
      .map((f) => f.fileName)
      .filter((name) => name.startsWith('.'))
      .map((name) => relative(src, normalize(join(dirname(path), name.replace(/\.js$/, '.ts')))));
    graph.set(relative(src, path), [...new Set(targets)]);
  }
  return graph;
}

function violations(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  for (const [from, targets] of graph) {
    const a = layerOf(from);
    for (const to of targets) {
      const b = layerOf(to);
      if (a !== b && !ALLOWED[a].includes(b)) found.push(`${from} -> ${to}`);
    }
  }
  return found.sort();
}

/** Strongly connected components with more than one file (Tarjan). */
function cycles(graph: Map<string, string[]>): string[] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort().join(' | '));
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found.sort();
}

describe('layering of src/', () => {
  const graph = importGraph();

  it('reads the whole tree', () => {
    assert.ok(graph.size > 50, `only ${graph.size} files found under ${root}src`);
    assert.ok(graph.get('ha/decide.ts')?.includes('cluster/predicates.ts'), 'the import reader missed a plain import');
  });

  it('each layer imports only the layers below it, apart from the known violations', () => {
    const found = violations(graph);
    const unknown = found.filter((v) => !KNOWN.has(v));
    assert.deepEqual(unknown, [], 'new imports against the layering (see the comment at the top of this file)');
    const gone = [...KNOWN].filter((v) => !found.includes(v));
    assert.deepEqual(gone, [], 'these known violations are fixed: remove them from KNOWN');
  });

  it('the model and the wire protocol import nothing of the project above them', () => {
    const bottom = violations(graph).filter((v) => ['cluster', 'protocol', 'bottom'].includes(layerOf(v.split(' -> ')[0])));
    assert.deepEqual(bottom, []);
  });

  it('no import cycles between files, apart from the known ones', () => {
    const found = cycles(graph);
    assert.deepEqual(found.filter((c) => !KNOWN_CYCLES.has(c)), [], 'new import cycles');
    assert.deepEqual([...KNOWN_CYCLES].filter((c) => !found.includes(c)), [], 'these known cycles are gone: remove them from KNOWN_CYCLES');
  });
});
