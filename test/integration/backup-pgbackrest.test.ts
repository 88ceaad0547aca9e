/**
 * PgBackRest against real pgBackRest 2.45 and PostgreSQL 15, with a posix repository in a temporary directory:
 * archive_command through the server's parameters, stanza-create, check, a full backup of pgbench data, a diff
 * backup after changes, what info reads of both; a second cluster pointed at the same stanza is refused, and a
 * wrong cipher pass on an encrypted repository gives its own error. The steps build on each other.
 *
 * PGWARDEN_RECORD_PGBACKREST_INFO=<file> saves the raw `info --output=json` of the two backups there (how
 * test/fixtures/pgbackrest-info-2.45.json was recorded).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PgBackRest, PGBACKREST_BIN } from '../../src/backup/pgbackrest.js';
import type { BackupRepositorySettings } from '../../src/backup/pgbackrest-conf.js';
import type { BackupProgress } from '../../src/backup/pgbackrest-output.js';
import { isPgwardenError, type ErrorCode } from '../../src/errors.js';
import { runAsIdentity } from '../../src/postgres/run.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { cleanupServers, makePgTempDir, makeTestServer, psql, tcpConfig, testCredentials, waitFor } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);

/** A directory owned by the PostgreSQL OS user. */
async function ownedDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o700);
  const owner = runAsIdentity('postgres');
  if (owner) await chown(dir, owner.uid, owner.gid);
  return dir;
}

