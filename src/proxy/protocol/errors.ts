/**
 * Errors that reach a PostgreSQL client. Everything the proxy refuses on the wire becomes one of these and, from
 * there, an ErrorResponse with a SQLSTATE (only PostgreSQL-style errors reach a client). They are
 * deliberately not PgwardenErrors: their "code" is the SQLSTATE clients and drivers already understand, and
 * they describe the client's mistake, not pgwarden's state.
 */

/** The SQLSTATEs the protocol and auth layers raise (PostgreSQL's errcodes.txt names). */
export const SQLSTATE = {
  /** 08P01: malformed, oversized or out-of-order message; PostgreSQL uses it for "invalid message length" too. */
  PROTOCOL_VIOLATION: '08P01',
  /** 08006: the connection to the other side failed. */
  CONNECTION_FAILURE: '08006',
  /** 0A000: a protocol version or SASL feature the proxy does not implement. */
  FEATURE_NOT_SUPPORTED: '0A000',
  /** 28000: the startup packet names no user, or the user may not connect. */
  INVALID_AUTHORIZATION_SPECIFICATION: '28000',
  /** 28P01: wrong password or failed SCRAM proof. */
  INVALID_PASSWORD: '28P01',
  /** 54000: a configured limit other than the frame length was exceeded. */
  PROGRAM_LIMIT_EXCEEDED: '54000',
} as const;

export type Sqlstate = (typeof SQLSTATE)[keyof typeof SQLSTATE] | (string & {});

export interface PgProtocolErrorOptions {
  detail?: string;
  hint?: string;
  /** FATAL (default) closes the connection, which is what the proxy does for every error raised here. */
  severity?: 'FATAL' | 'ERROR';
  /**
   * PostgreSQL's COMMERROR: the connection is closed and the reason only logged, nothing is sent (e.g. a client
   * that hangs up with Terminate before its startup packet must not be answered with an ErrorResponse).
   */
  silent?: boolean;
}

/** A client-facing error: SQLSTATE plus PostgreSQL-style primary message (lower case, no final period). */
export class PgProtocolError extends Error {
  readonly sqlstate: Sqlstate;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly severity: 'FATAL' | 'ERROR';
  readonly silent: boolean;

  constructor(sqlstate: Sqlstate, message: string, options: PgProtocolErrorOptions = {}) {
    super(message);
    this.name = 'PgProtocolError';
    this.sqlstate = sqlstate;
    this.detail = options.detail;
    this.hint = options.hint;
    this.severity = options.severity ?? 'FATAL';
    this.silent = options.silent ?? false;
  }

  /** The fields of the ErrorResponse that tells the client about this error. */
  toFields(): { severity: string; code: string; message: string; detail?: string; hint?: string } {
    const fields: { severity: string; code: string; message: string; detail?: string; hint?: string } = {
      severity: this.severity,
      code: this.sqlstate,
      message: this.message,
    };
    if (this.detail !== undefined) fields.detail = this.detail;
    if (this.hint !== undefined) fields.hint = this.hint;
    return fields;
  }
}

export function isPgProtocolError(e: unknown): e is PgProtocolError {
  return e instanceof PgProtocolError;
}

export function protocolViolation(message: string, detail?: string): PgProtocolError {
  return new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, message, detail === undefined ? {} : { detail });
}

/**
 * PostgreSQL's one answer to every failed password check (wrong password, unknown user, bad SCRAM proof): the
 * same words whatever the cause, so that a client cannot probe which users exist.
 */
export function passwordAuthenticationFailed(user: string): PgProtocolError {
  return new PgProtocolError(SQLSTATE.INVALID_PASSWORD, `password authentication failed for user "${user}"`);
}
