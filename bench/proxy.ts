/**
 * `npm run bench:proxy [-- --seconds 15 --rounds 3 --idle-clients 10000 --workers 1 --node-io --cpu-prof <dir> --hold]`: the
 * pgwarden proxy against PgBouncer and against PostgreSQL directly, on one machine in one go. The proxy runs with
 * its default config (`workers: auto`, one worker thread per CPU) and, as a further target, with `workers: N`
 * (0: not run). Workloads: pgbench select-only
 * (-S -c 50 -j 2) and the default TPC-B-like (-c 20 -j 2). Both poolers run in transaction mode with a pool of
 * 20 and SCRAM client auth from the same userlist (the role's SCRAM verifier, so both use pass-through keys to
 * reach PostgreSQL). Targets are interleaved within each round so that machine noise hits all of them alike: each
 * pooler runs twice per round in mirrored order, and its figure for the round is the mean of the two (rounds.ts).
 * Then opens N idle authenticated clients to each pooler and prints the resident memory each one costs.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Socket } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { parseBenchArgs } from './args.js';
import { meanOfRuns, median, roundOrder } from './rounds.js';
import { runAsIdentity } from '../src/postgres/run.js';
import { cleanupServers, makePgTempDir, makeTestServer, PG_BIN_DIR, psql, tcpConfig, testCredentials, waitFor } from '../test/helpers/pg.js';
import { freePort } from '../test/helpers/ports.js';
import { ensureFileLimit, openIdleClients } from '../test/helpers/idle-clients.js';

const run = promisify(execFile);

const { values } = parseBenchArgs('bench:proxy', {
  options: {
    seconds: { type: 'string', default: '15' },
    rounds: { type: 'string', default: '3' },
    'idle-clients': { type: 'string', default: '10000' },
    /** Directory for a V8 CPU profile of the proxy process (written when it exits). */
    'cpu-prof': { type: 'string' },
    /** Write /tmp/perf-<pid>.map for the proxy so `perf record -p <pid>` names JavaScript frames. */
    'perf-map': { type: 'boolean', default: false },
    /** Comma-separated subset of: select-only,tpcb-like. */
    workloads: { type: 'string', default: 'select-only,tpcb-like' },
    pgbouncer: { type: 'string', default: '/usr/sbin/pgbouncer' },
    /** Also run a second proxy with native_io: false (Node sockets throughout), as target pgwarden-node. */
    'node-io': { type: 'boolean', default: false },
    /** Also run a proxy with this many worker threads, as target pgwarden-<N>w (0: none). */
    workers: { type: 'string', default: '1' },
    /** Set everything up, print where it listens, and wait for Ctrl-C instead of running pgbench (for profiling by hand). */
    hold: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm run bench:proxy -- [options]
  pgbench select-only (-S -c 50 -j 2) and TPC-B-like (-c 20 -j 2) against PostgreSQL directly, PgBouncer and the
  pgwarden proxy (transaction mode, pool 20); then idle-client memory. In each round PostgreSQL directly runs once
  and every pooler twice, in mirrored order (A B C C B A); a pooler's figure for the round is the mean of its two.
  --seconds N        length of each pgbench run (default 15)
  --rounds N         rounds; the figures are medians over them (default 3)
  --workloads LIST   select-only,tpcb-like (default both); none: only the idle-client figure
  --idle-clients N   idle clients opened to each pooler for the memory figure (default 10000; 0: skip)
  --workers N        also run the proxy with N worker threads, as target pgwarden-<N>w (default 1; 0: not)
  --node-io          also run the proxy with native_io: false, as target pgwarden-node
  --pgbouncer PATH   the PgBouncer binary (default /usr/sbin/pgbouncer)
  --cpu-prof DIR     write a V8 CPU profile of the proxy to DIR when it exits
  --perf-map         let \`perf record -p <pid>\` name the proxy's JavaScript frames
  --hold             set everything up, print ports and pids, and wait for Ctrl-C (profiling by hand)
`);
  process.exit(0);
}
const seconds = Math.max(1, Number(values.seconds));
const rounds = Math.max(1, Number(values.rounds));
const idleClients = Math.max(0, Number(values['idle-clients']));
const POOL_SIZE = 20;

