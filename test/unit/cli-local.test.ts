/**
 * The checks `pgwarden up` makes before starting anything: installed programs, and a cluster directory the
 * postgres OS user can reach. Only the file system is touched (a temp dir), no process is started.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPgwardenError } from '../../src/errors.js';
import { checkDependencies, INSTALL_COMMAND } from '../../src/up/dependencies.js';
import { untraversableAncestor } from '../../src/up/local-cluster.js';

let base: string;
before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'pgwarden-cli-local-'));
  // mkdtemp makes it 0700, which would be the first closed directory of every case.
  await chmod(base, 0o755);
});
after(async () => {
  await chmod(base, 0o755).catch(() => undefined);
  await rm(base, { recursive: true, force: true });
});

describe('checkDependencies', () => {
  it('passes when PostgreSQL 15, etcd and pgBackRest are where Debian puts them', () => {
    assert.doesNotThrow(() => checkDependencies());
  });

  it('names what is missing and gives the exact apt-get command', () => {
    try {
      checkDependencies({ etcdBin: path.join(base, 'no-etcd'), pgBinDir: path.join(base, 'no-pg') });
      assert.fail('expected DEPENDENCY_MISSING');
    } catch (e) {
      assert.ok(isPgwardenError(e));
      assert.equal(e.code, 'DEPENDENCY_MISSING');
      assert.match(e.message, /PostgreSQL 15 \(.*no-pg\/postgres.*\) and etcd \(.*no-etcd\) are not installed/);
      assert.ok(e.message.includes(`\`${INSTALL_COMMAND}\``) || e.message.includes(`\`sudo ${INSTALL_COMMAND}\``), e.message);
      assert.equal(INSTALL_COMMAND, 'apt-get install -y postgresql-15 etcd-server pgbackrest');
    }
  });

  it('names a missing pgBackRest alone, with the same install command', () => {
    try {
      checkDependencies({ pgbackrestBin: path.join(base, 'no-pgbackrest') });
      assert.fail('expected DEPENDENCY_MISSING');
    } catch (e) {
      assert.ok(isPgwardenError(e));
      assert.equal(e.code, 'DEPENDENCY_MISSING');
      assert.match(e.message, /^pgBackRest \(.*no-pgbackrest\) is not installed: install it with `(sudo )?apt-get install -y postgresql-15 etcd-server pgbackrest`/);
    }
  });
});

describe('untraversableAncestor', () => {
  const postgresLike = { uid: 54321, gid: 54321 };

  it('finds the first directory others may not enter', async () => {
    const closed = path.join(base, 'closed');
    await mkdir(path.join(closed, 'inner'), { recursive: true });
    await chmod(closed, 0o700);
    assert.deepEqual(untraversableAncestor(path.join(closed, 'inner', 'cluster'), postgresLike), {
      dir: closed,
      mode: 0o700,
      owner: process.getuid!(),
    });
  });

  it('accepts a path whose directories all allow passing through (x for others)', async () => {
    const open = path.join(base, 'open');
    await mkdir(open, { recursive: true });
    await chmod(open, 0o711);
    assert.equal(untraversableAncestor(path.join(open, 'not-yet', 'cluster'), postgresLike), null);
  });

  it('uses the owner bits for the owner', async () => {
    const own = path.join(base, 'own');
    await mkdir(own, { recursive: true });
    await chmod(own, 0o700);
    const me = { uid: process.getuid!(), gid: 99999 };
    assert.equal(untraversableAncestor(path.join(own, 'x'), me), null);
  });
});
