/**
 * The locked dependency tree fits the Node versions package.json declares, and no dependency's install script
 * runs unreviewed: `npm ci` on Node 20 prints neither EBADENGINE nor an install-scripts notice.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

interface LockedPackage {
  version?: string;
  engines?: Record<string, string> | string[];
  hasInstallScript?: boolean;
}
interface Manifest {
  engines: { node: string };
  allowScripts?: Record<string, boolean>;
}

// dist/test/unit → the source tree's root.
const root = new URL('../../../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as Manifest;
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as { packages: Record<string, LockedPackage> };

type Version = [number, number, number];

/** A version; `*`/`x` parts and missing parts read as 0 (they only occur after the parts that matter here). */
function parseVersion(text: string): Version {
  const m = /^v?(\d+)(?:\.(\d+|\*|x))?(?:\.(\d+|\*|x))?$/.exec(text.trim());
  if (!m) throw new Error(`not a version: ${text}`);
  const part = (p: string | undefined): number => (p === undefined || p === '*' || p === 'x' ? 0 : Number(p));
  return [Number(m[1]), part(m[2]), part(m[3])];
}

function compare(a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * Whether `node` satisfies the engines range, for the range forms found in this tree (`>=X`, `<X`, `^X`, `*`,
 * alternatives joined by `||`). An unknown form fails the test with its text, so a new dependency with an unusual
 * range gets a look instead of a pass.
 */
function admits(range: string, node: Version): boolean {
  return range.split('||').some((alternative) => {
    const parts = alternative.trim().split(/\s+/).filter(Boolean);
    if (parts.length === 0 || (parts.length === 1 && (parts[0] === '*' || parts[0] === 'x'))) return true;
    let ok = true;
    for (let i = 0; i < parts.length; i++) {
      let part = parts[i];
      if (/^(>=|>|<=|<|\^|~|=)$/.test(part)) part += parts[++i];
      const m = /^(>=|>|<=|<|\^|~|=)?(.+)$/.exec(part)!;
      const v = parseVersion(m[2]);
      switch (m[1]) {
        case '>=':
          ok &&= compare(node, v) >= 0;
          break;
        case '>':
          ok &&= compare(node, v) > 0;
          break;
        case '<':
          ok &&= compare(node, v) < 0;
          break;
        case '<=':
          ok &&= compare(node, v) <= 0;
          break;
        case '^':
          ok &&= compare(node, v) >= 0 && node[0] === v[0];
          break;
        case undefined:
          // `6.*`, `6.x`, `6`: that major version.
          if (/^\d+(\.[*x])*$/.test(m[2])) ok &&= node[0] === v[0];
          else ok &&= compare(node, v) === 0;
          break;
        default:
          throw new Error(`unhandled engines range ${JSON.stringify(range)}`);
      }
    }
    return ok;
  });
}

describe('dependencies', () => {
  it('every locked package admits the lowest Node version pgwarden declares (no EBADENGINE on npm ci)', () => {
    const declared = /^>=\s*(\S+)$/.exec(manifest.engines.node);
    assert.ok(declared, `package.json engines.node is ${manifest.engines.node}; this test expects ">=X"`);
    const lowest = parseVersion(declared[1]);
    const misfits: string[] = [];
    for (const [where, pkg] of Object.entries(lock.packages)) {
      if (where === '' || !pkg.engines || Array.isArray(pkg.engines) || !pkg.engines.node) continue;
      if (!admits(pkg.engines.node, lowest)) misfits.push(`${where}@${pkg.version} wants node ${pkg.engines.node}`);
    }
    assert.deepEqual(misfits, []);
  });

  it('every dependency with an install script is reviewed in package.json allowScripts (no install-scripts notice)', () => {
    const reviewed = manifest.allowScripts ?? {};
    const unreviewed = Object.entries(lock.packages)
      .filter(([where, pkg]) => where !== '' && pkg.hasInstallScript)
      .map(([where]) => where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length))
      .filter((name) => !(name in reviewed));
    assert.deepEqual(unreviewed, []);
  });

  it('the engines check reads the range forms it meets', () => {
    assert.equal(admits('>=22', [20, 0, 0]), false);
    assert.equal(admits('>=18', [20, 0, 0]), true);
    assert.equal(admits('>= 12.22.0', [20, 0, 0]), true);
    assert.equal(admits('^14.17.0 || ^16.10.0 || >=17.0.0', [20, 0, 0]), true);
    assert.equal(admits('^18 || ^20', [20, 0, 0]), true);
    assert.equal(admits('^18 || ^22', [20, 0, 0]), false);
    assert.equal(admits('>=14 <20', [20, 0, 0]), false);
    assert.equal(admits('6.* || 8.* || >= 10.*', [20, 0, 0]), true);
    assert.equal(admits('6.* || 8.*', [20, 0, 0]), false);
    assert.throws(() => admits('~20.1', [20, 0, 0]), /unhandled engines range/);
  });
});