interface Workload {
  name: string;
  args: string[];
  /** Run on PostgreSQL directly, one by one, before each run (pgbench's own preparation, which -n turns off). */
  prepare: string[];
}
/**
 * Every run starts from the same state, whichever target ran before it: a CHECKPOINT, so that none falls inside
 * a run, and for TPC-B what pgbench itself does before a run unless given -n (vacuum of branches and tellers,
 * truncation of history), here on PostgreSQL directly rather than through the pooler under test. Without them the
 * dead rows and WAL of one run were left to the next target's run.
 */
const ALL_WORKLOADS: Workload[] = [
  { name: 'select-only', args: ['-S', '-c', '50', '-j', '2'], prepare: ['CHECKPOINT'] },
  { name: 'tpcb-like', args: ['-c', '20', '-j', '2'], prepare: ['VACUUM pgbench_branches', 'VACUUM pgbench_tellers', 'TRUNCATE pgbench_history', 'CHECKPOINT'] },
];
const workloads = ALL_WORKLOADS.filter((w) => values.workloads.split(',').includes(w.name));
const workerThreads = Math.max(0, Math.floor(Number(values.workers)));
/** The proxy with worker threads, when it runs. */
const WORKERS_TARGET = `pgwarden-${workerThreads}w`;
type TargetName = string;
/** The pgwarden proxies, each compared with PgBouncer. */
const OURS: TargetName[] = ['pgwarden', ...(values['node-io'] ? ['pgwarden-node'] : []), ...(workerThreads > 0 ? [WORKERS_TARGET] : [])];
const TARGETS: TargetName[] = ['direct', 'pgbouncer', ...OURS];

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Processes this bench started, ended by PID at exit whatever happens. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

// Ctrl-C or a kill of the bench: exit through the 'exit' hooks, which end the poolers and PostgreSQL by PID.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

async function stopChild(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

function startChild(name: string, command: string, args: string[], options: { uid?: number; gid?: number; logFile: string }): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], uid: options.uid, gid: options.gid });
  children.add(child);
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => chunks.push(d));
  child.stderr!.on('data', (d: Buffer) => chunks.push(d));
  child.once('exit', (code, signal) => {
    if (stopping) return;
    // The temp dirs are removed at the end: keep the output of a pooler that died for the post-mortem.
    writeFileSync(options.logFile, Buffer.concat(chunks));
    log(`  ${name} exited unexpectedly (code ${code}, signal ${signal}); its output: ${options.logFile}`);
  });
  return child;
}
let stopping = false;

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** Raises this process's open-file limit (inherited by the poolers started later) when N idle clients need it. */
async function raiseFileLimit(needed: number): Promise<void> {
  const limit = await ensureFileLimit(needed);
  if (limit.raised) log(`open-file limit raised to ${limit.soft} with prlimit`);
  if (limit.soft < needed) throw new Error(`open-file limit ${limit.soft} < ${needed} needed for ${idleClients} idle clients${limit.error ? ` (prlimit: ${limit.error})` : ''}: raise it (ulimit -n) or pass a smaller --idle-clients`);
}

interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
  /** CPU time (user + system) the pooler process spent during the run, per transaction; null for direct. */
  poolerCpuUsPerTx: number | null;
  /** The user-mode part of poolerCpuUsPerTx (the rest is kernel time, mostly socket reads and writes). */
  poolerUserUsPerTx: number | null;
  /** Where the whole machine's time went, per transaction: pgbench, PostgreSQL (every server process), idle. */
  pgbenchCpuUsPerTx: number;
  postgresCpuUsPerTx: number;
  idleUsPerTx: number;
}

/** Clock ticks to microseconds (USER_HZ is 100 on Linux). */
const TICK_US = 10_000;

function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU of the processes this bench reaped (pgbench runs as its child): cutime + cstime of this process. */
async function reapedChildrenMicros(): Promise<number> {
  const f = statFields(await readFile('/proc/self/stat', 'utf8'));
  return (Number(f[13]) + Number(f[14])) * TICK_US;
}