async function rejectsWith(work: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(work, (e: unknown) => {
    assert.ok(isPgwardenError(e), String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe('PgBackRest (real pgBackRest 2.45, PostgreSQL 15, posix repository)', { timeout: 300_000 }, () => {
  const credentials = testCredentials();
  const superuser = credentials.superuser;
  let base: string;
  let alpha: PostgresServer;
  let alphaBackRest: PgBackRest;
  let fullLabel: string;

  /** Settings for `stanza` in `repoPath` backing up the server on `port` with data in `<base>/<name>/data`. */
  const settingsFor = (name: string, port: number, repoPath: string, stanza: string, encrypted = false): BackupRepositorySettings => ({
    stanza,
    repository: { type: 'posix', path: repoPath },
    retention: { full: { count: 2 } },
    compressType: 'lz4',
    encrypted,
    processMax: 2,
    startFast: true,
    postgres: { dataDir: path.join(base, name, 'data'), port, socketDir: path.join(base, name, 'data.run'), user: superuser.username },
    workDir: path.join(base, 'pgbackrest', `${name}-${stanza}`),
  });

  const backRestFor = (settings: BackupRepositorySettings, cipherPass?: string): PgBackRest =>
    new PgBackRest({
      settings,
      secrets: cipherPass === undefined ? {} : { cipherPass },
      configFile: path.join(settings.workDir, 'pgbackrest.conf'),
      postgresPassword: superuser.password,
    });

  const pgbench = (args: string[]) =>
    run('/usr/bin/pgbench', [...args, '-h', '127.0.0.1', '-p', String(alpha.port), '-U', superuser.username, 'postgres'], {
      env: { ...process.env, PGPASSWORD: superuser.password },
    });

  before(async () => {
    base = await makePgTempDir('pgwarden-backup-');
    await ownedDir(path.join(base, 'repo'));
    const port = await freePort();
    alphaBackRest = backRestFor(settingsFor('alpha', port, path.join(base, 'repo'), 'main'));
    alpha = await makeTestServer('alpha', base, credentials, {
      port,
      parameters: { archive_mode: 'on', archive_command: alphaBackRest.archiveCommand() },
    });
    await alpha.bootstrap();
    await alphaBackRest.writeConfig();
  });

  after(async () => {
    await cleanupServers();
  });

  it('writes pgbackrest.conf readable by the PostgreSQL user only, and the archive/restore commands name it', async () => {
    const file = path.join(base, 'pgbackrest', 'alpha-main', 'pgbackrest.conf');
    const info = await stat(file);
    assert.equal(info.mode & 0o777, 0o600);
    const owner = runAsIdentity('postgres');
    if (owner) assert.equal(info.uid, owner.uid);
    assert.equal(alphaBackRest.archiveCommand(), `${PGBACKREST_BIN} --config=${file} --stanza=main archive-push %p`);
    assert.equal(alphaBackRest.restoreCommand(), `${PGBACKREST_BIN} --config=${file} --stanza=main archive-get %f "%p"`);
  });

  it('info before stanza-create says the stanza is missing', async () => {
    await rejectsWith(alphaBackRest.info(), 'BACKUP_STANZA_MISSING', /^pgbackrest info: the repository \S+\/repo holds no such stanza yet; create it \(stanza-create\) first\. pgBackRest said: missing stanza path$/);
  });

  it('stanza-create, then check passes (a WAL segment went through archive_command into the repository)', async () => {
    await alphaBackRest.stanzaCreate();
    await alphaBackRest.check();
    const info = await alphaBackRest.info();
    assert.equal(info.status.code, 2, info.status.message); // "no valid backups"
    assert.equal(info.backups.length, 0);
    assert.equal(info.window, null);
    assert.ok(info.archive !== null, 'check archived a segment');
    const [{ system_identifier: systemId }] = await psql<{ system_identifier: string }>(
      tcpConfig(alpha, superuser.username, superuser.password),
      'SELECT system_identifier::text FROM pg_control_system()',
    );
    assert.equal(info.database?.systemId, systemId);
    assert.equal(info.database?.version, '15');
  });

  it('a full backup of pgbench data reports progress, and info lists it with a sane size and WAL range', async () => {
    await pgbench(['-i', '-q', '-s', '3']);
    const events: BackupProgress[] = [];
    const result = await alphaBackRest.backup({ type: 'full', onProgress: (p) => events.push(p) });
    assert.ok(result.label !== null && /^\d{8}-\d{6}F$/.test(result.label), String(result.label));
    fullLabel = result.label;
    const kinds = events.map((e) => e.kind);
    assert.equal(kinds[0], 'started', kinds.join(','));
    assert.equal(kinds[kinds.length - 1], 'done', kinds.join(','));
    assert.ok(kinds.includes('stopped'));
    const percents = events.flatMap((e) => (e.kind === 'copying' ? [e.percent] : []));
    assert.ok(percents.length > 100, `${percents.length} file lines`);
    assert.deepEqual([...percents].sort((a, b) => a - b), percents, 'the share done only grows');
    assert.equal(percents[percents.length - 1], 100);

    const info = await alphaBackRest.info();
    assert.equal(info.status.code, 0, info.status.message);
    assert.equal(info.backups.length, 1);
    const full = info.backups[0];
    assert.equal(full.label, fullLabel);
    assert.equal(full.type, 'full');
    assert.equal(full.prior, null);
    assert.equal(full.timeline, 1);
    // pgbench scale 3 is ~45 MB of tables and indexes; lz4 makes the repository copy smaller.
    assert.ok(full.size > 40e6 && full.size < 200e6, `size ${full.size}`);
    assert.ok(full.repoSize > 0 && full.repoSize < full.size, `repo size ${full.repoSize}`);
    assert.ok(full.walStart <= full.walStop, `${full.walStart}..${full.walStop}`);
    assert.ok(full.stopTime >= full.startTime);
    assert.ok(Math.abs(full.stopTime.getTime() - Date.now()) < 120_000);
    const started = events.find((e) => e.kind === 'started');
    assert.equal(started?.kind === 'started' && started.walSegment, full.walStart);
    assert.ok(info.archive !== null && info.archive.max >= full.walStop, `archive max ${info.archive?.max}`);
    assert.deepEqual(info.window?.from, { time: full.stopTime, lsn: full.lsnStop, label: fullLabel, timeline: 1 });
    assert.equal(info.window?.to.walSegment, info.archive?.max);
  });

  it('a diff backup after changes depends on the full one and stores less; info lists both', async () => {
    await pgbench(['-n', '-t', '500', '-c', '2']);
    const result = await alphaBackRest.backup({ type: 'diff' });
    assert.ok(result.label !== null && result.label.startsWith(`${fullLabel}_`) && result.label.endsWith('D'), String(result.label));
    const info = await alphaBackRest.info();
    assert.deepEqual(info.backups.map((b) => b.type), ['full', 'diff']);
    const [full, diff] = info.backups;
    assert.equal(diff.prior, full.label);
    // pgBackRest 2.45 copies changed files whole (no block-level incrementals before 2.46): pgbench's updates touch
    // pgbench_accounts throughout, so the diff holds that table again but not the unchanged files.
    assert.ok(diff.repoSize < full.repoSize, `diff stored ${diff.repoSize} bytes, full ${full.repoSize}`);
    assert.ok(diff.size === full.size || Math.abs(diff.size - full.size) < full.size / 2, `database ${diff.size} bytes, was ${full.size}`);
    assert.ok(diff.walStart > full.walStop, `${full.walStop} then ${diff.walStart}`);
    assert.equal(info.window?.from.label, full.label, 'the window starts at the oldest backup');
    assert.ok(info.window !== null && info.window.to.walSegment >= diff.walStop);
    const record = process.env.PGWARDEN_RECORD_PGBACKREST_INFO;
    if (record) {
      const { stdout } = await run(PGBACKREST_BIN, [`--config=${path.join(base, 'pgbackrest', 'alpha-main', 'pgbackrest.conf')}`, '--stanza=main', '--output=json', 'info']);
      // As printed: a JSON round trip would round the 64-bit system identifier.
      await writeFile(record, stdout);
    }
  });

  it('another cluster pointed at the same repository and stanza is refused with a clear error', async () => {
    const port = await freePort();
    const intruder = backRestFor(settingsFor('beta', port, path.join(base, 'repo'), 'main'));
    // Set up like a member of its own cluster: archiving into what it takes for its stanza.
    const beta = await makeTestServer('beta', base, credentials, { port, parameters: { archive_mode: 'on', archive_command: intruder.archiveCommand() } });
    await beta.bootstrap();
    await intruder.writeConfig();
    // pgBackRest's own words are attached (2.45 says [028] for both commands: the info files are read first).
    await rejectsWith(intruder.stanzaCreate(), 'BACKUP_STANZA_MISMATCH', /^pgbackrest stanza-create refused: the stanza in the repository \S+\/repo belongs to another cluster.*pgBackRest said: \[28\] backup and archive info files exist but do not match the database/);
    await rejectsWith(intruder.check(), 'BACKUP_STANZA_MISMATCH', /^pgbackrest check refused: .*belongs to another cluster.*do not match the database/);
    // The repository still holds alpha's stanza, untouched.
    assert.equal((await alphaBackRest.info()).backups.length, 2);
  });

  it('a wrong cipher pass on an encrypted repository gives the clear error', async () => {
    const repo = await ownedDir(path.join(base, 'repo-encrypted'));
    const right = backRestFor(settingsFor('alpha', alpha.port, repo, 'sealed', true), 'the right pass phrase');
    await right.writeConfig();
    await right.stanzaCreate();
    assert.equal((await right.info()).cipher, 'aes-256-cbc');
    const wrongSettings = { ...settingsFor('alpha', alpha.port, repo, 'sealed', true), workDir: path.join(base, 'pgbackrest', 'alpha-sealed-wrong') };
    const wrong = backRestFor(wrongSettings, 'a wrong pass phrase');
    await wrong.writeConfig();
    // 2.45 decrypts with the wrong pass without noticing: the garbage then fails to parse (FormatError) or to
    // un-pad (CryptoError), depending on the file; either is this error, without the garbage or the pass.
    const wrongPass = /^pgbackrest (info|stanza-create) could not decrypt the repository \S+\/repo-encrypted: the cipher pass is wrong.*pgBackRest said: .*unable to load info file .*(FormatError|CryptoError)/;
    await rejectsWith(wrong.info(), 'BACKUP_CIPHER_MISMATCH', wrongPass);
    await rejectsWith(wrong.stanzaCreate(), 'BACKUP_CIPHER_MISMATCH', wrongPass);
    for (const attempt of [wrong.info(), wrong.check()]) {
      await assert.rejects(attempt, (e: Error) => !e.message.includes('pass phrase') && !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(e.message));
    }
  });

  it('a second backup while one runs is refused, and the first completes', async () => {
    const first = alphaBackRest.backup({ type: 'full' });
    // The first holds the stanza's backup lock from its start until its end.
    await waitFor('the first backup to hold its lock', async () => (await alphaBackRest.info()).backupRunning);
    await rejectsWith(alphaBackRest.backup({ type: 'incr' }), 'BACKUP_IN_PROGRESS', /^pgbackrest backup refused: another backup or expire of this stanza is running.*pgBackRest said: \[50\] unable to acquire lock/);
    const done = await first;
    assert.ok(done.label?.endsWith('F'));
  });

  it('a repository path that cannot be created is reported as unreachable', async () => {
    const notADir = path.join(base, 'a-file');
    await writeFile(notADir, 'not a directory\n');
    const lost = backRestFor({ ...settingsFor('alpha', alpha.port, path.join(notADir, 'repo'), 'main'), workDir: path.join(base, 'pgbackrest', 'alpha-lost') });
    await lost.writeConfig();
    await rejectsWith(lost.stanzaCreate(), 'BACKUP_REPOSITORY_UNREACHABLE', /^pgbackrest stanza-create could not reach the repository \S+\/a-file\/repo: .*pgBackRest said: /);
  });

  it('retention of two full backups: a third full one expires the first with its diff', async () => {
    assert.deepEqual((await alphaBackRest.info()).backups.map((b) => b.type), ['full', 'diff', 'full']);
    await alphaBackRest.backup({ type: 'full' });
    // pgBackRest 2.45 expires at the end of every backup; an expire of its own then finds nothing more to remove.
    await alphaBackRest.expire();
    const info = await alphaBackRest.info();
    assert.deepEqual(info.backups.map((b) => b.type), ['full', 'full']);
    assert.notEqual(info.backups[0].label, fullLabel, 'the oldest full backup and its diff are gone');
    assert.equal(info.window?.from.label, info.backups[0].label);
  });
});
