import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanShutdownCheckpoint, shutdownHold, SHUTDOWN_CHECKPOINT_MAX_SPAN } from '../../src/ha/rules/shutdown.js';
import { cluster, NOW } from './cluster-builder.js';

const C = 50_000_000;
const restarted = () => cluster().primary('a', { wal: C - 4000 }).replica('b', { wal: C, state: 'running' }).leaderGone().shutdown('a', C);

describe('rules/shutdown', () => {
  it('cleanShutdownCheckpoint: only for a server stopped cleanly', () => {
    const pg = cluster().primary('a').observe('a').pg;
    assert.equal(cleanShutdownCheckpoint({ ...pg, running: false, controlState: 'shut down', checkpointLsn: C }), C);
    assert.equal(cleanShutdownCheckpoint({ ...pg, running: false, controlState: 'in production', checkpointLsn: C }), null);
    assert.equal(cleanShutdownCheckpoint({ ...pg, controlState: 'shut down', checkpointLsn: C }), null);
  });

  it('shutdownHold counts primary_start_timeout from the first leaderless cycle', () => {
    assert.match(shutdownHold(restarted().input('b', { memory: { shutdownHoldSince: NOW.mono - 10_000 } }))!, /a shut down cleanly at 0\/2FAF080 .* 20 s left/);
    assert.equal(shutdownHold(restarted().input('b', { memory: { shutdownHoldSince: NOW.mono - 30_000 } })), null);
  });

  it('no hold for the former primary itself, for a record a later position outdates, or without a record', () => {
    assert.equal(shutdownHold(restarted().input('a', { memory: { shutdownHoldSince: NOW.mono } })), null);
    assert.equal(shutdownHold(restarted().optime(C + SHUTDOWN_CHECKPOINT_MAX_SPAN + 1).input('b', { memory: { shutdownHoldSince: NOW.mono } })), null);
    assert.equal(shutdownHold(cluster().primary('a').replica('b').leaderGone().input('b')), null);
  });
});