/** CPU of a PostgreSQL server: the postmaster, its reaped children (ended backends) and the ones alive now. */
async function serverTreeMicros(postmaster: number): Promise<number> {
  const own = statFields(await readFile(`/proc/${postmaster}/stat`, 'utf8'));
  let total = (Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])) * TICK_US;
  const children = (await readFile(`/proc/${postmaster}/task/${postmaster}/children`, 'utf8')).split(' ').filter((x) => x.trim() !== '');
  for (const child of children) {
    try {
      const f = statFields(await readFile(`/proc/${child}/stat`, 'utf8'));
      total += (Number(f[11]) + Number(f[12])) * TICK_US;
    } catch {
      // Ended meanwhile: it is in the postmaster's cutime once reaped.
    }
  }
  return total;
}

/** Idle time of the whole machine, summed over its CPUs (idle + iowait of /proc/stat's cpu line). */
async function machineIdleMicros(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/);
  return (Number(line[4]) + Number(line[5])) * TICK_US;
}

/** utime + stime of a process in microseconds, from /proc/<pid>/stat (clock ticks, 100 per second on Linux). */
async function cpuMicros(pid: number): Promise<{ user: number; total: number }> {
  const fields = statFields(await readFile(`/proc/${pid}/stat`, 'utf8'));
  // After the command name: state is field 3, utime field 14, stime field 15 (proc(5)).
  return { user: Number(fields[11]) * 10_000, total: (Number(fields[11]) + Number(fields[12])) * 10_000 };
}

async function pgbench(port: number, password: string, args: string[], poolerPid: number | null, postmaster: number): Promise<PgbenchResult> {
  const cpuBefore = poolerPid === null ? null : await cpuMicros(poolerPid);
  const [pgbenchBefore, postgresBefore, idleBefore] = await Promise.all([reapedChildrenMicros(), serverTreeMicros(postmaster), machineIdleMicros()]);
  const { stdout } = await run(
    path.join(PG_BIN_DIR, 'pgbench'),
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-T', String(seconds), ...args, 'postgres'],
    { env: { ...process.env, PGPASSWORD: password }, maxBuffer: 16 * 1024 * 1024, timeout: (seconds + 60) * 1000 },
  );
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  const latency = /latency average = ([\d.]+) ms/.exec(stdout);
  const processed = /number of transactions actually processed: (\d+)/.exec(stdout);
  if (!tps || !latency || !processed) throw new Error(`unexpected pgbench output:\n${stdout}`);
  const transactions = Number(processed[1]);
  // Backends of a direct run end with pgbench; give the postmaster a moment to reap them into its cutime.
  await sleep(300);
  const [pgbenchAfter, postgresAfter, idleAfter] = await Promise.all([reapedChildrenMicros(), serverTreeMicros(postmaster), machineIdleMicros()]);
  const cpuAfter = poolerPid === null ? null : await cpuMicros(poolerPid);
  const poolerCpuUsPerTx = cpuAfter === null || cpuBefore === null ? null : (cpuAfter.total - cpuBefore.total) / transactions;
  const poolerUserUsPerTx = cpuAfter === null || cpuBefore === null ? null : (cpuAfter.user - cpuBefore.user) / transactions;
  return {
    tps: Number(tps[1]),
    latencyMs: Number(latency[1]),
    transactions,
    poolerCpuUsPerTx,
    poolerUserUsPerTx,
    pgbenchCpuUsPerTx: (pgbenchAfter - pgbenchBefore) / transactions,
    postgresCpuUsPerTx: (postgresAfter - postgresBefore) / transactions,
    idleUsPerTx: (idleAfter - idleBefore) / transactions,
  };
}

interface MemoryResult {
  clients: number;
  beforeKiB: number;
  afterKiB: number;
  perClientBytes: number;
  openSeconds: number;
}

async function measureIdleMemory(name: string, pid: number, port: number, password: string): Promise<MemoryResult> {
  let sockets: Socket[] = [];
  await sleep(1000);
  const beforeKiB = await rssKiB(pid);
  const started = Date.now();
  try {
    // Raw TCP and SCRAM with keys derived once (test/helpers/idle-clients.ts): the userlist holds one verifier.
    sockets = await openIdleClients({ port, user: 'postgres', password }, idleClients);
    const openSeconds = (Date.now() - started) / 1000;
    await sleep(2000);
    const afterKiB = await rssKiB(pid);
    log(`  ${name}: ${sockets.length} idle clients in ${openSeconds.toFixed(1)} s; VmRSS ${beforeKiB} → ${afterKiB} KiB`);
    return { clients: sockets.length, beforeKiB, afterKiB, perClientBytes: ((afterKiB - beforeKiB) * 1024) / sockets.length, openSeconds };
  } finally {
    for (const s of sockets) s.destroy();
    await sleep(1000);
  }
}

