// Debian packages that `npm start` and `npm test` need, and how they are installed: as root with apt-get, otherwise
// by printing the exact command and stopping before anything runs. Plain Node, no dependencies: it runs before
// `npm ci`. `installPlan` is pure (test/unit/system-packages.test.ts); the rest probes and runs.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';

const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';

function executable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(command) {
  return (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && executable(`${dir}/${command}`));
}

/** What `pgwarden up` runs: PostgreSQL 15's server programs, etcd, and pgBackRest (backups and the WAL archive). */
export const CLUSTER_PACKAGES = [
  { package: 'postgresql-15', present: () => ['postgres', 'initdb', 'pg_ctl', 'pg_basebackup', 'pg_rewind'].every((p) => executable(`${PG_BIN_DIR}/${p}`)) },
  { package: 'etcd-server', present: () => executable('/usr/bin/etcd') },
  { package: 'pgbackrest', present: () => executable('/usr/bin/pgbackrest') },
];

/** What the test suite runs besides the cluster's programs, and why. */
export const TEST_PACKAGES = [
  ...CLUSTER_PACKAGES,
  // pgbench and psql: real clients through the proxy.
  { package: 'postgresql-client-15', present: () => onPath('pgbench') && onPath('psql') },
  { package: 'etcd-client', present: () => onPath('etcdctl') },
  // The Patroni-compatible health checks are tested with a real HAProxy.
  { package: 'haproxy', present: () => executable('/usr/sbin/haproxy') },
  // The admin console is scraped by Debian's real PgBouncer exporter.
  { package: 'prometheus-pgbouncer-exporter', present: () => executable('/usr/bin/prometheus-pgbouncer-exporter') },
  // psycopg2 through the proxy; Debian's python3, not a pyenv build on the PATH.
  { package: 'python3-psycopg2', present: () => spawnSync('/usr/bin/python3', ['-c', 'import psycopg2'], { stdio: 'ignore' }).status === 0 },
  // The chaos suite's hosts are network namespaces; partitions are nftables rules inside them.
  { package: 'iproute2', present: () => executable('/usr/sbin/ip') },
  { package: 'nftables', present: () => executable('/usr/sbin/nft') },
  // The proxy's native socket I/O is compiled by `npm run build`.
  { package: 'gcc', present: () => onPath('cc') },
  { package: 'libc6-dev', present: () => existsSync('/usr/include/stdio.h') },
  // Test certificates (the local CA of `pgwarden up` too).
  { package: 'openssl', present: () => onPath('openssl') },
];

/** The packages of `needs` that are not installed. */
export function missingPackages(needs) {
  return needs.filter((need) => !need.present()).map((need) => need.package);
}

/**
 * What to do about `missing` packages: nothing; install them (root on a system with apt-get: the commands to run);
 * or refuse with a message that gives the exact command (`what` names the command being run, e.g. "npm test").
 */
export function installPlan(missing, { isRoot, hasAptGet, what }) {
  if (missing.length === 0) return { action: 'none' };
  const list = missing.join(' ');
  const them = missing.length > 1 ? 'are' : 'is';
  if (!hasAptGet) {
    return { action: 'refuse', message: `${list} ${them} missing and this is not a Debian-like system (no apt-get): install them yourself, then run \`${what}\` again` };
  }
  if (!isRoot) {
    return { action: 'refuse', message: `${list} ${them} missing. Install with:\n  sudo sh -c 'apt-get update && apt-get install -y ${list}'\nthen run \`${what}\` again` };
  }
  return {
    action: 'install',
    commands: [
      ['apt-get', ['update', '-qq']],
      ['apt-get', ['install', '-y', '-qq', ...missing]],
    ],
  };
}

/**
 * Installs what `needs` lacks, or exits 1 with the exact command when it cannot (not root, no apt-get).
 * `say` prints one line of progress; `what` is the command to run again.
 */
export function ensurePackages(needs, { what, say }) {
  const missing = missingPackages(needs);
  const plan = installPlan(missing, { isRoot: typeof process.getuid === 'function' && process.getuid() === 0, hasAptGet: executable('/usr/bin/apt-get'), what });
  if (plan.action === 'none') return;
  if (plan.action === 'refuse') {
    say(`error: ${plan.message}`);
    process.exit(1);
  }
  say(`installing ${missing.join(' ')} (Debian packages)`);
  // Debian's postgresql package may create and start a cluster on port 5432; pgwarden uses its own ports.
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const [command, args] of plan.commands) {
    say(`$ ${[command, ...args].join(' ')}`);
    const result = spawnSync(command, args, { stdio: 'inherit', env });
    if (result.status !== 0) {
      say(`error: \`${[command, ...args].join(' ')}\` failed (exit ${result.status ?? result.signal}); see its output above`);
      process.exit(1);
    }
  }
  const still = missingPackages(needs);
  if (still.length > 0) {
    say(`error: installed, yet ${still.join(' ')} still look missing: check the output above`);
    process.exit(1);
  }
}
