/**
 * The proxy in etcd mode, started by LocalCluster (as `pgwarden up` does) in front of a real 3-node cluster:
 * rw reaches the primary, ro a replica, the proxy registers itself in etcd (`pgwarden list --format json`), and a
 * kill -9 of the primary's PostgreSQL under 5 clients writing through the rw port in transaction mode: every
 * client connection survives, only transactions in flight at the crash fail (08006), and no write started after
 * the new primary was known reaches any server but the new primary. The cluster runs in synchronous mode, so
 * every acknowledged write must be on the new primary: each row records where it ran (port, timeline, LSN), and
 * the test checks each acknowledgement against what the new primary holds. A client idle inside a transaction
 * across the crash stays connected: 40001 (or PostgreSQL's own 57P01 when its backend said why it ended),
 * ROLLBACK, and its next transaction runs on the new primary.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ListJson } from '../../src/cli/format.js';
import { agentChildEnv } from '../../src/config/cli.js';
import type { ClusterView } from '../../src/cluster/types.js';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { waitFor } from '../helpers/pg.js';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

let dir: string;
let lc: LocalCluster;

function proxyClient(kind: 'rw' | 'ro'): pg.Client {
  const c = new pg.Client({ connectionString: lc.proxyConnectionString(kind) });
  c.on('error', () => undefined);
  return c;
}

async function healthyView(accept: (view: ClusterView) => boolean, timeoutMs = 30_000): Promise<ClusterView> {
  return waitFor(
    'the cluster view',
    async () => {
      const view = await lc.view().catch(() => null);
      if (view === null) return undefined;
      const leader = view.leader?.name;
      if (leader === undefined || view.members[leader]?.role !== 'primary' || view.members[leader]?.state !== 'running') return undefined;
      return accept(view) ? view : undefined;
    },
    timeoutMs,
  );
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-pxf-'));
  lc = await LocalCluster.open({ dir, nodes: 3, cluster: 'pxf', parameters: { fsync: 'off' }, dynamic: { synchronous_mode: true } });
  await lc.start();
  await lc.waitHealthy(90_000);
});

after(async () => {
  await lc?.stop().catch(() => undefined);
  await lc?.close().catch(() => undefined);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('proxy following the cluster through etcd', { timeout: 150_000 }, () => {
  it('runs as a process of the local cluster with rw and ro ports', () => {
    assert.ok(lc.proxyPid() !== null, 'the proxy runs');
    assert.ok(lc.proxyRwPort() !== null && lc.proxyRoPort() !== null);
    assert.notEqual(lc.proxyRwPort(), lc.proxyRoPort());
  });

  it('sends rw to the primary and ro to a replica', async () => {
    const view = await healthyView(() => true);
    const primary = view.members[view.leader!.name];
    const rw = proxyClient('rw');
    await rw.connect();
    try {
      await rw.query('CREATE TABLE IF NOT EXISTS writes (client int, seq int, port int, tli text, lsn pg_lsn, PRIMARY KEY (client, seq))');
      const r = await rw.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS rec');
      assert.equal(r.rows[0].port, primary.port);
      assert.equal(r.rows[0].rec, false);
    } finally {
      await rw.end();
    }
    const replicaPorts = Object.values(view.members)
      .filter((m) => m.role === 'replica')
      .map((m) => m.port);
    // A replica qualifies for ro once it reports its lag.
    await healthyView((v) => Object.values(v.members).some((m) => m.role === 'replica' && m.lagBytes !== null));
    const ro = proxyClient('ro');
    await ro.connect();
    try {
      const seen = new Set<number>();
      for (let i = 0; i < 4; i++) {
        const r = await ro.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS rec');
        assert.equal(r.rows[0].rec, true);
        assert.ok(replicaPorts.includes(r.rows[0].port), `ro read on port ${r.rows[0].port}, replicas are ${replicaPorts.join(',')}`);
        seen.add(r.rows[0].port);
      }
      // The table created through rw reaches the replicas too.
      await waitFor('the table on a replica', async () => (await ro.query("SELECT to_regclass('writes') IS NOT NULL AS ok")).rows[0].ok || undefined, 10_000);
    } finally {
      await ro.end();
    }
  });

  it('is listed by `pgwarden list --format json` with its rw and ro addresses', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'list', '--format', 'json', '--dir', dir], { env: agentChildEnv(), timeout: 30_000 });
    const json = JSON.parse(stdout) as ListJson;
    assert.equal(json.proxies.length, 1);
    assert.equal(json.proxies[0].id, 'proxy1');
    assert.equal(json.proxies[0].rw, `127.0.0.1:${lc.proxyRwPort()}`);
    assert.equal(json.proxies[0].ro, `127.0.0.1:${lc.proxyRoPort()}`);
  });

  it('kill -9 of the primary under 5 writing clients: connections survive, writes move to the new primary', async () => {
    // A synchronous standby is in place: acknowledged commits survive the crash (and only it may be promoted).
    const before = await healthyView((v) => (v.sync?.members.length ?? 0) > 0);
    const oldLeader = before.leader!.name;
    const oldPort = before.members[oldLeader].port;
    // Where a row was written: pg_current_wal_lsn() fails on a replica, so a row is proof it ran on a primary.
    const WHERE = "inet_server_port(), substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), pg_current_wal_lsn()";
    const idleInTx = proxyClient('rw');
    await idleInTx.connect();
    await idleInTx.query('BEGIN');
    await idleInTx.query(`INSERT INTO writes VALUES (99, 0, ${WHERE})`);
    const clients = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const c = proxyClient('rw');
        await c.connect();
        return c;
      }),
    );
    interface Ack {
      client: number;
      seq: number;
      port: number;
      tli: string;
      startedAt: number;
      ackedAt: number;
    }
    interface Failure {
      client: number;
      seq: number;
      code: string | undefined;
      startedAt: number;
      failedAt: number;
    }
    const acks: Ack[] = [];
    const failures: Failure[] = [];
    let newPrimaryKnownAt = Infinity;
    let stop = false;
    const loops = clients.map(async (c, client) => {
      for (let seq = 0; !stop; seq++) {
        const startedAt = Date.now();
        try {
          let row: { port: number; tli: string };
          if (seq % 2 === 0) {
            // Extended protocol, one implicit transaction.
            const r = await c.query(`INSERT INTO writes VALUES ($1, $2, ${WHERE}) RETURNING port, tli`, [client, seq]);
            row = r.rows[0];
          } else {
            // Simple protocol, an explicit transaction in one round trip.
            const r = (await c.query(
              `BEGIN; INSERT INTO writes VALUES (${client}, ${seq}, ${WHERE}); SELECT port, tli FROM writes WHERE client = ${client} AND seq = ${seq}; COMMIT`,
            )) as unknown as pg.QueryResult[];
            row = r[2].rows[0];
          }
          acks.push({ client, seq, port: row.port, tli: row.tli, startedAt, ackedAt: Date.now() });
        } catch (e) {
          failures.push({ client, seq, code: (e as { code?: string }).code, startedAt, failedAt: Date.now() });
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    });
    try {
      await waitFor('writes before the crash', async () => acks.length >= 50 || undefined, 15_000);
      const killAt = Date.now();
      lc.killPostgres(oldLeader, 'SIGKILL');
      const after = await healthyView((v) => v.leader!.name !== oldLeader, 60_000);
      newPrimaryKnownAt = Date.now();
      const newLeader = after.leader!.name;
      const newPort = after.members[newLeader].port;
      // Every client must complete transactions on the new primary.
      await waitFor(
        'every client writing on the new primary',
        async () => clients.every((_, i) => acks.filter((a) => a.client === i && a.port === newPort && a.startedAt > newPrimaryKnownAt).length >= 3) || undefined,
        60_000,
      );
      stop = true;
      await Promise.all(loops);

      const lastOld = Math.max(...acks.filter((a) => a.port === oldPort).map((a) => a.ackedAt));
      const firstNew = Math.min(...acks.filter((a) => a.port === newPort).map((a) => a.ackedAt));
      console.log(
        `# proxy failover: kill -9 at 0 ms; last ack on the old primary ${lastOld - killAt} ms; new primary known to the test ${newPrimaryKnownAt - killAt} ms; ` +
          `first ack on the new primary ${firstNew - killAt} ms; writes unavailable for ${firstNew - Math.min(lastOld, killAt)} ms; ` +
          `${acks.length} acknowledged, ${failures.length} failed (${failures.map((f) => f.code).join(',')})`,
      );

      // No write ever reached a server other than the two primaries, and none started after the switch reached the old one.
      for (const a of acks) assert.ok(a.port === oldPort || a.port === newPort, `write ${a.client}/${a.seq} landed on port ${a.port}`);
      for (const a of acks.filter((x) => x.startedAt >= newPrimaryKnownAt)) assert.equal(a.port, newPort, `write ${a.client}/${a.seq} after the switch`);
      for (const a of acks.filter((x) => x.port === oldPort)) assert.ok(a.startedAt <= killAt + 50, `write ${a.client}/${a.seq} started ${a.startedAt - killAt} ms after the kill on the old primary`);
      // Only transactions in flight at the crash fail: each client at most one (or two in a race with the pool's
      // noticing a dead idle connection), all with the retryable 08006 (or PostgreSQL's own 57P01 "unexpected
      // postmaster exit" when the backend said so before dying), none started after the switch.
      for (const f of failures) {
        assert.ok(f.code === '08006' || f.code === '57P01', `failure code ${f.code}`);
        assert.ok(f.startedAt < newPrimaryKnownAt, `a transaction started ${f.startedAt - newPrimaryKnownAt} ms after the switch failed`);
      }
      for (let i = 0; i < clients.length; i++) assert.ok(failures.filter((f) => f.client === i).length <= 2, `client ${i} failed ${failures.filter((f) => f.client === i).length} times`);
      // Every acknowledged write is on the new primary (synchronous mode), as written where the client was told.
      const direct = new pg.Client({ connectionString: lc.connectionString(newLeader) });
      await direct.connect();
      try {
        const newTli = (await direct.query('SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS tli')).rows[0].tli as string;
        const rows = (await direct.query('SELECT client, seq, port, tli FROM writes')).rows as Array<{ client: number; seq: number; port: number; tli: string }>;
        const stored = new Map(rows.map((r) => [`${r.client}/${r.seq}`, r]));
        const oldTlis = new Set(acks.filter((a) => a.port === oldPort).map((a) => a.tli));
        assert.equal(oldTlis.size, 1, `the old primary wrote on one timeline: ${[...oldTlis].join(',')}`);
        assert.ok(!oldTlis.has(newTli), `the new primary runs on a new timeline (${newTli})`);
        for (const a of acks) {
          const row = stored.get(`${a.client}/${a.seq}`);
          assert.ok(row !== undefined, `acknowledged write ${a.client}/${a.seq} (port ${a.port}, timeline ${a.tli}) missing on the new primary`);
          assert.deepEqual([row.port, row.tli], [a.port, a.tli], `write ${a.client}/${a.seq} as stored`);
        }
        // No row acknowledged after the switch came from the old server: port and timeline both say so.
        for (const a of acks.filter((x) => x.ackedAt >= newPrimaryKnownAt)) assert.deepEqual([a.port, a.tli], [newPort, newTli], `write ${a.client}/${a.seq} after the switch`);
        // Rows nobody was told about can only be writes whose outcome the client was told is unknown (08006).
        const told = new Set([...acks, ...failures].map((x) => `${x.client}/${x.seq}`));
        for (const r of rows) if (r.client !== 99) assert.ok(told.has(`${r.client}/${r.seq}`), `row ${r.client}/${r.seq} was never attempted`);
        // The transaction left idle across the crash is lost, not committed.
        assert.ok(!stored.has('99/0'), 'the idle transaction was not committed');
      } finally {
        await direct.end();
      }
      // The client idle in a transaction across the crash: still connected, told its transaction was rolled back:
      // with PostgreSQL's own 57P01 when its backend saw the postmaster die and said so (it does when idle), else 40001.
      await assert.rejects(idleInTx.query('SELECT 1'), (e: unknown) => {
        const { code, detail } = e as { code?: string; detail?: string };
        return (code === '57P01' || code === '40001') && /nothing of (it|the transaction) was committed/i.test(detail ?? '');
      });
      assert.equal((await idleInTx.query('ROLLBACK')).command, 'ROLLBACK');
      await idleInTx.query('BEGIN');
      await idleInTx.query(`INSERT INTO writes VALUES (99, 1, ${WHERE})`);
      await idleInTx.query('COMMIT');
      assert.equal((await idleInTx.query('SELECT port FROM writes WHERE client = 99 AND seq = 1')).rows[0].port, newPort);
      // The connections are still usable for one more transaction each.
      for (const c of clients) assert.equal((await c.query('SELECT inet_server_port() AS port')).rows[0].port, newPort);
    } finally {
      stop = true;
      await Promise.allSettled(loops);
      await Promise.allSettled([...clients, idleInTx].map((c) => c.end()));
    }
  });
});
