/**
 * PostgresServer against real PostgreSQL 15: bootstrap, clone, streaming, synchronous replication, slots,
 * promotion onto a new timeline, a diverged old primary brought back with pg_rewind, the emergency stop, and
 * SCRAM-only authentication. The steps build on each other and share two servers to keep the file fast.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { PgObservation } from '../../src/postgres/observation.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import {
  addressOf,
  cleanupServers,
  makePgTempDir,
  makeTestServer,
  psql,
  serverProcesses,
  tcpConfig,
  testCredentials,
  waitFor,
} from '../helpers/pg.js';

describe('PostgresServer (real PostgreSQL 15)', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  let alpha: PostgresServer;
  let beta: PostgresServer;
  let systemId: string;

  const superuserOn = (server: PostgresServer) => tcpConfig(server, credentials.superuser.username, credentials.superuser.password);
  const observeUntil = (server: PostgresServer, what: string, ok: (o: PgObservation) => boolean, timeoutMs = 15_000) =>
    waitFor(what, async () => {
      const o = await server.observe();
      return ok(o) ? o : undefined;
    }, timeoutMs);

  before(async () => {
    const base = await makePgTempDir();
    alpha = await makeTestServer('alpha', base, credentials);
    beta = await makeTestServer('beta', base, credentials);
  });

  after(async () => {
    await cleanupServers();
  });

  it('observes a missing data directory without touching it', async () => {
    const o = await alpha.observe();
    assert.equal(o.dataDir, 'missing');
    assert.equal(o.running, false);
    assert.equal(o.systemId, null);
  });

  it('bootstraps a primary on timeline 1 and observes it', async () => {
    systemId = await alpha.bootstrap();
    assert.match(systemId, /^\d{10,}$/);
    const o = await alpha.observe();
    assert.equal(o.dataDir, 'initialized');
    assert.equal(o.running, true);
    assert.equal(o.accepting, true);
    assert.equal(o.inRecovery, false);
    assert.equal(o.timeline, 1);
    assert.equal(o.systemId, systemId);
    assert.equal(o.following, null);
    assert.equal(o.streaming, false);
    assert.ok(o.walPosition !== null && o.walPosition > 0);
    assert.equal(o.controlState, null, 'pg_controldata is read only while stopped');
    assert.equal(alpha.connectionString(), `postgresql://postgres@127.0.0.1:${alpha.port}/postgres`);
    const [checksums] = await psql<{ data_checksums: string }>(superuserOn(alpha), 'SHOW data_checksums');
    assert.equal(checksums.data_checksums, 'on');
    await psql(superuserOn(alpha), 'CREATE TABLE items (id int PRIMARY KEY, note text)');
    await psql(superuserOn(alpha), "INSERT INTO items VALUES (1, 'before clone')");
  });

  it('creates a replication slot named after a member', async () => {
    await alpha.manageSlots(['Beta'], []);
    await alpha.manageSlots(['beta'], []); // idempotent
    const o = await alpha.observe();
    assert.deepEqual(o.slots, ['beta']);
  });

  it('clones a replica that streams from the primary under its member name', async () => {
    await beta.clone(addressOf(alpha));
    const cloned = await beta.observe();
    assert.equal(cloned.dataDir, 'initialized');
    assert.equal(cloned.running, false);
    assert.equal(cloned.systemId, systemId);
    assert.equal(cloned.controlTimeline, 1);
    assert.equal(cloned.following, 'alpha');

    await beta.start('replica', addressOf(alpha));
    const o = await observeUntil(beta, 'beta streaming', (x) => x.streaming);
    assert.equal(o.inRecovery, true);
    assert.equal(o.timeline, 1);
    assert.equal(o.systemId, systemId);
    assert.ok(o.receiveLsn !== null && o.replayLsn !== null);
    const rows = await psql<{ note: string }>(superuserOn(beta), 'SELECT note FROM items WHERE id = 1');
    assert.deepEqual(rows, [{ note: 'before clone' }]);

    const primary = await observeUntil(alpha, 'beta in pg_stat_replication', (x) => x.replication.some((r) => r.name === 'beta'));
    const peer = primary.replication.find((r) => r.name === 'beta');
    assert.equal(peer?.state, 'streaming');
    assert.equal(peer?.syncState, 'async');
    const [slot] = await psql<{ active: boolean }>(superuserOn(alpha), "SELECT active FROM pg_replication_slots WHERE slot_name = 'beta'");
    assert.equal(slot.active, true, 'the replica streams through its slot');
  });

  it('makes the replica a synchronous standby', async () => {
    await alpha.setSynchronousStandbys(['beta']);
    const o = await observeUntil(alpha, 'beta sync', (x) => x.replication.some((r) => r.name === 'beta' && r.syncState === 'sync'));
    assert.deepEqual(o.synchronousStandbyNames, ['beta']);
    const [setting] = await psql<{ synchronous_standby_names: string }>(superuserOn(alpha), 'SHOW synchronous_standby_names');
    assert.equal(setting.synchronous_standby_names, 'FIRST 1 ("beta")');
    await psql(superuserOn(alpha), "INSERT INTO items VALUES (2, 'synchronous')");
    // synchronous_commit = on acknowledges after the standby flushed; replay follows shortly.
    await waitFor('row 2 replayed on beta', async () => (await psql(superuserOn(beta), 'SELECT 1 FROM items WHERE id = 2')).length === 1);
  });

  it('promotes the replica onto timeline 2 while the old primary diverges', async () => {
    // The old primary keeps running, as after a partition; it must not wait for a standby that left.
    await alpha.setSynchronousStandbys([]);
    await waitFor('alpha sync off', async () => {
      const [s] = await psql<{ synchronous_standby_names: string }>(superuserOn(alpha), 'SHOW synchronous_standby_names');
      return s.synchronous_standby_names === '';
    });
    await beta.promote();
    await beta.checkpoint();
    const o = await beta.observe();
    assert.equal(o.inRecovery, false);
    assert.equal(o.timeline, 2);
    assert.equal(o.following, null);
    assert.equal(o.streaming, false);
    await psql(superuserOn(beta), "INSERT INTO items VALUES (3, 'after failover')");
    await psql(superuserOn(alpha), "INSERT INTO items VALUES (4, 'diverged')");
    const [checkpoint] = await psql<{ timeline_id: number }>(superuserOn(beta), 'SELECT timeline_id FROM pg_control_checkpoint()');
    assert.equal(checkpoint.timeline_id, 2, 'checkpoint() after promote() lets pg_rewind see the new timeline');
  });

  it('emergencyStop makes a primary refuse new connections within a second', async () => {
    const pid = alpha.postmasterPid();
    assert.ok(pid !== null);
    assert.match(alpha.emergencyStop() ?? '', /fast shutdown of pid \d+/);
    const refusal = await waitFor(
      'alpha refusing connections',
      async () => {
        try {
          await psql(superuserOn(alpha), 'SELECT 1');
          return false;
        } catch (e) {
          return e as Error & { code?: string };
        }
      },
      1000,
    );
    // Refused by the shutdown itself: PostgreSQL's "the database system is shutting down", or no server any more.
    assert.ok(refusal.code === '57P03' || refusal.code === 'ECONNREFUSED', `refused with ${refusal.code}: ${refusal.message}`);
    const stopped = await observeUntil(alpha, 'alpha stopped', (x) => !x.running, 20_000);
    assert.equal(stopped.controlState, 'shut down');
    assert.equal(stopped.controlTimeline, 1);
    assert.equal(stopped.systemId, systemId);
    await alpha.stop('fast'); // a no-op on a stopped server
  });

  it('rewinds the diverged old primary and lets it follow the new one', async () => {
    await beta.manageSlots(['alpha'], []);
    await alpha.rewind(addressOf(beta));
    const conf = await readFile(path.join(alpha.dataDir, 'postgresql.conf'), 'utf8');
    assert.match(conf, /cluster_name = 'alpha'/, 'our configuration replaces the one pg_rewind copied from the source');
    assert.match(conf, /primary_conninfo = '.*application_name=alpha/);
    assert.ok(!conf.includes(credentials.replication.password), 'the replication password stays out of postgresql.conf');

    // Start without an upstream, then point it at the new primary with a reload only.
    await alpha.start('replica', null);
    const idle = await alpha.observe();
    assert.equal(idle.inRecovery, true);
    assert.equal(idle.following, null);
    await alpha.follow(addressOf(beta));
    const o = await observeUntil(alpha, 'alpha streaming from beta', (x) => x.streaming && x.timeline === 2);
    assert.equal(o.following, 'beta');
    assert.equal(o.systemId, systemId);
    const rows = await waitFor('row 3 on alpha', async () => {
      const r = await psql<{ id: number }>(superuserOn(alpha), 'SELECT id FROM items ORDER BY id');
      return r.some((x) => x.id === 3) ? r : undefined;
    });
    assert.deepEqual(
      rows.map((r) => r.id),
      [1, 2, 3],
      'the diverged row 4 is gone',
    );
    const primary = await observeUntil(beta, 'alpha on beta', (x) => x.replication.some((r) => r.name === 'alpha' && r.state === 'streaming'));
    assert.deepEqual(primary.slots, ['alpha']);
  });

  it('reports a parameter that needs a restart, and restart() applies it keeping the role', async () => {
    // Not max_connections: a replica must never have less of it than its primary (recovery would pause).
    await beta.setParameters({ shared_buffers: '48MB', max_connections: 30, fsync: false });
    await beta.reload();
    await observeUntil(beta, 'pending restart', (x) => x.pendingRestart);
    await beta.restart();
    const o = await observeUntil(beta, 'beta back', (x) => x.accepting);
    assert.equal(o.pendingRestart, false);
    assert.equal(o.inRecovery, false);
    assert.equal(o.timeline, 2);
    const [setting] = await psql<{ shared_buffers: string }>(superuserOn(beta), 'SHOW shared_buffers');
    assert.equal(setting.shared_buffers, '48MB');
  });

  it('drops only inactive slots', async () => {
    // beta's restart cut alpha's stream; it reconnects within wal_retrieve_retry_interval.
    await observeUntil(beta, 'alpha streaming again', (x) => x.replication.some((r) => r.name === 'alpha' && r.state === 'streaming'));
    await beta.manageSlots(['gamma'], []);
    await beta.manageSlots([], ['alpha', 'gamma']);
    const o = await beta.observe();
    assert.deepEqual(o.slots, ['alpha'], 'alpha streams through its slot, gamma was idle');
  });

  it('observe() returns within its timeouts from a hung server and reconnects when it resumes', async () => {
    await beta.observe(); // the long-lived connection is open
    const pid = beta.postmasterPid();
    assert.ok(pid !== null);
    const frozen = await serverProcesses(pid);
    assert.ok(frozen.length > 3, 'postmaster and its children');
    for (const p of frozen) process.kill(p, 'SIGSTOP');
    try {
      // The state waited for is "observe() has returned"; its deadline is the bound its timeouts promise.
      let timer: NodeJS.Timeout | undefined;
      const hung = await Promise.race([
        beta.observe(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('observe() still pending after 3000 ms against a hung server')), 3000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(hung.running, true);
      assert.equal(hung.accepting, false);
      assert.equal(hung.inRecovery, null);
      assert.equal(hung.systemId, systemId, 'still known from earlier cycles');
    } finally {
      for (const p of frozen) process.kill(p, 'SIGCONT');
    }
    const resumed = await observeUntil(beta, 'beta answering again', (x) => x.accepting);
    assert.equal(resumed.inRecovery, false);
  });

  it('fails over again onto timeline 3 and rewinds a crashed old primary (pg_rewind runs its crash recovery)', async () => {
    await observeUntil(alpha, 'alpha streaming from beta', (x) => x.streaming);
    await alpha.promote();
    await alpha.checkpoint();
    await psql(superuserOn(alpha), "INSERT INTO items VALUES (5, 'second failover')");
    await psql(superuserOn(beta), "INSERT INTO items VALUES (6, 'diverged again')");
    await beta.stop('immediate');
    const crashed = await beta.observe();
    assert.equal(crashed.running, false);
    assert.equal(crashed.controlState, 'in production', 'an immediate stop leaves the cluster not shut down cleanly');
    assert.equal(crashed.controlTimeline, 2);

    await alpha.manageSlots(['beta'], []);
    await beta.rewind(addressOf(alpha));
    await beta.start('replica', addressOf(alpha));
    const o = await observeUntil(beta, 'beta streaming from alpha', (x) => x.streaming && x.timeline === 3);
    assert.equal(o.following, 'alpha');
    const rows = await waitFor('row 5 on beta', async () => {
      const r = await psql<{ id: number }>(superuserOn(beta), 'SELECT id FROM items ORDER BY id');
      return r.some((x) => x.id === 5) ? r : undefined;
    });
    assert.deepEqual(rows.map((r) => r.id), [1, 2, 3, 5]);
    const primary = await alpha.observe();
    assert.equal(primary.timeline, 3);
    assert.ok(primary.replication.some((r) => r.name === 'beta' && r.state === 'streaming'));
  });

  it('accepts SCRAM only: no trust in pg_hba.conf, a wrong password fails with 28P01', async () => {
    const hba = await readFile(path.join(beta.dataDir, 'pg_hba.conf'), 'utf8');
    assert.doesNotMatch(hba, /\btrust\b/);
    assert.match(hba, /scram-sha-256/);
    await assert.rejects(
      psql(tcpConfig(beta, credentials.superuser.username, 'wrong-password'), 'SELECT 1'),
      (e: unknown) => e instanceof pg.DatabaseError && e.code === '28P01',
    );
    await assert.rejects(
      psql(tcpConfig(beta, credentials.replication.username, 'wrong-password'), 'SELECT 1'),
      (e: unknown) => e instanceof pg.DatabaseError && e.code === '28P01',
    );
    const rows = await psql<{ ok: number }>(tcpConfig(beta, credentials.rewind.username, credentials.rewind.password), 'SELECT 1 AS ok');
    assert.deepEqual(rows, [{ ok: 1 }], 'the rewind role logs in with its SCRAM verifier');
  });

  it('wipes a stopped data directory for reinitialisation', async () => {
    await assert.rejects(beta.wipe(), /stop it first/);
    await beta.stop('fast');
    assert.equal(beta.postmasterPid(), null);
    await beta.wipe();
    const o = await beta.observe();
    assert.equal(o.dataDir, 'empty');
    assert.equal(o.systemId, null);
  });
});
