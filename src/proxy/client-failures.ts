/**
 * Failed logins and protocol violations of clients: one log line each (user, database, client address, reason,
 * SQLSTATE — never a password or secret), rate-limited per kind so that a flood cannot fill the disk, and
 * counted for /metrics (pgwarden_proxy_failed_logins_total{reason}, pgwarden_proxy_protocol_errors_total).
 *
 * ProxyClient.fail() reports every client it closes (ClientHost.clientFailed); what is neither a failed login
 * nor a protocol violation (idle timeouts, query_wait_timeout, a lost server in session mode, shutdown) is
 * left to the paths that already log it.
 */
import type { Logger } from 'pino';
import { type LimiterClock, RateLimitedLog, systemClock } from './log-limiter.js';
import { type PgProtocolError, SQLSTATE } from './protocol/errors.js';

/** Why a login failed: the `reason` label of pgwarden_proxy_failed_logins_total and of the log line. */
export type FailedLoginReason =
  | 'wrong_password'
  | 'unknown_user'
  | 'unknown_database'
  | 'not_allowed'
  | 'unsupported'
  | 'too_many_clients'
  | 'server_unavailable'
  | 'other';

export const FAILED_LOGIN_REASONS: readonly FailedLoginReason[] = ['wrong_password', 'unknown_user', 'unknown_database', 'not_allowed', 'unsupported', 'too_many_clients', 'server_unavailable', 'other'];

/** What ClientFailures needs to know of the client being closed. */
export interface FailedClient {
  readonly user: string;
  readonly database: string;
  /** Logged in (the error came after AuthenticationOk and ReadyForQuery). */
  readonly loggedIn: boolean;
  /** The client was asked for a password and a secret to check it against was found (false: no such user). */
  readonly userKnown: boolean;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
}

/** Lines per second and kind, per thread (each worker thread has its own limit). */
export const LOG_LINES_PER_SECOND = 10;

export class ClientFailures {
  readonly failedLogins = new Map<FailedLoginReason, number>(FAILED_LOGIN_REASONS.map((r) => [r, 0]));
  protocolErrors = 0;
  private readonly loginLog: RateLimitedLog;
  private readonly protocolLog: RateLimitedLog;

  constructor(
    private readonly logger: Logger | undefined,
    options: { perSecond?: number; clock?: LimiterClock } = {},
  ) {
    const perSecond = options.perSecond ?? LOG_LINES_PER_SECOND;
    const clock = options.clock ?? systemClock;
    this.loginLog = new RateLimitedLog(perSecond, (n) => this.logger?.warn({ suppressed: n, kind: 'failed_login' }, `suppressed ${n} similar messages (failed logins)`), clock);
    this.protocolLog = new RateLimitedLog(perSecond, (n) => this.logger?.warn({ suppressed: n, kind: 'protocol_error' }, `suppressed ${n} similar messages (protocol violations)`), clock);
  }

  /**
   * A client is closed for `error`. `fromInput`: the error came from reading what the client sent (a malformed or
   * out-of-order message), not from a timeout, a limit or a server. Returns what it was counted as.
   */
  record(client: FailedClient, error: PgProtocolError, fromInput: boolean): 'failed_login' | 'protocol_error' | null {
    if (fromInput && error.sqlstate === SQLSTATE.PROTOCOL_VIOLATION && !isLimit(error)) {
      this.protocolErrors++;
      this.protocolLog.line(() =>
        this.logger?.warn(
          { ...who(client), loggedIn: client.loggedIn, sqlstate: error.sqlstate, error: error.message },
          'protocol violation: client connection closed',
        ),
      );
      return 'protocol_error';
    }
    if (client.loggedIn) return null;
    const reason = loginFailureReason(error, client.userKnown);
    this.failedLogins.set(reason, (this.failedLogins.get(reason) ?? 0) + 1);
    this.loginLog.line(() => this.logger?.warn({ ...who(client), reason, sqlstate: error.sqlstate, error: error.message }, 'login failed'));
    return 'failed_login';
  }

  /** Writes the summaries still due (shutdown). */
  close(): void {
    this.loginLog.close();
    this.protocolLog.close();
  }
}

/** The proxy's own refusals that share 08P01 with protocol violations (PgBouncer's words). */
function isLimit(error: PgProtocolError): boolean {
  return error.message.startsWith('no more connections allowed');
}

function who(client: FailedClient): Record<string, unknown> {
  const address = client.remoteAddress === undefined ? 'unknown' : client.remotePort === undefined ? client.remoteAddress : `${client.remoteAddress}:${client.remotePort}`;
  // Names as the client sent them; they are not secrets (PostgreSQL logs them too). Empty before the startup packet.
  return { user: client.user, database: client.database, client: address };
}

export function loginFailureReason(error: PgProtocolError, userKnown: boolean): FailedLoginReason {
  switch (error.sqlstate) {
    case SQLSTATE.INVALID_PASSWORD:
      return userKnown ? 'wrong_password' : 'unknown_user';
    case '3D000':
      return 'unknown_database';
    case SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION:
    case '42501':
      return 'not_allowed';
    case SQLSTATE.FEATURE_NOT_SUPPORTED:
      return 'unsupported';
    case SQLSTATE.CONNECTION_FAILURE:
      return 'server_unavailable';
    case SQLSTATE.PROTOCOL_VIOLATION:
      return isLimit(error) ? 'too_many_clients' : 'other';
    default:
      return 'other';
  }
}
