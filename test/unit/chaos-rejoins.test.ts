/**
 * The chaos suite's count of rewinds and re-clones per round, from the agents' Prometheus counters: read from the
 * text an agent serves, and subtracted across agent restarts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRejoinCounters, rejoinsBetween, roundRejoins, type RejoinCounters } from '../chaos/rejoins.js';

const METRICS = `# HELP pgwarden_ha_actions_total Actions executed, by type
# TYPE pgwarden_ha_actions_total counter
pgwarden_ha_actions_total{action="start",cluster="c",member="pg1"} 4
pgwarden_ha_actions_total{action="rewind",cluster="c",member="pg1"} 3
pgwarden_ha_actions_total{action="reinitialize",cluster="c",member="pg1"} 1
pgwarden_ha_action_failures_total{action="rewind",cluster="c",member="pg1"} 1
pgwarden_ha_action_failures_total{action="start",cluster="c",member="pg1"} 7
pgwarden_agent_process_start_time_seconds{cluster="c",member="pg1"} 1765000000
`;

const at = (processStart: number, rewinds: number, rewindFailures = 0, reclones = 0): RejoinCounters => ({ processStart, rewinds, rewindFailures, reclones });

describe('chaos rejoin counts', () => {
  it('reads rewinds, failed rewinds and re-clones from the /metrics text of an agent', () => {
    assert.deepEqual(parseRejoinCounters(METRICS), at(1765000000, 3, 1, 1));
    // Before any rewind the counters have no series yet: zero.
    assert.deepEqual(parseRejoinCounters('pgwarden_agent_process_start_time_seconds 5\n'), at(5, 0));
    assert.equal(parseRejoinCounters('pgbouncer_up 1\n'), null);
  });

  it('subtracts scrapes of one process, and counts a restarted agent from zero', () => {
    assert.deepEqual(rejoinsBetween(at(1, 2, 0, 0), at(1, 3, 1, 1)), { rewinds: 1, rewindFailures: 1, reclones: 1 });
    assert.deepEqual(rejoinsBetween(at(1, 5), at(9, 1)), { rewinds: 1, rewindFailures: 0, reclones: 0 });
    assert.deepEqual(rejoinsBetween(null, at(9, 2, 0, 1)), { rewinds: 2, rewindFailures: 0, reclones: 1 });
    assert.deepEqual(rejoinsBetween(at(1, 5), null), { rewinds: 0, rewindFailures: 0, reclones: 0 });
  });

  it('sums a round over every agent', () => {
    const before = new Map([['pg1', at(1, 0)], ['pg2', at(1, 4)], ['pg3', null]]);
    const after = new Map([['pg1', at(1, 1)], ['pg2', at(2, 0, 0, 1)], ['pg3', at(3, 1)]]);
    assert.deepEqual(roundRejoins(before, after), { rewinds: 2, rewindFailures: 0, reclones: 1 });
  });
});
