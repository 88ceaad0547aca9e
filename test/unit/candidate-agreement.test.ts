/**
 * The REST API (POST /switchover, /failover) and the CLI (`pgwarden switchover`, `failover`) judge a candidate by
 * the same rule (src/cluster/predicates.ts). These are the cases where they used to disagree.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planFailover as apiPlan } from '../../src/api/intents.js';
import { planFailover as cliPlan } from '../../src/cli/failover-plan.js';
import type { ClusterView } from '../../src/cluster/types.js';
import { MB, NOW, member, viewOf } from './api-fixtures.js';

/** Whether each side accepts the request, and the refusal text when it does not. */
function verdicts(view: ClusterView, kind: 'switchover' | 'failover', candidate: string): { api: boolean; cli: boolean; apiMessage: string; cliMessage: string } {
  const api = apiPlan(kind, { candidate }, view, NOW);
  let cli = true;
  let cliMessage = '';
  try {
    cliPlan(view, { kind, primary: null, candidate, at: null }, NOW);
  } catch (err) {
    cli = false;
    cliMessage = (err as Error).message;
  }
  return { api: api.ok, cli, apiMessage: api.ok ? '' : api.message, cliMessage };
}

describe('API and CLI candidate checks agree', () => {
  it('a switchover to a replica lagging past maximum_lag_on_failover is refused by both', () => {
    const view = viewOf([member('a', 'primary'), member('b', 'replica', { lagBytes: 2 * MB }), member('c', 'replica')]);
    const v = verdicts(view, 'switchover', 'b');
    assert.deepEqual({ api: v.api, cli: v.cli }, { api: false, cli: false });
    assert.match(v.apiMessage, /lags 2097152 bytes.*maximum_lag_on_failover \(1048576\)/);
    assert.match(v.cliMessage, /lags 2097152 bytes.*maximum_lag_on_failover \(1048576\)/);
  });

  it('a switchover without a candidate is refused by both when the only replica lags too far, saying so', () => {
    const view = viewOf([member('a', 'primary'), member('b', 'replica', { lagBytes: 2 * MB })]);
    const api = apiPlan('switchover', {}, view, NOW);
    assert.equal(api.ok, false);
    assert.match(api.ok ? '' : api.message, /"b" lags 2097152 bytes/);
    assert.throws(() => cliPlan(view, { kind: 'switchover', primary: null, candidate: null, at: null }, NOW), /b lags 2097152 bytes/);
  });

  it('a failover to that lagging replica is forced: both accept it, as the agents carry it out regardless of lag', () => {
    const view = viewOf([member('a', 'primary'), member('b', 'replica', { lagBytes: 2 * MB })]);
    const v = verdicts(view, 'failover', 'b');
    assert.deepEqual({ api: v.api, cli: v.cli }, { api: true, cli: true });
  });

  it('with no leader in synchronous_mode both accept a failover to a member of the last sync key, and refuse others', () => {
    const view = viewOf([member('a', 'primary', { state: 'stopped' }), member('b', 'replica'), member('c', 'replica')], {
      leader: null,
      sync: { leader: 'a', members: ['b'] },
    });
    view.config.synchronous_mode = true;
    const inSync = verdicts(view, 'failover', 'b');
    assert.deepEqual({ api: inSync.api, cli: inSync.cli }, { api: true, cli: true });
    const notInSync = verdicts(view, 'failover', 'c');
    assert.deepEqual({ api: notInSync.api, cli: notInSync.cli }, { api: false, cli: false });
    assert.match(notInSync.apiMessage, /choose one of b/);
    assert.match(notInSync.cliMessage, /choose one of b/);
  });
});
