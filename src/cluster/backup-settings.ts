/**
 * The `backup` section of the dynamic settings: where pgBackRest keeps the backups and WAL archive (a posix
 * directory or an S3-compatible bucket), how many it keeps, how it compresses and encrypts them, and when each
 * type of backup is taken. Absent or null, backups are off. The option each field becomes in pgBackRest is named in
 * its comment.
 */
import { z } from 'zod';
import { cronProblem, DEFAULT_CRON_TIMEZONE, isTimezone } from './cron.js';
import { describeValue, expecting } from './schema-messages.js';

const absolutePath = (example: string) =>
  z.string(expecting(`an absolute path like ${example}`)).refine((path) => path.startsWith('/'), {
    error: (i) => `must be an absolute path (each member reads it, whatever its working directory), like ${example}; got ${describeValue(i.input)}`,
  });

const nonEmptyText = (example: string) =>
  z
    .string(expecting(example))
    .refine((text) => text.trim() !== '', { error: `must not be empty: set it to ${example}` });

/** repo1-type=posix, repo1-path: a directory every member reaches at the same path (local disk, NFS mount). */
const posixRepositorySchema = z.strictObject(
  {
    type: z.literal('posix'),
    path: absolutePath('/var/lib/pgwarden/backups'),
  },
  expecting('a mapping like {type: posix, path: /var/lib/pgwarden/backups}'),
);

/** Host, optionally with a port; a scheme is refused since pgBackRest always speaks HTTPS to S3. */
const S3_ENDPOINT = /^[A-Za-z0-9.-]+(:\d{1,5})?$/;
const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** repo1-type=s3 and the repo1-s3-* / repo1-storage-* options. */
const s3RepositorySchema = z.strictObject(
  {
    type: z.literal('s3'),
    /** repo1-s3-endpoint (and repo1-storage-port when a port is given). */
    endpoint: nonEmptyText('a host like "s3.eu-west-1.amazonaws.com" or "minio.internal:9000"').refine(
      (endpoint) => S3_ENDPOINT.test(endpoint),
      {
        error: (i) =>
          `expected a host, optionally with ":port", like "s3.eu-west-1.amazonaws.com" or "minio.internal:9000" ` +
          `(no "https://" and no path: pgBackRest always uses HTTPS); got ${describeValue(i.input)}`,
      },
    ),
    /** repo1-s3-bucket. */
    bucket: nonEmptyText('a bucket name like "pg-backups"').refine((bucket) => S3_BUCKET.test(bucket), {
      error: (i) =>
        `expected an S3 bucket name (3 to 63 lower-case letters, digits, "." and "-"), like "pg-backups"; got ${describeValue(i.input)}`,
    }),
    /** repo1-s3-region. */
    region: nonEmptyText('a region like "eu-west-1" (any value for most S3-compatible servers, like "us-east-1")'),
    /** repo1-s3-key, read from this file by each member (the key never sits in etcd). */
    key_file: absolutePath('/etc/pgwarden/s3.key'),
    /** repo1-s3-key-secret, read from this file by each member. */
    secret_file: absolutePath('/etc/pgwarden/s3.secret'),
    /** repo1-s3-uri-style: "path" (bucket in the URL path, what most S3-compatible servers want) or "host". */
    path_style: z.enum(['path', 'host'], expecting('"path" (endpoint/bucket) or "host" (bucket.endpoint)')).default('path'),
    /** repo1-storage-verify-tls. */
    verify_tls: z.boolean(expecting('true or false')).default(true),
    /** repo1-storage-ca-file: the CA that signed the server's certificate, when the system's CAs do not. */
    ca_file: absolutePath('/etc/pgwarden/s3-ca.crt').optional(),
  },
  expecting('a mapping like {type: s3, endpoint: s3.eu-west-1.amazonaws.com, bucket: pg-backups, region: eu-west-1, key_file: …, secret_file: …}'),
);

const REPOSITORY_TYPES = ['posix', 's3'] as const;

const repositorySchema = z.discriminatedUnion('type', [posixRepositorySchema, s3RepositorySchema], {
  error: (issue) => {
    const input = issue.input;
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return input === undefined
        ? 'is required: set it to {type: posix, path: /var/lib/pgwarden/backups} or {type: s3, endpoint: …, bucket: …, …}'
        : `expected a mapping like {type: posix, path: /var/lib/pgwarden/backups}, got ${describeValue(input)}`;
    }
    const type = (input as Record<string, unknown>).type;
    if (type === undefined) return `is required: set backup.repository.type to ${REPOSITORY_TYPES.map((t) => `"${t}"`).join(' or ')}`;
    return `unknown repository type ${describeValue(type)}: set backup.repository.type to ${REPOSITORY_TYPES.map((t) => `"${t}"`).join(' or ')}`;
  },
});

const count = (what: string, example: number) =>
  z
    .number(expecting(`a number of ${what} like ${example}`))
    .int({ error: (i) => `must be a whole number of ${what} like ${example}; got ${describeValue(i.input)}` })
    .min(1, { error: (i) => `must be at least 1 (pgBackRest keeps at least one); got ${describeValue(i.input)}` })
    .max(9_999_999, { error: (i) => `must be at most 9999999; got ${describeValue(i.input)}` });

