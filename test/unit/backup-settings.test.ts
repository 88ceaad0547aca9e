/**
 * The `backup` section of the dynamic settings: its cron helper, its schema and messages, `edit-config --set
 * backup.*`, PATCH /config, bootstrap.dcs and etcd's reading of it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cronProblem, isTimezone, nextRun } from '../../src/cluster/cron.js';
import { stanzaOf, type BackupSettings } from '../../src/cluster/backup-settings.js';
import { DEFAULT_DYNAMIC_CONFIG, partialDynamicConfigSchema, type DynamicConfig } from '../../src/cluster/dynamic-config.js';
import {
  applyConfigPatch,
  applyConfigSetting,
  applyConfigSettings,
  DYNAMIC_CONFIG_SETTING_KEYS,
  splitConfigSetting,
  validateDynamicConfig,
} from '../../src/config/schema.js';
import { decodeConfig, encodeConfig } from '../../src/dcs/codec.js';
import { PgwardenError } from '../../src/errors.js';
import { expectPgwardenError } from '../helpers/errors.js';

/** Runs `fn`, expects CONFIG_INVALID, and checks every pattern against the message. */
function invalid(fn: () => unknown, ...patterns: RegExp[]): string {
  return expectPgwardenError('CONFIG_INVALID', fn, ...patterns);
}

const defaults = (): DynamicConfig => structuredClone(DEFAULT_DYNAMIC_CONFIG);
const utc = (text: string): number => Date.parse(text);
const posix = { type: 'posix', path: '/var/lib/pgwarden/backups' } as const;
const s3 = {
  type: 's3',
  endpoint: 'minio.internal:9000',
  bucket: 'pg-backups',
  region: 'us-east-1',
  key_file: '/etc/pgwarden/s3.key',
  secret_file: '/etc/pgwarden/s3.secret',
} as const;
const backupOf = (backup: unknown): BackupSettings | null => validateDynamicConfig({ backup }).backup;
const settings = (...pairs: string[]) => pairs.map(splitConfigSetting);

describe('nextRun', () => {
  it('reads the expression in UTC by default', () => {
    // 2026-12-07 is a Monday.
    assert.equal(nextRun('0 3 * * 0', utc('2026-12-07T06:00:00Z')), utc('2026-12-13T03:00:00Z'));
    assert.equal(nextRun('0 3 * * 1-6', utc('2026-12-07T06:00:00Z')), utc('2026-12-08T03:00:00Z'));
    assert.equal(nextRun('*/15 * * * *', utc('2026-12-07T06:01:00Z')), utc('2026-12-07T06:15:00Z'));
    assert.equal(nextRun('@daily', utc('2026-12-07T06:00:00Z')), utc('2026-12-08T00:00:00Z'));
  });

  it('is strictly after the given time', () => {
    assert.equal(nextRun('0 3 * * *', utc('2026-12-07T03:00:00Z')), utc('2026-12-08T03:00:00Z'));
    assert.equal(nextRun('0 3 * * *', utc('2026-12-07T03:00:00.500Z')), utc('2026-12-08T03:00:00Z'));
    assert.equal(nextRun('0 3 * * *', utc('2026-12-07T02:59:59.999Z')), utc('2026-12-07T03:00:00Z'));
  });

  it('reads the expression in the timezone given', () => {
    // Paris is UTC+1 in December and UTC+2 in July.
    assert.equal(nextRun('0 3 * * *', utc('2026-12-07T06:00:00Z'), 'Europe/Paris'), utc('2026-12-08T02:00:00Z'));
    assert.equal(nextRun('0 3 * * *', utc('2026-07-07T06:00:00Z'), 'Europe/Paris'), utc('2026-07-08T01:00:00Z'));
    assert.equal(nextRun('0 3 * * *', utc('2026-12-07T06:00:00Z'), 'UTC'), utc('2026-12-08T03:00:00Z'));
  });

  it('is null for a date that never comes, and throws on an expression the settings refuse', () => {
    assert.equal(nextRun('0 3 30 2 *', utc('2026-12-07T06:00:00Z')), null);
    assert.throws(() => nextRun('61 * * * *', 0));
  });
});

