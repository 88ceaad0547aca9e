/**
 * The one catalogue of error codes. Every error pgwarden raises on purpose carries one of these codes;
 * `test/unit/errors.test.ts` checks that each code is documented in docs/errors.md.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: 'a configuration file or setting failed validation; the message names the field and the fix',
  CONFIG_NOT_FOUND: 'a configuration file named on the command line does not exist',
  DCS_UNAVAILABLE: 'etcd did not answer in time; check the endpoints and that etcd is running',
  DCS_CONFLICT: 'an etcd transaction lost a race (someone else changed the key first); retry',
  PG_COMMAND_FAILED: 'a PostgreSQL program (initdb, pg_ctl, pg_basebackup, pg_rewind) exited with an error; its output is attached',
  PG_QUERY_FAILED: 'a query against the local PostgreSQL failed',
  PG_NOT_RUNNING: 'the local PostgreSQL is not running',
  CLUSTER_NOT_FOUND: 'no cluster could be found from --config, --dir or PGWARDEN_ETCD/PGWARDEN_CLUSTER',
  MEMBER_NOT_FOUND: 'the named member is not registered in the cluster',
  SWITCHOVER_REJECTED: 'a switchover or failover request was refused; the message says which precondition failed',
  API_UNAUTHORIZED: 'a mutating REST call came without valid credentials',
  API_BAD_REQUEST: 'a REST call carried a malformed body or parameter',
  UP_FAILED: 'the local cluster (`pgwarden up`) could not be started; the message says which step failed',
  DEPENDENCY_MISSING: 'a required program (postgres, etcd) is not installed; the message gives the install command',
  TIMEOUT: 'an operation did not finish within its time limit',
  REQUEST_REFUSED: "a member's agent refused a restart, reload or reinitialize request; the message gives its reason",
  NOT_CONFIRMED: 'a CLI command that changes the cluster was not confirmed (answered no, or no terminal and no --force)',
  BACKUP_FAILED: "a pgBackRest command (backup, check, expire, stanza-create, info) failed; pgBackRest's own message is attached",
  BACKUP_STANZA_MISMATCH: "the repository's stanza belongs to another cluster (another PostgreSQL system identifier or version); point this cluster at its own stanza or repository",
  BACKUP_STANZA_MISSING: 'the repository holds no stanza of that name yet: it is created once, by the leader, before the first backup',
  BACKUP_REPOSITORY_UNREACHABLE: 'the backup repository (its path, or its S3 endpoint and bucket) could not be reached or read; the message says what failed',
  BACKUP_CIPHER_MISMATCH: "the repository could not be decrypted: the cipher pass is wrong, or the repository's encryption differs from the configuration",
  BACKUP_IN_PROGRESS: 'another backup (or expire) of the same stanza is running; wait for it to finish',
  INTERNAL: 'a bug: please report it with the log',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Base of all deliberate errors: a stable code plus a message that says what happened and what to do. */
export class PgwardenError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'PgwardenError';
  }
}

export function isPgwardenError(e: unknown): e is PgwardenError {
  return e instanceof PgwardenError;
}

/** A message safe to show a user from any thrown value. */
export function describeError(e: unknown): string {
  if (e instanceof PgwardenError) return `${e.code}: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}