/**
 * Which backups pgBackRest keeps (expire): a number of full backups (repo1-retention-full-type=count) or the full
 * backups needed to recover to any time in the last N days (repo1-retention-full-type=time), the two being one
 * pgBackRest option; plus, with either, a number of differential backups (repo1-retention-diff). WAL is kept as
 * long as a backup that needs it.
 */
const retentionSchema = z
  .strictObject(
    {
      /** repo1-retention-full with type count. */
      full: count('full backups', 2).optional(),
      /** repo1-retention-full with type time. */
      window_days: count('days', 14).optional(),
      /** repo1-retention-diff. */
      diff: count('differential backups', 7).optional(),
    },
    expecting('a mapping like {full: 2} or {window_days: 14}'),
  )
  .superRefine((retention, ctx) => {
    if (retention.full !== undefined && retention.window_days !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['window_days'],
        message:
          'cannot be set together with full: pgBackRest keeps full backups either by count or by age, so set ' +
          'backup.retention.full (a count) or backup.retention.window_days (a recovery window), and the other to null',
      });
    } else if (retention.full === undefined && retention.window_days === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['full'],
        message:
          'is required unless window_days is set: set backup.retention.full to the number of full backups to keep, ' +
          'like 2, or backup.retention.window_days to the days you must be able to recover, like 14',
      });
    }
  });

/** pgBackRest's compress-type values that Debian's build supports (it links bzip2, zlib, lz4 and zstd). */
export const BACKUP_COMPRESSIONS = ['none', 'gz', 'bz2', 'lz4', 'zst'] as const;

/** A cron expression, checked in UTC: whether one is valid does not depend on the timezone it is read in. */
const cron = (example: string, what: string) =>
  z.string(expecting(`a cron expression like '${example}' (${what})`)).superRefine((expression, ctx) => {
    const problem = cronProblem(expression);
    if (problem === null) return;
    ctx.addIssue({
      code: 'custom',
      message:
        `expected a cron expression like '${example}' (${what}; five fields: minute hour day-of-month month ` +
        `day-of-week); got ${describeValue(expression)}: ${problem}`,
    });
  });

/**
 * When each type of backup is taken, as cron expressions read in `timezone` (UTC by default); a type without one
 * is only taken on request. `verify` is the restore drill.
 */
const scheduleSchema = z.strictObject(
  {
    full: cron('0 3 * * 0', 'Sundays at 03:00').optional(),
    diff: cron('0 3 * * 1-6', 'Monday to Saturday at 03:00').optional(),
    incr: cron('0 */4 * * *', 'every 4 hours').optional(),
    verify: cron('0 5 * * 0', 'Sundays at 05:00').optional(),
    timezone: z
      .string(expecting('a timezone like "UTC" or "Europe/Paris"'))
      .refine(isTimezone, {
        error: (i) => `expected a timezone like "UTC" or "Europe/Paris" (an IANA name); got ${describeValue(i.input)}`,
      })
      .default(DEFAULT_CRON_TIMEZONE),
  },
  expecting("a mapping like {full: '0 3 * * 0', diff: '0 3 * * 1-6'}"),
);

/** pgBackRest stanza names: letters, digits, "-", "_" and "." (it names a directory in the repository). */
const STANZA = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The `backup` section (what `backup` holds when it is not null). */
export const backupSettingsSchema = z.strictObject(
  {
    repository: repositorySchema,
    retention: retentionSchema.default({ full: 2 }),
    /** compress-type. */
    compression: z
      .enum(BACKUP_COMPRESSIONS, expecting(`one of ${BACKUP_COMPRESSIONS.map((c) => `"${c}"`).join(', ')}`))
      .default('gz'),
    /**
     * repo1-cipher-pass, read from this file by each member; when set the repository is encrypted
     * (repo1-cipher-type=aes-256-cbc). It cannot be changed once the stanza exists.
     */
    cipher_pass_file: absolutePath('/etc/pgwarden/backup-cipher.pass').optional(),
    schedule: scheduleSchema.prefault({}),
    /** The pgBackRest stanza; the cluster's name when absent. */
    stanza: z
      .string(expecting('a stanza name like "main"'))
      .regex(STANZA, {
        error: (i) => `expected letters, digits, "-", "_" and "." only (it names a directory in the repository), like "main"; got ${describeValue(i.input)}`,
      })
      .optional(),
  },
  expecting('a mapping like {repository: {type: posix, path: /var/lib/pgwarden/backups}} (or null: backups off)'),
);

export type BackupSettings = z.output<typeof backupSettingsSchema>;
export type BackupRepository = BackupSettings['repository'];
export type BackupRetention = BackupSettings['retention'];
export type BackupSchedule = BackupSettings['schedule'];

/** The stanza the backups of cluster `clusterName` live in. */
export function stanzaOf(settings: BackupSettings, clusterName: string): string {
  return settings.stanza ?? clusterName;
}