describe('cronProblem and isTimezone', () => {
  it('accepts five-field expressions and nicknames', () => {
    for (const ok of ['0 3 * * 0', '0 3 * * 1-6', '0 */4 * * *', '30 2 1 * *', '0 3 * * MON', '@weekly']) assert.equal(cronProblem(ok), null, ok);
  });

  it('says why an expression is refused', () => {
    assert.match(cronProblem('61 * * * *')!, /minute: 61/);
    assert.match(cronProblem('0 0 3 * * 0')!, /exactly 5 parts/);
    assert.match(cronProblem('weekly')!, /space separated parts/);
    assert.match(cronProblem('')!, /space separated parts/);
    assert.equal(cronProblem('0 3 30 2 *'), 'it never fires (no date matches it)');
  });

  it('knows IANA timezones', () => {
    assert.equal(isTimezone('UTC'), true);
    assert.equal(isTimezone('Europe/Paris'), true);
    assert.equal(isTimezone('Mars/Olympus'), false);
    assert.equal(isTimezone(''), false);
  });
});

describe('the backup settings', () => {
  it('are off by default: absent and null both mean no backups', () => {
    assert.equal(DEFAULT_DYNAMIC_CONFIG.backup, null);
    assert.equal(validateDynamicConfig({}).backup, null);
    assert.equal(backupOf(null), null);
  });

  it('a posix repository alone gets every default', () => {
    assert.deepEqual(backupOf({ repository: posix }), {
      repository: posix,
      retention: { full: 2 },
      compression: 'gz',
      schedule: { timezone: 'UTC' },
    });
  });

  it('an S3 repository gets path style and TLS verification by default, and keeps what is given', () => {
    assert.deepEqual(backupOf({ repository: s3 })!.repository, { ...s3, path_style: 'path', verify_tls: true });
    const full = { ...s3, endpoint: 's3.eu-west-1.amazonaws.com', region: 'eu-west-1', path_style: 'host', verify_tls: false, ca_file: '/etc/pgwarden/ca.crt' };
    assert.deepEqual(backupOf({ repository: full })!.repository, full);
  });

  it('keeps retention, compression, encryption, schedules and stanza', () => {
    const backup = {
      repository: posix,
      retention: { window_days: 14, diff: 6 },
      compression: 'zst',
      cipher_pass_file: '/etc/pgwarden/backup-cipher.pass',
      schedule: { full: '0 3 * * 0', diff: '0 3 * * 1-6', incr: '0 */4 * * *', verify: '0 5 * * 0', timezone: 'Europe/Paris' },
      stanza: 'orders',
    };
    assert.deepEqual(backupOf(backup), backup);
    for (const compression of ['none', 'gz', 'bz2', 'lz4', 'zst']) assert.equal(backupOf({ repository: posix, compression })!.compression, compression);
  });

  it('the stanza is the cluster name unless set', () => {
    assert.equal(stanzaOf(backupOf({ repository: posix })!, 'main'), 'main');
    assert.equal(stanzaOf(backupOf({ repository: posix, stanza: 'orders' })!, 'main'), 'orders');
  });

  it('a bad cron expression names the field, an example and why', () => {
    invalid(
      () => backupOf({ repository: posix, schedule: { full: 'weekly' } }),
      /backup\.schedule\.full: expected a cron expression like '0 3 \* \* 0' \(Sundays at 03:00; five fields: minute hour day-of-month month day-of-week\); got "weekly": invalid configuration format/,
    );
    invalid(() => backupOf({ repository: posix, schedule: { diff: '61 * * * *' } }), /backup\.schedule\.diff: expected a cron expression like '0 3 \* \* 1-6'.*got "61 \* \* \* \*": Invalid value for minute: 61/);
    invalid(() => backupOf({ repository: posix, schedule: { incr: '0 3 30 2 *' } }), /backup\.schedule\.incr: .*got "0 3 30 2 \*": it never fires/);
    invalid(() => backupOf({ repository: posix, schedule: { verify: 5 } }), /backup\.schedule\.verify: expected a cron expression like '0 5 \* \* 0' \(Sundays at 05:00\), got 5/);
    invalid(() => backupOf({ repository: posix, schedule: { full: '0 0 3 * * 0' } }), /backup\.schedule\.full: .*exactly 5 parts/);
  });

  it('every bad schedule is reported at once, with unknown types and timezones', () => {
    const message = invalid(
      () => backupOf({ repository: posix, schedule: { full: 'x', diff: 'y', hourly: '0 * * * *' } }),
      /3 problems/,
      /backup\.schedule\.full: expected a cron expression/,
      /backup\.schedule\.diff: expected a cron expression/,
      /backup\.schedule\.hourly: unknown key; valid keys here: full, diff, incr, verify, timezone/,
    );
    assert.doesNotMatch(message, /timezone:/);
    invalid(() => backupOf({ repository: posix, schedule: { timezone: 'Mars/Olympus' } }), /backup\.schedule\.timezone: expected a timezone like "UTC" or "Europe\/Paris" \(an IANA name\); got "Mars\/Olympus"/);
  });

  it('the repository is required, of a known type', () => {
    invalid(() => backupOf({}), /backup\.repository: is required: set it to \{type: posix, path: \/var\/lib\/pgwarden\/backups\} or \{type: s3/);
    invalid(() => backupOf({ repository: { type: 'ftp', path: '/x' } }), /backup\.repository\.type: unknown repository type "ftp": set backup\.repository\.type to "posix" or "s3"/);
    invalid(() => backupOf({ repository: { path: '/x' } }), /backup\.repository\.type: is required: set backup\.repository\.type to "posix" or "s3"/);
    invalid(() => backupOf({ repository: '/x' }), /backup\.repository: expected a mapping like \{type: posix, path: \/var\/lib\/pgwarden\/backups\}, got "\/x"/);
    invalid(() => backupOf('on'), /backup: expected a mapping like \{repository: \{type: posix, path: \/var\/lib\/pgwarden\/backups\}\} \(or null: backups off\), got "on"/);
    invalid(() => backupOf({ repository: { ...posix, bucket: 'b' } }), /backup\.repository\.bucket: unknown key/);
  });

  it('paths must be absolute', () => {
    invalid(() => backupOf({ repository: { type: 'posix', path: 'backups' } }), /backup\.repository\.path: must be an absolute path \(each member reads it, whatever its working directory\), like \/var\/lib\/pgwarden\/backups; got "backups"/);
    invalid(() => backupOf({ repository: posix, cipher_pass_file: 'cipher.pass' }), /backup\.cipher_pass_file: must be an absolute path .*got "cipher\.pass"/);
    invalid(
      () => backupOf({ repository: { ...s3, key_file: 's3.key', secret_file: './s3.secret', ca_file: 'ca.crt' } }),
      /backup\.repository\.key_file: must be an absolute path .*like \/etc\/pgwarden\/s3\.key; got "s3\.key"/,
      /backup\.repository\.secret_file: must be an absolute path/,
      /backup\.repository\.ca_file: must be an absolute path/,
    );
  });

  it('the S3 fields say what they take', () => {
    invalid(() => backupOf({ repository: { ...s3, endpoint: 'https://minio.internal:9000' } }), /backup\.repository\.endpoint: expected a host, optionally with ":port".*\(no "https:\/\/" and no path: pgBackRest always uses HTTPS\); got "https:\/\/minio\.internal:9000"/);
    invalid(() => backupOf({ repository: { ...s3, bucket: 'PG_Backups' } }), /backup\.repository\.bucket: expected an S3 bucket name .*got "PG_Backups"/);
    invalid(() => backupOf({ repository: { ...s3, region: ' ' } }), /backup\.repository\.region: must not be empty: set it to a region like "eu-west-1"/);
    invalid(() => backupOf({ repository: { ...s3, path_style: 'virtual' } }), /backup\.repository\.path_style: expected "path" \(endpoint\/bucket\) or "host" \(bucket\.endpoint\), got "virtual"/);
    invalid(() => backupOf({ repository: { ...s3, verify_tls: 'no' } }), /backup\.repository\.verify_tls: expected true or false, got "no"/);
    invalid(() => backupOf({ repository: { type: 's3', endpoint: 'minio:9000' } }), /backup\.repository\.bucket: is required/, /backup\.repository\.key_file: is required/);
  });

  it('retention is a count of full backups or a recovery window, never both', () => {
    invalid(
      () => backupOf({ repository: posix, retention: { full: 2, window_days: 14 } }),
      /backup\.retention\.window_days: cannot be set together with full: pgBackRest keeps full backups either by count or by age, so set backup\.retention\.full \(a count\) or backup\.retention\.window_days \(a recovery window\), and the other to null/,
    );
    invalid(() => backupOf({ repository: posix, retention: { diff: 3 } }), /backup\.retention\.full: is required unless window_days is set: set backup\.retention\.full to the number of full backups to keep, like 2, or backup\.retention\.window_days/);
    invalid(() => backupOf({ repository: posix, retention: { full: 0 } }), /backup\.retention\.full: must be at least 1 \(pgBackRest keeps at least one\); got 0/);
    invalid(() => backupOf({ repository: posix, retention: { window_days: 1.5 } }), /backup\.retention\.window_days: must be a whole number of days like 14; got 1\.5/);
    invalid(() => backupOf({ repository: posix, retention: { full: 2, diff: '3' } }), /backup\.retention\.diff: expected a number of differential backups like 7, got "3"/);
    assert.deepEqual(backupOf({ repository: posix, retention: { full: 4, diff: 3 } })!.retention, { full: 4, diff: 3 });
  });

  it('compression is one pgBackRest 2.45 supports, and the stanza a name it takes', () => {
    invalid(() => backupOf({ repository: posix, compression: 'xz' }), /backup\.compression: expected one of "none", "gz", "bz2", "lz4", "zst", got "xz"/);
    invalid(() => backupOf({ repository: posix, stanza: 'my stanza' }), /backup\.stanza: expected letters, digits, "-", "_" and "\." only .*got "my stanza"/);
  });

  it('bootstrap.dcs may set the section, without filling its defaults', () => {
    assert.deepEqual(partialDynamicConfigSchema.parse({}), {});
    assert.deepEqual(partialDynamicConfigSchema.parse({ backup: null }), { backup: null });
    assert.equal(partialDynamicConfigSchema.parse({ backup: { repository: posix } }).backup?.compression, 'gz');
    assert.equal(partialDynamicConfigSchema.safeParse({ backup: { repository: { type: 'posix', path: 'x' } } }).success, false);
  });
});

describe('edit-config --set backup.*', () => {
  const withPosix = (): DynamicConfig => applyConfigSettings(defaults(), settings('backup.repository.type=posix', 'backup.repository.path=/var/lib/pgwarden/backups'));

  it('turns backups on with the repository given in one edit, typed values included', () => {
    const config = applyConfigSettings(
      defaults(),
      settings('backup.repository.type=posix', 'backup.repository.path=/var/lib/pgwarden/backups', 'backup.schedule.full=0 3 * * 0', 'backup.retention.full=3'),
    );
    assert.deepEqual(config.backup, { repository: posix, retention: { full: 3 }, compression: 'gz', schedule: { full: '0 3 * * 0', timezone: 'UTC' } });
    assert.equal(config.ttl, DEFAULT_DYNAMIC_CONFIG.ttl);
  });

  it('sets one key over an existing section, quotes around the value removed', () => {
    const config = applyConfigSetting(withPosix(), 'backup.schedule.full', "'0 3 * * 0'");
    assert.equal(config.backup?.schedule.full, '0 3 * * 0');
    assert.equal(applyConfigSetting(config, 'backup.compression', 'lz4').backup?.compression, 'lz4');
    assert.equal(applyConfigSetting(config, 'backup.stanza', 'orders').backup?.stanza, 'orders');
    assert.equal(applyConfigSetting(config, 'backup.schedule.timezone', 'Europe/Paris').backup?.schedule.timezone, 'Europe/Paris');
  });

  it('null removes a key (back to its default) and backup=null turns backups off', () => {
    const config = applyConfigSettings(withPosix(), settings('backup.schedule.full=0 3 * * 0', 'backup.compression=zst'));
    const reset = applyConfigSettings(config, settings('backup.schedule.full=null', 'backup.compression=null'));
    assert.deepEqual(reset.backup?.schedule, { timezone: 'UTC' });
    assert.equal(reset.backup?.compression, 'gz');
    assert.equal(applyConfigSetting(config, 'backup', 'null').backup, null);
    assert.equal(applyConfigSetting(defaults(), 'backup.stanza', 'null').backup, null);
  });

  it('switches retention from a count to a window when both are given', () => {
    invalid(() => applyConfigSetting(withPosix(), 'backup.retention.window_days', '14'), /setting backup\.retention\.window_days=14 is invalid: backup\.retention\.window_days: cannot be set together with full/);
    const config = applyConfigSettings(withPosix(), settings('backup.retention.full=null', 'backup.retention.window_days=14'));
    assert.deepEqual(config.backup?.retention, { window_days: 14 });
  });

  it('a new repository type starts a new repository', () => {
    const config = applyConfigSettings(
      withPosix(),
      settings(
        'backup.repository.type=s3',
        'backup.repository.endpoint=minio.internal:9000',
        'backup.repository.bucket=pg-backups',
        'backup.repository.region=us-east-1',
        'backup.repository.key_file=/etc/pgwarden/s3.key',
        'backup.repository.secret_file=/etc/pgwarden/s3.secret',
        'backup.repository.verify_tls=false',
      ),
    );
    assert.deepEqual(config.backup?.repository, { ...s3, path_style: 'path', verify_tls: false });
    // The same type again keeps the rest.
    assert.equal(applyConfigSetting(config, 'backup.repository.type', 's3').backup?.repository.type, 's3');
  });

  it('validates the result with the schema messages', () => {
    invalid(() => applyConfigSetting(withPosix(), 'backup.schedule.full', 'weekly'), /setting backup\.schedule\.full=weekly is invalid: backup\.schedule\.full: expected a cron expression like '0 3 \* \* 0'/);
    invalid(() => applyConfigSetting(defaults(), 'backup.schedule.full', '0 3 * * 0'), /backup\.repository: is required/);
    invalid(() => applyConfigSetting(withPosix(), 'backup.repository.type', 'ftp'), /unknown repository type "ftp"/);
    invalid(() => applyConfigSetting(withPosix(), 'backup.repository.path', 'relative'), /backup\.repository\.path: must be an absolute path/);
    invalid(
      () => applyConfigSettings(defaults(), settings('ttl=1', 'backup.repository.type=posix')),
      /settings ttl=1, backup\.repository\.type=posix is invalid \(2 problems\)/,
      /ttl: must be at least 2 seconds/,
      /backup\.repository\.path: is required: set it to an absolute path like \/var\/lib\/pgwarden\/backups/,
    );
  });

  it('refuses values of the wrong type and unknown keys with the closest one', () => {
    invalid(() => applyConfigSetting(withPosix(), 'backup.retention.full', 'two'), /setting backup\.retention\.full: expected a number like 2, got "two"/);
    invalid(() => applyConfigSetting(withPosix(), 'backup.repository.verify_tls', 'maybe'), /setting backup\.repository\.verify_tls: expected true or false, got "maybe"/);
    invalid(() => applyConfigSetting(withPosix(), 'backup.schedule.ful', '0 3 * * 0'), /unknown setting "backup\.schedule\.ful": did you mean "backup\.schedule\.full"\?/);
    invalid(() => applyConfigSetting(withPosix(), 'bakup.stanza', 'x'), /did you mean "backup\.stanza"\?/);
    invalid(() => applyConfigSetting(withPosix(), 'backup.zzzzzzzzzzzzzzzz', 'x'), /valid backup keys: backup\.repository\.type, backup\.repository\.path/);
    invalid(() => applyConfigSetting(withPosix(), 'backup', '{}'), /setting backup: only null \(backups off\) is set as a whole; set its keys one by one/);
  });

  it('lists the backup keys among the valid ones', () => {
    for (const key of ['backup.repository.type', 'backup.schedule.full', 'backup.retention.window_days', 'backup.cipher_pass_file']) {
      assert.ok(DYNAMIC_CONFIG_SETTING_KEYS.includes(key), key);
    }
  });
});

describe('PATCH /config and the backup section', () => {
  it('merges into the section and validates the result', () => {
    const on = applyConfigPatch(defaults(), { backup: { repository: posix, schedule: { full: '0 3 * * 0' } } });
    assert.equal(on.backup?.schedule.full, '0 3 * * 0');
    const more = applyConfigPatch(on, { backup: { schedule: { diff: '0 3 * * 1-6' }, compression: 'lz4' } });
    assert.deepEqual(more.backup?.schedule, { full: '0 3 * * 0', diff: '0 3 * * 1-6', timezone: 'UTC' });
    assert.equal(more.backup?.compression, 'lz4');
    assert.equal(applyConfigPatch(more, { backup: null }).backup, null);
  });

  it('refuses what the schema refuses, naming the field', () => {
    const on = applyConfigPatch(defaults(), { backup: { repository: posix } });
    invalid(() => applyConfigPatch(on, { backup: { schedule: { full: '0 25 * * *' } } }, 'PATCH /config'), /PATCH \/config is invalid: backup\.schedule\.full: expected a cron expression like '0 3 \* \* 0'.*Invalid value for hour: 25/);
    invalid(() => applyConfigPatch(on, { backup: { retention: { window_days: 7 } } }), /backup\.retention\.window_days: cannot be set together with full/);
    assert.deepEqual(applyConfigPatch(on, { backup: { retention: { full: null, window_days: 7 } } }).backup?.retention, { window_days: 7 });
  });
});

describe('etcd reading of the backup section', () => {
  it('a valid section reads as itself', () => {
    const config = { ...defaults(), backup: backupOf({ repository: s3, schedule: { full: '0 3 * * 0' }, stanza: 'orders' }) };
    assert.deepEqual(decodeConfig(encodeConfig(config)), config);
  });

  it('a bad section reads as backups off, the other fields kept, without throwing', () => {
    const bad: unknown[] = [
      'yes',
      42,
      [],
      {},
      { repository: { type: 'ftp' } },
      { repository: { type: 'posix', path: 'relative' } },
      { repository: posix, schedule: { full: 'weekly' } },
      { repository: posix, schedule: { full: '0 3 * * 0', timezone: 'Mars/Olympus' } },
      { repository: posix, retention: { full: 2, window_days: 14 } },
      { repository: posix, compression: 'xz' },
      { repository: posix, surprise: true },
    ];
    for (const backup of bad) {
      const config = decodeConfig(JSON.stringify({ ttl: 9, backup }));
      assert.equal(config.backup, null, JSON.stringify(backup));
      assert.equal(config.ttl, 9);
    }
  });
});
