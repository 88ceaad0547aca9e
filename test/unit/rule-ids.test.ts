import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RULE_IDS } from '../../src/ha/types.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const rulesDir = `${root}src/ha/rules/`;

describe('rule ids', () => {
  it('are unique', () => {
    assert.equal(new Set(RULE_IDS).size, RULE_IDS.length);
  });

  it('each is made in the file of src/ha/rules/ its prefix names, and no rules file makes an id that is not listed', () => {
    const files = readdirSync(rulesDir).filter((f) => f.endsWith('.ts'));
    const madeIn = new Map<string, string[]>();
    for (const f of files) {
      for (const m of readFileSync(`${rulesDir}${f}`, 'utf8').matchAll(/'([a-z-]+\.[a-z-]+)'/g)) {
        if (m[1]!.endsWith('.js')) continue;
        madeIn.set(m[1]!, [...new Set([...(madeIn.get(m[1]!) ?? []), f])]);
      }
    }
    for (const id of RULE_IDS) assert.deepEqual(madeIn.get(id), [`${id.split('.')[0]}.ts`], id);
    assert.deepEqual([...madeIn.keys()].filter((id) => !(RULE_IDS as readonly string[]).includes(id)), []);
  });

  it('are all documented in docs/ha.md "Rule ids", and nothing else is', () => {
    const doc = readFileSync(`${root}docs/ha.md`, 'utf8');
    const section = doc.slice(doc.indexOf('## Rule ids'), doc.indexOf('\n## ', doc.indexOf('## Rule ids') + 1));
    const documented = [...section.matchAll(/^\| `([a-z.-]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(documented, [...RULE_IDS]);
  });
});