// ---- the run ----

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

async function main(): Promise<void> {
  if (idleClients > 0) await raiseFileLimit(idleClients + 2000);
  const credentials = testCredentials();
  const password = credentials.superuser.password;
  const base = await makePgTempDir('pgwarden-bench-proxy-');
  const owner = runAsIdentity('postgres');
  const poolerDir = path.join(base, 'poolers');
  await mkdir(poolerDir, { mode: 0o700 });
  if (owner) await chown(poolerDir, owner.uid, owner.gid);
  let pgbouncer: ChildProcess | null = null;
  let proxy: ChildProcess | null = null;
  let nodeIoProxy: ChildProcess | null = null;
  let workersProxy: ChildProcess | null = null;
  try {
    log(`PostgreSQL 15 in ${base}…`);
    const postgres = await makeTestServer('bench', base, credentials, {
      parameters: { max_connections: 200, fsync: false, synchronous_commit: false, full_page_writes: false, shared_buffers: '128MB' },
    });
    await postgres.bootstrap();
    // --workloads none: only the idle-client figure, which needs no pgbench tables.
    if (workloads.length > 0) {
      log('pgbench -i -s 10…');
      await run(path.join(PG_BIN_DIR, 'pgbench'), ['-i', '-s', '10', '-q', '-h', '127.0.0.1', '-p', String(postgres.port), '-U', 'postgres', 'postgres'], {
        env: { ...process.env, PGPASSWORD: password },
        timeout: 300_000,
      });
    }
    const [{ verifier }] = await psql<{ verifier: string }>(tcpConfig(postgres, 'postgres', password), "SELECT rolpassword AS verifier FROM pg_authid WHERE rolname = 'postgres'");
    const userlist = path.join(poolerDir, 'userlist.txt');
    await writeFile(userlist, `"postgres" "${verifier}"\n`, { mode: 0o600 });

    const bouncerPort = await freePort();
    const bouncerIni = path.join(poolerDir, 'pgbouncer.ini');
    await writeFile(
      bouncerIni,
      [
        '[databases]',
        `postgres = host=127.0.0.1 port=${postgres.port} dbname=postgres`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${bouncerPort}`,
        'unix_socket_dir =',
        'auth_type = scram-sha-256',
        `auth_file = ${userlist}`,
        'pool_mode = transaction',
        `default_pool_size = ${POOL_SIZE}`,
        `max_client_conn = ${idleClients + 1000}`,
        'log_connections = 0',
        'log_disconnections = 0',
        '',
      ].join('\n'),
    );
    const proxyPort = await freePort();
    const nodeIoPort = await freePort();
    const proxyYml = path.join(poolerDir, 'proxy.yml');
    const nodeIoYml = path.join(poolerDir, 'proxy-node-io.yml');
    const workersPort = await freePort();
    const workersYml = path.join(poolerDir, 'proxy-workers.yml');
    const proxyConfig = (port: number, nativeIo: boolean, workers?: number): string =>
      [
        `listen: "127.0.0.1:${port}"`,
        'pool_mode: transaction',
        `default_pool_size: ${POOL_SIZE}`,
        `max_client_conn: ${idleClients + 1000}`,
        'auth_type: scram-sha-256',
        'auth_file: userlist.txt',
        `native_io: ${nativeIo}`,
        ...(workers === undefined ? [] : [`workers: ${workers}`]),
        '',
      ].join('\n');
    await writeFile(proxyYml, proxyConfig(proxyPort, true));
    await writeFile(nodeIoYml, proxyConfig(nodeIoPort, false));
    await writeFile(workersYml, proxyConfig(workersPort, true, Math.max(1, workerThreads)));
    if (owner) for (const f of [userlist, bouncerIni, proxyYml, nodeIoYml, workersYml]) await chown(f, owner.uid, owner.gid);

    log(`PgBouncer on ${bouncerPort}, pgwarden proxy on ${proxyPort}…`);
    pgbouncer = startChild('pgbouncer', values.pgbouncer, [bouncerIni], { uid: owner?.uid, gid: owner?.gid, logFile: path.join(tmpdir(), `pgwarden-bench-proxy-${process.pid}-pgbouncer.log`) });
    const nodeArgs = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values['cpu-prof'])}`] : [];
    if (values['perf-map']) nodeArgs.push('--perf-basic-prof');
    const mainJs = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../src/cli/main.js');
    proxy = startChild('pgwarden proxy', process.execPath, [...nodeArgs, mainJs, 'proxy', '--config', proxyYml, '--primary', `127.0.0.1:${postgres.port}`], {
      logFile: path.join(tmpdir(), `pgwarden-bench-proxy-${process.pid}-proxy.log`),
    });
    nodeIoProxy = values['node-io']
      ? startChild('pgwarden proxy (native_io: false)', process.execPath, [mainJs, 'proxy', '--config', nodeIoYml, '--primary', `127.0.0.1:${postgres.port}`], {
          logFile: path.join(tmpdir(), `pgwarden-bench-proxy-${process.pid}-proxy-node-io.log`),
        })
      : null;
    workersProxy =
      workerThreads > 0
        ? startChild(`pgwarden proxy (workers: ${workerThreads})`, process.execPath, [...nodeArgs, mainJs, 'proxy', '--config', workersYml, '--primary', `127.0.0.1:${postgres.port}`], {
            logFile: path.join(tmpdir(), `pgwarden-bench-proxy-${process.pid}-proxy-workers.log`),
          })
        : null;
    const ports: Record<TargetName, number> = { direct: postgres.port, pgbouncer: bouncerPort, pgwarden: proxyPort, 'pgwarden-node': nodeIoPort, [WORKERS_TARGET]: workersPort };
    const poolerPids: Record<TargetName, number | null> = {
      pgbouncer: pgbouncer.pid ?? null,
      pgwarden: proxy.pid ?? null,
      'pgwarden-node': nodeIoProxy?.pid ?? null,
      [WORKERS_TARGET]: workersProxy?.pid ?? null,
    };
    for (const target of TARGETS.filter((t) => t !== 'direct')) {
      await waitFor(`${target} to accept logins`, async () => {
        await psql({ host: '127.0.0.1', port: ports[target], user: 'postgres', password, database: 'postgres' }, 'SELECT 1');
        return true;
      }, 20_000);
    }

    if (values.hold) {
      log(`holding (Ctrl-C ends it); PGPASSWORD=${password}`);
      for (const target of TARGETS) log(`  ${pad(target, 13)} port ${ports[target]}${target === 'direct' ? '' : `  pid ${poolerPids[target]}`}`);
      await new Promise<never>(() => setInterval(() => undefined, 60_000));
    }
    const postmaster = postgres.postmasterPid();
    if (postmaster === null) throw new Error('PostgreSQL is not running');
    const results = new Map<string, PgbenchResult[]>();
    for (let round = 1; round <= rounds; round++) {
      for (const workload of workloads) {
        // Each pooler twice, mirrored (see rounds.ts): one figure per target and round, the mean of its runs.
        const runs = new Map<TargetName, PgbenchResult[]>();
        const poolers = TARGETS.filter((t) => t !== 'direct');
        for (const target of roundOrder(['direct'], poolers, round)) {
          const poolerPid = target === 'direct' ? null : (poolerPids[target] ?? null);
          for (const sql of workload.prepare) await psql(tcpConfig(postgres, 'postgres', password), sql);
          const r = await pgbench(ports[target], password, workload.args, poolerPid, postmaster);
          const cpu = r.poolerCpuUsPerTx === null ? '' : `  pooler ${r.poolerCpuUsPerTx.toFixed(1)} (user ${r.poolerUserUsPerTx!.toFixed(1)})`;
          log(
            `  round ${round}/${rounds} ${pad(workload.name, 11)} ${pad(target, 13)} tps ${r.tps.toFixed(0)}  latency ${r.latencyMs.toFixed(3)} ms  µs/tx: pgbench ${r.pgbenchCpuUsPerTx.toFixed(1)}  postgres ${r.postgresCpuUsPerTx.toFixed(1)}${cpu}  idle ${r.idleUsPerTx.toFixed(1)}`,
          );
          runs.set(target, [...(runs.get(target) ?? []), r]);
        }
        for (const [target, rs] of runs) {
          const key = `${workload.name}/${target}`;
          results.set(key, [...(results.get(key) ?? []), meanOfRuns(rs)]);
        }
      }
    }

    const memory: Partial<Record<'pgbouncer' | 'pgwarden', MemoryResult>> = {};
    if (idleClients > 0) {
      log(`opening ${idleClients} idle clients to each pooler…`);
      memory.pgwarden = await measureIdleMemory('pgwarden', proxy.pid!, proxyPort, password);
      memory.pgbouncer = await measureIdleMemory('pgbouncer', pgbouncer.pid!, bouncerPort, password);
    }

    const lines: string[] = [];
    if (workloads.length > 0) {
      lines.push(
        `pgbench, ${seconds} s per run, ${rounds} round(s), median; each pooler twice per round (mirrored order), its round the mean of both; pools: ${POOL_SIZE} server connections, transaction mode`,
      );
      lines.push(`machine time per transaction in µs (over all CPUs): pgbench, PostgreSQL (all its processes), the pooler (user part), idle`);
      lines.push(`${pad('workload', 12)} ${pad('target', 14)} ${pad('TPS', 10)} ${pad('latency ms', 11)} ${pad('pgbench', 8)} ${pad('postgres', 9)} ${pad('pooler', 14)} idle`);
    }
    for (const workload of workloads) {
      for (const target of TARGETS) {
        const rs = results.get(`${workload.name}/${target}`) ?? [];
        const med = (f: (r: PgbenchResult) => number): string => median(rs.map(f)).toFixed(1);
        const pooler = target === 'direct' ? '-' : `${med((r) => r.poolerCpuUsPerTx ?? 0)} (${med((r) => r.poolerUserUsPerTx ?? 0)})`;
        lines.push(
          `${pad(workload.name, 12)} ${pad(target, 14)} ${pad(median(rs.map((r) => r.tps)).toFixed(0), 10)} ${pad(median(rs.map((r) => r.latencyMs)).toFixed(3), 11)} ${pad(
            med((r) => r.pgbenchCpuUsPerTx),
            8,
          )} ${pad(med((r) => r.postgresCpuUsPerTx), 9)} ${pad(pooler, 14)} ${med((r) => r.idleUsPerTx)}`,
        );
      }
      for (const target of OURS) {
        const ours = (results.get(`${workload.name}/${target}`) ?? []).map((r) => r.tps);
        const theirs = (results.get(`${workload.name}/pgbouncer`) ?? []).map((r) => r.tps);
        // Runs of one round are minutes apart at most; across rounds this machine's speed moves by a third, so the
        // ratio within each round is the steadier figure.
        const perRound = ours.map((tps, i) => tps / theirs[i]!);
        lines.push(
          `${pad(workload.name, 12)} ${target}/PgBouncer TPS ratio: ${(median(ours) / median(theirs)).toFixed(2)} (median TPS over median TPS); per round ${perRound
            .map((r) => r.toFixed(2))
            .join(', ')}, median ${median(perRound).toFixed(2)}`,
        );
      }
    }
    for (const target of ['pgwarden', 'pgbouncer'] as const) {
      const m = memory[target];
      if (!m) continue;
      lines.push(
        `idle clients: ${pad(target, 9)} ${m.clients} clients, VmRSS ${(m.beforeKiB / 1024).toFixed(1)} → ${(m.afterKiB / 1024).toFixed(1)} MiB: ${(m.perClientBytes / 1024).toFixed(1)} KiB per idle client (opened in ${m.openSeconds.toFixed(1)} s)`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    stopping = true;
    if (proxy) await stopChild(proxy);
    if (nodeIoProxy) await stopChild(nodeIoProxy);
    if (workersProxy) await stopChild(workersProxy);
    if (pgbouncer) await stopChild(pgbouncer);
    await cleanupServers();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
