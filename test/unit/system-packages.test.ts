/**
 * scripts/system-packages.mjs, which `npm start` and `npm test` run before anything else: which packages are
 * missing, and what is done about them (install as root, else the exact command and a stop).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

interface Need {
  package: string;
  present: () => boolean;
}
type Plan = { action: 'none' } | { action: 'refuse'; message: string } | { action: 'install'; commands: [string, string[]][] };
interface SystemPackages {
  CLUSTER_PACKAGES: Need[];
  TEST_PACKAGES: Need[];
  missingPackages(needs: Need[]): string[];
  installPlan(missing: string[], options: { isRoot: boolean; hasAptGet: boolean; what: string }): Plan;
}

// Plain JavaScript that runs before `npm ci`: loaded from the source tree (dist/test/unit → scripts/).
const load = (): Promise<SystemPackages> => import(new URL('../../../scripts/system-packages.mjs', import.meta.url).href) as Promise<SystemPackages>;

describe('system packages for npm start and npm test', () => {
  it('the cluster needs PostgreSQL 15, etcd and pgBackRest', async () => {
    const { CLUSTER_PACKAGES } = await load();
    assert.deepEqual(CLUSTER_PACKAGES.map((n) => n.package), ['postgresql-15', 'etcd-server', 'pgbackrest']);
  });

  it('the test suite needs every package .ci/run used to install, and the cluster packages', async () => {
    const { TEST_PACKAGES, CLUSTER_PACKAGES } = await load();
    const names = TEST_PACKAGES.map((n) => n.package);
    for (const p of ['postgresql-15', 'postgresql-client-15', 'etcd-server', 'etcd-client', 'haproxy', 'prometheus-pgbouncer-exporter', 'python3-psycopg2', 'iproute2', 'nftables', 'gcc', 'libc6-dev', 'openssl']) {
      assert.ok(names.includes(p), `${p} is not installed by npm test`);
    }
    for (const n of CLUSTER_PACKAGES) assert.ok(names.includes(n.package));
  });

  it('missingPackages lists the needs whose probe fails, in order', async () => {
    const { missingPackages } = await load();
    const needs = [
      { package: 'a', present: () => true },
      { package: 'b', present: () => false },
      { package: 'c', present: () => false },
    ];
    assert.deepEqual(missingPackages(needs), ['b', 'c']);
    assert.deepEqual(missingPackages([]), []);
  });

  it('as root with apt-get: update, then install exactly the missing packages', async () => {
    const { installPlan } = await load();
    assert.deepEqual(installPlan([], { isRoot: true, hasAptGet: true, what: 'npm test' }), { action: 'none' });
    assert.deepEqual(installPlan(['haproxy', 'nftables'], { isRoot: true, hasAptGet: true, what: 'npm test' }), {
      action: 'install',
      commands: [
        ['apt-get', ['update', '-qq']],
        ['apt-get', ['install', '-y', '-qq', 'haproxy', 'nftables']],
      ],
    });
  });

  it('not root: the exact apt-get line and the command to run again, nothing installed', async () => {
    const { installPlan } = await load();
    const plan = installPlan(['python3-psycopg2', 'haproxy'], { isRoot: false, hasAptGet: true, what: 'npm test' });
    assert.equal(plan.action, 'refuse');
    assert.equal(
      (plan as { message: string }).message,
      "python3-psycopg2 haproxy are missing. Install with:\n  sudo sh -c 'apt-get update && apt-get install -y python3-psycopg2 haproxy'\nthen run `npm test` again",
    );
    const other = installPlan(['etcd-server'], { isRoot: true, hasAptGet: false, what: 'npm start' });
    assert.equal(other.action, 'refuse');
    assert.match((other as { message: string }).message, /^etcd-server is missing and this is not a Debian-like system \(no apt-get\).*`npm start` again$/);
  });

  it('on this machine after npm test set it up, nothing is missing', async () => {
    const { TEST_PACKAGES, missingPackages } = await load();
    assert.deepEqual(missingPackages(TEST_PACKAGES), []);
  });
});
