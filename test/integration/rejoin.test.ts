/**
 * How a former primary rejoins, against real etcd, agents and PostgreSQL 15 (a 2-node LocalCluster): by pg_rewind
 * even when its data directory holds stale lock files and standby.signal, and by a re-clone only when pg_rewind
 * cannot work — which `pgwarden list`, the agent's log and /metrics then say, with pg_rewind's reason.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ListJson } from '../../src/cli/format.js';
import { agentChildEnv } from '../../src/config/cli.js';
import { runAsIdentity } from '../../src/postgres/run.js';
import { LocalCluster } from '../../src/up/local-cluster.js';
import { sleep } from '../helpers/writer.js';
import { waitFor as pollFor } from '../helpers/pg.js';

/** pollFor with this file's default timeout. */
const waitFor = <T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 60_000): Promise<T> =>
  pollFor(what, probe, timeoutMs);

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

let lc: LocalCluster;
let dir: string;
const spawned: ChildProcess[] = [];


async function query<T extends pg.QueryResultRow>(member: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: lc.connectionString(member), connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

/** The value of `name` with these labels (among others) on the agent's /metrics; 0 when the series is absent. */
async function metric(member: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${lc.apiUrl(member)}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text
    .split('\n')
    .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && wanted.every((w) => l.slice(0, l.lastIndexOf(' ')).includes(w)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

function cli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [MAIN, ...args, '--dir', dir], { env: agentChildEnv(), timeout: 30_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** Kills the primary's agent and PostgreSQL with -9 and waits until the other member is the running primary. */
async function crashPrimary(): Promise<{ old: string; fresh: string }> {
  const old = (await lc.view()).leader!.name;
  lc.killAgent(old, 'SIGKILL');
  lc.killPostgres(old, 'SIGKILL');
  const view = await waitFor('a new primary', async () => {
    const v = await lc.view();
    const l = v.leader?.name;
    return l && l !== old && v.members[l]?.role === 'primary' && v.members[l]?.state === 'running' ? v : null;
  });
  return { old, fresh: view.leader!.name };
}

async function streamingReplica(member: string): Promise<void> {
  await waitFor(`${member} streaming`, async () => (await lc.view()).members[member]?.state === 'streaming', 90_000);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pgwarden-rejoin-'));
  lc = await LocalCluster.open({ dir, nodes: 2, cluster: 'rejoin', parameters: { fsync: 'off', shared_buffers: '32MB' } });
  await lc.start();
  await lc.waitHealthy(90_000);
});

after(async () => {
  for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await lc?.stop().catch(() => undefined);
  await lc?.close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('rejoining a former primary (real etcd and PostgreSQL)', { concurrency: false, timeout: 240_000 }, () => {
  it('rewinds a former primary killed with -9 whose lock files name a live process and which has standby.signal: no re-clone', async () => {
    const primary = (await lc.view()).leader!.name;
    await query(primary, 'CREATE TABLE t (id int PRIMARY KEY)');
    await query(primary, 'INSERT INTO t VALUES (1)');
    const { old, fresh } = await crashPrimary();
    await query(fresh, 'INSERT INTO t VALUES (2)');
    // The new primary keeps a slot for the absent former primary (member_slots_ttl): the WAL it needs after the
    // rewind stays.
    await waitFor(`a slot for ${old} on ${fresh}`, async () => (await query<{ n: string }>(fresh, 'SELECT slot_name AS n FROM pg_replication_slots')).some((r) => r.n === old));
    // What a restarted host may find: the PID in the lock files reused by a process of the postgres user, and
    // standby.signal from a rejoin that was cut short.
    const owner = runAsIdentity('postgres');
    const other = spawn('sleep', ['600'], { stdio: 'ignore', ...(owner ? { uid: owner.uid, gid: owner.gid } : {}) });
    spawned.push(other);
    const data = lc.dataDir(old);
    const locks = [path.join(data, 'postmaster.pid'), path.join(`${data}.run`, `.s.PGSQL.${lc.pgPort(old)}.lock`)];
    for (const file of locks) {
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines[0] = String(other.pid);
      await writeFile(file, lines.join('\n'));
    }
    await writeFile(path.join(data, 'standby.signal'), '');

    await lc.startAgent(old);
    await streamingReplica(old);

    assert.equal((await lc.view()).members[old]?.role, 'replica');
    await waitFor('row 2 on the former primary', async () => (await query<{ id: number }>(old, 'SELECT id FROM t WHERE id = 2')).length === 1);
    assert.equal(await metric(old, 'pgwarden_rewinds_total', { result: 'succeeded' }), 1, 'rejoined by pg_rewind');
    assert.equal(await metric(old, 'pgwarden_rewinds_total', { result: 'failed' }), 0);
    assert.equal(await metric(old, 'pgwarden_reclones_total'), 0, 'no re-clone');
    assert.equal((await lc.view()).members[old]?.reclone ?? null, null);
    assert.match(readFileSync(lc.agentLogFile(old), 'utf8'), /removed the stale postmaster\.pid \(pid \d+ is now sleep\)/);
    other.kill('SIGKILL');
  });

  it('re-clones a former primary whose WAL is gone, and says why in list, the log and /metrics', async () => {
    await query((await lc.view()).leader!.name, 'CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)');
    const { old, fresh } = await crashPrimary();
    await query(fresh, 'INSERT INTO t VALUES (3)');
    // Without its WAL no crash recovery and no rewind can work: only a fresh copy helps.
    const wal = path.join(lc.dataDir(old), 'pg_wal');
    for (const name of await readdir(wal)) if (/^[0-9A-F]{24}$/.test(name)) await rm(path.join(wal, name));

    await lc.startAgent(old);
    await streamingReplica(old);

    await waitFor('row 3 on the re-cloned member', async () => (await query<{ id: number }>(old, 'SELECT id FROM t WHERE id = 3')).length === 1);
    assert.equal(await metric(old, 'pgwarden_reclones_total'), 1);
    assert.ok((await metric(old, 'pgwarden_rewinds_total', { result: 'failed' })) >= 1);
    const json = JSON.parse(await cli(['list', '--format', 'json'])) as ListJson;
    const reclone = json.members.find((m) => m.name === old)?.reclone;
    assert.ok(reclone, 'list --format json carries the re-clone');
    assert.match(reclone.reason, /pg_rewind failed, cloning again \(.*(single-user|checkpoint record|WAL).*\)/);
    assert.equal(json.members.find((m) => m.name === fresh)?.reclone, null);
    const table = await cli(['list']);
    const line = table.split('\n').find((l) => l.startsWith(`Re-cloned: ${old} at `));
    assert.ok(line?.includes('pg_rewind failed'), table);
    console.log(`# ${line}`);
    const log = readFileSync(lc.agentLogFile(old), 'utf8').split('\n').filter((l) => l.includes('re-cloning this member'));
    assert.equal(log.length, 1, 'one warn line for the one re-clone');
    assert.match(log[0]!, /"level":(40|"warn")/);
    assert.match(log[0]!, /pg_rewind failed/);
  });
});
